/**
 * The server role: accepts tunnel connections, authenticates clients, plans and binds their published
 * ports (with bind retry), carries every outside connection to the client over a yamux stream, and tells
 * clients and webhooks what happened. Imports nothing from `client/`.
 *
 * What differs by proxy kind (how a proxy is published, what its streams start with) is in
 * `proxy_kinds/`, one file per kind behind {@linkcode ServerProxyKind}; the tunnel connection itself comes
 * from `transport/` by name.
 *
 * @module
 */

export * from "./server.ts";
export * from "./proxy_kinds/mod.ts";

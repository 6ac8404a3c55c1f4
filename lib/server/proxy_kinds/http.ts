/**
 * The `http` and `https` proxy kinds, server side. They bind no port of their own: a proxy of either
 * kind is a set of routes (host name, and for `http` a path prefix) on the server's shared virtual-host
 * port of its protocol (`lib/server/vhost/`). Each request (`http`) or connection (`https`) routed to
 * the proxy is carried over a stream to the client that starts with the same stream header as a `tcp`
 * proxy's, so the client reaches the local service the same way.
 *
 * @module
 */

import { encodeStreamHeader } from "../../protocol/stream_header.ts";
import type { ServerProxyKind } from "./kind.ts";

function noOwnPort(kind: string): never {
  throw new Error(`a ${kind} proxy binds no port of its own: it is routed on the server's vhost port`);
}

/** The `http` proxy kind, server side: routed by Host and path on `vhost_http_port`. */
export const httpServerKind: ServerProxyKind = {
  name: "http",
  vhost: "http",
  bind: () => noOwnPort("http"),
  streamHeader: (proxy, peer, connId) =>
    encodeStreamHeader({ proxy: proxy.name, peer_addr: peer, conn_id: connId }),
};

/** The `https` proxy kind, server side: routed by the ClientHello's SNI on `vhost_https_port`, TLS untouched. */
export const httpsServerKind: ServerProxyKind = {
  name: "https",
  vhost: "https",
  bind: () => noOwnPort("https"),
  streamHeader: (proxy, peer, connId) =>
    encodeStreamHeader({ proxy: proxy.name, peer_addr: peer, conn_id: connId }),
};

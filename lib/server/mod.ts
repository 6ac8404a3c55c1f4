/**
 * The server role: accepts tunnel connections, authenticates clients, plans and binds their published
 * ports (with bind retry), carries every outside connection to the client over a yamux stream, and tells
 * clients and webhooks what happened. Imports nothing from `client/`.
 *
 * @module
 */

export * from "./server.ts";

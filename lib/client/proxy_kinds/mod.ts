/**
 * Proxy kinds, client side: what differs between a `tcp` proxy and the kinds to come (udp, http, https)
 * behind one small interface, {@linkcode ClientProxyKind}: how a carried stream reaches the local
 * service. The client asks {@linkcode clientProxyKindFor} for the kind named by each proxy's
 * `proxy_type` when it starts (an unknown one fails then, not at the first connection).
 *
 * `dial` returns a connection for the stream kinds; a datagram kind (`udp`) returns a local endpoint of
 * its own (its flow's UDP socket), typed by the kind's `Local` parameter, which only its `carry` uses.
 *
 * ## Adding a kind
 *
 * Write `lib/client/proxy_kinds/<kind>.ts` exporting a `ClientProxyKind`, add it to `BUILT_IN` in
 * `registry.ts`, and its server side in `lib/server/proxy_kinds/` likewise (see that folder's `mod.ts`).
 *
 * @module
 */

export * from "./kind.ts";
export * from "./registry.ts";
export * from "./tcp.ts";
export * from "./udp.ts";
export * from "./http.ts";

/**
 * Proxy kinds, server side: what differs between a `tcp` proxy and the kinds to come (udp, http, https)
 * behind one small interface, {@linkcode ServerProxyKind}: how a proxy is published (a
 * {@linkcode PublishedListener} yielding outside connections) and what the stream to the client starts
 * with. The registrar asks {@linkcode serverProxyKindFor} for the kind named by the proxy's `proxy_type`;
 * the published proxy runs the accept loop, the limits, the stats and the copy loop the same for all.
 *
 * A kind that is not connection-shaped (`udp`) binds a {@linkcode DatagramPublication} instead: the
 * published proxy hands it a {@linkcode DatagramHost} (the proxy's counters, whether new flows are
 * refused, and streams to the client with their header written) and it runs its own receive loop. The
 * connection kinds never see this path (`tcp.ts` is typed `ServerProxyKind<PublishedListener>`).
 *
 * ## Adding a kind
 *
 * Write `lib/server/proxy_kinds/<kind>.ts` exporting a `ServerProxyKind`, add it to `BUILT_IN` in
 * `registry.ts`, and its client side in `lib/client/proxy_kinds/` likewise. Both `BUILT_IN` tables are
 * typed by the protocol's `proxy_type` (`protocol/control.ts`), so once the kind's name is on the wire
 * the type check fails until both roles implement it.
 *
 * @module
 */

export * from "./kind.ts";
export * from "./registry.ts";
export * from "./tcp.ts";
export * from "./udp.ts";
export * from "./http.ts";

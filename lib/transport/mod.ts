/**
 * Transports: how the tunnel's one connection between a client and the server is accepted and dialed
 * ({@linkcode Transport}, `transport.ts`), the transports by name (`registry.ts`: `"tls"` in `tls.ts`,
 * `"wss"` in `wss.ts` with its WebSocket framing in `websocket.ts`, `"http2"` in `http2.ts`, `"quic"` in
 * `quic.ts`, experimental, needing `--unstable-net`), and the copy loop (`pipe.ts`) that moves bytes between a carried stream and a local socket.
 * The roles never import an implementation: they ask {@linkcode transportFor} for the one their config
 * names.
 *
 * ## The contract every transport keeps
 *
 * - **Bytes only.** Both ends hand up a {@linkcode DuplexConn} (`read`, `write` that resolves once the
 *   bytes are taken, `closeWrite` for a half-close, `close`); yamux and everything above it are the same
 *   on every transport. Framing (WebSocket frames, HTTP/2 DATA, a QUIC stream) stays inside the transport.
 * - **TCP_NODELAY** (or the transport's equivalent) on every connection, from the moment it is accepted
 *   or connected: yamux writes small frames (window updates, pings, an interactive keystroke) that must
 *   not wait 40 ms for Nagle's algorithm.
 * - **Admit or refuse at once.** `listen` yields each connection before any handshake as an
 *   {@linkcode IncomingConn}; the server admits it or refuses it in the same turn (pending limits, per-IP
 *   limits, the refused counters are the server's). A refused connection costs no handshake state: a flood
 *   beyond the limits must not grow the heap.
 * - **Close in any state.** `close()` on an {@linkcode AdmittedConn} frees its descriptor before, during
 *   or after the handshake, and a pending `handshake()` then rejects: the server's `handshake_timeout_secs`
 *   deadline (from the TCP accept to authentication) relies on it. A torn-down connection's peer may read
 *   a reset (RST) rather than a clean end; nothing may linger until the peer leaves.
 * - **Handshake timeout.** `listen` takes `handshakeTimeoutMs`, counted from the TCP accept: an admitted
 *   connection still handshaking then is closed and its `handshake()` rejects with
 *   {@linkcode TransportHandshakeTimeoutError}. `dial` takes `timeoutMs` for connect plus handshake and
 *   rejects with a {@linkcode TransportDialError} whose message names what failed and what to do; aborting
 *   its signal leaves nothing open.
 * - **Addresses are IP literals** where a peer can trigger the bind or connect (no blocking name lookup);
 *   a bind failure is a classified `BindError` (`net/tcp.ts`).
 *
 * ## Adding a transport
 *
 * Write `lib/transport/<name>.ts` exporting a `Transport` (listen, dial; keep the contract above), add the
 * name to `TRANSPORT_NAMES` and the object to `BUILT_IN` in `registry.ts` (the type check fails until
 * both are there), and run the end-to-end tests over it: `tests/transport_plugin_test.ts` shows how a
 * transport registered by name carries a whole tunnel. Nothing in `server/` or `client/` changes; the
 * config's `transport` key selects it by name (add the name to `TRANSPORT_KEYS` in `config/schema.ts`).
 *
 * @module
 */

export * from "./transport.ts";
export * from "./registry.ts";
export * from "./tls.ts";
export * from "./wss.ts";
export * from "./websocket.ts";
export * from "./http2.ts";
export * from "./quic.ts";
export * from "../net/node_socket_conn.ts";
export * from "./pipe.ts";

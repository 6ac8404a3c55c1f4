/**
 * Networking below the tunnel: the {@linkcode DuplexConn} byte-stream contract every layer above speaks,
 * an in-memory pair of them for tests, addresses (IP literals, loopback, wildcards, `host:port`), TCP bind
 * with classified errors, accept loops that back off on EMFILE, TCP resets, a `node:net` socket as a
 * {@linkcode DuplexConn} ({@linkcode NodeSocketConn}), and leaving through an outbound proxy (HTTP
 * CONNECT, SOCKS5, `HTTPS_PROXY`/`NO_PROXY`). Knows nothing of TLS, yamux or the tunnel.
 *
 * @module
 */

export * from "./conn.ts";
export * from "./memory_pair.ts";
export * from "./address.ts";
export * from "./tcp.ts";
export * from "./accept.ts";
export * from "./tcp_reset.ts";
export * from "./node_socket_conn.ts";
export * from "./outbound_proxy.ts";
export * from "./unstable.ts";

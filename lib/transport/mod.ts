/**
 * Transports: how the tunnel's one connection is made and accepted (TLS today: `tls_client.ts` dials,
 * `tls_server.ts` accepts plain TCP and runs TLS over it so that a socket can be closed in any state),
 * and the copy loop (`pipe.ts`) that moves bytes between a carried stream and a local socket.
 *
 * @module
 */

export * from "./tls_client.ts";
export * from "./tls_server.ts";
export * from "./node_socket_conn.ts";
export * from "./pipe.ts";

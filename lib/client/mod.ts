/**
 * The client role: dials the server, registers its proxies, and connects every carried stream to a local
 * service (load balancing, health checks, reconnect with backoff). Imports nothing from `server/`.
 *
 * `client.ts` is the session loop and the proxies' state; `registration.ts` the control stream
 * (authenticate, register_proxies, the server's notifications, each checked against the protocol's
 * schemas); `stream_carrier.ts` the data streams; `load_balancer.ts`, `health_check.ts`, `backoff.ts`
 * and `proxy_kinds/` what those use; `errors.ts` the fatal errors; `state.ts` the shared state types;
 * `multi_server.ts` runs one `TunnelClient` per server of `[client] servers`.
 *
 * @module
 */

export * from "./client.ts";
export { configFor, MultiServerClient, type MultiServerClientOptions } from "./multi_server.ts";

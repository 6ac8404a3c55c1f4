/**
 * The validated configuration, as the roles use it: the camelCase, defaults-applied output of the schemas
 * in `schema.ts`, inferred from them (each key is documented there, on the schema). This file is the
 * contract between config and roles; it declares no field itself, so a key added to a schema appears here
 * with no further edit.
 *
 * @module
 */

import type { z } from "zod";
import type {
  bindRetrySchema,
  clientFileSchema,
  healthCheckSchema,
  LB_POLICIES,
  notifySchema,
  reconnectSchema,
  serverFileSchema,
  serverTableSchema,
  visitorSchema,
} from "./schema.ts";
import type { forwarderSchema, rateLimitSchema, routingSchema } from "./_forwarders.ts";

export type { PortRange } from "./port_range.ts";

/** How the server retries binding a published port (`[server.bind_retry]`); the client asks for a `Partial`. */
export type BindRetryConfig = z.output<typeof bindRetrySchema>;

/** One named client the server accepts, with its own key and the ports it may publish. */
export type ServerClientEntry = z.output<typeof serverTableSchema>["clients"][number];

/** Where and which server events are POSTed as JSON (`[server.notify]`). */
export type NotifyConfig = z.output<typeof notifySchema>;

/** `[server]` plus its sub-tables. */
export type ServerConfig = z.output<typeof serverFileSchema>;

/** One listener of the server (`[server]`'s own, or a `[[server.listeners]]` entry), defaults applied. */
export type ListenerConfig = ServerConfig["listeners"][number];

/** How the client reconnects after losing the server (`[client.reconnect]`). */
export type ReconnectConfig = z.output<typeof reconnectSchema>;

/**
 * How a proxy with several local backends picks one per outside connection: in turn, the one with the
 * fewest open connections, or by a hash of the outside peer's IP (one outside host keeps one backend).
 */
export type LbPolicy = typeof LB_POLICIES[number];

/** Optional TCP health check of a proxy's local service. */
export type HealthCheckConfig = z.output<typeof healthCheckSchema>;

/** One `[[proxies]]` entry of the client. */
// The file schema's entry, not proxySchema's: the file decides `visibility` (a Rust-style file's [[visitors]]).
export type ProxyConfig = z.output<typeof clientFileSchema>["proxies"][number];

/** One `[[visitors]]` entry: a local port that reaches another client's private proxy. */
export type VisitorConfig = z.output<typeof visitorSchema>;

/** `[client]` plus `[[proxies]]`. */
export type ClientConfig = z.output<typeof clientFileSchema>;

/** One server of the client (`servers`, or the one `server_addr` names), every default applied. */
export type ServerEndpoint = ClientConfig["servers"][number];

/** One `[[forwarders]]` entry of the client: a local HTTP or SOCKS5 proxy that leaves through the server. */
export type ForwarderConfig = z.output<typeof forwarderSchema>;

/** `[forwarders.routing]`: which destinations a forwarder connects to directly. */
export type RoutingConfig = z.output<typeof routingSchema>;

/** `[server.rate_limit]`: token buckets on new connections. */
export type RateLimitConfig = z.output<typeof rateLimitSchema>;

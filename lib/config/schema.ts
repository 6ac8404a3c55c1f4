/**
 * The config files as zod schemas, one per role: each parses the TOML document (snake_case keys,
 * compatible with the Rust tls-tunnel), checks every value on its own (type, range, syntax), applies the
 * defaults of `defaults.ts`, and outputs the camelCase object the roles use. The types in `types.ts` are
 * inferred from these schemas, so adding a key is one line here (plus its default in `defaults.ts`, if it
 * has one, and its lines in the template and README, which tests check).
 *
 * Each key's meaning is documented here, on the key. Rules that relate several keys (cert_path without
 * key_path, duplicate proxy names, …) live in `_rules.ts`: they read the raw document, so they run even when
 * some value has the wrong type (zod skips an object's refinements once one of its values failed) and
 * every problem is reported in one pass.
 *
 * Compatibility with the Rust tls-tunnel: its `transport` (`"tls"`, `"wss"` or `"http2"`),
 * `server_path` and `behind_proxy` keys mean the same here; its `proxy_type = "http/1.1"`, `"http/2.0"`,
 * `"ssh"`, the `type` key of its examples and `allow_forward` load too, with the meaning `_compat.ts` gives
 * them (and `check` notes).
 *
 * @module
 */

import { z } from "zod";
import { camelKeys } from "./_camel.ts";
import {
  bindablePort,
  bindAddress,
  cidr,
  filePath,
  host,
  localBackends,
  name,
  port,
  portRange,
  portRanges,
  seconds,
  secret,
  serverPath,
  sha256Fingerprint,
} from "./_fields.ts";
import { DEFAULTS } from "./defaults.ts";
import { carriedProxyType, PROXY_TYPES } from "./_compat.ts";
import { unsafeCharacter } from "../text.ts";
import { vhostProxyKeys, vhostServerKeys } from "./_vhost.ts";
import { groupLimitProxyKeys } from "./_groups_limits.ts";
import { parseProxyUrl, ProxyUrlError } from "../net/proxy_url.ts";
import { isIpAddress } from "../net/address.ts";
import { resolveServers, serverEntrySchema, serverListSchema } from "./_servers.ts";
import { forwarderSchema, forwardServerKeys, rateLimitSchema, routingSchema } from "./_forwarders.ts";

/**
 * A proxy's `visibility` values. The wire's list (protocol/open_request.ts) is the same; config may not
 * import protocol, and `toProxySpec` would not type-check if the two differed.
 */
export const PROXY_VISIBILITIES = ["public", "private", "both"] as const;
/** Longest `secret_key` (the wire's bound, protocol/open_request.ts). */
const SECRET_KEY_MAX_CHARS = 1024;

/** A `secret_key`: 1–1024 printable characters (the wire's bound). */
const visitSecret = z.string().min(1).max(SECRET_KEY_MAX_CHARS).refine(
  (value) => unsafeCharacter(value) === null,
  {
    message: "contains a control character, bidi control or lone surrogate",
    params: { hint: "use printable characters only" },
  },
);

/** The values of the `transport` key (the registry's built-in transports; `transport/registry.ts`). */
export const TRANSPORT_KEYS = ["tls", "wss", "http2", "quic"] as const;

/** Load-balancing policies of a proxy with several `local_backends`. */
export const LB_POLICIES = ["round_robin", "least_connections", "ip_hash"] as const;

/** Event codes a webhook may subscribe to (the server's event log codes). */
export const NOTIFY_EVENT_CODES = [
  "CLIENT_CONNECTED",
  "CLIENT_DISCONNECTED",
  "AUTH_FAILED",
  "PROXY_BIND_FAILED",
  "PORT_CHANGED",
  "PROXY_UNHEALTHY",
  "PROXY_HEALTHY",
] as const;

/**
 * The bind-retry keys, once: the server's `[server.bind_retry]` gives each a default, the client's
 * `[client.bind_retry]` leaves each optional (an unset key takes the server's value).
 */
const bindRetryKeys = {
  /** Retries after the first failed attempt before giving up (0 = no retry). */
  max_retries: z.int().min(0).max(1000),
  /** Delay before the first retry, doubled after each failure. */
  initial_delay_secs: seconds,
  /** Cap on the delay between retries. */
  max_delay_secs: seconds,
};

/** `[server.bind_retry]`: how the server retries binding a published port that it could not bind. */
export const bindRetrySchema = z.strictObject({
  max_retries: bindRetryKeys.max_retries.default(DEFAULTS.server.bind_retry.max_retries),
  initial_delay_secs: bindRetryKeys.initial_delay_secs.default(DEFAULTS.server.bind_retry.initial_delay_secs),
  max_delay_secs: bindRetryKeys.max_delay_secs.default(DEFAULTS.server.bind_retry.max_delay_secs),
}).transform((table) => camelKeys(table));

/**
 * `[client.bind_retry]`: a gentler bind retry the client asks of the server; the server never retries more
 * than its own `[server.bind_retry]`.
 */
export const clientBindRetrySchema = z.strictObject(bindRetryKeys).partial()
  .transform((table) => camelKeys(table));

/** `[server.notify]`: where and which server events are POSTed as JSON (bind failures, disconnections…). */
export const notifySchema = z.strictObject({
  /** http(s) URL that receives one POST per event. */
  webhook_url: z.url({ protocol: /^https?$/, error: "webhook_url must be an http:// or https:// URL" }),
  /** Sent as `Authorization: Bearer …` when set. */
  webhook_token: secret.optional(),
  /** Event codes to send. */
  events: z.array(z.enum(NOTIFY_EVENT_CODES)).min(1).default(() => [...DEFAULTS.server.notify.events]),
  /** Give up on one POST after this long. */
  timeout_secs: seconds.default(DEFAULTS.server.notify.timeout_secs),
}).transform((table) => {
  // Typed as the event log's codes (plain strings) the webhook compares them with.
  const events: string[] = table.events;
  return { ...camelKeys(table), events };
});

/**
 * One `[[server.clients]]` entry: a named client with its own key and the ports it may publish.
 * `allow_ports` and `max_proxies` default to the server's (filled in by {@link serverTableSchema}).
 */
export const serverClientSchema = z.strictObject({
  /** Unique name, shown in logs and stats. */
  name,
  /** This client's key (at least 16 characters). */
  auth_key: secret,
  /** Ports this client may publish; defaults to the server's `allow_ports`. */
  allow_ports: portRanges.optional(),
  /** Proxies this client may register; defaults to the server's `max_proxies_per_client`. */
  max_proxies: z.int().min(1).max(10_000).optional(),
  /**
   * Clients (names of `[[server.clients]]` entries, or client_ids of shared-key clients) whose private
   * proxies this client's visitors may reach; `"*"` for any. Absent → only clients that authenticated with
   * the same key (the Rust tool's rule).
   */
  allow_visit: z.array(z.union([z.literal("*"), name])).max(1024).optional(),
}).transform((table) => camelKeys(table));

/** Most `[[server.listeners]]` entries: each is a bound port and an accept loop. */
export const MAX_LISTENERS = 16;

/**
 * One `[[server.listeners]]` entry: one more port clients reach the same server on, over its own
 * transport. Every listener shares the server's clients, published ports, stats and pending limits.
 */
export const serverListenerSchema = z.strictObject({
  /** How clients reach this listener (the `[server]` key of the same name). */
  transport: z.enum(TRANSPORT_KEYS),
  /** Address this listener binds. */
  bind_addr: bindAddress.default(DEFAULTS.server.bind_addr),
  /** Port this listener binds (0 = any free port, for tests). */
  bind_port: bindablePort,
  /** HTTP path of the tunnel on this listener (`"wss"`, `"http2"`). */
  server_path: serverPath.default(DEFAULTS.server.server_path),
  /** Plain-text WebSocket (or h2c) for a reverse proxy that terminates TLS (`"wss"`, `"http2"`). */
  behind_proxy: z.boolean().default(DEFAULTS.server.behind_proxy),
  /** Peers whose forwarded client address is believed on this listener; default `[server]`'s. */
  trusted_proxies: z.array(cidr).max(256).optional(),
}).transform((table) => camelKeys(table));

/** `[server]` plus its sub-tables. */
export const serverTableSchema = z.strictObject({
  /**
   * Address the tunnel's listener binds. Optional here (the default is applied in the transform), so that
   * the transform can tell whether `[server]` describes a listener when `[[server.listeners]]` is set.
   */
  bind_addr: bindAddress.optional(),
  /** Port of the tunnel's listener (default applied in the transform, like `bind_addr`). */
  bind_port: bindablePort.optional(),
  /** PEM certificate chain; with `key_path`, or neither (then a throw-away certificate is generated). */
  cert_path: filePath.optional(),
  /** PEM private key matching `cert_path`. */
  key_path: filePath.optional(),
  /** The shared key any client may present (at least 16 characters); optional when `clients` is set. */
  auth_key: secret.optional(),
  /** Ports a client using the shared `auth_key` may publish. */
  allow_ports: portRanges.prefault(DEFAULTS.server.allow_ports),
  /**
   * Address a proxy is published on when it names no `publish_addr`: an IP literal (the server never binds
   * names). Several servers on one host each set their own, so they can publish the same port.
   */
  default_publish_addr: z.string().refine((value) => isIpAddress(value), {
    message: "is not an IP address",
    params: { hint: `write an IP address such as "0.0.0.0", "::" or "127.0.0.2"; a name is never bound` },
  }).default(DEFAULTS.server.default_publish_addr),
  /** Most proxies one client may register. */
  max_proxies_per_client: z.int().min(1).max(10_000).default(DEFAULTS.server.max_proxies_per_client),
  /**
   * Streams one client session may have open that it opened itself (visitor and forwarder connections);
   * beyond it a new one is answered `LIMIT`.
   */
  max_client_streams: z.int().min(1).max(65_536).default(DEFAULTS.server.max_client_streams),
  /** Time from TCP accept to authenticated before a connection is closed. */
  handshake_timeout_secs: seconds.default(DEFAULTS.server.handshake_timeout_secs),
  /** Unauthenticated connections (TCP accepted, not yet authenticated) at most, in all. */
  max_pending_connections: z.int().min(1).max(1_000_000).default(DEFAULTS.server.max_pending_connections),
  /** Unauthenticated connections at most from one address. */
  max_pending_per_ip: z.int().min(1).max(1_000_000).default(DEFAULTS.server.max_pending_per_ip),
  /** yamux ping interval on every session (see `sessionKeepalive`). */
  keepalive_interval_secs: seconds.default(DEFAULTS.server.keepalive_interval_secs),
  /** A session whose ping is not answered within this is dead; greater than the interval. */
  keepalive_timeout_secs: seconds.default(DEFAULTS.server.keepalive_timeout_secs),
  /** Address of the stats/metrics HTTP endpoint; the endpoint is off without `stats_port`. */
  stats_addr: bindAddress.default(DEFAULTS.server.stats_addr),
  /** Port of the stats endpoint; absent → no endpoint. */
  stats_port: bindablePort.optional(),
  /** Bearer token required by the stats endpoint (required when `stats_addr` is not loopback). */
  stats_token: secret.optional(),
  /** How long the server remembers a client's last bound ports to offer them again. */
  sticky_ports_ttl_secs: z.number().min(0).max(604_800).default(DEFAULTS.server.sticky_ports_ttl_secs),
  /**
   * Consecutive outside connections the client could not carry to its local service (reported with
   * `proxy_connect_result`) before the server marks the proxy unhealthy.
   */
  unhealthy_after_failures: z.int().min(1).max(1_000_000).default(DEFAULTS.server.unhealthy_after_failures),
  /** `[server.bind_retry]`. */
  bind_retry: bindRetrySchema.prefault({}),
  /** `[server.notify]`: events POSTed to a webhook. */
  notify: notifySchema.optional(),
  /** Named clients with their own keys (`[[server.clients]]`). */
  clients: z.array(serverClientSchema).default([]),
  /**
   * How clients reach the tunnel: `"tls"` (TLS over TCP), `"wss"` (WebSocket) or `"http2"` (one HTTP/2
   * stream), the last two over TLS or behind a proxy.
   */
  transport: z.enum(TRANSPORT_KEYS).optional(),
  /** HTTP path of the tunnel (`transport = "wss"` or `"http2"`); anything else is answered 404. */
  server_path: serverPath.default(DEFAULTS.server.server_path),
  /**
   * Serve plain-text WebSocket (or h2c) for a reverse proxy (nginx, Caddy, a CDN) that terminates TLS;
   * needs `transport = "wss"` or `"http2"`. The certificate keys then go unused.
   */
  behind_proxy: z.boolean().default(DEFAULTS.server.behind_proxy),
  /**
   * Peers whose `X-Forwarded-For`/`Forwarded` header is believed for the client's address (IP addresses or
   * CIDR networks); any other peer's header is ignored.
   */
  trusted_proxies: z.array(cidr).max(256).default(() => [...DEFAULTS.server.trusted_proxies]),
  /** `allow_forward`, `forward_allow_private`, the per-client limit, `[server.rate_limit]` (`_forwarders.ts`). */
  ...forwardServerKeys,
  /** Shared HTTP/HTTPS ports for `http`/`https` proxies, `subdomain_host`, `request_timeout_secs` (`_vhost.ts`). */
  ...vhostServerKeys,
  /**
   * More listeners, each `{ transport, bind_addr, bind_port, server_path, behind_proxy, trusted_proxies }`
   * (`[[server.listeners]]`). `[server]`'s own transport/bind_addr/bind_port make the first listener when
   * the file sets any of them (or there is no entry); see {@linkcode effectiveListeners}.
   */
  listeners: z.array(serverListenerSchema).max(MAX_LISTENERS).default([]),
}).transform((table) => {
  const server = camelKeys(table);
  const listeners = effectiveListeners(server);
  // The first listener's values stand for "the" listener where one address is shown (check, the printed
  // client command, the certificate's names); every listener is in `listeners`.
  const first = listeners[0] ?? serverListener(server);
  return {
    ...server,
    bindAddr: first.bindAddr,
    bindPort: first.bindPort,
    transport: first.transport,
    serverPath: first.serverPath,
    behindProxy: first.behindProxy,
    listeners,
    clients: server.clients.map((client) => ({
      ...client,
      allowPorts: client.allowPorts ?? server.allowPorts,
      maxProxies: client.maxProxies ?? server.maxProxiesPerClient,
    })),
  };
});

/** A listener of the server as the roles see it: one entry of `ServerConfig.listeners`. */
interface ListenerConfig {
  /** Name of the registered transport (`transport/registry.ts`). */
  transport: typeof TRANSPORT_KEYS[number];
  /** Address to bind (an IP literal, or "localhost"). */
  bindAddr: string;
  /** Port to bind (0 = any free port). */
  bindPort: number;
  /** HTTP path of the tunnel, for transports over HTTP. */
  serverPath: string;
  /** Plain text for a reverse proxy that terminates TLS. */
  behindProxy: boolean;
  /** Peers whose forwarded client address is believed. */
  trustedProxies: string[];
}

/** `[server]`'s own listener keys, with their defaults. */
function serverListener(server: {
  transport?: typeof TRANSPORT_KEYS[number];
  bindAddr?: string;
  bindPort?: number;
  serverPath: string;
  behindProxy: boolean;
  trustedProxies: string[];
}): ListenerConfig {
  return {
    transport: server.transport ?? DEFAULTS.server.transport,
    bindAddr: server.bindAddr ?? DEFAULTS.server.bind_addr,
    bindPort: server.bindPort ?? DEFAULTS.server.bind_port,
    serverPath: server.serverPath,
    behindProxy: server.behindProxy,
    trustedProxies: server.trustedProxies,
  };
}

/**
 * Every listener of the server, in order. Without `[[server.listeners]]`, `[server]`'s transport,
 * bind_addr and bind_port (defaults included) are the one listener. With entries, `[server]`'s listener
 * comes first when any of those three keys is written (in the file, an environment variable or a flag),
 * so appending an entry to a working config adds a listener; otherwise the entries are the whole list.
 * An entry without `trusted_proxies` takes `[server]`'s.
 */
function effectiveListeners(server: {
  transport?: typeof TRANSPORT_KEYS[number];
  bindAddr?: string;
  bindPort?: number;
  serverPath: string;
  behindProxy: boolean;
  trustedProxies: string[];
  listeners: z.output<typeof serverListenerSchema>[];
}): ListenerConfig[] {
  const ownWritten = server.transport !== undefined || server.bindAddr !== undefined ||
    server.bindPort !== undefined;
  const entries = server.listeners.map((entry) => ({
    ...entry,
    trustedProxies: entry.trustedProxies ?? server.trustedProxies,
  }));
  return entries.length === 0 || ownWritten ? [serverListener(server), ...entries] : entries;
}

/** `[client.reconnect]`: how the client reconnects after losing the server. */
export const reconnectSchema = z.strictObject({
  /** First delay after a lost session (`TLS_TUNNEL_RECONNECT_DELAY_SECS` overrides). */
  initial_delay_secs: z.number().min(0.01).max(3600).default(DEFAULTS.client.reconnect.initial_delay_secs),
  /** Cap on the backoff. */
  max_delay_secs: seconds.default(DEFAULTS.client.reconnect.max_delay_secs),
  /** Backoff factor. */
  multiplier: z.number().min(1).max(10).default(DEFAULTS.client.reconnect.multiplier),
  /** Random spread applied to each delay, 0-1 (0.2 = ±20 %). */
  jitter: z.number().min(0).max(1).default(DEFAULTS.client.reconnect.jitter),
  /** Attempts before giving up; 0 = forever. */
  max_attempts: z.int().min(0).default(DEFAULTS.client.reconnect.max_attempts),
}).transform((table) => camelKeys(table));

/**
 * `proxy_url` → an `OutboundProxy`. The message quotes the URL with its credentials masked (it does not
 * start with "is ", so the issue converter does not put the raw value in front of it).
 */
const outboundProxyUrl = z.string().transform((text, ctx) => {
  try {
    return parseProxyUrl(text, "proxy_url");
  } catch (error) {
    if (!(error instanceof ProxyUrlError)) throw error;
    ctx.addIssue({ code: "custom", message: error.problem, params: { hint: error.hint } });
    return z.NEVER;
  }
});

/** `[client]`. */
export const clientTableSchema = z.strictObject({
  /** Server host name or address: one server (or `servers` for several; not both, see `_servers.ts`). */
  server_addr: host.optional(),
  /**
   * Several servers to keep a session to at once: `"host:port"` strings or `[[client.servers]]` tables
   * (`_servers.ts`); the other connection keys of `[client]` are their defaults.
   */
  servers: serverListSchema.optional(),
  /** Server's tunnel port. */
  server_port: port.default(DEFAULTS.client.server_port),
  /** Name the server's certificate must carry (default: `server_addr`). */
  server_name: host.optional(),
  /** PEM CA (or self-signed certificate) to trust instead of the system roots. */
  ca_cert_path: filePath.optional(),
  /** Skip certificate verification (loudly warned about). */
  skip_verify: z.boolean().default(DEFAULTS.client.skip_verify),
  /**
   * SHA-256 fingerprint the server's leaf certificate must have. Written as `tls-tunnel cert` prints it
   * (32 colon-separated hex pairs) or as `SHA256:` + 64 hex digits, in any letter case; always reaches the
   * roles in the upper-case colon-separated form `AB:CD:…` that lib/pki/fingerprint.ts produces. Absent →
   * no pin.
   */
  server_fingerprint: sha256Fingerprint.optional(),
  /** Key sent in `authenticate`. */
  auth_key: secret,
  /** Stable id of this client across reconnects (default: derived from the host and config). */
  client_id: name.optional(),
  /** Attempts to reach the local service per outside connection (env override). */
  local_connect_retries: z.int().min(1).max(100).default(DEFAULTS.client.local_connect_retries),
  /** Delay between those attempts (env override). */
  local_retry_delay_ms: z.int().min(0).max(600_000).default(DEFAULTS.client.local_retry_delay_ms),
  /** yamux ping interval (see `sessionKeepalive`). */
  keepalive_interval_secs: seconds.default(DEFAULTS.client.keepalive_interval_secs),
  /** Ping timeout that ends the session; greater than the interval. */
  keepalive_timeout_secs: seconds.default(DEFAULTS.client.keepalive_timeout_secs),
  /** Address of the client's stats endpoint. */
  stats_addr: bindAddress.default(DEFAULTS.client.stats_addr),
  /** Port of the client's stats endpoint; absent → none. */
  stats_port: bindablePort.optional(),
  /** Bearer token required by the client's stats endpoint (required when `stats_addr` is not loopback). */
  stats_token: secret.optional(),
  /** Reconnect policy. */
  reconnect: reconnectSchema.prefault({}),
  /** A gentler bind retry asked of the server (`[client.bind_retry]`). */
  bind_retry: clientBindRetrySchema.optional(),
  /**
   * Leave through this outbound proxy: `"http://[user:pass@]host:port"` (HTTP CONNECT) or
   * `"socks5://[user:pass@]host:port"`; reaches the roles as an `OutboundProxy` that prints without its
   * credentials. Absent → `HTTPS_PROXY`/`ALL_PROXY` and `NO_PROXY` decide, like curl (the CLI reads them).
   */
  proxy_url: outboundProxyUrl.optional(),
  /** How the server is reached: `"tls"`, `"wss"` or `"http2"` (over TLS, also through a reverse proxy). */
  transport: z.enum(TRANSPORT_KEYS).default(DEFAULTS.client.transport),
  /** HTTP path of the tunnel (`transport = "wss"` or `"http2"`): the server's, or the proxy's location. */
  server_path: serverPath.default(DEFAULTS.client.server_path),
}).transform((table, ctx) => {
  const { servers: entries, ...client } = camelKeys(table);
  const servers = resolveServers(client, entries);
  const first = servers[0];
  if (first === undefined) {
    ctx.addIssue({
      code: "custom",
      path: ["server_addr"],
      message: "missing required key `server_addr`",
      params: { hint: `add server_addr = "tunnel.example.com", or servers = ["a.example.com:8443", …]` },
    });
    return z.NEVER;
  }
  // The first server's keys stand in for the single-server ones, which the one-session client reads.
  const { name: _label, ...firstServer } = first;
  return { ...client, ...firstServer, servers };
});

/** `health_check = { interval_secs, timeout_secs }`: an optional TCP check of a proxy's local service. */
export const healthCheckSchema = z.strictObject({
  /** Seconds between checks. */
  interval_secs: seconds.default(DEFAULTS.proxy.health_check.interval_secs),
  /** Seconds a connect may take before the service counts as down. */
  timeout_secs: seconds.default(DEFAULTS.proxy.health_check.timeout_secs),
}).transform((table) => camelKeys(table));

/**
 * One `[[proxies]]` entry. `publish_port` is required unless `publish_port_range` is set, and `local_port`
 * unless `local_backends` is set (see `_rules.ts`).
 */
export const proxySchema = z.strictObject({
  /** Unique name within the client. */
  name,
  /**
   * `"tcp"`, or the Rust tls-tunnel's `"http/1.1"`, `"http/2.0"`, `"ssh"`, which are TCP proxies here
   * (`_compat.ts`); reaches the roles (and the wire) as `"tcp"`.
   */
  proxy_type: z.enum(PROXY_TYPES).default(DEFAULTS.proxy.proxy_type),
  /** The Rust tls-tunnel examples' name for `proxy_type`, same values; dropped after normalisation. */
  type: z.enum(PROXY_TYPES).optional(),
  /** Address the server publishes on; absent → the server's `default_publish_addr` (0.0.0.0 by default). */
  publish_addr: bindAddress.optional(),
  /** Port the server publishes on; 0 (or absent) = the system picks, or the first free port of the range. */
  publish_port: bindablePort.optional(),
  /** Range to search when the preferred port is taken or `publish_port` is 0. */
  publish_port_range: portRange.optional(),
  /** When the range is full, fall back to a port the system picks. */
  fallback_to_system_port: z.boolean().default(DEFAULTS.proxy.fallback_to_system_port),
  /** Local service address the client connects to; the first backend's with `local_backends`. */
  local_addr: host.default(DEFAULTS.proxy.local_addr),
  /** Local service port; the first backend's with `local_backends`. */
  local_port: port.optional(),
  /** Several local services to spread connections over; absent → just local_addr:local_port. */
  local_backends: localBackends.optional(),
  /** How a backend is picked per connection when there are several. */
  lb_policy: z.enum(LB_POLICIES).default(DEFAULTS.proxy.lb_policy),
  /** Optional health check of the local service. */
  health_check: healthCheckSchema.optional(),
  /** Routing of `http`/`https` proxies: custom_domains, subdomain, locations, … (`_vhost.ts`). */
  ...vhostProxyKeys,
  /** `udp` proxies: seconds a flow (one outside peer) may go without a datagram before it is dropped. */
  udp_idle_timeout_secs: z.number().int().min(1).max(86_400).optional(),
  /** `udp` proxies: most flows at once (the one idle longest is evicted), 1–4,096. */
  max_udp_flows: z.number().int().min(1).max(4096).optional(),
  /**
   * `"public"` (bound on the server), `"private"` (not bound; only other clients' `[[visitors]]` reach it,
   * by name and publish_port) or `"both"`. Absent → public, except in a config written like the Rust
   * tool's (a `type` key on the proxy, or `[[visitors]]` in the file) for a proxy without `publish_addr`,
   * which is private there and here (`check` notes it).
   */
  visibility: z.enum(PROXY_VISIBILITIES).optional(),
  /** The key a visitor must present to reach this proxy (`private` or `both`). */
  secret_key: visitSecret.optional(),
  /** group, group_key, proxy_protocol, bandwidth_limit, max_connections (`_groups_limits.ts`). */
  ...groupLimitProxyKeys,
}).transform((table) => {
  // `type` only stands in for proxy_type: the roles see one proxyType, the kind it is carried as. Every
  // accepted value is carried as "tcp" today, so when both are written they cannot disagree.
  const { type, ...proxy } = camelKeys(table);
  const first = proxy.localBackends?.[0];
  return {
    ...proxy,
    // The Rust examples' proxy (`type`, no publish_addr) is private, as in the Rust tool; the file's
    // [[visitors]] can make one private too (clientFileSchema).
    visibility: proxy.visibility ??
      (type !== undefined && proxy.publishAddr === undefined ? "private" as const : undefined),
    proxyType: carriedProxyType(type ?? proxy.proxyType),
    publishPort: proxy.publishPort ?? 0,
    // With local_backends the first backend stands in for local_addr/local_port (shown in logs and sent to
    // the server, which only displays them); the rules guarantee one of the two forms.
    localAddr: first?.host ?? proxy.localAddr,
    localPort: first?.port ?? proxy.localPort ?? 0,
  };
});

/** One `[[visitors]]` entry: a local port that reaches another client's private proxy through the server. */
export const visitorSchema = z.strictObject({
  /** The target proxy's name (with `publish_port`, the Rust tool's key of a proxy). */
  name,
  /** The target proxy's `publish_port`. */
  publish_port: bindablePort,
  /** Address the visitor listens on, on this machine. */
  bind_addr: bindAddress.default(DEFAULTS.visitors.bind_addr),
  /** Port the visitor listens on (0 = any free port, shown in the log and stats). */
  bind_port: bindablePort,
  /** The target proxy's `secret_key`, when it has one. */
  secret_key: visitSecret.optional(),
  /** The owning client's name, when several clients have a proxy of this name and port. */
  client: name.optional(),
  /** The Rust examples' proxy type on a visitor: any of them is carried as TCP (`check` notes it). */
  type: z.enum(PROXY_TYPES).optional(),
}).transform((table) => {
  const { type: _type, ...visitor } = camelKeys(table);
  return visitor;
});

/** A whole server file → the server's config. */
export const serverFileSchema = z.strictObject({ server: serverTableSchema })
  .transform((file) => file.server);

/** A whole client file (`[client]` plus `[[proxies]]`, `[[visitors]]`) → the client's config. */
export const clientFileSchema = z.strictObject({
  client: clientTableSchema,
  /** The proxies to publish (an absent `[[proxies]]` is an empty one). */
  proxies: z.array(proxySchema).prefault([]),
  /** Local ports that reach other clients' private proxies (`[[visitors]]`). */
  visitors: z.array(visitorSchema).max(1024).prefault([]),
  /** Local HTTP/SOCKS5 proxies whose connections leave through the server (`[[forwarders]]`). */
  forwarders: z.array(forwarderSchema).max(64).prefault([]),
}).superRefine((file, ctx) => {
  // A secret_key guards visits: on a proxy no visitor reaches it would protect nothing.
  file.proxies.forEach((proxy, index) => {
    if (proxy.secretKey === undefined) return;
    const visibility = proxy.visibility ??
      (file.visitors.length > 0 && proxy.publishAddr === undefined ? "private" : DEFAULTS.proxy.visibility);
    if (visibility !== "public") return;
    ctx.addIssue({
      code: "custom",
      path: ["proxies", index, "secret_key"],
      message: "secret_key applies to proxies visitors reach; this one is public",
      params: { hint: `set visibility = "private" (or "both"), or remove secret_key` },
    });
  });
  // A client needs something to do: a proxy to publish or a visitor to run.
  if (file.proxies.length === 0 && file.visitors.length === 0 && file.forwarders.length === 0) {
    ctx.addIssue({
      code: "custom",
      path: ["proxies"],
      message: "the client publishes nothing: no [[proxies]] entry",
      params: {
        hint: "add a [[proxies]] table with name, publish_port and local_port (or a [[visitors]] table " +
          "with name, publish_port and bind_port, or a [[forwarders]] table with name, proxy_type and " +
          "bind_port)",
      },
    });
  }
}).transform((file) => ({
  ...file.client,
  // In a file with [[visitors]] (the Rust tool's style), a proxy without publish_addr is private, as there.
  proxies: file.proxies.map((proxy) => ({
    ...proxy,
    visibility: proxy.visibility ??
      (file.visitors.length > 0 && proxy.publishAddr === undefined
        ? "private" as const
        : DEFAULTS.proxy.visibility),
  })),
  visitors: file.visitors,
  forwarders: file.forwarders,
}));

/**
 * Known keys of every table, by the table's path without array indices (`""` is the top level,
 * `proxies` is any `[[proxies]]` entry). Used to suggest the key a misspelt one probably meant.
 */
export const KNOWN_KEYS: Readonly<Record<"server" | "client", Readonly<Record<string, readonly string[]>>>> =
  {
    server: {
      "": Object.keys(serverFileSchema.in.shape),
      "server": Object.keys(serverTableSchema.in.shape),
      "server.bind_retry": Object.keys(bindRetrySchema.in.shape),
      "server.notify": Object.keys(notifySchema.in.shape),
      "server.clients": Object.keys(serverClientSchema.in.shape),
      "server.listeners": Object.keys(serverListenerSchema.in.shape),
      "server.rate_limit": Object.keys(rateLimitSchema.in.shape),
    },
    client: {
      "": Object.keys(clientFileSchema.in.shape),
      "client": Object.keys(clientTableSchema.in.shape),
      "client.reconnect": Object.keys(reconnectSchema.in.shape),
      "client.bind_retry": Object.keys(clientBindRetrySchema.in.shape),
      "client.servers": Object.keys(serverEntrySchema.in.shape),
      "proxies": Object.keys(proxySchema.in.shape),
      "proxies.health_check": Object.keys(healthCheckSchema.in.shape),
      "visitors": Object.keys(visitorSchema.in.shape),
      "forwarders": Object.keys(forwarderSchema.in.shape),
      "forwarders.routing": Object.keys(routingSchema.in.shape),
    },
  };

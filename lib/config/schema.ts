/**
 * zod schemas of the TOML files, in their snake_case spelling, with every default. They check each value on
 * its own (type, range, syntax); rules that relate several keys (cert_path without key_path, duplicate
 * proxy names, …) live in `_rules.ts` so that they run even when some value has the wrong type, and every
 * problem is reported in one pass.
 *
 * Compatibility with the Rust tls-tunnel: its `transport` key is accepted when it is `"tls"` (the only
 * transport here), `behind_proxy` when it is `false`, and the client's `server_path` (used only by its
 * http2/wss transports) is accepted and ignored.
 *
 * @module
 */

import { z } from "zod";
import { isHost, isIpAddress } from "../net/address.ts";
import { NAME_HINT, NAME_PATTERN, unsafeCharacter } from "../text.ts";
import { parsePortRange, parsePortRanges } from "./port_range.ts";

/** Default values, in TOML spelling, shared by the schemas, the templates and the docs. */
export const DEFAULTS = {
  server: {
    bind_addr: "0.0.0.0",
    bind_port: 8443,
    allow_ports: "1024-65535",
    max_proxies_per_client: 64,
    handshake_timeout_secs: 10,
    max_pending_connections: 1024,
    max_pending_per_ip: 32,
    keepalive_interval_secs: 10,
    keepalive_timeout_secs: 30,
    stats_addr: "127.0.0.1",
    sticky_ports_ttl_secs: 600,
    unhealthy_after_failures: 3,
    bind_retry: { max_retries: 10, initial_delay_secs: 2, max_delay_secs: 60 },
  },
  client: {
    server_port: 8443,
    skip_verify: false,
    local_connect_retries: 3,
    local_retry_delay_ms: 1000,
    keepalive_interval_secs: 10,
    keepalive_timeout_secs: 30,
    stats_addr: "127.0.0.1",
    reconnect: { initial_delay_secs: 5, max_delay_secs: 60, multiplier: 2, jitter: 0.2, max_attempts: 0 },
  },
  proxy: {
    proxy_type: "tcp",
    publish_addr: "0.0.0.0",
    fallback_to_system_port: false,
    local_addr: "127.0.0.1",
    lb_policy: "round_robin",
    health_check: { interval_secs: 10, timeout_secs: 3 },
  },
} as const;

/** Minimum length of `auth_key` and `stats_token`. */
export const MIN_SECRET_LENGTH = 16;

/** A host name or IP address: addresses the roles dial (connecting resolves names without blocking). */
const host = z.string().refine((value) => isHost(value), {
  message: "is not an IP address or host name",
  params: { hint: `write an address like "0.0.0.0", "127.0.0.1", "::1" or a name like "tunnel.example.com"` },
});
/**
 * An address to bind (bind_addr, stats_addr, publish_addr): an IP address, or `localhost`, which is
 * read as 127.0.0.1. Binding a host name looks it up synchronously and would freeze the process.
 */
const bindAddress = z.string()
  .refine((value) => isIpAddress(value) || value.toLowerCase() === "localhost", {
    message: "is not an IP address",
    params: {
      hint: `write an IP address such as "0.0.0.0", "127.0.0.1" or "::1", or "localhost" for 127.0.0.1; ` +
        `a host name is never bound, since its lookup would block`,
    },
  })
  .transform((value) => value.toLowerCase() === "localhost" ? "127.0.0.1" : value);
/** A TCP port a peer connects to. */
const port = z.int().min(1).max(65535);
/** A TCP port to bind; 0 lets the system pick one. */
const bindablePort = z.int().min(0).max(65535);
/** A duration in seconds: positive, at most a day. */
const seconds = z.number().positive().max(86_400);
const filePath = z.string().min(1);
const secret = z.string().min(MIN_SECRET_LENGTH).refine((value) => unsafeCharacter(value) === null, {
  message: "contains a control character, bidi control or lone surrogate",
  params: { hint: "use printable characters only (the server refuses these in authenticate)" },
});
const name = z.string().refine((value) => NAME_PATTERN.test(value), {
  message: "is not a valid name",
  params: { hint: NAME_HINT },
});

/** Load-balancing policies of a proxy with several `local_backends`. */
export const LB_POLICIES = ["round_robin", "least_connections", "ip_hash"] as const;

/**
 * Splits `"host:port"` (IPv6 as `"[::1]:3000"`) into its parts, or returns why it cannot.
 * The host comes back without brackets, as `Deno.connect` wants it.
 */
export function parseHostPort(text: string): { host: string; port: number } | { problem: string } {
  const match = /^\[([^\]]*)\]:(\d{1,5})$/.exec(text) ?? /^([^:\[\]]+):(\d{1,5})$/.exec(text);
  if (match === null) {
    return {
      problem: text.includes(":") && !text.startsWith("[") && text.split(":").length > 2
        ? "is an IPv6 address without brackets"
        : "is not a host:port address",
    };
  }
  const [, host = "", portText = ""] = match;
  const port = Number(portText);
  if (!isHost(host)) {
    return {
      problem: `is not a host:port address: ${JSON.stringify(host)} is not an IP address or host name`,
    };
  }
  if (port < 1 || port > 65535) {
    return { problem: `is not a host:port address: ${port} is not a port from 1 to 65535` };
  }
  return { host, port };
}

/**
 * The SHA-256 fingerprint of a certificate in the form `tls-tunnel cert` prints it (32 colon-separated hex
 * pairs, `AB:CD:…`) or as `SHA256:` followed by 64 hex digits, either in any letter case. Normalised to the
 * upper-case colon-separated form of `colonHex` in lib/pki/fingerprint.ts, so the roles compare one form.
 */
const sha256Fingerprint = z.string().transform((text, ctx) => {
  const hex = /^sha256:([0-9a-f]{64})$/i.exec(text)?.[1] ??
    (/^[0-9a-f]{2}(:[0-9a-f]{2}){31}$/i.test(text) ? text.replaceAll(":", "") : undefined);
  if (hex !== undefined) return hex.toUpperCase().replace(/(..)(?!$)/g, "$1:");
  ctx.addIssue({
    code: "custom",
    message: "is not a SHA-256 fingerprint",
    params: {
      hint: `write the server certificate's fingerprint as \`tls-tunnel cert\` prints it, 32 hex pairs ` +
        `joined by colons ("AB:CD:…:EF"), or as "SHA256:" followed by 64 hex digits`,
    },
  });
  return z.NEVER;
});

/** `"127.0.0.1:3000"` → `{ host, port }`. */
const backendAddress = z.string().transform((text, ctx) => {
  const parsed = parseHostPort(text);
  if ("host" in parsed) return parsed;
  ctx.addIssue({
    code: "custom",
    message: parsed.problem,
    params: { hint: `write each backend as "host:port", e.g. "127.0.0.1:3000" or "[::1]:3000"` },
  });
  return z.NEVER;
});

/** `local_backends`: at least one backend, none twice. */
const localBackends = z.array(backendAddress).refine((backends) => backends.length > 0, {
  message: "is empty",
  params: { hint: `list at least one backend, e.g. local_backends = ["127.0.0.1:3000", "127.0.0.1:3001"]` },
}).superRefine((backends, ctx) => {
  const seen = new Set<string>();
  backends.forEach((backend, index) => {
    const key = `${backend.host.toLowerCase()}|${backend.port}`;
    if (seen.has(key)) {
      ctx.addIssue({
        code: "custom",
        path: [index],
        message: "is listed twice in local_backends",
        params: { hint: "list every backend once; a backend listed twice would get twice the share" },
      });
    }
    seen.add(key);
  });
});

/** `"20000-20100,8080"` → PortRange[]. */
const portRanges = z.string().transform((text, ctx) => {
  const ranges = parsePortRanges(text);
  if (Array.isArray(ranges)) return ranges;
  ctx.addIssue({ code: "custom", message: ranges.message, params: { hint: ranges.hint } });
  return z.NEVER;
});

/** `"20000-20100"` → PortRange. */
const portRange = z.string().transform((text, ctx) => {
  const range = parsePortRange(text);
  if ("start" in range) return range;
  ctx.addIssue({ code: "custom", message: range.message, params: { hint: range.hint } });
  return z.NEVER;
});

/** `[server.bind_retry]`. */
export const bindRetrySchema = z.strictObject({
  max_retries: z.int().min(0).max(1000).default(DEFAULTS.server.bind_retry.max_retries),
  initial_delay_secs: seconds.default(DEFAULTS.server.bind_retry.initial_delay_secs),
  max_delay_secs: seconds.default(DEFAULTS.server.bind_retry.max_delay_secs),
});

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

/** `[server.notify]`: POST events to a webhook. */
export const notifySchema = z.strictObject({
  webhook_url: z.url({ protocol: /^https?$/, error: "webhook_url must be an http:// or https:// URL" }),
  webhook_token: secret.optional(),
  events: z.array(z.enum(NOTIFY_EVENT_CODES)).min(1).default(["PROXY_BIND_FAILED", "CLIENT_DISCONNECTED"]),
  timeout_secs: seconds.default(5),
});

/** One `[[server.clients]]` entry; `allow_ports` and `max_proxies` default to the server's. */
export const serverClientSchema = z.strictObject({
  name,
  auth_key: secret,
  allow_ports: portRanges.optional(),
  max_proxies: z.int().min(1).max(10_000).optional(),
});

/** `[server]`. */
export const serverTableSchema = z.strictObject({
  bind_addr: bindAddress.default(DEFAULTS.server.bind_addr),
  bind_port: bindablePort.default(DEFAULTS.server.bind_port),
  cert_path: filePath.optional(),
  key_path: filePath.optional(),
  auth_key: secret.optional(),
  allow_ports: portRanges.prefault(DEFAULTS.server.allow_ports),
  max_proxies_per_client: z.int().min(1).max(10_000).default(DEFAULTS.server.max_proxies_per_client),
  handshake_timeout_secs: seconds.default(DEFAULTS.server.handshake_timeout_secs),
  max_pending_connections: z.int().min(1).max(1_000_000).default(DEFAULTS.server.max_pending_connections),
  max_pending_per_ip: z.int().min(1).max(1_000_000).default(DEFAULTS.server.max_pending_per_ip),
  keepalive_interval_secs: seconds.default(DEFAULTS.server.keepalive_interval_secs),
  keepalive_timeout_secs: seconds.default(DEFAULTS.server.keepalive_timeout_secs),
  stats_addr: bindAddress.default(DEFAULTS.server.stats_addr),
  stats_port: bindablePort.optional(),
  stats_token: secret.optional(),
  sticky_ports_ttl_secs: z.number().min(0).max(604_800).default(DEFAULTS.server.sticky_ports_ttl_secs),
  unhealthy_after_failures: z.int().min(1).max(1_000_000).default(DEFAULTS.server.unhealthy_after_failures),
  bind_retry: bindRetrySchema.prefault({}),
  notify: notifySchema.optional(),
  clients: z.array(serverClientSchema).default([]),
  // Rust tls-tunnel compatibility: accepted only with the one value this implementation supports.
  transport: z.literal("tls").optional(),
  behind_proxy: z.literal(false).optional(),
});

/** `[client.bind_retry]`: a gentler bind retry the client asks of the server (never more than the server's). */
export const clientBindRetrySchema = z.strictObject({
  max_retries: z.int().min(0).max(1000).optional(),
  initial_delay_secs: seconds.optional(),
  max_delay_secs: seconds.optional(),
});

/** `[client.reconnect]`. */
export const reconnectSchema = z.strictObject({
  initial_delay_secs: z.number().min(0.01).max(3600).default(DEFAULTS.client.reconnect.initial_delay_secs),
  max_delay_secs: seconds.default(DEFAULTS.client.reconnect.max_delay_secs),
  multiplier: z.number().min(1).max(10).default(DEFAULTS.client.reconnect.multiplier),
  jitter: z.number().min(0).max(1).default(DEFAULTS.client.reconnect.jitter),
  max_attempts: z.int().min(0).default(DEFAULTS.client.reconnect.max_attempts),
});

/** `[client]`. */
export const clientTableSchema = z.strictObject({
  server_addr: host,
  server_port: port.default(DEFAULTS.client.server_port),
  server_name: host.optional(),
  ca_cert_path: filePath.optional(),
  skip_verify: z.boolean().default(DEFAULTS.client.skip_verify),
  server_fingerprint: sha256Fingerprint.optional(),
  auth_key: secret,
  client_id: name.optional(),
  local_connect_retries: z.int().min(1).max(100).default(DEFAULTS.client.local_connect_retries),
  local_retry_delay_ms: z.int().min(0).max(600_000).default(DEFAULTS.client.local_retry_delay_ms),
  keepalive_interval_secs: seconds.default(DEFAULTS.client.keepalive_interval_secs),
  keepalive_timeout_secs: seconds.default(DEFAULTS.client.keepalive_timeout_secs),
  stats_addr: bindAddress.default(DEFAULTS.client.stats_addr),
  stats_port: bindablePort.optional(),
  stats_token: secret.optional(),
  reconnect: reconnectSchema.prefault({}),
  bind_retry: clientBindRetrySchema.optional(),
  // Rust tls-tunnel compatibility: `transport` only as "tls"; `server_path` only matters to its http2/wss
  // transports and is ignored here.
  transport: z.literal("tls").optional(),
  server_path: z.string().optional(),
});

/** `health_check = { interval_secs, timeout_secs }` of a proxy. */
export const healthCheckSchema = z.strictObject({
  interval_secs: seconds.default(DEFAULTS.proxy.health_check.interval_secs),
  timeout_secs: seconds.default(DEFAULTS.proxy.health_check.timeout_secs),
});

/**
 * One `[[proxies]]` entry. `publish_port` is required unless `publish_port_range` is set, and `local_port`
 * unless `local_backends` is set (see `_rules.ts`).
 */
export const proxySchema = z.strictObject({
  name,
  proxy_type: z.literal("tcp").default(DEFAULTS.proxy.proxy_type),
  publish_addr: bindAddress.default(DEFAULTS.proxy.publish_addr),
  publish_port: bindablePort.optional(),
  publish_port_range: portRange.optional(),
  fallback_to_system_port: z.boolean().default(DEFAULTS.proxy.fallback_to_system_port),
  local_addr: host.default(DEFAULTS.proxy.local_addr),
  local_port: port.optional(),
  local_backends: localBackends.optional(),
  lb_policy: z.enum(LB_POLICIES).default(DEFAULTS.proxy.lb_policy),
  health_check: healthCheckSchema.optional(),
});

/** A whole server file. */
export const serverFileSchema = z.strictObject({ server: serverTableSchema });

/** A whole client file. */
export const clientFileSchema = z.strictObject({
  client: clientTableSchema,
  proxies: z.array(proxySchema).default([]),
});

/** The TOML form of a server file after validation and defaults. */
export type ServerFile = z.output<typeof serverFileSchema>;
/** The TOML form of a client file after validation and defaults. */
export type ClientFile = z.output<typeof clientFileSchema>;

/**
 * Known keys of every table, by the table's path without array indices (`""` is the top level,
 * `proxies` is any `[[proxies]]` entry). Used to suggest the key a misspelt one probably meant.
 */
export const KNOWN_KEYS: Readonly<Record<"server" | "client", Readonly<Record<string, readonly string[]>>>> =
  {
    server: {
      "": Object.keys(serverFileSchema.shape),
      "server": Object.keys(serverTableSchema.shape),
      "server.bind_retry": Object.keys(bindRetrySchema.shape),
      "server.notify": Object.keys(notifySchema.shape),
      "server.clients": Object.keys(serverClientSchema.shape),
    },
    client: {
      "": Object.keys(clientFileSchema.shape),
      "client": Object.keys(clientTableSchema.shape),
      "client.reconnect": Object.keys(reconnectSchema.shape),
      "client.bind_retry": Object.keys(clientBindRetrySchema.shape),
      "proxies": Object.keys(proxySchema.shape),
      "proxies.health_check": Object.keys(healthCheckSchema.shape),
    },
  };

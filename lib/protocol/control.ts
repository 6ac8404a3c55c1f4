/**
 * The tunnel's control protocol: the JSON-RPC methods, their parameters and results, the error codes and
 * their `data`, and the notifications, both ways, as spoken on the control stream (README.md beside this
 * file, §3–§4). Every message is a zod schema with its TypeScript type inferred from it: the sender builds
 * the type, the receiver checks the schema (the server what clients send, the client what the server
 * sends), so the two cannot drift apart. Pure data and validation; the roles in `lib/server/` and
 * `lib/client/` use these and hold no wire names of their own.
 *
 * Field names on the wire are snake_case, like the config keys. Objects are not strict: unknown fields
 * are dropped, as the README asks of receivers (forward compatibility). The kinds of field (bounds and
 * character sets) are in `fields.ts`.
 *
 * @module
 */

import { z } from "zod";
import {
  wireBindAddress,
  wireBoundAddress,
  wireCode,
  wireCount,
  wireHost,
  wireName,
  wirePort,
  wireReport,
  wireReportCut,
  wireSecs,
  wireText,
  wireToken,
  wireVersion,
} from "./fields.ts";
import { PROXY_STATUSES } from "./proxy_status.ts";
import { PROXY_VISIBILITIES, SECRET_KEY_MAX_CHARS } from "./open_request.ts";
import {
  MAX_VHOST_DOMAINS,
  MAX_VHOST_LOCATIONS,
  wireDomain,
  wireHostHeader,
  wireLocation,
  wireSubdomain,
} from "./vhost_fields.ts";

export { describeMessageError, describeParamsError } from "./fields.ts";

/** Longest `group_key`. */
export const MAX_GROUP_KEY_CHARS = 1024;
/** Largest `max_connections` of a proxy. */
export const MAX_PROXY_CONNECTIONS = 1_000_000;
/** Largest `udp_idle_timeout_secs` (a day). */
export const MAX_UDP_IDLE_TIMEOUT_SECS = 86_400;
/** Largest `max_udp_flows`: each flow is a stream and a bounded queue on both sides. */
export const MAX_UDP_FLOWS = 4096;

/** Method names. */
export const Method = {
  /** client → server request: prove the key; first message of every session. */
  authenticate: "authenticate",
  /** client → server request: publish proxies; answered per proxy. On a live session it adds to them. */
  registerProxies: "register_proxies",
  /** client → server request: stop publishing proxies by name (ports released at once); answered per name. */
  unregisterProxies: "unregister_proxies",
  /** either way request: liveness and clock check on top of yamux keepalive. */
  heartbeat: "heartbeat",
  /** server → client notification: something the user should see (bind retries, failures…). */
  pushException: "push_exception",
  /** server → client notification: a proxy's status changed. */
  proxyStatus: "proxy_status",
  /** client → server notification: the local service behind a proxy went up or down. */
  proxyHealth: "proxy_health",
  /**
   * client → server notification: a data stream could not reach the proxy's local service (sent for
   * every such stream), or one did after failures (sent once, for the first success).
   */
  proxyConnectResult: "proxy_connect_result",
} as const;

/** Application error codes (JSON-RPC reserves -32768..-32000 for itself; these sit just above). */
export const ControlErrorCode = {
  /** The auth_key is not one the server accepts. Fatal for the client: retrying cannot help. */
  authFailed: -32001,
  /** The client speaks a protocol version the server does not. Fatal. */
  protocolVersionMismatch: -32002,
  /** Too many failed authentications from this address recently; wait `retry_after_secs`. */
  tooManyAttempts: -32003,
  /** A method other than `authenticate` was called before authenticating. */
  notAuthenticated: -32004,
  /** `authenticate` was called twice on one session. */
  alreadyAuthenticated: -32005,
  /**
   * Another live session (it answered a liveness ping) uses this `client_id`: two copies of one client.
   * Fatal for the client: each copy needs its own `client_id`.
   */
  duplicateClient: -32006,
  /**
   * Too many `register_proxies` calls of this session are running or waiting (`data.limit`); the call was
   * not run. Wait for the pending answers, then send it again.
   */
  tooManyPending: -32007,
} as const;

/** Highest protocol version a message may name (versions are small integers; `1` today). */
const protocolVersion = z.number().int().min(1).max(1_000_000);

/** `data` of a `PROTOCOL_VERSION_MISMATCH` error: the version the server speaks. */
export const ProtocolVersionMismatchData = z.object({ server_protocol_version: protocolVersion });
/** `data` of a `PROTOCOL_VERSION_MISMATCH` error. */
export type ProtocolVersionMismatchData = z.infer<typeof ProtocolVersionMismatchData>;

/** `data` of a `TOO_MANY_ATTEMPTS` error: seconds until this address may try again. */
export const TooManyAttemptsData = z.object({ retry_after_secs: wireSecs });
/** `data` of a `TOO_MANY_ATTEMPTS` error. */
export type TooManyAttemptsData = z.infer<typeof TooManyAttemptsData>;

/** `data` of a `DUPLICATE_CLIENT` error: the `host:port` of the live session that has this `client_id`. */
export const DuplicateClientData = z.object({ other_remote_addr: wireText(1, 64) });
/** `data` of a `DUPLICATE_CLIENT` error. */
export type DuplicateClientData = z.infer<typeof DuplicateClientData>;

/** `data` of a `TOO_MANY_PENDING` error: how many calls may be running or waiting. */
export const TooManyPendingData = z.object({ limit: wireCount.min(1) });
/** `data` of a `TOO_MANY_PENDING` error. */
export type TooManyPendingData = z.infer<typeof TooManyPendingData>;

/** Per-proxy rejection codes in a `register_proxies` result. */
export const ProxyRejectCode = {
  /** Another proxy in the same request (or already registered) has this name. */
  duplicateName: "DUPLICATE_NAME",
  /** Another proxy in the same request (or already registered) has this address and port. */
  duplicateBinding: "DUPLICATE_BINDING",
  /** The port is outside the ranges this client may publish. */
  portNotAllowed: "PORT_NOT_ALLOWED",
  /** The port is the server's own tunnel (or stats) port. */
  reservedPort: "RESERVED_PORT",
  /** Another live client publishes this port. */
  portOwnedByOtherClient: "PORT_IN_USE_BY_CLIENT",
  /** The port is held by another process on the server host. */
  addressInUse: "ADDRESS_IN_USE",
  /** Binding needs privileges the server does not have. */
  permissionDenied: "PERMISSION_DENIED",
  /** The publish address is not an address of the server host. */
  addressNotAvailable: "ADDRESS_NOT_AVAILABLE",
  /** Any other bind failure. */
  bindFailed: "BIND_FAILED",
  /** The client registers more proxies than it may. */
  tooManyProxies: "TOO_MANY_PROXIES",
  /** The proxy's parameters are invalid (unknown type, bad port…). */
  invalidProxy: "INVALID_PROXY",
  /** An `http`/`https` proxy asks for a host name (and location) another client's proxy serves. */
  domainInUse: "DOMAIN_IN_USE",
} as const;

/** A per-proxy rejection code. */
export type ProxyRejectCodeValue = typeof ProxyRejectCode[keyof typeof ProxyRejectCode];

// ---- client → server ----

/** Longest free-text error a peer's notification keeps; the rest is cut. */
export const WIRE_ERROR_MAX_CHARS = 1024;

/** `authenticate` params. */
export const AuthenticateParams = z.object({
  /** The shared or per-client key. */
  auth_key: wireText(1, 4096),
  /** Control protocol version the client speaks. */
  protocol_version: protocolVersion,
  /**
   * Stable id of the client across reconnects; a new session with the same id replaces the old one.
   * A name: 1-64 letters, digits, `.`, `_`, `-`.
   */
  client_id: wireName,
  /** Client software version, for logs: 1-64 printable ASCII characters. */
  client_version: wireVersion.optional(),
});
/** `authenticate` params. */
export type AuthenticateParams = z.infer<typeof AuthenticateParams>;

/** One proxy as registered by the client. */
export const ProxySpec = z.object({
  /** A name: 1-64 letters, digits, `.`, `_`, `-`. */
  name: wireName,
  /** `tcp` (a port of its own), or `http`/`https` (routed by host name on the server's shared vhost ports). */
  proxy_type: z.enum(["tcp", "http", "https", "udp"]),
  /** An IP literal (never a host name: the server does not look names up). */
  publish_addr: wireBindAddress,
  publish_port: wirePort,
  publish_port_range: z.object({ start: wirePort, end: wirePort }).optional(),
  fallback_to_system_port: z.boolean().optional(),
  /** The client's local service, as an IP address or host name (the server only shows it). */
  local_addr: wireHost,
  local_port: wirePort,
  // ---- http and https proxies (README.md §4.2): routed by host name, no port of their own ----
  /** Host names routed to this proxy (lower-case DNS names; `http`/`https` only). */
  custom_domains: z.array(wireDomain).max(MAX_VHOST_DOMAINS).optional(),
  /** A label under the server's `subdomain_host` (`app` → `app.<subdomain_host>`). */
  subdomain: wireSubdomain.optional(),
  /** Path prefixes routed to this proxy (`http` only; default `/`), longest first across proxies. */
  locations: z.array(wireLocation).max(MAX_VHOST_LOCATIONS).optional(),
  /** The Host header the local service sees instead of the outside one (`http` only). */
  host_header_rewrite: wireHostHeader.optional(),
  /** Basic auth the server asks of outside requests (`http` only), with {@linkcode ProxySpec} `http_password`. */
  http_user: wireText(1, 256).optional(),
  /** Basic auth password (`http` only). */
  http_password: wireText(1, 256).optional(),
  // ---- visitors (README.md §5b) ----
  /**
   * Who reaches the proxy: `public` (bound on `publish_addr`; the default), `private` (not bound; only
   * other clients' visitors, by `(name, publish_port)`) or `both`.
   */
  visibility: z.enum(PROXY_VISIBILITIES).optional(),
  /** The key a visitor must present (compared in constant time); only with `private` or `both`. */
  secret_key: wireText(1, SECRET_KEY_MAX_CHARS).optional(),
  // ---- udp proxies (README.md §5c) ----
  /** Seconds a flow may go without a datagram before both sides drop it (`udp` only; default 60). */
  udp_idle_timeout_secs: z.number().int().min(1).max(MAX_UDP_IDLE_TIMEOUT_SECS).optional(),
  /** Most flows (outside peer addresses) at once; the one idle longest is evicted (`udp` only; 1,024). */
  max_udp_flows: z.number().int().min(1).max(MAX_UDP_FLOWS).optional(),
  // ---- groups and limits (README.md §4.2) ----
  /**
   * Several clients serve one published port (`tcp`) or domain (`http`/`https`) when their proxies name
   * the same group with the same `group_key`: a name, 1-64 letters, digits, `.`, `_`, `-`.
   */
  group: wireName.optional(),
  /** The group's shared secret (compared in constant time); required with `group`. */
  group_key: wireText(1, MAX_GROUP_KEY_CHARS).optional(),
  /** How the server spreads a group's new connections over its members (the first member's counts). */
  lb_policy: z.enum(["round_robin", "least_connections", "ip_hash"]).optional(),
  /** Most outside connections carried at once for this proxy; beyond it they are closed at once. */
  max_connections: z.number().int().min(1).max(MAX_PROXY_CONNECTIONS).optional(),
});
/** One proxy as registered by the client. */
export type ProxySpec = z.infer<typeof ProxySpec>;

/** Whether a proxy is bound on the server (`public`), only visitable by other clients (`private`), or both. */
export type ProxyVisibility = typeof PROXY_VISIBILITIES[number];

/**
 * A proxy as the client sends it in `register_proxies`: {@linkcode ProxySpec} whose `publish_addr` may be
 * absent, meaning "the server's `default_publish_addr`" (the server fills it in before anything else).
 */
export const ProxySpecRequest = ProxySpec.extend({ publish_addr: wireBindAddress.optional() });
/** A proxy as the client sends it (`publish_addr` optional). */
export type ProxySpecRequest = z.infer<typeof ProxySpecRequest>;

/** A client's request for a gentler bind retry than the server's (the server never retries more). */
export const BindRetryRequest = z.object({
  max_retries: wireCount.optional(),
  initial_delay_secs: wireSecs.positive().optional(),
  max_delay_secs: wireSecs.positive().optional(),
});
/** A client's request for a gentler bind retry than the server's. */
export type BindRetryRequest = z.infer<typeof BindRetryRequest>;

/** `register_proxies` params. Each proxy is checked on its own ({@linkcode ProxySpec}), to answer per proxy. */
export const RegisterProxiesParams = z.object({
  proxies: z.array(z.unknown()).max(1024),
  bind_retry: BindRetryRequest.optional(),
});
/** `register_proxies` params. */
export type RegisterProxiesParams = z.infer<typeof RegisterProxiesParams>;

/** Most names one `unregister_proxies` call may carry (as many as `register_proxies` may publish). */
export const MAX_UNREGISTER_NAMES = 1024;

/**
 * `unregister_proxies` params: the names of proxies of this session to stop publishing. Each entry is
 * checked on its own (an entry that is not a name is answered `invalid`, the others still run).
 */
export const UnregisterProxiesParams = z.object({
  names: z.array(z.unknown()).min(1).max(MAX_UNREGISTER_NAMES),
});
/** `unregister_proxies` params. */
export type UnregisterProxiesParams = z.infer<typeof UnregisterProxiesParams>;

/** `heartbeat` params, and its result (the same object echoed): the sender's clock, in ms. */
export const HeartbeatParams = z.object({
  time_ms: z.number().min(-Number.MAX_SAFE_INTEGER).max(Number.MAX_SAFE_INTEGER),
});
/** `heartbeat` params and result. */
export type HeartbeatParams = z.infer<typeof HeartbeatParams>;

/** `proxy_health` params: the client's view of a proxy's local service. */
export const ProxyHealthParams = z.object({
  proxy_name: wireName,
  healthy: z.boolean(),
  /** Cut to {@linkcode WIRE_ERROR_MAX_CHARS}, unsafe characters escaped. */
  error: wireReportCut(WIRE_ERROR_MAX_CHARS).nullable().optional(),
});
/** `proxy_health` params. */
export type ProxyHealthParams = z.infer<typeof ProxyHealthParams>;

/** Longest `error` a `proxy_connect_result` may carry; longer ones are refused, not truncated. */
export const MAX_CONNECT_ERROR_CHARS = 512;

/** `proxy_connect_result` params: whether a data stream reached the proxy's local service. */
export const ProxyConnectResultParams = z.object({
  proxy_name: wireName,
  /** The `conn_id` of the stream's header. */
  conn_id: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
  /** false: the client could not connect and reset the stream; true: it connected after failures. */
  ok: z.boolean(),
  /** Why it failed, for people (absent or null when `ok`); unsafe characters escaped. */
  error: wireReport(MAX_CONNECT_ERROR_CHARS).nullable().optional(),
  /** Streams of this proxy in a row that failed, as the client counted them (0 when `ok`). */
  consecutive_failures: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
});
/** `proxy_connect_result` params. */
export type ProxyConnectResultParams = z.infer<typeof ProxyConnectResultParams>;

// ---- server → client ----

/** `authenticate` result. The client checks the server's answer against it. */
export const AuthenticateResult = z.object({
  /** The id the server registered the client under (the one sent): a name. */
  client_id: wireName,
  /** The name the server knows the client by (its `[[server.clients]]` name, or the client_id): a name. */
  client_name: wireName,
  /** Protocol version the server speaks. */
  protocol_version: protocolVersion,
  /** Server software version: 1-64 printable ASCII characters. */
  server_version: wireVersion,
  /** Id of this session on the server, for correlating logs: 1-64 printable ASCII characters. */
  session_id: wireToken(64),
});
/** `authenticate` result. */
export type AuthenticateResult = z.infer<typeof AuthenticateResult>;

const rejectCode = z.enum(
  Object.values(ProxyRejectCode) as [ProxyRejectCodeValue, ...ProxyRejectCodeValue[]],
);
/** Why a proxy is not published, for people: escaped, at most 2048 characters. */
const reason = wireReport(2048);
/**
 * A field a rejected entry echoes as asked: bounded, since an invalid request may have asked anything,
 * with room for the escapes that make an invalid name safe to print (the server escapes it).
 */
const echoed = wireText(0, 1024);

/** One entry of the `register_proxies` result, in request order. */
export const ProxyRegistration = z.discriminatedUnion("status", [
  z.object({
    name: wireName,
    status: z.literal("accepted"),
    /** Address the server bound (an IP literal, as asked). */
    publish_addr: wireBoundAddress,
    /** Port the server bound (the system's pick when 0 was asked). */
    publish_port: wirePort,
    /** The port asked for, when the bound one differs. */
    requested_port: wirePort.optional(),
    /**
     * `private` or `both` as asked (README.md §5b); absent for a public proxy. A client that asked for a
     * private proxy and gets no `visibility` back talks to a server without visitors, which bound the port.
     */
    visibility: z.enum(PROXY_VISIBILITIES).optional(),
  }),
  z.object({
    name: wireName,
    /** The port is held by another process; the server keeps trying and reports via `proxy_status`. */
    status: z.literal("retrying"),
    publish_addr: wireBoundAddress,
    publish_port: wirePort,
    code: rejectCode,
    reason,
    /** Seconds until the next attempt. */
    retry_after_seconds: wireSecs,
  }),
  z.object({
    /** As asked, escaped (`"?"` when the request's own value was not a string). */
    name: echoed,
    status: z.literal("rejected"),
    /** As asked, escaped (`""` when the request's own value was not a string of at most 255 characters). */
    publish_addr: echoed,
    /** As asked (`0` when the request's own value was not a port number). */
    publish_port: wirePort,
    /** Why, as a {@linkcode ProxyRejectCode}. */
    code: rejectCode,
    /** What happened and what to do, for people. */
    reason,
  }),
]);
/** One entry of the `register_proxies` result, in request order. */
export type ProxyRegistration = z.infer<typeof ProxyRegistration>;

/** `register_proxies` result. The client checks the server's answer against it. */
export const RegisterProxiesResult = z.object({ proxies: z.array(ProxyRegistration).max(1024) });
/** `register_proxies` result. */
export type RegisterProxiesResult = z.infer<typeof RegisterProxiesResult>;

/**
 * How each name of an `unregister_proxies` call fared: `removed` (its port is free when the answer
 * leaves), `not_found` (no proxy of this session has the name, or an earlier entry of the same call
 * removed it) or `invalid` (not a name).
 */
export const UNREGISTER_OUTCOMES = ["removed", "not_found", "invalid"] as const;

/** One entry of the `unregister_proxies` result, in request order. */
export const ProxyUnregistration = z.object({
  /** As asked, escaped (`"?"` when the entry was not a string). */
  name: echoed,
  status: z.enum(UNREGISTER_OUTCOMES),
  /** The port released, for `removed` when the proxy had one bound (null while it was being retried). */
  released_port: wirePort.nullable().optional(),
});
/** One entry of the `unregister_proxies` result. */
export type ProxyUnregistration = z.infer<typeof ProxyUnregistration>;

/** `unregister_proxies` result. The client checks the server's answer against it. */
export const UnregisterProxiesResult = z.object({
  proxies: z.array(ProxyUnregistration).max(MAX_UNREGISTER_NAMES),
});
/** `unregister_proxies` result. */
export type UnregisterProxiesResult = z.infer<typeof UnregisterProxiesResult>;

/** `proxy_status` params: a proxy's status changed (or a retry was scheduled). Never merged with a count. */
export const ProxyStatusParams = z.object({
  proxy_name: wireName,
  status: z.enum(PROXY_STATUSES),
  /** The address bound or being tried (an IP literal, as asked). */
  publish_addr: wireBoundAddress,
  /** The port bound or being tried. */
  publish_port: wirePort,
  /** Why it is not healthy: escaped, at most 2048 characters. */
  error_message: wireReport(2048).nullable(),
  /** Seconds until the next bind attempt, while retrying. */
  retry_after_seconds: wireSecs.nullable(),
});
/** `proxy_status` params. */
export type ProxyStatusParams = z.infer<typeof ProxyStatusParams>;

/** Codes of `push_exception` notifications. */
export const NoticeCode = {
  /** A bind attempt failed and will be retried; data: {@linkcode BindRetryNoticeData}. */
  bindRetry: "PROXY_BIND_RETRY",
  /** Retries are exhausted or the error is permanent; data: {@linkcode BindFailedNoticeData}. */
  bindFailed: "PROXY_BIND_FAILED",
  /** A retried bind succeeded; data: {@linkcode BindRecoveredNoticeData}. */
  bindRecovered: "PROXY_BIND_RECOVERED",
  /** The proxy got another port than it asked for or had before; data: {@linkcode PortChangedNoticeData}. */
  portChanged: "PORT_CHANGED",
  /**
   * A server reload removed or changed this client's key: the session is closed right after this notice
   * (level error; no data). A reconnect with the same key is refused.
   */
  keyRevoked: "KEY_REVOKED",
  /**
   * A server reload shrank this client's `allow_ports`: the proxy was stopped and its port released
   * (level warning; data: `proxy_name`, `publish_port`, `reason`). A `proxy_status` `closed` follows.
   */
  proxyRevoked: "PROXY_REVOKED",
} as const;

/** A `push_exception` code this version knows. */
export type NoticeCodeValue = typeof NoticeCode[keyof typeof NoticeCode];

/**
 * `data` of a `push_exception`: every field any notice carries, each optional here; which ones a notice
 * of a known code must carry is its own schema below. Fields of other names are dropped.
 */
export const NoticeData = z.object({
  proxy_name: wireName,
  publish_addr: wireBoundAddress,
  publish_port: wirePort,
  requested_port: wirePort,
  /** The number of the retry about to happen (1 after the first attempt failed). */
  retry_count: wireCount,
  /** Retries the proxy was granted (0 in a PROXY_BIND_FAILED for a port that was not retried). */
  max_retries: wireCount,
  /** Seconds until the retry `retry_count`. */
  retry_delay_secs: wireSecs,
  /** Retries a recovered bind took. */
  retries: wireCount,
  /** The failed attempt's error: escaped, at most 2048 characters. */
  error: wireReport(2048),
  /** The last attempt's error: escaped, at most 2048 characters. */
  final_error: wireReport(2048),
  /** Why the port changed: escaped, at most 2048 characters. */
  reason: wireReport(2048),
  /** How many notices this one stands for (1 unless merged). */
  repeat_count: wireCount.min(1),
}).partial();
/** `data` of a `push_exception`. */
export type NoticeData = z.infer<typeof NoticeData>;

/** `data` of `PROXY_BIND_RETRY`. */
export const BindRetryNoticeData = NoticeData.required({
  proxy_name: true,
  publish_addr: true,
  publish_port: true,
  retry_count: true,
  max_retries: true,
  retry_delay_secs: true,
  error: true,
});
/** `data` of `PROXY_BIND_RETRY`. */
export type BindRetryNoticeData = z.infer<typeof BindRetryNoticeData>;

/** `data` of `PROXY_BIND_FAILED`. */
export const BindFailedNoticeData = NoticeData.required({
  proxy_name: true,
  publish_addr: true,
  publish_port: true,
  max_retries: true,
  final_error: true,
});
/** `data` of `PROXY_BIND_FAILED`. */
export type BindFailedNoticeData = z.infer<typeof BindFailedNoticeData>;

/** `data` of `PROXY_BIND_RECOVERED`. */
export const BindRecoveredNoticeData = NoticeData.required({
  proxy_name: true,
  publish_addr: true,
  publish_port: true,
  retries: true,
});
/** `data` of `PROXY_BIND_RECOVERED`. */
export type BindRecoveredNoticeData = z.infer<typeof BindRecoveredNoticeData>;

/** `data` of `PORT_CHANGED`. */
export const PortChangedNoticeData = NoticeData.required({
  proxy_name: true,
  requested_port: true,
  publish_port: true,
  reason: true,
});
/** `data` of `PORT_CHANGED`. */
export type PortChangedNoticeData = z.infer<typeof PortChangedNoticeData>;

/** `data` of `PROXY_REVOKED`. */
export const ProxyRevokedNoticeData = NoticeData.required({
  proxy_name: true,
  publish_port: true,
  reason: true,
});
/** `data` of `PROXY_REVOKED`. */
export type ProxyRevokedNoticeData = z.infer<typeof ProxyRevokedNoticeData>;

/** The `data` schema of each known notice code. */
export const NOTICE_DATA: Readonly<Record<NoticeCodeValue, z.ZodType<NoticeData>>> = {
  [NoticeCode.bindRetry]: BindRetryNoticeData,
  [NoticeCode.bindFailed]: BindFailedNoticeData,
  [NoticeCode.bindRecovered]: BindRecoveredNoticeData,
  [NoticeCode.portChanged]: PortChangedNoticeData,
  [NoticeCode.keyRevoked]: NoticeData,
  [NoticeCode.proxyRevoked]: ProxyRevokedNoticeData,
};

/**
 * `push_exception` params. `data.repeat_count` says how many notices it stands for (1 unless merged).
 * A notice of a known code must carry its code's fields ({@linkcode NOTICE_DATA}); one of another code
 * (from a newer server) is taken with whichever known fields it has.
 */
export const PushExceptionParams = z.object({
  level: z.enum(["info", "warning", "error"]),
  /** For people: escaped, at most 4096 characters. */
  message: wireReport(4096),
  code: wireCode,
  data: NoticeData.optional(),
}).superRefine((notice, ctx) => {
  const schema = Object.hasOwn(NOTICE_DATA, notice.code)
    ? NOTICE_DATA[notice.code as NoticeCodeValue]
    : undefined;
  if (!schema) return;
  const checked = schema.safeParse(notice.data ?? {});
  if (checked.success) return;
  for (const issue of checked.error.issues) {
    ctx.addIssue({
      code: "custom",
      path: ["data", ...issue.path],
      // `data` passed NoticeData already: what is left are the fields this code requires.
      message: issue.code === "invalid_type" && issue.expected === "nonoptional"
        ? `missing (a ${notice.code} notice carries it)`
        : issue.message,
    });
  }
});
/** `push_exception` params. */
export type PushExceptionParams = z.infer<typeof PushExceptionParams>;

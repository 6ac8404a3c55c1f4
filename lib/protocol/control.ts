/**
 * The tunnel's control protocol: the JSON-RPC methods, their parameters and results, the error codes,
 * and the notifications, as spoken on the control stream (see lib/protocol/README.md). Pure data and
 * validation; the roles in `lib/tunnel/` use these and hold no wire names of their own.
 *
 * Field names on the wire are snake_case, like the config keys.
 *
 * @module
 */

import { z } from "zod";
import { isHost, isIpAddress } from "../net/address.ts";
import {
  describeUnsafe,
  escapeForTerminal,
  NAME_HINT,
  NAME_PATTERN,
  quoteForMessage,
  unsafeCharacter,
} from "../text.ts";

/** Method names. */
export const Method = {
  /** client → server request: prove the key; first message of every session. */
  authenticate: "authenticate",
  /** client → server request: publish proxies; answered per proxy. */
  registerProxies: "register_proxies",
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
} as const;

/** A per-proxy rejection code. */
export type ProxyRejectCodeValue = typeof ProxyRejectCode[keyof typeof ProxyRejectCode];

const port = z.number().int().min(0).max(65535);

// Every string a peer sends has a bound and a character set: names are ASCII words, addresses are
// addresses, and no field carries control characters, bidi controls or lone surrogates (which would
// reach terminals, log lines and the dashboard). Refusals quote the value escaped and cut short.

/** Free text from a peer, `min`–`max` UTF-16 units, without the characters of `lib/text.ts`'s UNSAFE. */
function wireText(min: number, max: number) {
  return z.string().min(min).max(max).superRefine((value, ctx) => {
    const found = unsafeCharacter(value);
    if (found) {
      ctx.addIssue({
        code: "custom",
        message: `${
          describeUnsafe(found)
        }; control characters, bidi controls and lone surrogates are not accepted`,
      });
    }
  });
}

/** A proxy or client name: the config's rule ({@linkcode NAME_PATTERN}). */
const wireName = z.string().superRefine((value, ctx) => {
  if (!NAME_PATTERN.test(value)) {
    ctx.addIssue({ code: "custom", message: `${quoteForMessage(value)} is not a valid name: ${NAME_HINT}` });
  }
});

/**
 * An address the server binds: an IP literal only. A host name would make `Deno.listen` look it up
 * synchronously, freezing every session for the resolver's timeout.
 */
const wireBindAddress = z.string().superRefine((value, ctx) => {
  if (!isIpAddress(value)) {
    ctx.addIssue({
      code: "custom",
      message: `${quoteForMessage(value)} is not an IP address; the server binds IP addresses only and ` +
        `never looks up names: use an IP address such as 0.0.0.0 or 127.0.0.1`,
    });
  }
});

/** An address the client dials on its own side (the server only shows it): an IP address or host name. */
const wireHost = z.string().superRefine((value, ctx) => {
  if (!isHost(value)) {
    ctx.addIssue({
      code: "custom",
      message: `${quoteForMessage(value)} is not an IP address or host name`,
    });
  }
});

/** Printable ASCII without spaces, 1–64 characters: software versions. */
const wireVersion = z.string().regex(/^[\x21-\x7e]{1,64}$/, {
  error: "must be 1-64 printable ASCII characters without spaces",
});

/** The first problem of a failed parse, as `field.path: what is wrong`, for a refusal's message. */
export function describeParamsError(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return "malformed";
  return issue.path.length > 0 ? `${issue.path.join(".")}: ${issue.message}` : issue.message;
}

/** Longest free-text error a peer's notification keeps; the rest is cut. */
export const WIRE_ERROR_MAX_CHARS = 1024;

/** Free text a peer reports (an error message): kept, but cut to a bound and with unsafe characters escaped. */
const wireReportedText = z.string().transform((value) =>
  escapeForTerminal(value.length > WIRE_ERROR_MAX_CHARS ? `${value.slice(0, WIRE_ERROR_MAX_CHARS)}…` : value)
);

/** `authenticate` params. */
export const AuthenticateParams = z.object({
  /** The shared or per-client key. */
  auth_key: wireText(1, 4096),
  /** Control protocol version the client speaks. */
  protocol_version: z.number().int().min(1).max(1_000_000),
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

/** `authenticate` result. The client checks the server's answer against it. */
export const AuthenticateResult = z.object({
  /** The id the server registered the client under (the one sent). */
  client_id: z.string().min(1).max(256),
  /** The name the server knows the client by (its `[[server.clients]]` name, or the client_id). */
  client_name: z.string().min(1).max(256),
  /** Protocol version the server speaks. */
  protocol_version: z.number().int().min(1),
  /** Server software version. */
  server_version: z.string().max(64),
  /** Id of this session on the server, for correlating logs. */
  session_id: z.string().min(1).max(64),
});
/** `authenticate` result. */
export type AuthenticateResult = z.infer<typeof AuthenticateResult>;

/** One proxy as registered by the client. */
export const ProxySpec = z.object({
  /** A name: 1-64 letters, digits, `.`, `_`, `-`. */
  name: wireName,
  proxy_type: z.literal("tcp"),
  /** An IP literal (never a host name: the server does not look names up). */
  publish_addr: wireBindAddress,
  publish_port: port,
  publish_port_range: z.object({ start: port, end: port }).optional(),
  fallback_to_system_port: z.boolean().optional(),
  /** The client's local service, as an IP address or host name (the server only shows it). */
  local_addr: wireHost,
  local_port: port,
});
/** One proxy as registered by the client. */
export type ProxySpec = z.infer<typeof ProxySpec>;

/** A client's request for a gentler bind retry than the server's (the server never retries more). */
export const BindRetryRequest = z.object({
  max_retries: z.number().int().min(0).optional(),
  initial_delay_secs: z.number().positive().optional(),
  max_delay_secs: z.number().positive().optional(),
});

/** `register_proxies` params. */
export const RegisterProxiesParams = z.object({
  proxies: z.array(z.unknown()).max(1024),
  bind_retry: BindRetryRequest.optional(),
});
/** `register_proxies` params. */
export type RegisterProxiesParams = z.infer<typeof RegisterProxiesParams>;

const rejectCode = z.enum(
  Object.values(ProxyRejectCode) as [ProxyRejectCodeValue, ...ProxyRejectCodeValue[]],
);
/**
 * Fields a rejected entry echoes as asked: bounded, since an invalid request may have asked anything,
 * with room for the escapes that make an invalid name safe to print.
 */
const echoedName = z.string().max(1024);
const echoedAddr = z.string().max(1024);
const reason = z.string().max(2048);

/** One entry of the `register_proxies` result, in request order. */
export const ProxyRegistration = z.discriminatedUnion("status", [
  z.object({
    name: z.string().min(1).max(128),
    status: z.literal("accepted"),
    /** Address the server bound. */
    publish_addr: z.string().min(1).max(255),
    /** Port the server bound (the system's pick when 0 was asked). */
    publish_port: port,
    /** The port asked for, when the bound one differs. */
    requested_port: port.optional(),
  }),
  z.object({
    name: z.string().min(1).max(128),
    /** The port is held by another process; the server keeps trying and reports via `proxy_status`. */
    status: z.literal("retrying"),
    publish_addr: z.string().min(1).max(255),
    publish_port: port,
    code: rejectCode,
    reason,
    /** Seconds until the next attempt. */
    retry_after_seconds: z.number().min(0),
  }),
  z.object({
    /** As asked (`""` when the request's own value was not a string of at most 128 characters). */
    name: echoedName,
    status: z.literal("rejected"),
    /** As asked (`""` when the request's own value was not a string of at most 255 characters). */
    publish_addr: echoedAddr,
    /** As asked (`0` when the request's own value was not a port number). */
    publish_port: port,
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

/** `heartbeat` params and result: the sender's clock, echoed. */
export const HeartbeatParams = z.object({ time_ms: z.number() });
/** `heartbeat` params and result. */
export type HeartbeatParams = z.infer<typeof HeartbeatParams>;

/** `proxy_status` params: a proxy's status changed (or a retry was scheduled). Never merged with a count. */
export const ProxyStatusParams = z.object({
  proxy_name: z.string().min(1).max(128),
  status: z.enum(["pending", "healthy", "unhealthy", "bind_failed", "closed"]),
  publish_addr: z.string().max(255),
  /** The port bound or being tried. */
  publish_port: port,
  /** Why it is not healthy. */
  error_message: z.string().max(2048).nullable(),
  /** Seconds until the next bind attempt, while retrying. */
  retry_after_seconds: z.number().min(0).nullable(),
});
/** `proxy_status` params. */
export type ProxyStatusParams = z.infer<typeof ProxyStatusParams>;

/** `proxy_health` params: the client's view of a proxy's local service. */
export const ProxyHealthParams = z.object({
  proxy_name: wireName,
  healthy: z.boolean(),
  /** Cut to {@linkcode WIRE_ERROR_MAX_CHARS}, unsafe characters escaped. */
  error: wireReportedText.nullable().optional(),
});
/** `proxy_health` params. */
export type ProxyHealthParams = z.infer<typeof ProxyHealthParams>;

/** Codes of `push_exception` notifications. */
export const NoticeCode = {
  /** A bind attempt failed and will be retried; data: proxy_name, publish_addr, publish_port, retry_count, max_retries, retry_delay_secs, error. */
  bindRetry: "PROXY_BIND_RETRY",
  /** Retries are exhausted or the error is permanent; data: proxy_name, publish_addr, publish_port, max_retries, final_error. */
  bindFailed: "PROXY_BIND_FAILED",
  /** A retried bind succeeded; data: proxy_name, publish_addr, publish_port, retries. */
  bindRecovered: "PROXY_BIND_RECOVERED",
  /** The proxy got another port than it asked for or had before; data: proxy_name, requested_port, publish_port, reason. */
  portChanged: "PORT_CHANGED",
} as const;

/** `push_exception` params. `data.repeat_count` says how many notices it stands for (1 unless merged). */
export const PushExceptionParams = z.object({
  level: z.enum(["info", "warning", "error"]),
  message: z.string().max(4096),
  code: z.string().min(1).max(64),
  data: z.record(z.string(), z.unknown()).optional(),
});
/** `push_exception` params. */
export type PushExceptionParams = z.infer<typeof PushExceptionParams>;

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
  error: z.string().max(MAX_CONNECT_ERROR_CHARS).transform(escapeForTerminal).nullable().optional(),
  /** Streams of this proxy in a row that failed, as the client counted them (0 when `ok`). */
  consecutive_failures: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
});
/** `proxy_connect_result` params. */
export type ProxyConnectResultParams = z.infer<typeof ProxyConnectResultParams>;

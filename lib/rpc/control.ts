/**
 * The tunnel's control protocol: the JSON-RPC methods, their parameters and results, the error codes,
 * and the notifications, as spoken on the control stream (see docs/PROTOCOL.md). Pure data and
 * validation; the roles in `lib/tunnel/` use these and hold no wire names of their own.
 *
 * Field names on the wire are snake_case, like the config keys.
 *
 * @module
 */

import { z } from "zod";

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

/** `authenticate` params. */
export const AuthenticateParams = z.object({
  /** The shared or per-client key. */
  auth_key: z.string().min(1).max(4096),
  /** Control protocol version the client speaks. */
  protocol_version: z.number().int().min(1),
  /** Stable id of the client across reconnects; a new session with the same id replaces the old one. */
  client_id: z.string().min(1).max(256),
  /** Client software version, for logs. */
  client_version: z.string().max(64).optional(),
});
/** `authenticate` params. */
export type AuthenticateParams = z.infer<typeof AuthenticateParams>;

/** `authenticate` result. */
export interface AuthenticateResult {
  /** The id the server registered the client under (the one sent). */
  client_id: string;
  /** The name the server knows the client by (its `[[server.clients]]` name, or the client_id). */
  client_name: string;
  /** Protocol version the server speaks. */
  protocol_version: number;
  /** Server software version. */
  server_version: string;
  /** Id of this session on the server, for correlating logs. */
  session_id: string;
}

/** One proxy as registered by the client. */
export const ProxySpec = z.object({
  name: z.string().min(1).max(128),
  proxy_type: z.literal("tcp"),
  publish_addr: z.string().min(1).max(255),
  publish_port: port,
  publish_port_range: z.object({ start: port, end: port }).optional(),
  fallback_to_system_port: z.boolean().optional(),
  local_addr: z.string().min(1).max(255),
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

/** One entry of the `register_proxies` result, in request order. */
export type ProxyRegistration =
  | {
    name: string;
    status: "accepted";
    /** Address the server bound. */
    publish_addr: string;
    /** Port the server bound (the system's pick when 0 was asked). */
    publish_port: number;
    /** The port asked for, when the bound one differs. */
    requested_port?: number;
  }
  | {
    name: string;
    /** The port is held by another process; the server keeps trying and reports via `proxy_status`. */
    status: "retrying";
    publish_addr: string;
    publish_port: number;
    code: ProxyRejectCodeValue;
    reason: string;
    /** Seconds until the next attempt. */
    retry_after_seconds: number;
  }
  | {
    name: string;
    status: "rejected";
    publish_addr: string;
    publish_port: number;
    /** Why, as a {@linkcode ProxyRejectCode}. */
    code: ProxyRejectCodeValue;
    /** What happened and what to do, for people. */
    reason: string;
  };

/** `register_proxies` result. */
export interface RegisterProxiesResult {
  proxies: ProxyRegistration[];
}

/** `heartbeat` params and result: the sender's clock, echoed. */
export const HeartbeatParams = z.object({ time_ms: z.number() });
/** `heartbeat` params and result. */
export type HeartbeatParams = z.infer<typeof HeartbeatParams>;

/** `proxy_status` params: a proxy's status changed (or a retry was scheduled). */
export type ProxyStatusParams = {
  proxy_name: string;
  status: "pending" | "healthy" | "unhealthy" | "bind_failed" | "closed";
  publish_addr: string;
  /** The port bound or being tried. */
  publish_port: number;
  /** Why it is not healthy. */
  error_message: string | null;
  /** Seconds until the next bind attempt, while retrying. */
  retry_after_seconds: number | null;
};

/** `proxy_health` params: the client's view of a proxy's local service. */
export const ProxyHealthParams = z.object({
  proxy_name: z.string(),
  healthy: z.boolean(),
  error: z.string().nullable().optional(),
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

/** `push_exception` params. */
export type PushExceptionParams = {
  level: "info" | "warning" | "error";
  message: string;
  code: string;
  data?: Record<string, unknown>;
};

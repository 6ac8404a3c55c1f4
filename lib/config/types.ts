/**
 * The validated configuration, as the roles use it. TOML keys are snake_case (compatible with the Rust
 * tls-tunnel); these objects are their camelCase, defaults-applied, validated form. Loading and
 * validation live in `load.ts`/`schema.ts`; this file is the contract between config and roles.
 *
 * @module
 */

/** An inclusive range of TCP ports, e.g. `20000-20100` → `{ start: 20000, end: 20100 }`. */
export interface PortRange {
  /** First port in the range (1-65535). */
  start: number;
  /** Last port in the range, inclusive (≥ start). */
  end: number;
}

/** How the server retries binding a published port that it could not bind. */
export interface BindRetryConfig {
  /** Retries after the first failed attempt before giving up (default 10; 0 = no retry). */
  maxRetries: number;
  /** Delay before the first retry, doubled after each failure (default 2). */
  initialDelaySecs: number;
  /** Cap on the delay between retries (default 60). */
  maxDelaySecs: number;
}

/** One named client the server accepts, with its own key and the ports it may publish. */
export interface ServerClientEntry {
  /** Unique name, shown in logs and stats. */
  name: string;
  /** This client's key (at least 16 characters). */
  authKey: string;
  /** Ports this client may publish; defaults to the server's `allowPorts`. */
  allowPorts: PortRange[];
  /** Proxies this client may register; defaults to the server's `maxProxiesPerClient`. */
  maxProxies: number;
}

/** Where and which server events are POSTed as JSON (alerts for bind failures, disconnections…). */
export interface NotifyConfig {
  /** http(s) URL that receives one POST per event. */
  webhookUrl: string;
  /** Sent as `Authorization: Bearer …` when set. */
  webhookToken?: string;
  /** Event codes to send (default PROXY_BIND_FAILED, CLIENT_DISCONNECTED). */
  events: string[];
  /** Give up on one POST after this long (default 5). */
  timeoutSecs: number;
}

/** `[server]` plus its sub-tables. */
export interface ServerConfig {
  /** Address the tunnel's TLS listener binds (default "0.0.0.0"). */
  bindAddr: string;
  /** Port of the tunnel's TLS listener (default 8443). */
  bindPort: number;
  /** PEM certificate chain; with `keyPath`, or neither (then a throw-away certificate is generated). */
  certPath?: string;
  /** PEM private key matching `certPath`. */
  keyPath?: string;
  /** The shared key any client may present (at least 16 characters); optional when `clients` is set. */
  authKey?: string;
  /** Named clients with their own keys (`[[server.clients]]`). */
  clients: ServerClientEntry[];
  /** Ports a client using the shared `authKey` may publish (default 1024-65535). */
  allowPorts: PortRange[];
  /** Most proxies one client may register (default 64). */
  maxProxiesPerClient: number;
  /** Time from TCP accept to authenticated before a connection is closed (default 10). */
  handshakeTimeoutSecs: number;
  /** Unauthenticated connections (TCP accepted, not yet authenticated) at most, in all (default 1024). */
  maxPendingConnections: number;
  /** Unauthenticated connections at most from one address (default 32). */
  maxPendingPerIp: number;
  /** yamux ping interval on every session (default 10). */
  keepaliveIntervalSecs: number;
  /** A session whose ping is not answered within this is dead (default 30). */
  keepaliveTimeoutSecs: number;
  /** Address of the stats/metrics HTTP endpoint (default "127.0.0.1"); endpoint off without `statsPort`. */
  statsAddr: string;
  /** Port of the stats endpoint; absent → no endpoint. */
  statsPort?: number;
  /** Bearer token required by the stats endpoint (required when `statsAddr` is not loopback). */
  statsToken?: string;
  /** `[server.bind_retry]`. */
  bindRetry: BindRetryConfig;
  /** How long the server remembers a client's last bound ports to offer them again (default 600). */
  stickyPortsTtlSecs: number;
  /**
   * Consecutive outside connections the client could not carry to its local service (reported with
   * `proxy_connect_result`) before the server marks the proxy unhealthy (default 3).
   */
  unhealthyAfterFailures: number;
  /** `[server.notify]`: events POSTed to a webhook. */
  notify?: NotifyConfig;
}

/** How the client reconnects after losing the server. */
export interface ReconnectConfig {
  /** First delay after a lost session (default 5, `TLS_TUNNEL_RECONNECT_DELAY_SECS` overrides). */
  initialDelaySecs: number;
  /** Cap on the backoff (default 60). */
  maxDelaySecs: number;
  /** Backoff factor (default 2). */
  multiplier: number;
  /** Random spread applied to each delay, 0-1 (default 0.2 = ±20 %). */
  jitter: number;
  /** Attempts before giving up; 0 = forever (default 0). */
  maxAttempts: number;
}

/**
 * How a proxy with several local backends picks one per outside connection: in turn, the one with the
 * fewest open connections, or by a hash of the outside peer's IP (one outside host keeps one backend).
 */
export type LbPolicy = "round_robin" | "least_connections" | "ip_hash";

/** Optional TCP health check of a proxy's local service. */
export interface HealthCheckConfig {
  /** Seconds between checks. */
  intervalSecs: number;
  /** Seconds a connect may take before the service counts as down. */
  timeoutSecs: number;
}

/** One `[[proxies]]` entry of the client. */
export interface ProxyConfig {
  /** Unique name within the client. */
  name: string;
  /** Only "tcp" today. */
  proxyType: "tcp";
  /** Address the server publishes on (default "0.0.0.0"). */
  publishAddr: string;
  /** Port the server publishes on; 0 = the system picks (or the first free port of `publishPortRange`). */
  publishPort: number;
  /** Range to search when the preferred port is taken or `publishPort` is 0. */
  publishPortRange?: PortRange;
  /** When the range is full, fall back to a port the system picks (default false). */
  fallbackToSystemPort: boolean;
  /** Local service address the client connects to (default "127.0.0.1"); the first backend's with `localBackends`. */
  localAddr: string;
  /** Local service port; the first backend's with `localBackends`. */
  localPort: number;
  /** Several local services to spread connections over (`local_backends`); absent → just localAddr:localPort. */
  localBackends?: Array<{ host: string; port: number }>;
  /** How a backend is picked per connection when there are several (default "round_robin"). */
  lbPolicy: LbPolicy;
  /** Optional health check of the local service. */
  healthCheck?: HealthCheckConfig;
}

/** `[client]` plus `[[proxies]]`. */
export interface ClientConfig {
  /** Server host name or address. */
  serverAddr: string;
  /** Server's tunnel port (default 8443). */
  serverPort: number;
  /** Name the server's certificate must carry (default `serverAddr`). */
  serverName: string;
  /** PEM CA (or self-signed certificate) to trust instead of the system roots. */
  caCertPath?: string;
  /** Skip certificate verification (loudly warned about). */
  skipVerify: boolean;
  /**
   * SHA-256 fingerprint the server's leaf certificate must have (`server_fingerprint`), always in the
   * upper-case colon-separated form `AB:CD:…` (32 pairs) that lib/pki/fingerprint.ts produces, whichever
   * accepted form the file used (that one, or `SHA256:` + 64 hex digits). Absent → no pin.
   */
  serverFingerprint?: string;
  /** Key sent in `authenticate`. */
  authKey: string;
  /** Stable id of this client across reconnects (default: derived from the host and config). */
  clientId?: string;
  /** Reconnect policy. */
  reconnect: ReconnectConfig;
  /** A gentler bind retry asked of the server (`[client.bind_retry]`); the server never retries more than its own. */
  bindRetry?: Partial<BindRetryConfig>;
  /** Attempts to reach the local service per outside connection (default 3, env override). */
  localConnectRetries: number;
  /** Delay between those attempts (default 1000, env override). */
  localRetryDelayMs: number;
  /** yamux ping interval (default 10). */
  keepaliveIntervalSecs: number;
  /** Ping timeout that ends the session (default 30). */
  keepaliveTimeoutSecs: number;
  /** Address of the client's stats endpoint (default "127.0.0.1"). */
  statsAddr: string;
  /** Port of the client's stats endpoint; absent → none. */
  statsPort?: number;
  /** Bearer token required by the client's stats endpoint (required when `statsAddr` is not loopback). */
  statsToken?: string;
  /** The proxies to publish. */
  proxies: ProxyConfig[];
}

/**
 * The client role: dials the server, authenticates, registers its proxies, and carries each stream the
 * server opens to the local service the stream's header names. Reconnects with backoff when the
 * session ends; a rejected key, or another running copy with the same client_id, is fatal.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { BindRetryConfig, ClientConfig, ProxyConfig } from "../config/types.ts";
import { Session } from "../mux/mod.ts";
import { RpcError, RpcPeer } from "../rpc/mod.ts";
import {
  type AuthenticateParams,
  AuthenticateResult,
  ControlErrorCode,
  HeartbeatParams,
  MAX_CONNECT_ERROR_CHARS,
  Method,
  type ProxyRegistration,
  type ProxySpec,
  ProxyStatusParams,
  PushExceptionParams,
  RegisterProxiesResult,
} from "../protocol/control.ts";
import { readStreamHeader } from "../protocol/stream_header.ts";
import { type DialedConn, dialTunnelTls } from "../transport/tls_client.ts";
import { sleep, withTimeout } from "../_async.ts";
import { closeQuietly, pipeBoth } from "../transport/pipe.ts";
import type { DuplexConn } from "../net/conn.ts";
import { formatHostPort } from "../net/address.ts";
import { hex } from "../text.ts";
import { ProxyStats } from "../stats/proxy_stats.ts";
import { EventLog } from "../stats/event_log.ts";
import type { BackendSnapshot, ClientRoleSnapshot } from "../stats/snapshot.ts";
import { PROTOCOL_VERSION } from "../protocol/version.ts";
import { VERSION } from "../version.ts";
import { Backoff } from "./backoff.ts";
import { leaveServer } from "../protocol/leaving.ts";
import { connectTcp } from "../net/tcp_reset.ts";
import { monitorHealth } from "./health_check.ts";
import { type Backend, BackendPool, formatBackend } from "./load_balancer.ts";

const logger = getLogger(["tls-tunnel", "client"]);

/** How long the client waits for the server to answer a control request. */
const CONTROL_REQUEST_TIMEOUT_MS = 15_000;
/** How long a new data stream has to deliver its header. */
const STREAM_HEADER_TIMEOUT_MS = 10_000;
/** TLS connect + handshake budget. */
const DIAL_TIMEOUT_MS = 10_000;

/**
 * The server refused this client for a reason retrying cannot fix (wrong key, protocol mismatch, another
 * running copy with the same client_id).
 */
export class FatalClientError extends Error {
  override name = "FatalClientError";
  constructor(message: string, readonly code: number, options?: ErrorOptions) {
    super(message, options);
  }
}

/**
 * The server answered in a shape this client does not know: not a tls-tunnel server, or one speaking
 * another version of the protocol. Fatal: retrying the same server cannot help.
 */
export class MalformedServerAnswerError extends FatalClientError {
  override name = "MalformedServerAnswerError";
  constructor(what: string, issue: string, server: string) {
    super(
      `The server at ${server} answered ${what} in an unexpected shape (${issue}); ` +
        `check that server_addr/server_port name a tls-tunnel server of a compatible version`,
      0,
    );
  }
}

/** The first problem zod found, as "path: message". */
function firstIssue(error: { issues: ReadonlyArray<{ path: ReadonlyArray<PropertyKey>; message: string }> }) {
  const issue = error.issues[0];
  if (!issue) return "malformed";
  const path = issue.path.map(String).join(".");
  const message = /received undefined$/.test(issue.message) ? "missing" : issue.message;
  return path ? `${path}: ${message}` : message;
}

/** Where the client is in its life cycle, for stats and logs. */
export type ClientState = "connecting" | "connected" | "waiting" | "stopped";

/** A proxy as the client sees it: its config, what the server said, and live counters. */
export interface ClientProxyState {
  /** The configured proxy. */
  config: ProxyConfig;
  /** The server's answer to the last registration, if any. */
  registration: ProxyRegistration | null;
  /** Live counters. */
  stats: ProxyStats;
}

/** Options of {@linkcode TunnelClient}. */
export interface TunnelClientOptions {
  /** Validated client config. */
  config: ClientConfig;
  /** Contents of `ca_cert_path`, already read. */
  caCertPem?: string;
  /** Ends the client. */
  signal?: AbortSignal;
  /** Called after each registration with the server's per-proxy answers. */
  onRegistered?: (registrations: ProxyRegistration[]) => void;
  /** Called with every proxy's state after a registration and whenever a proxy's status changes. */
  onStatusChange?: (proxies: ClientProxyState[]) => void;
}

/** Derives a client id that stays the same across restarts of the same client on the same host. */
export async function defaultClientId(config: ClientConfig): Promise<string> {
  const host = hostnameOrFallback();
  const basis = [
    host,
    `${config.serverAddr}:${config.serverPort}`,
    ...config.proxies.map((proxy) => `${proxy.name}:${proxy.publishAddr}:${proxy.publishPort}`),
  ].join("|");
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(basis)));
  // A client_id is a name (1-64 of [A-Za-z0-9._-]); a host name may be longer or spelt otherwise.
  const safeHost = host.replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^[^A-Za-z0-9]+/, "").slice(0, 51) ||
    "client";
  return `${safeHost}-${hex(digest.subarray(0, 6))}`;
}

/** This machine's name, or "client" when `--allow-sys=hostname` was not granted. */
function hostnameOrFallback(): string {
  try {
    return Deno.hostname();
  } catch {
    return "client";
  }
}

/** Turns a configured proxy into its wire form. */
export function toProxySpec(proxy: ProxyConfig): ProxySpec {
  const spec: ProxySpec = {
    name: proxy.name,
    proxy_type: proxy.proxyType,
    publish_addr: proxy.publishAddr,
    publish_port: proxy.publishPort,
    local_addr: proxy.localAddr,
    local_port: proxy.localPort,
  };
  if (proxy.publishPortRange) spec.publish_port_range = { ...proxy.publishPortRange };
  if (proxy.fallbackToSystemPort) spec.fallback_to_system_port = true;
  return spec;
}

/** The local services of a proxy: its `local_backends`, or its one `local_addr:local_port`. */
export function localBackendsOf(proxy: ProxyConfig): Backend[] {
  return proxy.localBackends && proxy.localBackends.length > 0
    ? proxy.localBackends.map((backend) => ({ ...backend }))
    : [{ host: proxy.localAddr, port: proxy.localPort }];
}

/** One TCP connect to a local backend, with Nagle off as for every carried connection. */
async function dialBackend(backend: Backend): Promise<Deno.TcpConn> {
  // connectTcp: a connection the client can reset when its outside peer vanishes abruptly.
  const conn = await connectTcp({ hostname: backend.host, port: backend.port, transport: "tcp" });
  conn.setNoDelay(true);
  return conn;
}

/** Turns the client's `[client.bind_retry]` into its wire form. */
export function toBindRetryRequest(request: Partial<BindRetryConfig>): Record<string, number> {
  const wire: Record<string, number> = {};
  if (request.maxRetries !== undefined) wire.max_retries = request.maxRetries;
  if (request.initialDelaySecs !== undefined) wire.initial_delay_secs = request.initialDelaySecs;
  if (request.maxDelaySecs !== undefined) wire.max_delay_secs = request.maxDelaySecs;
  return wire;
}

/** The tunnel client. */
export class TunnelClient {
  /** Per-proxy state by name. */
  readonly proxies = new Map<string, ClientProxyState>();
  /** Current state. */
  state: ClientState = "connecting";
  /** When the next reconnect attempt is due (ms since epoch), while waiting. */
  nextAttemptAtMs: number | null = null;
  /** Sessions established since start. */
  sessionsEstablished = 0;
  /** The server's answer to the last `authenticate`. */
  server: AuthenticateResult | null = null;
  /** Recent events (connections, server notifications) for the stats endpoint. */
  readonly events = new EventLog();
  /** When the client was created (ms since epoch). */
  readonly startedAtMs = Date.now();
  readonly #config: ClientConfig;
  readonly #options: TunnelClientOptions;
  #session: Session | null = null;
  /** The current session's control channel, for reports about data streams. */
  #rpc: RpcPeer | null = null;
  /** Per proxy: data streams in a row that could not reach the local service in this session. */
  readonly #failuresInARow = new Map<string, number>();
  /** Each proxy's local backends by proxy name; one backend for a plain local_addr/local_port proxy. */
  readonly #pools = new Map<string, BackendPool>();

  constructor(options: TunnelClientOptions) {
    this.#options = options;
    this.#config = options.config;
    for (const proxy of options.config.proxies) {
      this.proxies.set(proxy.name, { config: proxy, registration: null, stats: new ProxyStats() });
      this.#pools.set(proxy.name, new BackendPool(localBackendsOf(proxy), { policy: proxy.lbPolicy }));
    }
  }

  /** The backend pool of the proxy `name` (its per-backend counters), or undefined for an unknown name. */
  backendPool(name: string): BackendPool | undefined {
    return this.#pools.get(name);
  }

  /**
   * Runs until the signal aborts (resolves) or the server refuses the client for good (rejects with
   * {@linkcode FatalClientError}). Connection failures and lost sessions are retried with backoff.
   */
  async run(): Promise<void> {
    const signal = this.#options.signal;
    const clientId = this.#config.clientId ?? await defaultClientId(this.#config);
    const backoff = new Backoff(this.#config.reconnect);
    let attempt = 0;
    try {
      while (!signal?.aborted) {
        attempt++;
        this.state = "connecting";
        let healthy = false;
        try {
          healthy = await this.#runSession(clientId, attempt);
        } catch (error) {
          if (error instanceof FatalClientError) throw error;
          if (signal?.aborted) break;
          logger.warn("Attempt {attempt} to reach {server} failed: {error}", {
            attempt,
            server: formatHostPort(this.#config.serverAddr, this.#config.serverPort),
            error: error instanceof Error ? error.message : String(error),
          });
        }
        if (signal?.aborted) break;
        if (healthy) {
          backoff.reset();
          attempt = 0;
        }
        if (backoff.exhausted) {
          throw new FatalClientError(
            `Gave up after ${this.#config.reconnect.maxAttempts} attempts to reach the server ` +
              `(client.reconnect.max_attempts)`,
            0,
          );
        }
        const delayMs = backoff.nextDelayMs();
        this.state = "waiting";
        this.nextAttemptAtMs = Date.now() + delayMs;
        logger.info("Reconnecting in {secs} s (attempt {next})", {
          secs: (delayMs / 1000).toFixed(1),
          next: attempt + 1,
        });
        try {
          await sleep(delayMs, signal);
        } catch {
          break;
        }
        this.nextAttemptAtMs = null;
      }
    } finally {
      this.state = "stopped";
      this.nextAttemptAtMs = null;
    }
  }

  /** One session: dial, authenticate, register, serve streams. Resolves true if it got registered. */
  async #runSession(clientId: string, attempt: number): Promise<boolean> {
    const signal = this.#options.signal;
    const server = formatHostPort(this.#config.serverAddr, this.#config.serverPort);
    logger.info("Connecting to {server} (attempt {attempt})", { server, attempt });
    const conn: DialedConn = await dialTunnelTls({
      hostname: this.#config.serverAddr,
      port: this.#config.serverPort,
      serverName: this.#config.serverName,
      ...(this.#options.caCertPem !== undefined ? { caCertPem: this.#options.caCertPem } : {}),
      skipVerify: this.#config.skipVerify,
      timeoutMs: DIAL_TIMEOUT_MS,
      ...(signal ? { signal } : {}),
    });
    const session = new Session(conn, {
      role: "client",
      keepaliveIntervalMs: this.#config.keepaliveIntervalSecs * 1000,
      keepaliveTimeoutMs: this.#config.keepaliveTimeoutSecs * 1000,
    });
    this.#session = session;
    const streams = new Set<Promise<void>>();
    const onAbort = () => void leaveServer(session, streams);
    signal?.addEventListener("abort", onAbort, { once: true });
    let rpc: RpcPeer | null = null;
    const healthChecks = new AbortController();
    let acceptLoop: Promise<void> | null = null;
    try {
      const control = await session.open();
      rpc = new RpcPeer(control);
      rpc.handle(Method.heartbeat, (raw: unknown) => {
        const parsed = HeartbeatParams.safeParse(raw);
        return { time_ms: parsed.success ? parsed.data.time_ms : Date.now() };
      });
      this.#rpc = rpc;
      this.#failuresInARow.clear();
      rpc.onNotification(
        Method.pushException,
        PushExceptionParams,
        (params) => this.#onPushException(params),
      );
      rpc.onNotification(Method.proxyStatus, ProxyStatusParams, (params) => this.#onProxyStatus(params));
      const authParams: AuthenticateParams = {
        auth_key: this.#config.authKey,
        protocol_version: PROTOCOL_VERSION,
        client_id: clientId,
        client_version: VERSION,
      };
      let answer: unknown;
      try {
        answer = await rpc.request<unknown>(Method.authenticate, authParams, {
          timeoutMs: CONTROL_REQUEST_TIMEOUT_MS,
        });
      } catch (error) {
        if (
          error instanceof RpcError &&
          (error.code === ControlErrorCode.authFailed ||
            error.code === ControlErrorCode.protocolVersionMismatch)
        ) {
          throw new FatalClientError(error.message, error.code, { cause: error });
        }
        if (error instanceof RpcError && error.code === ControlErrorCode.duplicateClient) {
          // Retrying would only make the two copies take turns; each copy needs its own client_id.
          const other = (error.data as { other_remote_addr?: unknown } | undefined)?.other_remote_addr;
          throw new FatalClientError(
            `Another copy of this client is already connected to ${server} with client_id "${clientId}"` +
              (typeof other === "string" ? ` (from ${other.slice(0, 100)})` : "") +
              `; give each copy its own client_id in [client]`,
            error.code,
            { cause: error },
          );
        }
        throw error;
      }
      const checked = AuthenticateResult.safeParse(answer);
      if (!checked.success) {
        throw new MalformedServerAnswerError("authenticate", firstIssue(checked.error), server);
      }
      const auth = checked.data;
      this.server = auth;
      logger.info("Authenticated with {server} as {name} (server {version}, session {sessionId})", {
        server,
        name: auth.client_name,
        version: auth.server_version,
        sessionId: auth.session_id,
      });
      // Accept data streams before registering: the server may open one as soon as a port is bound.
      acceptLoop = (async () => {
        for await (const stream of session) {
          const carried = this.#carryStream(stream);
          streams.add(carried);
          carried.finally(() => streams.delete(carried));
        }
      })();
      const registeredAnswer = await rpc.request<unknown>(
        Method.registerProxies,
        {
          proxies: this.#config.proxies.map(toProxySpec),
          ...(this.#config.bindRetry ? { bind_retry: toBindRetryRequest(this.#config.bindRetry) } : {}),
        },
        { timeoutMs: CONTROL_REQUEST_TIMEOUT_MS },
      );
      const registered = RegisterProxiesResult.safeParse(registeredAnswer);
      if (!registered.success) {
        throw new MalformedServerAnswerError("register_proxies", firstIssue(registered.error), server);
      }
      this.#applyRegistrations(registered.data.proxies);
      this.#startHealthChecks(rpc, healthChecks.signal);
      this.state = "connected";
      this.sessionsEstablished++;
      this.events.add({
        level: "info",
        code: "CONNECTED",
        message: `Connected to ${server} as ${auth.client_name}`,
      });
      await Promise.race([session.closed, rpc.closed]);
      this.events.add({ level: "warning", code: "DISCONNECTED", message: `Session with ${server} ended` });
      logger[signal?.aborted ? "info" : "warn"]("Session with {server} ended: {reason}", {
        server,
        reason: session.error?.message ?? session.closeReason ?? "control stream closed",
      });
      session.close();

      return true;
    } finally {
      healthChecks.abort();
      signal?.removeEventListener("abort", onAbort);
      rpc?.close();
      session.close();
      await session.closed;
      await acceptLoop?.catch(() => {});
      await Promise.all([...streams]);
      this.#session = null;
      this.#rpc = null;
      for (const proxy of this.proxies.values()) proxy.stats.setStatus("pending");
    }
  }

  #applyRegistrations(registrations: ProxyRegistration[]): void {
    for (const registration of registrations) {
      const proxy = this.proxies.get(registration.name);
      if (!proxy) continue;
      proxy.registration = registration;
      if (registration.status === "accepted") {
        proxy.stats.setStatus("healthy");
        logger.info("Proxy {proxy}: {publish} → {local}", {
          proxy: registration.name,
          publish: formatHostPort(registration.publish_addr, registration.publish_port),
          local: formatHostPort(proxy.config.localAddr, proxy.config.localPort),
        });
      } else if (registration.status === "retrying") {
        proxy.stats.setStatus("unhealthy", registration.reason);
        logger.warn("Proxy {proxy} not published yet ({code}): {reason}; the server retries in {secs} s", {
          proxy: registration.name,
          code: registration.code,
          reason: registration.reason,
          secs: registration.retry_after_seconds,
        });
      } else {
        proxy.stats.setStatus("bind_failed", registration.reason);
        logger.error("Proxy {proxy} rejected ({code}): {reason}", {
          proxy: registration.name,
          code: registration.code,
          reason: registration.reason,
        });
      }
    }
    this.#options.onRegistered?.(registrations);
    this.#statusChanged();
  }

  #statusChanged(): void {
    this.#options.onStatusChange?.([...this.proxies.values()]);
  }

  /** The server says a proxy's status changed (bind retry, recovery, failure, new port). */
  #onProxyStatus(params: ProxyStatusParams): void {
    const { status: next, publish_addr: addr, publish_port: port, retry_after_seconds } = params;
    const proxy = this.proxies.get(params.proxy_name);
    if (!proxy) return;
    const error = params.error_message;
    if (next === "healthy") {
      proxy.registration = {
        name: proxy.config.name,
        status: "accepted",
        publish_addr: addr,
        publish_port: port,
      };
    }
    const changed = proxy.stats.setStatus(next, error);
    const retry = retry_after_seconds !== null ? ` (next attempt in ${retry_after_seconds} s)` : "";
    logger.info("Proxy {proxy} is {status} on {publish}{retry}{error}", {
      proxy: proxy.config.name,
      status: next,
      publish: formatHostPort(addr, port),
      retry,
      error: error ? `: ${error}` : "",
    });
    if (changed || next === "healthy") this.#statusChanged();
  }

  /** Starts the configured health checks; each change is reported to the server. */
  #startHealthChecks(rpc: RpcPeer, signal: AbortSignal): void {
    for (const proxy of this.proxies.values()) {
      const healthCheck = proxy.config.healthCheck;
      if (!healthCheck || proxy.registration?.status === "rejected") continue;
      // With several backends the proxy is healthy while any one accepts: failover reaches it.
      const backends = localBackendsOf(proxy.config);
      const targets = backends.map((backend) => ({ hostname: backend.host, port: backend.port }));
      monitorHealth(targets, healthCheck, signal, (result) => {
        logger[result.healthy ? "info" : "warn"]("Proxy {proxy}: local service {target} is {state}{error}", {
          proxy: proxy.config.name,
          target: backends.map(formatBackend).join(", "),
          state: result.healthy ? "up" : "down",
          error: result.error ? ` (${result.error})` : "",
        });
        const published = proxy.registration?.status === "accepted";
        const changed = proxy.stats.setStatus(
          result.healthy ? (published ? "healthy" : proxy.stats.status) : "unhealthy",
          result.error,
        );
        rpc.notify(Method.proxyHealth, {
          proxy_name: proxy.config.name,
          healthy: result.healthy,
          error: result.error,
        }).catch(() => {});
        if (changed) this.#statusChanged();
      });
    }
  }

  #onPushException(params: PushExceptionParams): void {
    const { level, message, code, data } = params;
    const properties = { code, data: data ?? null, message };
    this.events.add({ level, code, message, ...(data ? { data } : {}) });
    if (level === "error") logger.error("Server error {code}: {message} {data}", properties);
    else if (level === "warning") logger.warn("Server warning {code}: {message} {data}", properties);
    else logger.info("Server notice {code}: {message} {data}", properties);
  }

  async #carryStream(stream: DuplexConn & { reset(): void }): Promise<void> {
    let header;
    try {
      header = await withTimeout(readStreamHeader(stream), STREAM_HEADER_TIMEOUT_MS, "a stream header");
    } catch (error) {
      logger.warn("Dropping a stream with a bad header: {error}", { error: String(error) });
      stream.reset();
      return;
    }
    const proxy = this.proxies.get(header.proxy);
    if (!proxy) {
      logger.warn("Server opened a stream for unknown proxy {proxy}; resetting it", { proxy: header.proxy });
      stream.reset();
      return;
    }
    const { config, stats } = proxy;
    const pool = this.#pools.get(config.name);
    if (!pool) {
      stream.reset();
      return;
    }
    stats.totalConnections++;
    stats.activeConnections++;
    let release = () => {};
    try {
      let local: Deno.TcpConn;
      let backend: Backend;
      try {
        // local_connect_retries counts rounds over the backends; a single backend is retried as before.
        const pooled = await pool.connect(header.peer_addr, dialBackend, {
          attempts: this.#config.localConnectRetries,
          retryDelayMs: this.#config.localRetryDelayMs,
          ...(this.#options.signal ? { signal: this.#options.signal } : {}),
        });
        local = pooled.conn;
        backend = pooled.backend;
        release = pooled.release;
      } catch (error) {
        stats.failedConnections++;
        stats.lastError = error instanceof Error ? error.message : String(error);
        logger.warn("Proxy {proxy}: connection from {peer} dropped: {error}", {
          proxy: config.name,
          peer: header.peer_addr,
          error: stats.lastError,
        });
        this.#reportConnect(config.name, header.conn_id, stats.lastError);
        stream.reset();
        return;
      }
      this.#reportConnect(config.name, header.conn_id, null);
      logger.debug("Proxy {proxy}: {peer} connected to {backend} (conn {connId})", {
        proxy: config.name,
        peer: header.peer_addr,
        backend: formatBackend(backend),
        connId: header.conn_id,
      });
      // Server → local service counts as bytes in, local service → server as bytes out.
      await pipeBoth(stream, local, { counters: stats });
    } finally {
      release();
      stats.activeConnections--;
      closeQuietly(stream);
    }
  }

  /**
   * Tells the server whether stream `connId` of `proxyName` reached the local service: every failure,
   * and the first success after failures (the server marks the proxy unhealthy after several in a row
   * and healthy again at the next success). The report goes before the stream's reset.
   */
  #reportConnect(proxyName: string, connId: number, error: string | null): void {
    const inARow = this.#failuresInARow.get(proxyName) ?? 0;
    if (error === null && inARow === 0) return;
    const consecutive = error === null ? 0 : inARow + 1;
    this.#failuresInARow.set(proxyName, consecutive);
    this.#rpc?.notify(Method.proxyConnectResult, {
      proxy_name: proxyName,
      conn_id: connId,
      ok: error === null,
      error: error === null ? null : error.slice(0, MAX_CONNECT_ERROR_CHARS),
      consecutive_failures: consecutive,
    }).catch(() => {});
  }

  /** The client's state for the stats endpoint. */
  snapshot(): ClientRoleSnapshot {
    const rtt = this.#session?.rttMs ?? 0;
    return {
      role: "client",
      version: VERSION,
      started_at_ms: this.startedAtMs,
      server_addr: `${this.#config.serverAddr}:${this.#config.serverPort}`,
      state: this.state,
      next_attempt_at_ms: this.nextAttemptAtMs,
      sessions_total: this.sessionsEstablished,
      rtt_ms: rtt > 0 ? rtt : null,
      proxies: [...this.proxies.values()].map(({ config, registration, stats }) => ({
        name: config.name,
        publish_addr: registration?.publish_addr ?? config.publishAddr,
        publish_port: registration?.status === "accepted" ? registration.publish_port : config.publishPort,
        local_addr: config.localAddr,
        local_port: config.localPort,
        ...stats.toSnapshotFields(),
        ...this.#backendsSnapshot(config.name),
      })),
      recent_events: this.events.recent(),
    };
  }

  /** Per-backend counters of a proxy with several local backends, for its snapshot. */
  #backendsSnapshot(name: string): { backends?: BackendSnapshot[] } {
    const pool = this.#pools.get(name);
    const backends = pool?.stats() ?? [];
    if (backends.length < 2) return {};
    const now = Date.now();
    return {
      backends: backends.map((backend) => ({
        address: formatBackend(backend),
        active_connections: backend.activeConnections,
        successes: backend.successes,
        failures: backend.failures,
        cooling_down: backend.coolDownUntilMs > now,
      })),
    };
  }

  /** Measures the round trip to the server over the current session, or null when disconnected. */
  async ping(): Promise<number | null> {
    return this.#session ? await this.#session.ping() : null;
  }
}

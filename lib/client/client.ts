/**
 * The client role: dials the server, authenticates, registers its proxies, and carries each stream the
 * server opens to the local service the stream's header names. Reconnects with backoff when the
 * session ends; a rejected key, or another running copy with the same client_id, is fatal.
 *
 * This file is the session loop and the proxies' state; the registration step and the server's
 * notifications are `registration.ts`, the data streams `stream_carrier.ts`.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { sessionKeepalive } from "../config/keepalive.ts";
import type { ClientConfig } from "../config/types.ts";
import { Session, type Stream } from "../mux/mod.ts";
import { RpcPeer } from "../rpc/mod.ts";
import {
  type AuthenticateResult,
  Method,
  type ProxyHealthParams,
  type ProxyRegistration,
  type ProxyStatusParams,
  type PushExceptionParams,
} from "../protocol/control.ts";
import type { DialedConn, Transport } from "../transport/transport.ts";
import { DEFAULT_TRANSPORT, transportFor } from "../transport/registry.ts";
import { sleep } from "../_async.ts";
import { formatHostPort } from "../net/address.ts";
import { isPermanentProxyError } from "../net/proxy_handshake.ts";
import type { OutboundProxy } from "../net/proxy_url.ts";
import { ProxyStats } from "../stats/proxy_stats.ts";
import { EventLog } from "../stats/event_log.ts";
import { ThroughputHistory } from "../stats/client_memory.ts";
import type { ClientRoleSnapshot } from "../stats/snapshot.ts";
import { VERSION } from "../version.ts";
import { Backoff } from "./backoff.ts";
import { leaveServer } from "../protocol/leaving.ts";
import { monitorHealth } from "./health_check.ts";
import { type BackendPool, formatBackend } from "./load_balancer.ts";
import { FatalClientError } from "./errors.ts";
import { authenticate, defaultClientId, registerProxies, serveServer } from "./registration.ts";
import type { ClientProxyState, ClientState } from "./state.ts";
import { localBackendsOf, StreamCarrier } from "./stream_carrier.ts";
import { errorMessage } from "../text.ts";
import { Visitor, VisitorBindError } from "./visitor.ts";
import { type Forwarder, startClientForwarders, TunnelDownError } from "./forwarder.ts";
import {
  type ClientReloadResult,
  describeReload,
  Exclusive,
  planClientReload,
  unregisterProxies,
} from "./reload.ts";

export { FatalClientError, MalformedServerAnswerError } from "./errors.ts";
export type { ClientProxyState, ClientState } from "./state.ts";
export { defaultClientId } from "./registration.ts";
export { localBackendsOf } from "./stream_carrier.ts";

const logger = getLogger(["tls-tunnel", "client"]);

/** Transport connect + handshake budget. */
const DIAL_TIMEOUT_MS = 10_000;

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
  /** Name of the registered transport to dial the server with (default `"tls"`; `transport/registry.ts`). */
  transport?: string;
  /**
   * The outbound proxy the environment names (`HTTPS_PROXY`… unless `NO_PROXY` lists the server; the CLI
   * reads them with `proxyFromEnvironment`), used when the config has no `proxy_url`. Absent or null: the
   * config's `proxy_url`, or none.
   */
  proxy?: OutboundProxy | null;
  /** The event log to add to (a client of several servers shares one); a log of its own when absent. */
  events?: EventLog;
  /** The client_id to present when the config sets none (several servers present one id); derived when absent. */
  clientId?: Promise<string>;
  /**
   * Whether this client runs the config's `[[visitors]]` (default true). A client of several servers runs
   * them itself, over every server's session (multi_server.ts): one local port each.
   */
  runVisitors?: boolean;
  /** Whether this client runs the config's `[[forwarders]]` (default true); like visitors, on one server only. */
  runForwarders?: boolean;
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
  /** Attempts to reach the server that ended without a registered session, since start. */
  connectFailures = 0;
  /** Each proxy's last hour of throughput, for the stats endpoint. */
  readonly #throughput = new ThroughputHistory();
  /** The server's answer to the last `authenticate`. */
  server: AuthenticateResult | null = null;
  /** Recent events (connections, server notifications) for the stats endpoint. */
  readonly events: EventLog;
  /** When the client was created (ms since epoch). */
  readonly startedAtMs = Date.now();
  /** Replaced by {@linkcode applyConfig} (its proxies and the keys that apply live). */
  #config: ClientConfig;
  /** The registered session's control channel and health-check lifetime; null until registered. */
  #live: { rpc: RpcPeer; healthChecks: AbortSignal } | null = null;
  /** Each running health check's stop, by proxy name (a reload stops a removed proxy's). */
  readonly #healthStops = new Map<string, AbortController>();
  /** A reload and a session's registration run one at a time (reload.ts). */
  readonly #exclusive = new Exclusive();
  readonly #options: TunnelClientOptions;
  #session: Session | null = null;
  /** The authenticated session visitors open their streams on; null between sessions. */
  #visitSession: Session | null = null;
  /** The config's `[[visitors]]`: local listeners bound for the whole run, across reconnects. */
  readonly visitors: readonly Visitor[];
  /** The config's `[[forwarders]]` while running: local proxies bound for the whole run, across reconnects. */
  forwarders: readonly Forwarder[] = [];
  /** Answers the server's data streams. */
  readonly #carrier: StreamCarrier;
  /** How the server is dialed. */
  readonly #transport: Transport;

  /**
   * @throws {UnknownTransportError} when `options.transport` names no registered transport
   * @throws {UnknownProxyKindError} when a proxy's `proxy_type` has no client side registered
   */
  constructor(options: TunnelClientOptions) {
    this.#options = options;
    this.#config = options.config;
    this.events = options.events ?? new EventLog();
    this.#transport = transportFor(options.transport ?? options.config.transport ?? DEFAULT_TRANSPORT);
    for (const proxy of options.config.proxies) {
      this.proxies.set(proxy.name, { config: proxy, registration: null, stats: new ProxyStats() });
    }
    this.#carrier = new StreamCarrier(this.proxies, this.#config, options.signal);
    this.visitors = options.runVisitors === false
      ? []
      : (options.config.visitors ?? []).map((visitor) => new Visitor(visitor, () => this.#visitSession));
  }

  /**
   * The authenticated session client-opened streams (visits) go on now, or null between sessions; a client
   * of several servers hands every server's to its visitors.
   */
  get visitSession(): Session | null {
    return this.#visitSession;
  }

  /** The backend pool of the proxy `name` (its per-backend counters), or undefined for an unknown name. */
  backendPool(name: string): BackendPool | undefined {
    return this.#carrier.pool(name);
  }

  /**
   * Runs until the signal aborts (resolves) or the server refuses the client for good (rejects with
   * {@linkcode FatalClientError}). Connection failures and lost sessions are retried with backoff.
   */
  async run(): Promise<void> {
    const signal = this.#options.signal;
    const clientId = this.#config.clientId ?? await (this.#options.clientId ?? defaultClientId(this.#config));
    const backoff = new Backoff(this.#config.reconnect);
    let attempt = 0;
    try {
      // Bound before the first session and kept across reconnects: applications keep one local port.
      try {
        for (const visitor of this.visitors) visitor.listen();
      } catch (error) {
        if (!(error instanceof VisitorBindError)) throw error;
        throw new FatalClientError(error.message, 0, { cause: error });
      }
      if (this.#options.runForwarders !== false && (this.#config.forwarders ?? []).length > 0) {
        this.forwarders = await startClientForwarders(
          this.#config.forwarders,
          () => this.#forwardStream(),
          signal,
        );
      }
      while (!signal?.aborted) {
        attempt++;
        this.state = "connecting";
        let healthy = false;
        /** Why this attempt failed, told with the next attempt's delay: one event, one record. */
        let failure: string | null = null;
        try {
          healthy = await this.#runSession(clientId, attempt);
        } catch (error) {
          if (error instanceof FatalClientError) throw error;
          // The proxy refused the credentials (or wants some): the same config can only fail again.
          if (isPermanentProxyError(error)) {
            throw new FatalClientError(errorMessage(error), 0, {
              cause: error,
            });
          }
          if (signal?.aborted) break;
          failure = errorMessage(error);
        }
        if (signal?.aborted) break;
        if (!healthy) this.connectFailures++;
        if (healthy) {
          backoff.reset();
          attempt = 0;
        }
        const server = formatHostPort(this.#config.serverAddr, this.#config.serverPort);
        if (backoff.exhausted) {
          if (failure !== null) {
            logger.warn("Attempt {attempt} to reach {server} failed: {error}", {
              attempt,
              server,
              error: failure,
            });
          }
          throw new FatalClientError(
            `Gave up after ${this.#config.reconnect.maxAttempts} attempts to reach the server ` +
              `(client.reconnect.max_attempts)`,
            0,
          );
        }
        const delayMs = backoff.nextDelayMs();
        this.state = "waiting";
        this.nextAttemptAtMs = Date.now() + delayMs;
        const secs = (delayMs / 1000).toFixed(1);
        if (failure === null) {
          logger.info("Reconnecting in {secs} s (attempt {next})", { secs, next: attempt + 1 });
        } else {
          logger.warn(
            "Attempt {attempt} to reach {server} failed: {error}. Reconnecting in {secs} s (attempt {next})",
            {
              attempt,
              server,
              error: failure,
              secs,
              next: attempt + 1,
            },
          );
        }
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
      await Promise.all(this.visitors.map((visitor) => visitor.close()));
      await Promise.all(this.forwarders.map((forwarder) => forwarder.close()));
    }
  }

  /** A stream for a forwarded connection on the authenticated session, or {@linkcode TunnelDownError}. */
  #forwardStream(): Promise<Stream> {
    const session = this.#visitSession;
    if (session === null || session.isClosed) {
      return Promise.reject(new TunnelDownError("no session with the server now"));
    }
    return session.open();
  }

  /** One session: dial, authenticate, register, serve streams. Resolves true if it got registered. */
  async #runSession(clientId: string, attempt: number): Promise<boolean> {
    const signal = this.#options.signal;
    const server = formatHostPort(this.#config.serverAddr, this.#config.serverPort);
    const proxy = this.#config.proxyUrl ?? this.#options.proxy ?? null;
    logger.info("Connecting to {server}{via} (attempt {attempt})", {
      server,
      via: proxy === null ? "" : ` through ${proxy.hop}`,
      attempt,
    });
    const conn: DialedConn = await this.#transport.dial({
      hostname: this.#config.serverAddr,
      port: this.#config.serverPort,
      serverName: this.#config.serverName,
      ...(this.#options.caCertPem !== undefined ? { caCertPem: this.#options.caCertPem } : {}),
      ...(this.#config.caCertPath !== undefined ? { caCertPath: this.#config.caCertPath } : {}),
      skipVerify: this.#config.skipVerify,
      ...(this.#config.serverFingerprint !== undefined
        ? { pinnedFingerprint: this.#config.serverFingerprint }
        : {}),
      timeoutMs: DIAL_TIMEOUT_MS,
      path: this.#config.serverPath,
      proxy,
    }, signal);
    const session = new Session(conn, {
      role: "client",
      ...sessionKeepalive(this.#config),
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
      serveServer(rpc, {
        onPushException: (params) => this.#onPushException(params),
        onProxyStatus: (params) => this.#onProxyStatus(params),
      });
      this.#carrier.attach(rpc);
      const auth = await authenticate(rpc, this.#config, clientId, server);
      this.server = auth;
      // Visitors may open their streams from here on (the server serves them once authenticated).
      this.#visitSession = session;
      logger.info("Authenticated with {server} as {name} (server {version}, session {sessionId})", {
        server,
        name: auth.client_name,
        version: auth.server_version,
        sessionId: auth.session_id,
      });
      // Accept data streams before registering: the server may open one as soon as a port is bound.
      acceptLoop = (async () => {
        for await (const stream of session) {
          const carried = this.#carrier.carry(stream);
          streams.add(carried);
          carried.finally(() => streams.delete(carried));
        }
      })();
      const live = { rpc, healthChecks: healthChecks.signal };
      await this.#exclusive.run(async () => {
        const registrations = await registerProxies(live.rpc, this.#config, server);
        this.#applyRegistrations(registrations);
        await this.#withdrawExposed(live.rpc, registrations, server);
        this.#startHealthChecks(live.rpc, live.healthChecks);
        this.#live = live;
      });
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
      this.#visitSession = null;
      this.#live = null;
      this.#carrier.attach(null);
      let changed = false;
      for (const proxy of this.proxies.values()) changed = proxy.stats.setStatus("pending") || changed;
      // A lost registered session is a change the status table shows (with several servers: that server's
      // table); failed attempts after it change nothing and print nothing.
      if (changed && !this.#options.signal?.aborted) this.#statusChanged();
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
          // A private proxy is not bound on the server: other clients' visitors reach it by name and port.
          publish: proxy.config.visibility === "private"
            ? `private (visitors: name ${registration.name}, publish_port ${registration.publish_port})`
            : formatHostPort(registration.publish_addr, registration.publish_port) +
              (proxy.config.proxyType === "udp" ? "/udp" : "") +
              (proxy.config.visibility === "both" ? " and visitors" : ""),
          local: formatHostPort(proxy.config.localAddr, proxy.config.localPort),
        });
      } else if (registration.status === "retrying") {
        proxy.stats.setStatus("unhealthy", registration.reason);
        // Debug: the server's PROXY_BIND_RETRY warning that follows says the same with the attempt count.
        logger.debug("Proxy {proxy} not published yet ({code}): {reason}; the server retries in {secs} s", {
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

  /**
   * A private proxy the server accepted without saying `visibility: "private"` was bound on a public port by
   * a server that does not know visitors (an older version): it is withdrawn at once, and when the server
   * cannot withdraw it either, the client stops rather than leave the port open.
   */
  async #withdrawExposed(rpc: RpcPeer, registrations: ProxyRegistration[], server: string): Promise<void> {
    const exposed = registrations.filter((registration) =>
      registration.status === "accepted" && registration.visibility !== "private" &&
      this.proxies.get(registration.name)?.config.visibility === "private"
    );
    if (exposed.length === 0) return;
    for (const registration of exposed) {
      const reason =
        `the server at ${server} does not know private proxies (no visitors; an older version) ` +
        `and published it on ${formatHostPort(registration.publish_addr, registration.publish_port)}`;
      logger.error("Proxy {proxy} is private, but {reason}; withdrawing it. Upgrade the server", {
        proxy: registration.name,
        reason,
      });
      this.proxies.get(registration.name)?.stats.setStatus("bind_failed", reason);
    }
    try {
      await unregisterProxies(rpc, exposed.map((registration) => registration.name), server);
    } catch (error) {
      throw new FatalClientError(
        `Private proxies ${exposed.map((registration) => registration.name).join(", ")} were published by ` +
          `the server at ${server}, which does not know private proxies, and could not be withdrawn ` +
          `(${errorMessage(error)}); stopping. Upgrade the server, or remove visibility = "private"`,
        0,
        { cause: error },
      );
    }
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
    // An unchanged status (another failed bind retry, already told by the server's warning) is debug.
    logger[changed || next === "healthy" ? "info" : "debug"](
      "Proxy {proxy} is {status} on {publish}{retry}{error}",
      {
        proxy: proxy.config.name,
        status: next,
        publish: formatHostPort(addr, port),
        retry,
        error: error ? `: ${error}` : "",
      },
    );
    if (changed || next === "healthy") this.#statusChanged();
  }

  /** Starts the configured health checks; each change is reported to the server. */
  #startHealthChecks(rpc: RpcPeer, session: AbortSignal, only?: ReadonlySet<string>): void {
    for (const proxy of this.proxies.values()) {
      const healthCheck = proxy.config.healthCheck;
      if (!healthCheck || proxy.registration?.status === "rejected") continue;
      if (only && !only.has(proxy.config.name)) continue;
      const stop = new AbortController();
      this.#healthStops.get(proxy.config.name)?.abort();
      this.#healthStops.set(proxy.config.name, stop);
      const signal = AbortSignal.any([session, stop.signal]);
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
        const report: ProxyHealthParams = {
          proxy_name: proxy.config.name,
          healthy: result.healthy,
          error: result.error,
        };
        rpc.notify(Method.proxyHealth, report).catch(() => {});
        if (changed) this.#statusChanged();
      });
    }
  }

  #onPushException(params: PushExceptionParams): void {
    const { level, message, code, data } = params;
    const properties = { code, data: data ?? null, message };
    this.events.add({ level, code, message, ...(data ? { data } : {}) });
    // `data` stays a property of its own (JSON format: a field; text format: `data=…` after the message).
    if (level === "error") logger.error("Server error {code}: {message}", properties);
    else if (level === "warning") logger.warn("Server warning {code}: {message}", properties);
    else logger.info("Server notice {code}: {message}", properties);
  }

  /**
   * Applies a new (validated) config without reconnecting (reload.ts): removed proxies are unregistered
   * (the server releases their ports), added ones registered, changed ones re-registered; untouched
   * proxies and their connections are left alone. Changed `[client]` keys that cannot apply live keep
   * their running values and are listed in `restartKeys`. Between sessions only the state changes.
   *
   * @throws {RpcError} or {@linkcode MalformedServerAnswerError} when the session fails meanwhile (the new
   *   config stays: the next session registers it)
   */
  applyConfig(next: ClientConfig): Promise<ClientReloadResult> {
    return this.#exclusive.run(async () => {
      const plan = planClientReload(this.#config, next);
      const dropped = [...plan.removed, ...plan.changed.map((proxy) => proxy.name)];
      const fresh = [...plan.added, ...plan.changed];
      for (const name of dropped) {
        this.proxies.delete(name);
        this.#carrier.removeProxy(name);
        this.#healthStops.get(name)?.abort();
        this.#healthStops.delete(name);
      }
      this.#config = plan.config;
      this.#carrier.config = plan.config;
      for (const proxy of fresh) {
        this.#carrier.addProxy(proxy);
        this.proxies.set(proxy.name, { config: proxy, registration: null, stats: new ProxyStats() });
      }
      const live = this.#live;
      const result: ClientReloadResult = {
        added: plan.added.map((proxy) => proxy.name),
        removed: plan.removed,
        changed: plan.changed.map((proxy) => proxy.name),
        unchanged: plan.unchanged,
        restartKeys: plan.restartKeys,
        registrations: [],
        unregistrations: [],
        offline: live === null,
      };
      if (live !== null) {
        const server = formatHostPort(this.#config.serverAddr, this.#config.serverPort);
        result.unregistrations = await unregisterProxies(live.rpc, dropped, server);
        if (fresh.length > 0) {
          result.registrations = await registerProxies(live.rpc, { ...plan.config, proxies: fresh }, server);
          this.#applyRegistrations(result.registrations);
          await this.#withdrawExposed(live.rpc, result.registrations, server);
          this.#startHealthChecks(live.rpc, live.healthChecks, new Set(fresh.map((proxy) => proxy.name)));
        }
      }
      if (live === null || fresh.length === 0) this.#statusChanged();
      logger.info("Config reloaded: {summary}", { summary: describeReload(result) });
      return result;
    });
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
      connect_failures_total: this.connectFailures,
      rtt_ms: rtt > 0 ? rtt : null,
      proxies: [...this.proxies.values()].map(({ config, registration, stats }) =>
        this.#throughput.serve({
          name: config.name,
          publish_addr: registration?.publish_addr ?? config.publishAddr ?? "",
          publish_port: registration?.status === "accepted" ? registration.publish_port : config.publishPort,
          local_addr: config.localAddr,
          local_port: config.localPort,
          ...stats.toSnapshotFields(),
          ...this.#carrier.backendsSnapshot(config.name),
        })
      ),
      recent_events: this.events.recent(),
      ...(this.forwarders.length > 0
        ? { forwarders: this.forwarders.map((forwarder) => forwarder.snapshot()) }
        : {}),
      ...(this.visitors.length > 0 ? { visitors: this.visitors.map((visitor) => visitor.snapshot()) } : {}),
    };
  }

  /** Measures the round trip to the server over the current session, or null when disconnected. */
  async ping(): Promise<number | null> {
    return this.#session ? await this.#session.ping() : null;
  }
}

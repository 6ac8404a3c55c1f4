/**
 * The server role: accepts TLS connections from clients, authenticates them on the control stream,
 * publishes their proxies, and tears everything of a client down the moment its session ends.
 *
 * The authentication of a new session (one `authenticate` per session, methods refused before it, a
 * client_id in use making way only when its session is dead) is in `session_auth.ts`.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { sessionKeepalive } from "../config/keepalive.ts";
import type { ServerConfig } from "../config/types.ts";
import { Session } from "../mux/mod.ts";
import { RpcPeer } from "../rpc/mod.ts";
import { HeartbeatParams, Method, ProxyHealthParams } from "../protocol/control.ts";
import type { AdmittedConn, IncomingConn } from "../transport/transport.ts";
import { closeQuietly } from "../transport/pipe.ts";
import { VERSION } from "../version.ts";
import { withTimeout } from "../_async.ts";
import { EventLog } from "../stats/event_log.ts";
import { Histogram } from "../stats/histogram.ts";
import { ClientMemory } from "../stats/client_memory.ts";
import type { ClientSnapshot, ServerSnapshot } from "../stats/snapshot.ts";
import { Authenticator, sessionEndedError } from "./auth.ts";
import { PendingConnections } from "./admission.ts";
import { awaitAuthentication, displacePrevious } from "./session_auth.ts";
import { ConnectedClient } from "./connected_client.ts";
import { ClientStreamHandlers } from "./client_streams.ts";
import { visitHandler } from "./visit.ts";
import { ForwardService } from "./forward.ts";
import { KeyedRateLimiter } from "./rate_limit.ts";
import { StickyPorts } from "./port_plan.ts";
import { bindingsOverlap, ProxyRegistrar } from "./proxy_registrar.ts";
import { type PortSocket, socketOf } from "./registration_checks.ts";
import { formatAddr, unmapIpv4 } from "../net/address.ts";
import { clientBehindProxies } from "../net/cidr.ts";
import { bindListeners, type ServerListener } from "./listeners.ts";
import { onProxyConnectResult } from "./connect_failures.ts";
import { WebhookNotifier } from "./webhook.ts";
import { VhostService } from "./vhost/service.ts";
import { GroupRegistry } from "./groups.ts";
import { errorMessage } from "../text.ts";
import { reconcileClients, type ReconcileReport, serverRestartKeys, unregisterProxies } from "./reload.ts";
import { LEAVE_GRACE_MS } from "../protocol/leaving.ts";

const logger = getLogger(["tls-tunnel", "server"]);

/** How long a holder of a contested port has to answer a liveness ping before it loses the port. */
const CONTESTED_PORT_PING_TIMEOUT_MS = 2000;

/** Options of {@linkcode TunnelServer}. */
export interface TunnelServerOptions {
  /** Validated server config. */
  config: ServerConfig;
  /** PEM certificate chain the TLS listener presents. */
  certPem: string;
  /** PEM private key of that certificate. */
  keyPem: string;
  /** Ends the server: listeners close, every session ends. */
  signal?: AbortSignal;
  /**
   * Name of a registered transport that replaces the first listener's (`config.listeners[0]`); any
   * registered name works (see `transport/registry.ts`). Default: the config's.
   */
  transport?: string;
}

/** The tunnel server. */
export class TunnelServer {
  /** Connected clients by client_id. */
  readonly clients = new Map<string, ConnectedClient>();
  /** Recent events for the dashboard. */
  readonly events = new EventLog();
  /** Latency of opening a stream for an outside connection. */
  readonly streamOpenLatency = new Histogram();
  /**
   * Handlers of the streams clients open, by kind (`visit`, `forward`): a feature registers its kind here
   * (client_streams.ts); the counters are in the snapshot's `client_streams`.
   */
  readonly clientStreams = new ClientStreamHandlers();
  /** `[server.rate_limit]` on new tunnel connections, per source address; null without a rate limit. */
  readonly #tunnelRateLimit: KeyedRateLimiter | null;
  /** `[server.rate_limit]` on new outside connections (published ports, forwards), per client. */
  readonly outsideRateLimit: KeyedRateLimiter | null;
  /** Forwarded connections (`[[forwarders]]` of the clients): the `forward` handler and its counters. */
  readonly forwards: ForwardService;
  /** When the server was created (ms since epoch). */
  readonly startedAtMs = Date.now();
  /** Sessions that authenticated since start. */
  sessionsTotal = 0;
  /** Replaced by {@linkcode applyConfig}. */
  #config: ServerConfig;
  readonly #options: TunnelServerOptions;
  readonly #authenticator: Authenticator;
  readonly #handshakes = new Set<Promise<void>>();
  readonly #sticky: StickyPorts;
  readonly #registrar: ProxyRegistrar;
  readonly #webhook: WebhookNotifier | null = null;
  /** The shared HTTP/HTTPS vhost ports (`vhost_http_port`, `vhost_https_port`), when configured. */
  readonly vhost: VhostService | null = null;
  /** Groups of clients sharing a published TCP port (`group`/`group_key`, groups.ts). */
  readonly groups = new GroupRegistry();
  /** Every listener, in config order (empty before {@linkcode listen}). */
  #listeners: readonly ServerListener[] = [];
  /** The listener each client's session came through (for its stats). */
  readonly #listenerOf = new WeakMap<ConnectedClient, ServerListener>();
  /** Connections accepted and not yet authenticated, with their limits. */
  readonly pendingConnections: PendingConnections;
  /** Counters, throughput history and last-seen times that outlive a client's sessions. */
  readonly clientMemory: ClientMemory;
  #nextSessionId = 1;
  #stopping = false;

  constructor(options: TunnelServerOptions) {
    this.#options = options;
    this.#config = options.config;
    this.#authenticator = new Authenticator(options.config, this.events);
    this.clientMemory = new ClientMemory(options.config.clients.map((entry) => entry.name));
    this.#sticky = new StickyPorts(options.config.stickyPortsTtlSecs * 1000);
    this.pendingConnections = new PendingConnections({
      maxPending: options.config.maxPendingConnections,
      maxPendingPerIp: options.config.maxPendingPerIp,
    });
    if (options.config.notify) {
      this.#webhook = new WebhookNotifier(
        options.config.notify,
        this.events,
        () => (this.#listeners[0] ? formatAddr(this.#listeners[0].addr) : ""),
      );
    }
    if (VhostService.wanted(options.config)) this.vhost = new VhostService(options.config);
    const rateLimit = options.config.rateLimit;
    this.#tunnelRateLimit = rateLimit ? new KeyedRateLimiter(rateLimit, "new tunnel connections") : null;
    this.outsideRateLimit = rateLimit ? new KeyedRateLimiter(rateLimit, "new outside connections") : null;
    this.forwards = new ForwardService(() => this.#config, this.outsideRateLimit);
    this.#registrar = new ProxyRegistrar({
      config: options.config,
      reservedPortReason: (addr, port, socket) => this.#reservedPortReason(addr, port, socket),
      contestedHolder: (client, addr, port, verify, socket) =>
        this.#contestedHolder(client, addr, port, verify, socket),
      sticky: this.#sticky,
      openLatency: this.streamOpenLatency,
      events: this.events,
      vhost: this.vhost,
      groups: this.groups,
    });
    // Visitors (visit.ts): access is decided on every open, with the config as it is then.
    this.clientStreams.register(
      "visit",
      visitHandler({
        clients: () => this.clients.values(),
        allowVisit: (client) =>
          client.grant.entryName === null
            ? undefined
            : this.#config.clients.find((entry) => entry.name === client.grant.entryName)?.allowVisit,
      }),
    );
    this.clientStreams.register("forward", this.forwards.handle);
  }

  /** Failed authentications (wrong keys) since start. */
  get authFailuresTotal(): number {
    return this.#authenticator.failuresTotal;
  }

  /** auth_keys checked since start (each attempt the throttle let through). */
  get authKeyChecksTotal(): number {
    return this.#authenticator.keyChecksTotal;
  }

  /** The first listener's bound address (after {@linkcode listen}). */
  get addr(): Deno.NetAddr {
    const first = this.#listeners[0];
    if (!first) throw new Error("TunnelServer.addr read before listen()");
    return first.addr;
  }

  /** Every listener, bound, in config order (empty before {@linkcode listen}). */
  get listeners(): readonly ServerListener[] {
    return this.#listeners;
  }

  /**
   * Binds every listener (`config.listeners`) with its transport and resolves with the first one's
   * address; rejects with a classified `BindError` naming the listener when one cannot be bound (none
   * stays bound then), or an `UnknownTransportError` for a transport name no one registered.
   */
  async listen(): Promise<Deno.NetAddr> {
    const specs = this.#config.listeners.map((spec, index) =>
      index === 0 && this.#options.transport !== undefined
        ? { ...spec, transport: this.#options.transport }
        : spec
    );
    this.#listeners = await bindListeners(specs, {
      certPem: this.#options.certPem,
      keyPem: this.#options.keyPem,
      handshakeTimeoutMs: this.#config.handshakeTimeoutSecs * 1000,
    });
    for (const listener of this.#listeners) {
      logger.info("Listening for clients on {addr}", {
        addr: listener.describe(),
        transport: listener.spec.transport,
      });
    }
    try {
      this.vhost?.listen();
    } catch (error) {
      for (const listener of this.#listeners) closeQuietly(listener.listener);
      throw error;
    }
    return this.addr;
  }

  /** Accepts clients on every listener until the signal aborts; then disconnects every client and resolves. */
  async serve(): Promise<void> {
    if (this.#listeners.length === 0) await this.listen();
    const onAbort = () => this.#stopListening();
    this.#options.signal?.addEventListener("abort", onAbort, { once: true });
    if (this.#options.signal?.aborted) this.#stopListening();
    try {
      await Promise.all(
        this.#listeners.map((listener) => listener.listener.serve((conn) => this.#admit(conn, listener))),
      );
    } finally {
      this.#options.signal?.removeEventListener("abort", onAbort);
      this.#stopListening();
      await Promise.all([...this.clients.values()].map((client) => client.close("server shutting down")));
      await Promise.all([...this.#handshakes]);
      await this.#webhook?.close();
      await this.vhost?.close();
    }
  }

  /** Stops accepting clients and disconnects the connected ones. */
  #stopListening(): void {
    this.#stopping = true;
    for (const listener of this.#listeners) closeQuietly(listener.listener);
    for (const client of this.clients.values()) client.close("server shutting down");
  }

  /**
   * Admits a just-accepted connection within the pending limits (shared by every listener), or closes it
   * at once.
   */
  #admit(socket: IncomingConn, listener: ServerListener): void {
    listener.connectionsTotal++;
    if (this.#stopping) {
      socket.refuse();
      return;
    }
    const remoteHost = unmapIpv4(socket.remoteAddr.hostname);
    // Before the pending limits and before TLS: a flood over the rate costs no handshake.
    if (this.#tunnelRateLimit !== null && !this.#tunnelRateLimit.allow(remoteHost)) {
      socket.refuse();
      return;
    }
    const release = this.pendingConnections.admit(remoteHost);
    if (typeof release === "string") {
      logger.debug("Refused a connection from {host}: {reason}", { host: remoteHost, reason: release });
      socket.refuse();
      return;
    }
    const handshake = this.#handleConnection(socket.admit(), remoteHost, release, listener)
      .catch((error) => {
        logger.error("Unexpected failure handling a client connection: {error}", { error: String(error) });
      })
      .finally(() => {
        release();
        this.#handshakes.delete(handshake);
      });
    this.#handshakes.add(handshake);
  }

  async #handleConnection(
    conn: AdmittedConn,
    peerHost: string,
    authenticatedNow: () => void,
    listener: ServerListener,
  ): Promise<void> {
    let remoteHost = peerHost;
    let remote = formatAddr({ ...conn.remoteAddr, hostname: remoteHost });
    const deadlineMs = this.#config.handshakeTimeoutSecs * 1000;
    let authenticated = false;
    // From TCP accept to authenticated: covers a socket that never sends a byte, a stalled TLS handshake
    // and a session that never authenticates, and really frees the socket (the transport contract,
    // transport/mod.ts).
    const deadline = setTimeout(() => {
      if (!authenticated) {
        // Debug, not info: a flood of idle connections must not become a flood of log lines (the
        // refused and pending counters show it).
        logger.debug("Connection from {remote} did not authenticate within {secs} s; closed", {
          remote,
          secs: this.#config.handshakeTimeoutSecs,
        });
        closeQuietly(conn);
      }
    }, deadlineMs);
    try {
      try {
        await conn.handshake();
      } catch (error) {
        // Debug: anyone can open and drop connections, and each must not cost a log line at INFO.
        logger.debug("TLS handshake with {remote} failed: {error}", { remote, error: String(error) });
        closeQuietly(conn);
        return;
      }
      // Behind a reverse proxy: the client's own address, when the proxy is trusted to tell it (its port
      // is not told, so the address is shown alone).
      const forwarded = clientBehindProxies(peerHost, conn.forwardedFor ?? [], listener.trustedProxies);
      if (forwarded !== peerHost) {
        remoteHost = forwarded;
        remote = forwarded;
      }
      const session = new Session(conn, {
        role: "server",
        ...sessionKeepalive(this.#config),
      });
      const control = await session.accept();
      if (!control) {
        session.close();
        return;
      }
      const rpc = new RpcPeer(control);
      const client = await awaitAuthentication(rpc, session, {
        admit: (raw, ended) => this.#admitClient(raw, session, rpc, remote, remoteHost, ended),
        install: (client) => this.#installClientHandlers(client),
      });
      if (!client) {
        // Give the error response a moment to leave before the connection closes.
        await withTimeout(rpc.closed, 100, "the error response to leave").catch(() => {});
        rpc.close();
        session.close();
        return;
      }
      authenticated = true;
      listener.sessionsTotal++;
      this.#listenerOf.set(client, listener);
      clearTimeout(deadline);
      authenticatedNow();
      await this.#runClient(client);
    } catch (error) {
      logger.info("Session with {remote} ended during the handshake: {error}", {
        remote,
        error: String(error),
      });
      closeQuietly(conn);
    } finally {
      clearTimeout(deadline);
    }
  }

  /**
   * One authentication attempt: checks it (params, throttle, key), makes way for the client (see
   * `displacePrevious` in session_auth.ts) and registers it. Throws the `RpcError` to answer with.
   */
  async #admitClient(
    raw: unknown,
    session: Session,
    rpc: RpcPeer,
    remote: string,
    remoteHost: string,
    ended: AbortSignal,
  ): Promise<ConnectedClient> {
    const { params, grant } = await this.#authenticator.check(raw, remote, remoteHost, ended);
    const name = grant.entryName ?? params.client_id;
    const displace = {
      clients: this.clients,
      events: this.events,
      forget: (client: ConnectedClient, reason: string) => this.#forget(client, reason),
    };
    await displacePrevious(displace, params.client_id, name, remote);
    if (ended.aborted || session.isClosed) throw sessionEndedError();
    const sessionId = `s${this.#nextSessionId++}`;
    const client = new ConnectedClient(params.client_id, name, sessionId, remote, grant, session, rpc);
    const outsideRateLimit = this.outsideRateLimit;
    if (outsideRateLimit !== null) client.admitOutside = () => outsideRateLimit.allow(name);
    this.clients.set(params.client_id, client);
    this.sessionsTotal++;
    this.events.add({
      level: "info",
      code: "CLIENT_CONNECTED",
      message: `Client ${name} connected from ${remote}`,
      client: name,
      data: { client_id: params.client_id, remote_addr: remote, session_id: sessionId },
    });
    logger.info("Client {client} connected from {remote} (session {sessionId})", {
      client: name,
      remote,
      sessionId,
    });
    return client;
  }

  /** Serves an authenticated client's requests; installed before the authenticate response leaves. */
  #installClientHandlers(client: ConnectedClient): void {
    const { rpc } = client;
    rpc.handle(Method.registerProxies, (raw: unknown) => this.#registrar.register(client, raw));
    rpc.handle(Method.unregisterProxies, (raw: unknown) => unregisterProxies(client, raw, this.#sticky));
    rpc.handle(Method.heartbeat, (raw: unknown) => {
      const parsed = HeartbeatParams.safeParse(raw);
      return { time_ms: parsed.success ? parsed.data.time_ms : Date.now() };
    });
    rpc.onNotification(
      Method.proxyHealth,
      ProxyHealthParams,
      (params) => this.#onProxyHealth(client, params),
    );
    // Validated by the handler itself: a flood of malformed reports is counted, not logged each time.
    rpc.onNotification(Method.proxyConnectResult, (raw: unknown) =>
      onProxyConnectResult(client, raw, {
        unhealthyAfterFailures: this.#config.unhealthyAfterFailures,
        events: this.events,
      }));
  }

  async #runClient(client: ConnectedClient): Promise<void> {
    const { rpc, session } = client;
    // Streams the client opens (visitors, forwarders): each starts with an open request, dispatched by
    // kind (client_streams.ts); ends with the session.
    this.clientStreams.serve(client, { maxStreamsPerClient: () => this.#config.maxClientStreams })
      .catch(() => {});
    const leaving = await Promise.race([
      session.closed.then(() => false),
      rpc.closed.then(() => false),
      session.remoteGoAway.then(() => true),
    ]);
    if (leaving && !session.isClosed && !client.closing) {
      await this.#clientLeaving(client);
      return;
    }
    await this.#forget(
      client,
      conciseReason(session.error?.message ?? session.closeReason ?? "control stream closed"),
    );
  }

  /**
   * The client sent GoAway: it is leaving. Its ports are released at once; the outside connections in
   * flight get {@linkcode LEAVE_GRACE_MS} to finish (those still open then are reset), then the
   * session ends. A departure, not a failure: logged at INFO.
   */
  async #clientLeaving(client: ConnectedClient): Promise<void> {
    const startedMs = performance.now();
    // Gone from the registry at once, like a client that disconnected; what it still carries is its own.
    if (this.clients.get(client.clientId) === client) {
      this.clients.delete(client.clientId);
      this.#rememberEnded(client);
    }
    const boundPorts = [...client.proxies.values()].flatMap((proxy) => proxy.boundPort ?? []);
    const ports = await client.leave();
    const inFlight = client.openConnections;
    logger.info(
      "Client {client} is leaving (GoAway): released {count} port(s) in {ms} ms; {open} connection(s) in " +
        "flight may finish within {secs} s",
      {
        client: client.name,
        count: ports,
        ms: (performance.now() - startedMs).toFixed(1),
        open: inFlight,
        secs: LEAVE_GRACE_MS / 1000,
      },
    );
    this.events.add({
      level: "info",
      code: "CLIENT_DISCONNECTED",
      message: `Client ${client.name} left`,
      client: client.name,
      data: {
        client_id: client.clientId,
        remote_addr: client.remoteAddr,
        reason: "left (GoAway)",
        ports: boundPorts,
      },
    });
    await client.drained(LEAVE_GRACE_MS, this.#options.signal);
    await this.#forget(
      client,
      inFlight > 0 && client.openConnections > 0 ? "left (grace period over)" : "left",
    );
  }

  #onProxyHealth(client: ConnectedClient, params: ProxyHealthParams): void {
    const proxy = client.proxies.get(params.proxy_name);
    if (!proxy || proxy.boundPort === null) return;
    proxy.refuseConnections = !params.healthy;
    const changed = proxy.stats.setStatus(params.healthy ? "healthy" : "unhealthy", params.error ?? null);
    if (!changed) return;
    logger.info("Proxy {proxy} of {client}: local service reported {state} by the client", {
      proxy: params.proxy_name,
      client: client.name,
      state: params.healthy ? "up" : "down",
    });
    client.notifyStatus(proxy);
  }

  /** Keeps an ended session's proxy counters for the client's next session (stats only). */
  #rememberEnded(client: ConnectedClient): void {
    const proxies = [...client.proxies.values()].map((proxy) => ({
      name: proxy.spec.name,
      stats: proxy.stats,
    }));
    this.clientMemory.sessionEnded(client.clientId, client.name, proxies);
  }

  /** The server's state for the stats endpoint. */
  snapshot(): ServerSnapshot {
    const nowMs = Date.now();
    const clients: ClientSnapshot[] = [...this.clients.values()].map((client) => ({
      name: client.name,
      client_id: client.clientId,
      session_id: client.sessionId,
      remote_addr: client.remoteAddr,
      transport: this.#listenerOf.get(client)?.spec.transport ?? "",
      connected_since_ms: client.connectedAtMs,
      rtt_ms: client.session.rttMs > 0 ? client.session.rttMs : null,
      streams: client.session.numStreams,
      proxies: [...client.proxies.values()].map((proxy) =>
        this.clientMemory.proxy(client.clientId, proxy.snapshot(), nowMs)
      ),
    }));
    return {
      role: "server",
      version: VERSION,
      started_at_ms: this.startedAtMs,
      listen_addr: this.#listeners[0] ? formatAddr(this.#listeners[0].addr) : "",
      listeners: this.#listeners.map((listener) => ({
        transport: listener.spec.transport,
        listen_addr: formatAddr(listener.addr),
        server_path: listener.spec.serverPath,
        behind_proxy: listener.spec.behindProxy,
        connections_total: listener.connectionsTotal,
        sessions_total: listener.sessionsTotal,
      })),
      clients,
      offline_clients: this.clientMemory.offlineClients(clients.map((client) => client.name)),
      sessions_total: this.sessionsTotal,
      auth_failures_total: this.authFailuresTotal,
      pending_connections: this.pendingConnections.pending,
      connections_refused: { ...this.pendingConnections.refused },
      stream_open_latency: this.streamOpenLatency.snapshot(),
      client_opened_streams: structuredClone(this.clientStreams.counts),
      forwards: this.forwards.counts(),
      forwards_active: this.forwards.activeTotal,
      ...(this.#tunnelRateLimit !== null && this.outsideRateLimit !== null
        ? {
          rate_limited: {
            tunnel_connections: this.#tunnelRateLimit.refusedTotal,
            outside_connections: this.outsideRateLimit.refusedTotal,
          },
        }
        : {}),
      recent_events: this.events.recent(),
      ...(this.vhost ? { vhost: this.vhost.snapshot() } : {}),
      groups: [...this.groups.snapshot(), ...(this.vhost?.groupsSnapshot() ?? [])],
    };
  }

  #reservedPortReason(addr: string, port: number, socket: PortSocket = "tcp"): string | null {
    // A quic listener holds a UDP port; every other transport a TCP one.
    const listeners = this.#listeners.length > 0
      ? this.#listeners.map((listener) => ({
        addr: listener.spec.bindAddr,
        port: listener.addr.port,
        transport: listener.spec.transport,
      }))
      : this.#config.listeners.map((listener) => ({
        addr: listener.bindAddr,
        port: listener.bindPort,
        transport: listener.transport,
      }));
    if (
      listeners.some((listener) =>
        (listener.transport === "quic" ? "udp" : "tcp") === socket &&
        bindingsOverlap(addr, port, listener.addr, listener.port)
      )
    ) {
      return `Port ${port} is this server's own tunnel port (bind_port); pick another publish_port`;
    }
    // The stats endpoint and the vhost ports are TCP.
    if (socket === "udp") return null;
    if (
      this.#config.statsPort !== undefined &&
      bindingsOverlap(addr, port, this.#config.statsAddr, this.#config.statsPort)
    ) {
      return `Port ${port} is this server's stats port (stats_port); pick another publish_port`;
    }
    const vhostKey = this.vhost?.holds(addr, port);
    if (vhostKey) return `Port ${port} is this server's shared ${vhostKey}; pick another publish_port`;
    return null;
  }

  /**
   * Finds another client publishing an overlapping binding (bound or being retried). With `verify`, a
   * holder that does not answer a liveness ping quickly is presumed dead and disconnected, freeing the
   * port; one that answers keeps it and its name is returned.
   */
  async #contestedHolder(
    client: ConnectedClient,
    addr: string,
    port: number,
    verify: boolean,
    socket: PortSocket = "tcp",
  ): Promise<string | null> {
    for (const other of [...this.clients.values()]) {
      if (other === client || other.closing) continue;
      const clash = [...other.proxies.values()].some((proxy) =>
        !proxy.stopped && socketOf(proxy.spec) === socket &&
        bindingsOverlap(proxy.spec.publish_addr, proxy.port, addr, port)
      );
      if (!clash) continue;
      if (!verify) return other.name;
      const alive = await withTimeout(other.session.ping(), CONTESTED_PORT_PING_TIMEOUT_MS, "a ping answer")
        .then(
          () => true,
          () => false,
        );
      if (alive) return other.name;
      logger.warn(
        "Client {other} holds port {port} but did not answer a ping within {ms} ms; disconnecting it",
        {
          other: other.name,
          port,
          ms: CONTESTED_PORT_PING_TIMEOUT_MS,
        },
      );
      await this.#forget(other, "did not answer a liveness ping while another client wanted its port");
    }
    return null;
  }

  /**
   * Applies a reloaded config (already validated) to the running server: new keys, `allow_ports` and
   * limits for the next authentications and registrations, the bind retry, and `certificate` (when given)
   * for the next TLS handshakes; connected clients are brought in line (`reload.ts`). Resolves with what
   * happened to them and the changed keys that need a restart (those keep their running values).
   */
  async applyConfig(
    next: ServerConfig,
    certificate?: { certPem: string; keyPem: string },
  ): Promise<ReconcileReport & { restartKeys: string[]; certificateKept: string[] }> {
    const previous = this.#config;
    const restartKeys = serverRestartKeys(previous, next);
    // The keys that need a restart keep their running values, so the rest of the server sees one config.
    const applied: ServerConfig = { ...next };
    for (const key of Object.keys(previous) as (keyof ServerConfig)[]) {
      if (restartKeys.includes(key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`))) {
        Object.assign(applied, { [key]: previous[key] });
      }
    }
    this.#config = applied;
    this.#authenticator.config = applied;
    this.#registrar.context.config = applied;
    this.pendingConnections.limits.maxPending = applied.maxPendingConnections;
    this.pendingConnections.limits.maxPendingPerIp = applied.maxPendingPerIp;
    /** Listeners that keep their certificate until a restart, with why. */
    const certificateKept: string[] = [];
    for (const entry of certificate ? this.#listeners : []) {
      // Behind a reverse proxy the listener speaks plain text: the proxy holds the certificate.
      if (entry.spec.behindProxy) continue;
      try {
        if (!entry.listener.replaceCertificate) {
          throw new Error("its transport cannot swap certificates live");
        }
        await entry.listener.replaceCertificate(certificate?.certPem ?? "", certificate?.keyPem ?? "");
      } catch (error) {
        certificateKept.push(`${entry.describe()}: ${errorMessage(error)}`);
      }
    }
    const report = await reconcileClients(
      {
        clients: this.clients,
        forget: (client, reason) => this.#forget(client, reason),
        events: this.events,
      },
      previous,
      applied,
    );
    return { ...report, restartKeys, certificateKept };
  }

  /** Removes a client from the registry, records the event and tears its session down. */
  async #forget(client: ConnectedClient, reason: string): Promise<void> {
    if (this.clients.get(client.clientId) === client) {
      this.clients.delete(client.clientId);
      this.#rememberEnded(client);
    }
    if (!client.closing) {
      this.events.add({
        level: "warning",
        code: "CLIENT_DISCONNECTED",
        message: `Client ${client.name} disconnected: ${reason}`,
        client: client.name,
        data: {
          client_id: client.clientId,
          remote_addr: client.remoteAddr,
          reason,
          ports: [...client.proxies.values()].flatMap((proxy) => proxy.boundPort ?? []),
        },
      });
    }
    this.#sticky.release(client.clientId, client.proxies.keys());
    await client.close(reason);
  }
}

/**
 * A disconnect reason fit for a log line and the dashboard: its first line, without the
 * documentation links some TLS errors carry (e.g. rustls' "UnexpectedEof … https://docs.rs/…").
 */
export function conciseReason(reason: string): string {
  const firstLine = reason.split("\n", 1)[0] ?? reason;
  return firstLine.replace(/\s*\(?(see )?https?:\/\/\S+\)?/g, "").replace(/[:;,]\s*$/, "").trim() ||
    "connection closed";
}

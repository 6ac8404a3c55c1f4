/**
 * One client, several servers (`[client] servers`): a {@linkcode TunnelClient} per server, each with its
 * own session, registration, backoff and reconnects, all run at once. Every server publishes every proxy,
 * so outside users may reach any of them (DNS round robin or an L4 balancer in front); losing one server
 * loses only the connections it carried. All sessions present the same client_id (one per config).
 *
 * A server that refuses the client for good (a wrong key, another copy running) stops only its own
 * session; the client gives up when every server has refused it.
 *
 * Visitors (`[[visitors]]`) are run here, not by one server's client: one local port each, bound while any
 * server might still carry it, and each connection goes through the first server that has the target
 * (visitor.ts orders them). Forwarders (`[[forwarders]]`) too: one local proxy each, and each forwarded
 * connection goes through the first server, in config order, that has a session now.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { ClientConfig, ServerEndpoint } from "../config/types.ts";
import type { OutboundProxy } from "../net/proxy_url.ts";
import { EventLog } from "../stats/event_log.ts";
import type { ClientRoleSnapshot, ClientServerSnapshot } from "../stats/snapshot.ts";
import { errorMessage } from "../text.ts";
import { type ClientProxyState, FatalClientError, TunnelClient } from "./client.ts";
import { mergeProxySnapshots } from "./multi_server_snapshot.ts";
import { defaultClientId } from "./registration.ts";
import type { ClientReloadResult } from "./reload.ts";
import { Visitor, VisitorBindError, type VisitRoute } from "./visitor.ts";
import { type Forwarder, startClientForwarders, TunnelDownError } from "./forwarder.ts";
import type { Stream } from "../mux/mod.ts";

const logger = getLogger(["tls-tunnel", "client"]);

/** Options of {@linkcode MultiServerClient}. */
export interface MultiServerClientOptions {
  /** Validated client config; `config.servers` lists the servers (one or more). */
  config: ClientConfig;
  /** Contents of every `ca_cert_path` the servers name, already read, by path. */
  caCertPems?: ReadonlyMap<string, string>;
  /** Ends the client. */
  signal?: AbortSignal;
  /** The outbound proxy towards one server (the environment's, unless `NO_PROXY` lists it); none when absent. */
  proxyFor?: (server: ServerEndpoint) => OutboundProxy | null;
  /** Called with one server's proxies after its registration and whenever one of their statuses changes. */
  onStatusChange?: (server: ServerEndpoint, proxies: ClientProxyState[]) => void;
}

/** One server's session and what became of it. */
interface ServerRun {
  readonly endpoint: ServerEndpoint;
  readonly client: TunnelClient;
  readonly stop: AbortController;
  /** Why the server refused the client for good, once it has. */
  refusal: FatalClientError | null;
}

/** A client keeping a session to each of several servers. */
export class MultiServerClient {
  /** Events of every server's session, in one log (their messages name the server). */
  readonly events = new EventLog();
  /** When the client was created (ms since epoch). */
  readonly startedAtMs = Date.now();
  readonly #options: MultiServerClientOptions;
  readonly #runs: ServerRun[];
  #config: ClientConfig;
  /** One client_id for every server, derived once from the whole config (as with one server). */
  readonly #clientId: Promise<string>;
  /** With several servers, the config's visitors, over every server's session (with one: that client's). */
  readonly #visitors: readonly Visitor[];
  /**
   * With several servers, the config's forwarders while running (one local port each), over the first
   * server in config order that has a session (with one server: that client's).
   */
  #forwarders: readonly Forwarder[] = [];

  /**
   * @throws {UnknownTransportError} when a server's `transport` names no registered transport
   * @throws {UnknownProxyKindError} when a proxy's `proxy_type` has no client side registered
   */
  constructor(options: MultiServerClientOptions) {
    this.#options = options;
    this.#config = options.config;
    this.#clientId = Promise.resolve(options.config.clientId ?? defaultClientId(options.config));
    this.#runs = options.config.servers.map((endpoint) => this.#serverRun(endpoint, options.config));
    this.#visitors = this.#runs.length > 1
      ? (options.config.visitors ?? []).map((visitor) => new Visitor(visitor, () => this.#visitRoutes()))
      : [];
  }

  /** Every server's session for the visitors, in config order (none for a server that refused the client). */
  #visitRoutes(): VisitRoute[] {
    return this.#runs.map((run) => ({
      server: run.endpoint.name,
      session: run.refusal === null ? run.client.visitSession : null,
    }));
  }

  /**
   * A stream for a forwarded connection: on the first server, in config order, with a session now (a
   * server that is down or refused the client is passed over), or {@linkcode TunnelDownError}.
   */
  #forwardStream(): Promise<Stream> {
    for (const run of this.#runs) {
      const session = run.refusal === null ? run.client.visitSession : null;
      if (session !== null && !session.isClosed) return session.open();
    }
    return Promise.reject(new TunnelDownError("no session with any of the servers now"));
  }

  /** The per-server clients, in the order of `config.servers`. */
  get clients(): readonly { endpoint: ServerEndpoint; client: TunnelClient }[] {
    return this.#runs.map(({ endpoint, client }) => ({ endpoint, client }));
  }

  /** Sessions established with all servers since start. */
  get sessionsEstablished(): number {
    return this.#runs.reduce((sum, run) => sum + run.client.sessionsEstablished, 0);
  }

  /**
   * Runs a session to every server until the signal aborts (resolves) or every server has refused the
   * client for good (rejects with the first {@linkcode FatalClientError}).
   */
  async run(): Promise<void> {
    if (this.#runs.length > 1) {
      logger.info("Keeping a session to each of {count} servers: {servers}", {
        count: this.#runs.length,
        servers: this.#runs.map((run) => run.endpoint.name).join(", "),
      });
    }
    // Bound before the first session and kept until every server's run is over.
    try {
      for (const visitor of this.#visitors) visitor.listen();
    } catch (error) {
      await Promise.all(this.#visitors.map((visitor) => visitor.close()));
      if (!(error instanceof VisitorBindError)) throw error;
      throw new FatalClientError(error.message, 0, { cause: error });
    }
    try {
      const forwarders = this.#runs.length > 1 ? this.#config.forwarders ?? [] : [];
      if (forwarders.length > 0) {
        this.#forwarders = await startClientForwarders(
          forwarders,
          () => this.#forwardStream(),
          this.#options.signal,
        );
      }
      await Promise.all(this.#runs.map((run) => this.#runOne(run)));
    } finally {
      await Promise.all(this.#visitors.map((visitor) => visitor.close()));
      await Promise.all(this.#forwarders.map((forwarder) => forwarder.close()));
    }
    const refusals = this.#runs.map((run) => run.refusal);
    const first = refusals[0];
    if (first && refusals.every((refusal) => refusal !== null)) throw first;
  }

  async #runOne(run: ServerRun): Promise<void> {
    try {
      await run.client.run();
    } catch (error) {
      if (!(error instanceof FatalClientError)) throw error;
      run.refusal = error;
      if (this.#runs.length > 1) {
        logger.error("Server {server} refused this client for good; the other servers carry on: {error}", {
          server: run.endpoint.name,
          error: errorMessage(error),
        });
      }
    }
  }

  #serverRun(endpoint: ServerEndpoint, config: ClientConfig): ServerRun {
    const stop = new AbortController();
    const parent = this.#options.signal;
    if (parent?.aborted) stop.abort();
    else parent?.addEventListener("abort", () => stop.abort(), { once: true });
    const caCertPem = endpoint.caCertPath !== undefined
      ? this.#options.caCertPems?.get(endpoint.caCertPath)
      : undefined;
    const client = new TunnelClient({
      config: configFor(config, endpoint),
      ...(caCertPem !== undefined ? { caCertPem } : {}),
      proxy: this.#options.proxyFor?.(endpoint) ?? null,
      signal: stop.signal,
      transport: endpoint.transport,
      events: this.events,
      clientId: this.#clientId,
      onStatusChange: (proxies) => this.#options.onStatusChange?.(endpoint, proxies),
      // With several servers the visitors are this object's (one local port each, every server's session).
      runVisitors: config.servers.length === 1,
      // With several servers the forwarders are this object's (one local port each, any server's session).
      runForwarders: config.servers.length === 1,
    });
    return { endpoint, client, stop, refusal: null };
  }

  /**
   * Applies a reloaded config to every server's session: each server's client's own `applyConfig`
   * (added proxies registered, removed ones unregistered, the others untouched). The server list is read
   * at start: a changed list is reported in `restartKeys` (`servers`) and the running list stays.
   */
  async applyConfig(newConfig: ClientConfig): Promise<ClientReloadResult> {
    const results = await Promise.all(this.#runs.map((run, index) => {
      // A server entry that changed shows up in its client's restartKeys (server_addr, …).
      const endpoint = newConfig.servers[index] ?? run.endpoint;
      return run.client.applyConfig(configFor(newConfig, endpoint));
    }));
    const restartKeys = new Set(results.flatMap((result) => result.restartKeys));
    if (newConfig.servers.length !== this.#runs.length) restartKeys.add("servers");
    this.#config = { ...newConfig, servers: this.#config.servers };
    const first = results[0];
    return {
      added: first?.added ?? [],
      removed: first?.removed ?? [],
      changed: first?.changed ?? [],
      unchanged: first?.unchanged ?? [],
      restartKeys: [...restartKeys].sort(),
      registrations: results.flatMap((result) => result.registrations),
      unregistrations: results.flatMap((result) => result.unregistrations),
      offline: results.every((result) => result.offline),
    };
  }

  /**
   * The client's state for the stats endpoint: with one server, that server's client's own snapshot; with
   * several, the proxies merged over the servers (counters summed, healthy when any server publishes it),
   * the state the best of theirs, and each server's own state and proxies under `servers`.
   */
  snapshot(): ClientRoleSnapshot {
    const parts = this.#runs.map((run) => ({ run, snapshot: run.client.snapshot() }));
    const only = parts[0];
    if (parts.length === 1 && only) return only.snapshot;
    const servers: ClientServerSnapshot[] = parts.map(({ run, snapshot }) => ({
      name: run.endpoint.name,
      server_addr: snapshot.server_addr,
      state: run.refusal !== null ? "refused" : snapshot.state,
      ...(run.refusal !== null ? { last_error: run.refusal.message } : {}),
      next_attempt_at_ms: snapshot.next_attempt_at_ms,
      sessions_total: snapshot.sessions_total,
      connect_failures_total: snapshot.connect_failures_total ?? 0,
      rtt_ms: snapshot.rtt_ms,
      session_id: run.client.state === "connected" ? run.client.server?.session_id ?? null : null,
      proxies: snapshot.proxies,
    }));
    const states = servers.map((server) => server.state);
    const waits = servers.flatMap((server) => server.next_attempt_at_ms ?? []);
    const rtts = servers.flatMap((server) => server.rtt_ms ?? []);
    return {
      role: "client",
      version: only?.snapshot.version ?? "",
      started_at_ms: this.startedAtMs,
      server_addr: servers.map((server) => server.server_addr).join(", "),
      state: ["connected", "connecting", "waiting"].find((state) => states.includes(state)) ?? "stopped",
      next_attempt_at_ms: waits.length > 0 ? Math.min(...waits) : null,
      sessions_total: servers.reduce((sum, server) => sum + server.sessions_total, 0),
      connect_failures_total: servers.reduce((sum, server) => sum + server.connect_failures_total, 0),
      rtt_ms: rtts.length > 0 ? Math.min(...rtts) : null,
      proxies: mergeProxySnapshots(servers.map((server) => server.proxies)),
      recent_events: this.events.recent(),
      servers,
      ...(this.#forwarders.length > 0
        ? { forwarders: this.#forwarders.map((forwarder) => forwarder.snapshot()) }
        : {}),
      ...(this.#visitors.length > 0 ? { visitors: this.#visitors.map((visitor) => visitor.snapshot()) } : {}),
    };
  }

  /** Measures the round trip to every connected server, by server name (null when not connected). */
  async ping(): Promise<Map<string, number | null>> {
    const rtts = await Promise.all(this.#runs.map((run) => run.client.ping().catch(() => null)));
    return new Map(this.#runs.map((run, index) => [run.endpoint.name, rtts[index] ?? null]));
  }
}

/** The config of one server's session: the client's, with that server's connection keys. */
export function configFor(config: ClientConfig, endpoint: ServerEndpoint): ClientConfig {
  const { caCertPath: _ca, serverFingerprint: _pin, ...rest } = config;
  return {
    ...rest,
    serverAddr: endpoint.serverAddr,
    serverPort: endpoint.serverPort,
    serverName: endpoint.serverName,
    ...(endpoint.caCertPath !== undefined ? { caCertPath: endpoint.caCertPath } : {}),
    ...(endpoint.serverFingerprint !== undefined ? { serverFingerprint: endpoint.serverFingerprint } : {}),
    transport: endpoint.transport,
    serverPath: endpoint.serverPath,
    servers: [endpoint],
  };
}

/**
 * A proxy the server publishes for a client: the listener on the published port, and for each outside
 * connection a stream to the client that starts with a header naming the proxy and the peer. What differs
 * by proxy kind (how the port is bound and what it yields, the header) is the kind's (`proxy_kinds/`);
 * the accept loop, refusal, stats, the copy loop and stopping are this file's, the same for every kind.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { ProxySpec } from "../protocol/control.ts";
import type { DuplexConn } from "../net/conn.ts";
import { abortQuietly, closeQuietly, pipeBoth } from "../transport/pipe.ts";
import { ProxyStats } from "../stats/proxy_stats.ts";
import { acceptEach } from "../net/accept.ts";
import { formatAddr } from "../net/address.ts";
import type { Histogram } from "../stats/histogram.ts";
import type { ProxySnapshot } from "../stats/snapshot.ts";
import { ConnectFailures } from "./connect_failures.ts";
import {
  type DatagramHost,
  isDatagramPublication,
  type OutsideConn,
  type Publication,
  type PublishedListener,
  type ServerProxyKind,
} from "./proxy_kinds/kind.ts";
import { DatagramStats } from "../stats/datagram_stats.ts";
import { serverProxyKindFor } from "./proxy_kinds/registry.ts";

const logger = getLogger(["tls-tunnel", "server", "proxy"]);

/**
 * Opens a stream to the client that owns the proxy, with `firstBytes` (the stream header) written in the
 * same connection write as the stream's SYN.
 */
export type OpenClientStream = (firstBytes: Uint8Array) => Promise<DuplexConn & { reset?(): void }>;

/**
 * A published port: accepts outside connections and carries each over its own stream to the client.
 * Created before its port is bound (a bind may be retried for minutes); {@linkcode attach} hands it
 * the listener.
 */
export class PublishedProxy {
  /** Live counters. */
  readonly stats = new ProxyStats();
  /** What the client reported about reaching its local service for this proxy's streams. */
  readonly connectFailures = new ConnectFailures();
  /** Outside connections being carried now, reset when the proxy stops. */
  readonly #connections = new Set<OutsideConn>();
  #acceptLoop: Promise<void> | null = null;
  #listener: Publication | null = null;
  #stopped = false;
  /** False once {@linkcode stopListening} (or {@linkcode stop}) closed the listener. */
  #listening = true;
  #nextConnId = 1;
  /** Outside connections closed at once because `max_connections` were being carried. */
  overLimitConnections = 0;

  constructor(
    /** The proxy as the client registered it. */
    readonly spec: ProxySpec,
    /** Name of the owning client, for logs. */
    readonly clientName: string,
    readonly openStream: OpenClientStream,
    /** Where stream open latency is recorded. */
    readonly openLatency?: Histogram,
    /** What the proxy's kind does (bind, stream header); by default the one `spec.proxy_type` names. */
    readonly kind: ServerProxyKind = serverProxyKindFor(spec.proxy_type),
  ) {}

  /**
   * One attempt to bind the proxy's publication on `port` (of its `publish_addr`), by its kind; the
   * registrar plans the ports, retries, and hands the result to {@linkcode attach}.
   *
   * @throws {BindError} classified
   */
  bind(port: number): Publication {
    return this.kind.bind(this.spec.publish_addr, port);
  }

  /** The port bound, or null while the bind is pending or retrying. */
  get boundPort(): number | null {
    return this.#listener?.addr.port ?? null;
  }

  /** The port this proxy holds or is trying to get: the bound one, else the one asked for. */
  get port(): number {
    return this.boundPort ?? this.spec.publish_port;
  }

  /** Whether {@linkcode stop} was called. */
  get stopped(): boolean {
    return this.#stopped;
  }

  /**
   * Takes ownership of the bound listener and starts accepting outside connections. Returns false, with
   * the listener closed, when the proxy is stopped or already has one: a listener always has one owner.
   */
  attach(listener: Publication): boolean {
    if (this.#stopped || !this.#listening || this.#listener) {
      closeQuietly(listener);
      return false;
    }
    this.#listener = listener;
    this.stats.setStatus("healthy");
    this.#acceptLoop = isDatagramPublication(listener)
      ? listener.serve(this.#datagramHost()).catch((error) =>
        logger.error("Datagrams of {proxy} stopped: {error}", { proxy: this.spec.name, error: String(error) })
      )
      : this.#accept(listener);
    return true;
  }

  /** What a datagram publication (a `udp` proxy) is handed: this proxy's counters and flow streams. */
  #datagramHost(): DatagramHost {
    this.stats.datagrams ??= new DatagramStats();
    const datagrams = this.stats.datagrams;
    return {
      spec: this.spec,
      stats: this.stats,
      datagrams,
      refusing: () => this.refuseConnections,
      openFlow: async (peer) => {
        const connId = this.#nextConnId++;
        const openStartedMs = performance.now();
        const stream = await this.openStream(this.kind.streamHeader(this.spec, peer, connId));
        this.openLatency?.observe((performance.now() - openStartedMs) / 1000);
        this.connectFailures.streamOpened(connId);
        return stream;
      },
    };
  }

  /** Whether outside connections are refused (the client reported its local service down). */
  refuseConnections = false;

  /**
   * `[server.rate_limit]`'s admission of one new outside connection, shared by all of the owning client's
   * proxies (set by {@linkcode ConnectedClient.claim}); null: no rate limit.
   */
  admitOutside: (() => boolean) | null = null;

  #accept(listener: PublishedListener): Promise<void> {
    return acceptEach(listener, (conn) => this.#carry(conn), {
      stopped: () => this.#stopped || !this.#listening,
      // Transient accept failures (e.g. too many open files) must not kill the proxy.
      onError: (error) =>
        logger.warn("Accept on {proxy} failed: {error}", { proxy: this.spec.name, error: String(error) }),
    });
  }

  /**
   * Carries a visitor's connection (a stream another client opened, README.md §5b) like an outside
   * connection: stream header, counters, reset when the proxy stops. Resolves when it is over; never rejects.
   */
  carryVisit(conn: OutsideConn): Promise<void> {
    if (this.#stopped) {
      abortQuietly(conn);
      return Promise.resolve();
    }
    return this.#carry(conn).catch((error) => {
      logger.debug("Visit on {proxy} failed: {error}", { proxy: this.spec.name, error: String(error) });
      abortQuietly(conn);
    });
  }

  async #carry(conn: OutsideConn): Promise<void> {
    const connId = this.#nextConnId++;
    const peer = formatAddr(conn.remoteAddr);
    if (this.refuseConnections) {
      this.stats.failedConnections++;
      logger.debug("Refused {peer} on {proxy}: local service reported down", { peer, proxy: this.spec.name });
      // A reset, like a refused connection: a FIN would read as an empty answer.
      abortQuietly(conn);
      return;
    }
    if (this.admitOutside !== null && !this.admitOutside()) {
      // Counted and logged (once per interval) by the limiter; a reset, like a refused connection.
      this.stats.failedConnections++;
      abortQuietly(conn);
      return;
    }
    if (this.#overLimit()) {
      logger.debug("Refused {peer} on {proxy}: max_connections ({max}) reached", {
        peer,
        proxy: this.spec.name,
        max: this.spec.max_connections,
      });
      abortQuietly(conn);
      return;
    }
    this.#connections.add(conn);
    this.stats.activeConnections++;
    this.stats.totalConnections++;
    try {
      let stream: DuplexConn;
      try {
        stream = await this.#openHeaderedStream(peer, connId);
      } catch (error) {
        logger.debug("Cannot open a stream for {peer} on {proxy}: {error}", {
          peer,
          proxy: this.spec.name,
          error: String(error),
        });
        abortQuietly(conn);
        return;
      }
      // Outside → client counts as bytes in, client → outside as bytes out.
      const result = await pipeBoth(conn, stream, { counters: this.stats });
      logger.debug("Connection {connId} from {peer} on {proxy} closed: {in} bytes in, {out} bytes out", {
        connId,
        peer,
        proxy: this.spec.name,
        in: result.aToBBytes,
        out: result.bToABytes,
      });
    } finally {
      this.#connections.delete(conn);
      this.stats.activeConnections--;
    }
  }

  /**
   * Opens a stream to the client for connection `connId` from `peer` and writes its stream header; when
   * either fails, closes the stream, counts a failed connection and rethrows.
   */
  async #openHeaderedStream(peer: string, connId: number): Promise<DuplexConn & { reset?(): void }> {
    let stream: (DuplexConn & { reset?(): void }) | null = null;
    try {
      const openStartedMs = performance.now();
      stream = await this.openStream(this.kind.streamHeader(this.spec, peer, connId));
      this.openLatency?.observe((performance.now() - openStartedMs) / 1000);
      this.connectFailures.streamOpened(connId);
      return stream;
    } catch (error) {
      if (stream) closeQuietly(stream);
      this.stats.failedConnections++;
      throw error;
    }
  }

  /**
   * Opens a stream to the client for an exchange a shared vhost port routed to this proxy (an `http`
   * proxy's requests, `lib/server/vhost/`), its stream header written, and counts it as a connection
   * (active until `done` is called, once). Rejects, counted as failed, when the stream cannot be opened.
   */
  async openRoutedStream(
    peer: string,
  ): Promise<{ stream: DuplexConn & { reset?(): void }; done: () => void }> {
    if (this.#overLimit()) {
      throw new Error(
        `proxy '${this.spec.name}' carries max_connections (${this.spec.max_connections}) already`,
      );
    }
    const stream = await this.#openHeaderedStream(peer, this.#nextConnId++);
    this.stats.activeConnections++;
    this.stats.totalConnections++;
    let counted = true;
    return {
      stream,
      done: () => {
        if (counted) this.stats.activeConnections--;
        counted = false;
      },
    };
  }

  /**
   * Whether a new outside connection is over `max_connections` (counted as failed and over the limit
   * when it is): closed at once, never queued.
   */
  #overLimit(): boolean {
    const max = this.spec.max_connections;
    if (max === undefined || this.stats.activeConnections < max) return false;
    this.stats.failedConnections++;
    this.overLimitConnections++;
    return true;
  }

  /** The proxy's state for the stats endpoint. */
  snapshot(): ProxySnapshot {
    const stats = this.stats;
    return {
      name: this.spec.name,
      publish_addr: this.spec.publish_addr,
      publish_port: this.port,
      local_addr: this.spec.local_addr,
      local_port: this.spec.local_port,
      ...stats.toSnapshotFields(),
      ...(this.spec.group !== undefined ? { group: this.spec.group } : {}),
      ...(this.spec.max_connections !== undefined
        ? { max_connections: this.spec.max_connections, over_limit_connections: this.overLimitConnections }
        : {}),
    };
  }

  /** Outside connections being carried now. */
  get openConnections(): number {
    return this.#connections.size;
  }

  /**
   * Stops listening; connections being carried go on (a client that leaves lets them finish). Resolves
   * when the accept loop has ended: only then is the port free (Deno keeps a listener's socket until its
   * pending accept is over).
   */
  async stopListening(): Promise<void> {
    this.#listening = false;
    if (this.#listener) closeQuietly(this.#listener);
    await this.#acceptLoop;
  }

  /**
   * Stops listening, releasing the port at once, and resets every outside connection still carried (its
   * transfer is cut: a FIN would tell the peer it got everything). Resolves when the accept loop has
   * ended.
   */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.stats.setStatus("closed");
    this.#listening = false;
    if (this.#listener) closeQuietly(this.#listener);
    for (const conn of this.#connections) abortQuietly(conn);
    await this.#acceptLoop;
  }
}

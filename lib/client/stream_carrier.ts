/**
 * The client's stream carrier: answers every data stream the server opens. It reads the stream header,
 * picks a local backend of the proxy it names (load balancing, retries over `local_connect_retries`),
 * has the proxy's kind carry the bytes, and tells the server, with `proxy_connect_result`, which streams
 * could not reach the local service. A bad stream costs that stream, never the session.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { ClientConfig, ProxyConfig } from "../config/types.ts";
import type { RpcPeer } from "../rpc/mod.ts";
import { MAX_CONNECT_ERROR_CHARS, Method, type ProxyConnectResultParams } from "../protocol/control.ts";
import { readStreamHeader } from "../protocol/stream_header.ts";
import { closeQuietly } from "../transport/pipe.ts";
import type { BackendSnapshot } from "../stats/snapshot.ts";
import { withTimeout } from "../_async.ts";
import type { AnyClientProxyKind, CarriedStream, LocalEndpoint } from "./proxy_kinds/kind.ts";
import { clientProxyKindFor } from "./proxy_kinds/registry.ts";
import { DatagramStats } from "../stats/datagram_stats.ts";
import { type Backend, BackendPool, formatBackend } from "./load_balancer.ts";
import type { ClientProxyState } from "./state.ts";
import { errorMessage } from "../text.ts";
import { type DuplexConn, writeAll } from "../net/conn.ts";
import { isIpAddress } from "../net/address.ts";
import { encodeProxyHeader, parseHostPort } from "../protocol/proxy_protocol_header.ts";
import { limitConn, TokenBucket } from "../transport/bandwidth.ts";

const logger = getLogger(["tls-tunnel", "client"]);

/** How long a new data stream has to deliver its header. */
const STREAM_HEADER_TIMEOUT_MS = 10_000;

/** The local services of a proxy: its `local_backends`, or its one `local_addr:local_port`. */
export function localBackendsOf(proxy: ProxyConfig): Backend[] {
  return proxy.localBackends && proxy.localBackends.length > 0
    ? proxy.localBackends.map((backend) => ({ ...backend }))
    : [{ host: proxy.localAddr, port: proxy.localPort }];
}

/** Carries the server's data streams to the proxies' local services. */
export class StreamCarrier {
  /** Each proxy's local backends by proxy name; one backend for a plain local_addr/local_port proxy. */
  readonly #pools = new Map<string, BackendPool>();
  /** Each proxy's kind (how a carried stream reaches its local service) by proxy name. */
  readonly #kinds = new Map<string, AnyClientProxyKind>();
  /** Per proxy with `bandwidth_limit`: the bucket all its connections spend from (both directions). */
  readonly #buckets = new Map<string, TokenBucket>();
  /** Per proxy: data streams in a row that could not reach the local service in this session. */
  readonly #failuresInARow = new Map<string, number>();
  /** The current session's control channel, for reports about data streams; null between sessions. */
  #rpc: RpcPeer | null = null;

  /**
   * @param proxies the client's proxies by name (the carrier counts into their stats)
   * @param config the client's config (`local_connect_retries`, `local_retry_delay_ms`); a reload
   *   replaces it
   * @param signal ends connection attempts in progress
   * @throws {UnknownProxyKindError} when a proxy's `proxy_type` has no client side registered
   */
  constructor(
    readonly proxies: ReadonlyMap<string, ClientProxyState>,
    public config: ClientConfig,
    readonly signal?: AbortSignal,
  ) {
    for (const proxy of config.proxies) this.addProxy(proxy);
  }

  /**
   * Carries the streams of `proxy` from now on (a reload added or changed it), with fresh backend counters.
   *
   * @throws {UnknownProxyKindError} when its `proxy_type` has no client side registered
   */
  addProxy(proxy: ProxyConfig): void {
    const kind = clientProxyKindFor(proxy.proxyType);
    this.#pools.set(proxy.name, new BackendPool(localBackendsOf(proxy), { policy: proxy.lbPolicy }));
    this.#kinds.set(proxy.name, kind);
    this.#failuresInARow.delete(proxy.name);
    if (proxy.bandwidthLimit !== undefined) {
      this.#buckets.set(proxy.name, new TokenBucket(proxy.bandwidthLimit));
    } else this.#buckets.delete(proxy.name);
    // A udp proxy shows its flow counters from the start, not from its first flow.
    const state = this.proxies.get(proxy.name);
    if (proxy.proxyType === "udp" && state) state.stats.datagrams ??= new DatagramStats();
  }

  /** Forgets the proxy `name` (a reload removed it); streams being carried for it go on to their end. */
  removeProxy(name: string): void {
    this.#pools.delete(name);
    this.#kinds.delete(name);
    this.#buckets.delete(name);
    this.#failuresInARow.delete(name);
  }

  /** The backend pool of the proxy `name` (its per-backend counters), or undefined for an unknown name. */
  pool(name: string): BackendPool | undefined {
    return this.#pools.get(name);
  }

  /** A new session's control channel (null once it ended): failures in a row count from 0 again. */
  attach(rpc: RpcPeer | null): void {
    this.#rpc = rpc;
    this.#failuresInARow.clear();
  }

  /** Carries one stream the server opened until both directions end; never throws. */
  async carry(stream: CarriedStream): Promise<void> {
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
    const kind = this.#kinds.get(config.name);
    if (!pool || !kind) {
      stream.reset();
      return;
    }
    stats.totalConnections++;
    stats.activeConnections++;
    let release = () => {};
    try {
      let local: LocalEndpoint;
      let backend: Backend;
      try {
        // local_connect_retries counts rounds over the backends; a single backend is retried as before.
        const pooled = await pool.connect(header.peer_addr, kind.dial, {
          attempts: this.config.localConnectRetries,
          retryDelayMs: this.config.localRetryDelayMs,
          ...(this.signal ? { signal: this.signal } : {}),
        });
        local = pooled.conn;
        backend = pooled.backend;
        release = pooled.release;
      } catch (error) {
        stats.failedConnections++;
        stats.lastError = errorMessage(error);
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
      if (isDuplex(local)) {
        if (config.proxyProtocol !== undefined) {
          try {
            await this.#sendProxyHeader(local, proxy, header.peer_addr);
          } catch (error) {
            logger.debug("Proxy {proxy}: PROXY header to the local service failed: {error}", {
              proxy: config.name,
              error: errorMessage(error),
            });
            local.close();
            stream.reset();
            return;
          }
        }
        const bucket = this.#buckets.get(config.name);
        // Unlimited proxies keep the bare connection: no per-chunk cost.
        if (bucket) local = limitConn(local, bucket);
      }
      await kind.carry(stream, local, header, stats, config);
    } finally {
      release();
      stats.activeConnections--;
      closeQuietly(stream);
    }
  }

  /**
   * Writes the PROXY protocol header (`proxy_protocol`) to the local service before any byte of the
   * peer's: source = the stream header's `peer_addr`; destination = the published address and port as
   * the server answered (a wildcard publish_addr is written as is: the client cannot know which of the
   * server's addresses the peer reached). An unparsable peer gives `UNKNOWN` (v1) / `LOCAL` (v2).
   */
  async #sendProxyHeader(local: DuplexConn, proxy: ClientProxyState, peerAddr: string): Promise<void> {
    const version = proxy.config.proxyProtocol;
    if (version === undefined) return;
    const answer = proxy.registration?.status === "accepted" ? proxy.registration : null;
    const publishAddr = answer?.publish_addr ?? proxy.config.publishAddr ?? "0.0.0.0";
    const destination = {
      host: isIpAddress(publishAddr) ? publishAddr : "0.0.0.0",
      port: answer?.publish_port ?? proxy.config.publishPort,
    };
    const source = parseHostPort(peerAddr) ?? { host: "unknown", port: 0 };
    await writeAll(local, encodeProxyHeader(version, { source, destination }));
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
    const report: ProxyConnectResultParams = {
      proxy_name: proxyName,
      conn_id: connId,
      ok: error === null,
      error: error === null ? null : error.slice(0, MAX_CONNECT_ERROR_CHARS),
      consecutive_failures: consecutive,
    };
    this.#rpc?.notify(Method.proxyConnectResult, report).catch(() => {});
  }

  /** Per-backend counters of a proxy with several local backends, for its snapshot. */
  backendsSnapshot(name: string): { backends?: BackendSnapshot[] } {
    const backends = this.#pools.get(name)?.stats() ?? [];
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
}

/** Whether a kind's local endpoint is a connection (not a udp flow socket). */
function isDuplex(local: LocalEndpoint): local is LocalEndpoint & DuplexConn & { reset?(): void } {
  const candidate = local as Partial<DuplexConn>;
  return typeof candidate.read === "function" && typeof candidate.write === "function" &&
    typeof candidate.closeWrite === "function";
}

/**
 * What the server's stats remember about clients beyond their sessions, so that the dashboard tells a
 * story rather than a moment:
 *
 * - **Counters survive a reconnect.** A client that reconnects (a network change, a restart, a session
 *   replaced by a new one with the same `client_id`) gets new proxies with new counters; the counters of
 *   its ended sessions are added to the new ones, keyed by client id and proxy name, so totals and
 *   Prometheus counters keep growing instead of dropping to zero. The last ended session's counters are
 *   kept as the live object (its connections in flight may still be moving bytes), older ones as numbers.
 * - **Throughput history.** Per client id and proxy, the bytes of the last hour in 60 buckets of one
 *   minute ({@linkcode ThroughputRing}), for the dashboard's sparklines.
 * - **Offline clients.** Every `[[server.clients]]` entry without a session is listed with when its
 *   last session ended (null: not since the server started).
 *
 * Memory is bounded: at most {@linkcode MAX_REMEMBERED_PROXIES} client-id/proxy keys (client ids come
 * from peers with the shared key); beyond that the longest-unused keys are forgotten.
 *
 * @module
 */

import type { ProxyStats } from "./proxy_stats.ts";
import type { OfflineClientSnapshot, ProxySnapshot, ThroughputSnapshot } from "./snapshot.ts";

/** Client-id/proxy keys remembered at most (counters and history). */
export const MAX_REMEMBERED_PROXIES = 1024;
/** Width of one throughput bucket. */
export const THROUGHPUT_BUCKET_MS = 60_000;
/** Buckets kept: one hour. */
export const THROUGHPUT_BUCKETS = 60;

/**
 * Bytes in and out per fixed time bucket, for the last {@linkcode THROUGHPUT_BUCKETS} buckets, from a
 * proxy's monotonic byte counters. It is fed by {@linkcode observe} whenever a snapshot is taken (the
 * dashboard's event stream takes one every few seconds), not on the data path; bytes that arrived
 * between two observations further apart than a bucket are spread evenly over the time between them.
 */
export class ThroughputRing {
  readonly #in = new Array<number>(THROUGHPUT_BUCKETS).fill(0);
  readonly #out = new Array<number>(THROUGHPUT_BUCKETS).fill(0);
  /** Index of the newest bucket's start (ms since epoch / bucket width); null before the first observation. */
  #newest: number | null = null;
  #lastMs = 0;
  #lastIn = 0;
  #lastOut = 0;

  /** Records the counters' values at `nowMs`. Counters that went down (a reset) start a new baseline. */
  observe(bytesIn: number, bytesOut: number, nowMs: number): void {
    const bucket = Math.floor(nowMs / THROUGHPUT_BUCKET_MS);
    if (this.#newest === null) {
      this.#newest = bucket;
      [this.#lastMs, this.#lastIn, this.#lastOut] = [nowMs, bytesIn, bytesOut];
      return;
    }
    if (nowMs < this.#lastMs) return; // The clock went back: wait for it.
    const deltaIn = bytesIn - this.#lastIn;
    const deltaOut = bytesOut - this.#lastOut;
    this.#advanceTo(bucket);
    if (deltaIn >= 0 && deltaOut >= 0) this.#spread(deltaIn, deltaOut, this.#lastMs, nowMs);
    [this.#lastMs, this.#lastIn, this.#lastOut] = [nowMs, bytesIn, bytesOut];
  }

  /** The buckets, oldest first; the last one is the current (partial) bucket. */
  snapshot(): ThroughputSnapshot {
    const newest = this.#newest ?? 0;
    const order = (values: number[]) =>
      Array.from({ length: THROUGHPUT_BUCKETS }, (_, age) => {
        const index = newest - (THROUGHPUT_BUCKETS - 1) + age;
        return values[((index % THROUGHPUT_BUCKETS) + THROUGHPUT_BUCKETS) % THROUGHPUT_BUCKETS] ?? 0;
      });
    return {
      bucket_secs: THROUGHPUT_BUCKET_MS / 1000,
      end_ms: (newest + 1) * THROUGHPUT_BUCKET_MS,
      bytes_in: order(this.#in),
      bytes_out: order(this.#out),
    };
  }

  /** Moves the newest bucket to `bucket`, zeroing the buckets that come round again. */
  #advanceTo(bucket: number): void {
    const newest = this.#newest ?? bucket;
    const steps = Math.min(THROUGHPUT_BUCKETS, bucket - newest);
    for (let step = 1; step <= steps; step++) {
      const index = (newest + step) % THROUGHPUT_BUCKETS;
      this.#in[index] = 0;
      this.#out[index] = 0;
    }
    if (bucket > newest) this.#newest = bucket;
  }

  /** Adds the bytes of `[fromMs, toMs]` to the buckets that interval covers, in proportion to time. */
  #spread(bytesIn: number, bytesOut: number, fromMs: number, toMs: number): void {
    const newest = this.#newest ?? 0;
    const oldestKept = (newest - THROUGHPUT_BUCKETS + 1) * THROUGHPUT_BUCKET_MS;
    const spanMs = toMs - fromMs;
    if (spanMs <= 0) {
      this.#add(newest, bytesIn, bytesOut);
      return;
    }
    for (let bucket = Math.floor(fromMs / THROUGHPUT_BUCKET_MS); bucket <= newest; bucket++) {
      const start = Math.max(fromMs, bucket * THROUGHPUT_BUCKET_MS, oldestKept);
      const end = Math.min(toMs, (bucket + 1) * THROUGHPUT_BUCKET_MS);
      if (end <= start) continue;
      const share = (end - start) / spanMs;
      this.#add(bucket, bytesIn * share, bytesOut * share);
    }
  }

  #add(bucket: number, bytesIn: number, bytesOut: number): void {
    const index = ((bucket % THROUGHPUT_BUCKETS) + THROUGHPUT_BUCKETS) % THROUGHPUT_BUCKETS;
    this.#in[index] = (this.#in[index] ?? 0) + bytesIn;
    this.#out[index] = (this.#out[index] ?? 0) + bytesOut;
  }
}

/**
 * Per-proxy throughput rings by proxy name, for the client: its proxies come from its config and keep
 * their counters for the life of the process, so only the history is added. At most
 * {@linkcode MAX_REMEMBERED_PROXIES} names.
 */
export class ThroughputHistory {
  readonly #rings = new Map<string, ThroughputRing>();

  /** `proxy` with its last hour of throughput, fed with its counters at `nowMs`. */
  serve(proxy: ProxySnapshot, nowMs: number = Date.now()): ProxySnapshot {
    let ring = this.#rings.get(proxy.name);
    if (ring === undefined) {
      if (this.#rings.size >= MAX_REMEMBERED_PROXIES) return proxy;
      ring = new ThroughputRing();
      this.#rings.set(proxy.name, ring);
    }
    ring.observe(proxy.bytes_in, proxy.bytes_out, nowMs);
    return { ...proxy, throughput: ring.snapshot() };
  }
}

/** The counters that carry over, as numbers. */
interface Carried {
  totalConnections: number;
  failedConnections: number;
  bindRetries: number;
  bytesIn: number;
  bytesOut: number;
}

function numbersOf(stats: Carried): Carried {
  return {
    totalConnections: stats.totalConnections,
    failedConnections: stats.failedConnections,
    bindRetries: stats.bindRetries,
    bytesIn: stats.bytesIn,
    bytesOut: stats.bytesOut,
  };
}

function sum(a: Carried, b: Carried): Carried {
  return {
    totalConnections: a.totalConnections + b.totalConnections,
    failedConnections: a.failedConnections + b.failedConnections,
    bindRetries: a.bindRetries + b.bindRetries,
    bytesIn: a.bytesIn + b.bytesIn,
    bytesOut: a.bytesOut + b.bytesOut,
  };
}

const ZERO: Carried = { totalConnections: 0, failedConnections: 0, bindRetries: 0, bytesIn: 0, bytesOut: 0 };

/** One client-id/proxy key's memory. */
interface Remembered {
  /** Counters of ended sessions before the last one, folded into numbers. */
  folded: Carried;
  /** The last ended session's counters, still live while its connections drain. */
  ended: ProxyStats | null;
  history: ThroughputRing;
}

/** See the module documentation. */
export class ClientMemory {
  readonly #configured: readonly string[];
  readonly #lastSeenMs = new Map<string, number>();
  readonly #proxies = new Map<string, Remembered>();
  readonly #maxKeys: number;

  /**
   * @param configuredNames the `[[server.clients]]` names, listed when offline.
   * @param maxKeys client-id/proxy keys remembered at most (default {@linkcode MAX_REMEMBERED_PROXIES}).
   */
  constructor(configuredNames: readonly string[], maxKeys: number = MAX_REMEMBERED_PROXIES) {
    this.#configured = configuredNames;
    this.#maxKeys = maxKeys;
  }

  /**
   * A session of client `clientId` (shown as `name`) ended: its proxies' counters are kept for its next
   * session, and the client was last seen now.
   */
  sessionEnded(
    clientId: string,
    name: string,
    proxies: Iterable<{ name: string; stats: ProxyStats }>,
    nowMs: number = Date.now(),
  ): void {
    if (this.#configured.includes(name)) this.#lastSeenMs.set(name, nowMs);
    for (const proxy of proxies) {
      const memory = this.#remember(keyOf(clientId, proxy.name));
      if (memory.ended === proxy.stats) continue; // Reported twice (leaving, then the session's end).
      if (memory.ended !== null) memory.folded = sum(memory.folded, numbersOf(memory.ended));
      memory.ended = proxy.stats;
    }
  }

  /**
   * `live` (a proxy of client `clientId`'s current session) as served: the counters of the client's
   * ended sessions added, and its throughput history, fed with the totals at `nowMs`.
   */
  proxy(clientId: string, live: ProxySnapshot, nowMs: number = Date.now()): ProxySnapshot {
    const memory = this.#remember(keyOf(clientId, live.name));
    const carried = memory.ended === null ? memory.folded : sum(memory.folded, numbersOf(memory.ended));
    const served: ProxySnapshot = {
      ...live,
      active_connections: live.active_connections + (memory.ended?.activeConnections ?? 0),
      total_connections: live.total_connections + carried.totalConnections,
      failed_connections: live.failed_connections + carried.failedConnections,
      bind_retries: live.bind_retries + carried.bindRetries,
      bytes_in: live.bytes_in + carried.bytesIn,
      bytes_out: live.bytes_out + carried.bytesOut,
    };
    memory.history.observe(served.bytes_in, served.bytes_out, nowMs);
    return { ...served, throughput: memory.history.snapshot() };
  }

  /** The configured clients not in `connectedNames`, with when each was last seen. */
  offlineClients(connectedNames: Iterable<string>): OfflineClientSnapshot[] {
    const connected = new Set(connectedNames);
    return this.#configured
      .filter((name) => !connected.has(name))
      .map((name) => ({ name, last_seen_ms: this.#lastSeenMs.get(name) ?? null }));
  }

  /** Keys remembered now (for tests of the bound). */
  get size(): number {
    return this.#proxies.size;
  }

  /** The key's memory, created if new, moved to the most recently used end; the oldest beyond the bound go. */
  #remember(key: string): Remembered {
    let memory = this.#proxies.get(key);
    if (memory === undefined) {
      memory = { folded: ZERO, ended: null, history: new ThroughputRing() };
    } else this.#proxies.delete(key);
    this.#proxies.set(key, memory);
    for (const oldest of this.#proxies.keys()) {
      if (this.#proxies.size <= this.#maxKeys) break;
      this.#proxies.delete(oldest);
    }
    return memory;
  }
}

function keyOf(clientId: string, proxyName: string): string {
  return `${clientId}\0${proxyName}`;
}

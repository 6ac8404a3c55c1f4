/**
 * `[server.rate_limit]`, the Rust tls-tunnel's keys (`requests_per_second`, `burst_size`): token buckets
 * that refuse new connections arriving faster than the configured rate. One bucket per source address for
 * new tunnel connections (before TLS: a flood costs no handshake), one per client for new outside
 * connections (to its published ports and its forwarded streams), so a busy client never takes another's
 * allowance. A bucket holds `burst_size` tokens, refills at `requests_per_second`, and every connection
 * takes one; with none left the connection is refused and counted.
 *
 * Refusals are logged at most once per {@linkcode RATE_LIMIT_LOG_INTERVAL_MS} per limiter: the first
 * refusal of a quiet period at once, the ones after it summed into the next line, so a flood cannot become
 * a flood of log lines.
 *
 * @example
 * ```ts
 * import { KeyedRateLimiter } from "./rate_limit.ts";
 *
 * const limiter = new KeyedRateLimiter({ requestsPerSecond: 1, burstSize: 2 }, "new tunnel connections");
 * console.log(limiter.allow("192.0.2.1"), limiter.allow("192.0.2.1"), limiter.allow("192.0.2.1"));
 * // true true false
 * ```
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";

const logger = getLogger(["tls-tunnel", "server", "rate-limit"]);

/** Shortest time between two log lines of one limiter about refused connections. */
export const RATE_LIMIT_LOG_INTERVAL_MS = 10_000;

/** Most keys (source addresses, clients) one limiter tracks; beyond, full buckets are forgotten first. */
export const RATE_LIMIT_MAX_KEYS = 100_000;

/** `[server.rate_limit]` as the roles use it. */
export interface RateLimitConfig {
  /** Tokens added per second (the sustained rate). */
  requestsPerSecond: number;
  /** Tokens a bucket holds at most (the burst allowed after a quiet period). */
  burstSize: number;
}

/** A token bucket: `burstSize` tokens, refilled continuously at `requestsPerSecond`. */
export class TokenBucket {
  #tokens: number;
  #updatedMs: number;

  constructor(readonly config: RateLimitConfig, nowMs: number) {
    this.#tokens = config.burstSize;
    this.#updatedMs = nowMs;
  }

  /** Tokens available at `nowMs` (fractional). */
  tokens(nowMs: number): number {
    const elapsedSecs = Math.max(0, nowMs - this.#updatedMs) / 1000;
    return Math.min(this.config.burstSize, this.#tokens + elapsedSecs * this.config.requestsPerSecond);
  }

  /** Takes one token at `nowMs`: true when there was one, false (nothing taken) when the bucket is empty. */
  take(nowMs: number): boolean {
    const available = this.tokens(nowMs);
    this.#updatedMs = Math.max(this.#updatedMs, nowMs);
    if (available < 1) {
      this.#tokens = available;
      return false;
    }
    this.#tokens = available - 1;
    return true;
  }

  /** Whether the bucket is full at `nowMs`: then it is the same as a new one and may be forgotten. */
  full(nowMs: number): boolean {
    return this.tokens(nowMs) >= this.config.burstSize;
  }
}

/** Options of {@linkcode KeyedRateLimiter} beyond the config. */
export interface KeyedRateLimiterOptions {
  /** The clock (tests move it); default `performance.now`. */
  nowMs?: () => number;
  /** Most keys tracked. */
  maxKeys?: number;
  /** Shortest time between log lines. */
  logIntervalMs?: number;
}

/** One token bucket per key (a source address, a client), each refusal counted and logged sparingly. */
export class KeyedRateLimiter {
  readonly #buckets = new Map<string, TokenBucket>();
  readonly #nowMs: () => number;
  readonly #maxKeys: number;
  readonly #logIntervalMs: number;
  /** Refusals since start. */
  refusedTotal = 0;
  /** Refusals since start, by key (bounded like the buckets: forgotten with them). */
  readonly #refusedByKey = new Map<string, number>();
  /** Refusals not yet logged, and the keys they came from. */
  #unlogged = 0;
  readonly #unloggedKeys = new Set<string>();
  #lastLogMs = Number.NEGATIVE_INFINITY;

  constructor(
    readonly config: RateLimitConfig,
    /** What is limited, for log lines ("new tunnel connections"). */
    readonly what: string,
    options: KeyedRateLimiterOptions = {},
  ) {
    this.#nowMs = options.nowMs ?? (() => performance.now());
    this.#maxKeys = options.maxKeys ?? RATE_LIMIT_MAX_KEYS;
    this.#logIntervalMs = options.logIntervalMs ?? RATE_LIMIT_LOG_INTERVAL_MS;
  }

  /** Keys tracked now. */
  get size(): number {
    return this.#buckets.size;
  }

  /** Refusals since start for `key` (0 once its bucket was forgotten). */
  refusedFor(key: string): number {
    return this.#refusedByKey.get(key) ?? 0;
  }

  /** One new connection for `key`: true when the bucket had a token, false (counted, logged) when not. */
  allow(key: string): boolean {
    const nowMs = this.#nowMs();
    let bucket = this.#buckets.get(key);
    if (bucket === undefined) {
      this.#makeRoom(nowMs);
      bucket = new TokenBucket(this.config, nowMs);
      this.#buckets.set(key, bucket);
    }
    if (bucket.take(nowMs)) return true;
    this.refusedTotal++;
    this.#refusedByKey.set(key, (this.#refusedByKey.get(key) ?? 0) + 1);
    this.#unlogged++;
    if (this.#unloggedKeys.size < 16) this.#unloggedKeys.add(key);
    if (nowMs - this.#lastLogMs >= this.#logIntervalMs) this.#log(nowMs);
    return false;
  }

  #log(nowMs: number): void {
    const keys = [...this.#unloggedKeys];
    logger.warn(
      "Rate limit: refused {count} {what} from {keys} (requests_per_second = {rate}, burst_size = " +
        "{burst}); more refusals within {secs} s are summed into the next line",
      {
        count: this.#unlogged,
        what: this.what,
        keys: keys.join(", ") + (this.#unlogged > keys.length && keys.length >= 16 ? ", …" : ""),
        rate: this.config.requestsPerSecond,
        burst: this.config.burstSize,
        secs: this.#logIntervalMs / 1000,
      },
    );
    this.#lastLogMs = nowMs;
    this.#unlogged = 0;
    this.#unloggedKeys.clear();
  }

  /** Keeps the number of keys bounded: full buckets go first (losing nothing), then the oldest. */
  #makeRoom(nowMs: number): void {
    if (this.#buckets.size < this.#maxKeys) return;
    for (const [key, bucket] of this.#buckets) {
      if (bucket.full(nowMs)) this.#forget(key);
    }
    for (const key of this.#buckets.keys()) {
      if (this.#buckets.size < this.#maxKeys) break;
      this.#forget(key);
    }
  }

  #forget(key: string): void {
    this.#buckets.delete(key);
    this.#refusedByKey.delete(key);
  }
}

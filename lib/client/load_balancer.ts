/**
 * Spreading a proxy's outside connections over several local backends (`local_backends`), with failover.
 *
 * A {@linkcode BackendPool} decides, per connection, the order in which to try the backends: the policy
 * picks the first one (in turn, the least busy, or by the outside peer's IP) and the others follow in a
 * fixed rotation, so a failed backend is replaced by the same neighbour every time. A backend that just
 * failed is skipped for a cool-down unless every backend is down. The pool does no I/O itself: it is
 * handed the function that connects, which keeps it testable without sockets.
 *
 * @module
 */

import { formatHostPort, hostOfHostPort } from "../net/address.ts";
import type { LbPolicy } from "../config/types.ts";
import { sleep } from "../_async.ts";
import { BalanceRotation } from "../balance.ts";

/** One local service of a proxy. */
export interface Backend {
  /** Host name or IP address (IPv6 without brackets). */
  host: string;
  /** TCP port. */
  port: number;
}

/** A backend with its live counters, as {@linkcode BackendPool.stats} reports it. */
export interface BackendStats extends Backend {
  /** Connections to it that are open now. */
  activeConnections: number;
  /** Connections to it that were made. */
  successes: number;
  /** Connects to it that failed. */
  failures: number;
  /** Until when (ms since epoch) it is skipped after its last failure; 0 when not cooling down. */
  coolDownUntilMs: number;
}

/** Options of {@linkcode BackendPool}. */
export interface BackendPoolOptions {
  /** How the first backend of each connection is picked. */
  policy: LbPolicy;
  /** How long a backend that failed is skipped (default {@linkcode DEFAULT_COOL_DOWN_MS}). */
  coolDownMs?: number;
  /** The clock, in ms since epoch (tests pass a fake one). */
  nowMs?: () => number;
}

/** Options of {@linkcode BackendPool.connect}. */
export interface PoolConnectOptions {
  /** Rounds over the backends before giving up (at least 1): `local_connect_retries`. */
  attempts: number;
  /** Pause between rounds: `local_retry_delay_ms`. */
  retryDelayMs: number;
  /** Stops waiting and connecting when aborted. */
  signal?: AbortSignal;
}

/** A connection made by {@linkcode BackendPool.connect}; call `release` once it is closed. */
export interface PooledConnection<T> {
  /** What the connect function returned. */
  conn: T;
  /** The backend it goes to. */
  backend: Backend;
  /** Marks the connection closed (it stops counting as active); calling it again does nothing. */
  release(): void;
}

/** Default cool-down of a backend that failed. */
export const DEFAULT_COOL_DOWN_MS = 5_000;

/** Every backend was tried, in every round, and none accepted. */
export class NoBackendAvailableError extends Error {
  override name = "NoBackendAvailableError";
  constructor(
    /** The backends of the pool. */
    readonly backends: readonly Backend[],
    /** Rounds made over them. */
    readonly attempts: number,
    options?: ErrorOptions,
  ) {
    const cause = options?.cause instanceof Error ? options.cause.message : String(options?.cause);
    // One backend keeps the wording of a plain local_addr/local_port proxy.
    super(
      backends.length === 1
        ? `Cannot reach the local service at ${backends.map(formatBackend).join("")} after ${attempts} ` +
          `attempt(s): ${cause}; check that it is running and that local_addr/local_port are right`
        : `Cannot reach any of the local services ${backends.map(formatBackend).join(", ")} after ` +
          `${attempts} round(s): ${cause}; check that they are running and that local_backends is right`,
      options,
    );
  }
}

/** `host:port`, IPv6 in brackets ({@linkcode formatHostPort}). */
export function formatBackend(backend: Backend): string {
  return formatHostPort(backend.host, backend.port);
}

/** FNV-1a, 32 bits (`lib/balance.ts`): stable across runs and processes. */
export { stableHash } from "../balance.ts";

/** The backends of one proxy, the policy that spreads connections over them, and their counters. */
export class BackendPool {
  /** The policy in use. */
  readonly policy: LbPolicy;
  readonly #backends: BackendStats[];
  readonly #coolDownMs: number;
  readonly #nowMs: () => number;
  /** The policy's turn (round_robin, and least_connections' ties): `lib/balance.ts`, shared with server groups. */
  readonly #rotation = new BalanceRotation();

  /**
   * @param backends at least one backend, in the configured order.
   * @throws {RangeError} when `backends` is empty.
   */
  constructor(backends: readonly Backend[], options: BackendPoolOptions) {
    if (backends.length === 0) throw new RangeError("A backend pool needs at least one backend");
    this.policy = options.policy;
    this.#coolDownMs = options.coolDownMs ?? DEFAULT_COOL_DOWN_MS;
    this.#nowMs = options.nowMs ?? Date.now;
    this.#backends = backends.map((backend) => ({
      host: backend.host,
      port: backend.port,
      activeConnections: 0,
      successes: 0,
      failures: 0,
      coolDownUntilMs: 0,
    }));
  }

  /** The backends, in the configured order. */
  get backends(): readonly Backend[] {
    return this.#backends.map(({ host, port }) => ({ host, port }));
  }

  /** A copy of every backend's counters, in the configured order. */
  stats(): BackendStats[] {
    return this.#backends.map((state) => ({ ...state }));
  }

  /**
   * The order in which to try the backends for one new connection from `peerAddr`: every backend once,
   * the policy's pick first. Advances the round-robin rotation.
   */
  plan(peerAddr: string): number[] {
    return this.#rotation.plan(
      this.#backends.length,
      this.policy,
      hostOfHostPort(peerAddr),
      (index) => this.#backends[index]?.activeConnections ?? 0,
    );
  }

  /** `plan` without the backends cooling down after a failure; all of them when every one is. */
  #available(plan: readonly number[]): number[] {
    const now = this.#nowMs();
    const available = plan.filter((index) => (this.#backends[index]?.coolDownUntilMs ?? 0) <= now);
    return available.length > 0 ? [...plan.filter((index) => available.includes(index))] : [...plan];
  }

  /** Counts a failed connect to backend `index` and starts its cool-down. */
  recordFailure(index: number): void {
    const state = this.#backends[index];
    if (!state) return;
    state.failures++;
    state.coolDownUntilMs = this.#nowMs() + this.#coolDownMs;
  }

  /** Counts a successful connect to backend `index` (now active) and ends any cool-down. */
  recordSuccess(index: number): void {
    const state = this.#backends[index];
    if (!state) return;
    state.successes++;
    state.activeConnections++;
    state.coolDownUntilMs = 0;
  }

  /** Counts a connection to backend `index` as closed. */
  recordClosed(index: number): void {
    const state = this.#backends[index];
    if (state && state.activeConnections > 0) state.activeConnections--;
  }

  /**
   * Connects one outside connection from `peerAddr` to a backend: the policy's pick, then, when that
   * fails, the next ones (each once per round, skipping backends cooling down unless all are), for
   * `options.attempts` rounds with `options.retryDelayMs` between them.
   *
   * @throws {NoBackendAvailableError} when no backend accepted; the abort reason when `signal` aborts.
   */
  async connect<T>(
    peerAddr: string,
    dial: (backend: Backend) => Promise<T>,
    options: PoolConnectOptions,
  ): Promise<PooledConnection<T>> {
    const attempts = Math.max(1, options.attempts);
    const plan = this.plan(peerAddr);
    let lastError: unknown;
    for (let round = 1; round <= attempts; round++) {
      for (const index of this.#available(plan)) {
        options.signal?.throwIfAborted();
        const state = this.#backends[index];
        if (!state) continue;
        const backend = { host: state.host, port: state.port };
        let conn: T;
        try {
          conn = await dial(backend);
        } catch (error) {
          lastError = error;
          this.recordFailure(index);
          continue;
        }
        this.recordSuccess(index);
        let released = false;
        return {
          conn,
          backend,
          release: () => {
            if (released) return;
            released = true;
            this.recordClosed(index);
          },
        };
      }
      if (round < attempts) await sleep(options.retryDelayMs, options.signal);
    }
    throw new NoBackendAvailableError(this.backends, attempts, { cause: lastError });
  }
}

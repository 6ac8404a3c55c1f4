/**
 * Pings and keepalive for a session: outstanding pings by opaque value, the smoothed RTT they measure
 * (window auto-tuning reads it), and the keepalive timers that end a session whose peer stopped answering.
 *
 * @module
 */

import { MAX_U32 } from "./constants.ts";
import { KeepaliveTimeoutError } from "./errors.ts";

/** Weight of a new RTT sample in the smoothed RTT (as TCP's SRTT). */
const RTT_SMOOTHING = 0.125;

/** A ping waiting for its answer. */
interface PendingPing {
  startMs: number;
  resolve: (rttMs: number) => void;
  reject: (error: Error) => void;
}

/** Keepalive timing (the session's resolved options). */
export interface KeepaliveOptions {
  /** Time between an answer and the next keepalive ping; 0: one ping at the start (an RTT sample) only. */
  readonly keepaliveIntervalMs: number;
  /** How long a keepalive ping may stay unanswered before the session ends. */
  readonly keepaliveTimeoutMs: number;
}

/** What the pinger needs of its session. */
export interface PingerHost {
  /** Queues a ping frame (SYN) with `opaque`. */
  sendPing(opaque: number): void;
  /** A keepalive ping stayed unanswered: end the session with `error`. */
  keepaliveTimedOut(error: KeepaliveTimeoutError): void;
}

/** Sends pings, matches their answers and runs the keepalive timers. */
export class Pinger {
  readonly #host: PingerHost;
  readonly #options: KeepaliveOptions;
  /** Pings waiting for their ACK, by opaque value. */
  readonly #pings = new Map<number, PendingPing>();
  /** Opaque value of the next ping (u32, skipping 0). */
  #nextPingId = 1;
  /** Smoothed RTT in ms, 0 until the first ping returns. */
  #smoothedRttMs = 0;
  /** Timer of the next keepalive ping. */
  #keepaliveTimer: ReturnType<typeof setTimeout> | null = null;
  /** Timer that ends the session if the outstanding keepalive ping stays unanswered. */
  #keepaliveDeadline: ReturnType<typeof setTimeout> | null = null;
  /** What pings fail with once stopped (the session's end), or null while running. */
  #stoppedError: Error | null = null;

  constructor(host: PingerHost, options: KeepaliveOptions) {
    this.#host = host;
    this.#options = options;
  }

  /** Smoothed round-trip time in ms (0 until the first answer). */
  get rttMs(): number {
    return this.#smoothedRttMs;
  }

  /** Sends a first ping at once (it also seeds the RTT used by window auto-tuning), then every interval. */
  start(): void {
    if (this.#options.keepaliveIntervalMs === 0) {
      this.ping().catch(() => {}); // RTT sample only; a lost answer is harmless.
      return;
    }
    this.#sendKeepalive();
  }

  /** Sends a ping; resolves with the round-trip time in ms, rejects once stopped. */
  ping(): Promise<number> {
    if (this.#stoppedError !== null) return Promise.reject(this.#stoppedError);
    const id = this.#nextPingId;
    this.#nextPingId = id >= MAX_U32 ? 1 : id + 1;
    return new Promise((resolve, reject) => {
      this.#pings.set(id, { startMs: performance.now(), resolve, reject });
      this.#host.sendPing(id);
    });
  }

  /** The peer answered the ping with `opaque` (unknown values are ignored). */
  onPong(opaque: number): void {
    const ping = this.#pings.get(opaque);
    if (ping === undefined) return; // An answer to a ping we gave up on, or never sent: harmless.
    this.#pings.delete(opaque);
    const rttMs = performance.now() - ping.startMs;
    this.#smoothedRttMs = this.#smoothedRttMs === 0
      ? rttMs
      : this.#smoothedRttMs + RTT_SMOOTHING * (rttMs - this.#smoothedRttMs);
    ping.resolve(rttMs);
  }

  /** Stops the timers and fails outstanding and later pings with `error`. */
  stop(error: Error): void {
    this.#stoppedError = error;
    if (this.#keepaliveTimer !== null) clearTimeout(this.#keepaliveTimer);
    if (this.#keepaliveDeadline !== null) clearTimeout(this.#keepaliveDeadline);
    this.#keepaliveTimer = null;
    this.#keepaliveDeadline = null;
    for (const ping of this.#pings.values()) ping.reject(error);
    this.#pings.clear();
  }

  #sendKeepalive(): void {
    this.#keepaliveTimer = null;
    if (this.#stoppedError !== null) return;
    const { keepaliveIntervalMs, keepaliveTimeoutMs } = this.#options;
    const deadline = setTimeout(() => {
      this.#keepaliveDeadline = null;
      this.#host.keepaliveTimedOut(new KeepaliveTimeoutError(keepaliveIntervalMs, keepaliveTimeoutMs));
    }, keepaliveTimeoutMs);
    this.#keepaliveDeadline = deadline;
    this.ping().then(
      () => {
        clearTimeout(deadline);
        this.#keepaliveDeadline = null;
        if (this.#stoppedError === null) {
          this.#keepaliveTimer = setTimeout(() => this.#sendKeepalive(), keepaliveIntervalMs);
        }
      },
      () => clearTimeout(deadline),
    );
  }
}

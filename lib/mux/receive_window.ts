/**
 * A stream's receive window: how much the peer may still send (its credit), when to grant more, and
 * auto-tuning (the window doubles while the peer drains it faster than a few round trips).
 *
 * @module
 */

/** Consecutive window updates coming faster than this many RTTs double the window. */
const WINDOW_GROWTH_RTT_FACTOR = 4;

/** RTT floor (ms) for window auto-tuning, so a sub-millisecond loopback RTT still lets windows grow. */
const WINDOW_GROWTH_MIN_RTT_MS = 1;

/** What auto-tuning needs of the session (a `StreamHost` has it). */
export interface WindowLimits {
  /** Ceiling of a stream's receive window. */
  readonly maxStreamWindowBytes: number;
  /** Smoothed round-trip time in ms (0 while unknown). */
  rttMs(): number;
}

/** The receive side's flow-control accounting for one stream (no I/O: the stream sends the updates). */
export class ReceiveWindow {
  /** Current window: how much unread + in-flight data we allow; grows by auto-tuning. */
  #windowBytes: number;
  /** How many more bytes the peer may send before exceeding our window. */
  #creditBytes: number;
  /** When the last window update was granted (or the window created), from `performance.now()`. */
  #lastUpdateMs: number;

  /** A window of `windowBytes`, all of it granted (the excess over the spec's 256 KiB goes on SYN/ACK). */
  constructor(windowBytes: number) {
    this.#windowBytes = windowBytes;
    this.#creditBytes = windowBytes;
    this.#lastUpdateMs = performance.now();
  }

  /** Current window in bytes. */
  get windowBytes(): number {
    return this.#windowBytes;
  }

  /** Bytes the peer may still send. */
  get creditBytes(): number {
    return this.#creditBytes;
  }

  /** Counts a data frame of `length` bytes against the credit; false (and nothing counted) if it exceeds it. */
  take(length: number): boolean {
    if (length > this.#creditBytes) return false;
    this.#creditBytes -= length;
    return true;
  }

  /**
   * The window update to send now, already counted as granted, or 0: due once the bytes read but not yet
   * granted reach half the window (hashicorp's rule). Auto-tuning: if the previous update was less than
   * 4 RTTs ago (RTT floored at 1 ms), the peer is draining the window faster than it can be refilled, so
   * the window doubles (up to `session.maxStreamWindowBytes`; not when `mayGrow` is false) and the growth
   * is granted in the same update.
   *
   * @param bufferedBytes received bytes not yet read (they still occupy the window)
   * @param session the window's ceiling and the smoothed RTT (asked only when the window may grow)
   */
  grant(bufferedBytes: number, mayGrow: boolean, session: WindowLimits): number {
    const maxWindowBytes = session.maxStreamWindowBytes;
    let delta = this.#windowBytes - bufferedBytes - this.#creditBytes;
    if (delta < this.#windowBytes / 2) return 0;
    const nowMs = performance.now();
    if (this.#windowBytes < maxWindowBytes && mayGrow) {
      const floorRttMs = Math.max(session.rttMs(), WINDOW_GROWTH_MIN_RTT_MS);
      if (nowMs - this.#lastUpdateMs < WINDOW_GROWTH_RTT_FACTOR * floorRttMs) {
        this.#windowBytes = Math.min(this.#windowBytes * 2, maxWindowBytes);
        delta = this.#windowBytes - bufferedBytes - this.#creditBytes;
      }
    }
    this.#lastUpdateMs = nowMs;
    this.#creditBytes += delta;
    return delta;
  }
}

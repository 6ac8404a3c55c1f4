/**
 * Reconnect delays: exponential backoff with jitter, so a fleet of clients that lost the same server
 * does not come back in one storm.
 *
 * @module
 */

import type { ReconnectConfig } from "../config/types.ts";

/** Computes successive reconnect delays; reset it after a healthy session. */
export class Backoff {
  #failures = 0;

  constructor(readonly config: ReconnectConfig, readonly random: () => number = Math.random) {}

  /** Consecutive failed attempts since the last reset. */
  get failures(): number {
    return this.#failures;
  }

  /**
   * Delay before the next attempt. The first two are quick, because a lost session is most often a
   * server restart that is back within a second: up to half a second (spread so many clients do not
   * retry at once), then about one second. After that, with `n` failures, it is
   * `initial × multiplier^(n-2)`, capped at the maximum, with ±`jitter` spread.
   */
  nextDelayMs(): number {
    const failures = this.#failures++;
    const initialMs = this.config.initialDelaySecs * 1000;
    if (failures === 0) return Math.round(this.random() * Math.min(500, initialMs));
    const base = failures === 1 ? Math.min(1000, initialMs) : Math.min(
      this.config.maxDelaySecs * 1000,
      initialMs * this.config.multiplier ** (failures - 2),
    );
    const spread = base * this.config.jitter * (this.random() * 2 - 1);
    return Math.max(0, Math.round(Math.min(this.config.maxDelaySecs * 1000, base + spread)));
  }

  /** Whether `maxAttempts` (when set) has been used up. */
  get exhausted(): boolean {
    return this.config.maxAttempts > 0 && this.#failures >= this.config.maxAttempts;
  }

  /** Starts over, after a session that authenticated and registered. */
  reset(): void {
    this.#failures = 0;
  }
}

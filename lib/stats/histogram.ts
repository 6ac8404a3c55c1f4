/**
 * A fixed-bucket histogram, as Prometheus expects: cumulative counts per upper bound, a count and a sum.
 *
 * @module
 */

import type { HistogramSnapshot } from "./snapshot.ts";

/** Default bounds for latencies, seconds: 0.1 ms to 5 s. */
export const LATENCY_BOUNDS_SECS: readonly number[] = [
  0.0001,
  0.00025,
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
];

/** Counts observations into buckets; O(buckets) per observation, no allocation. */
export class Histogram {
  readonly #bounds: readonly number[];
  readonly #counts: Float64Array;
  #count = 0;
  #sum = 0;

  constructor(boundsSecs: readonly number[] = LATENCY_BOUNDS_SECS) {
    this.#bounds = boundsSecs;
    this.#counts = new Float64Array(boundsSecs.length);
  }

  /** Records one observation, in seconds. */
  observe(valueSecs: number): void {
    this.#count++;
    this.#sum += valueSecs;
    for (let i = 0; i < this.#bounds.length; i++) {
      if (valueSecs <= (this.#bounds[i] ?? Infinity)) {
        this.#counts[i] = (this.#counts[i] ?? 0) + 1;
        return;
      }
    }
  }

  /** Cumulative view, ready for Prometheus. */
  snapshot(): HistogramSnapshot {
    const cumulative: number[] = [];
    let running = 0;
    for (let i = 0; i < this.#bounds.length; i++) {
      running += this.#counts[i] ?? 0;
      cumulative.push(running);
    }
    return {
      bounds_secs: [...this.#bounds],
      cumulative_counts: cumulative,
      count: this.#count,
      sum_secs: this.#sum,
    };
  }
}

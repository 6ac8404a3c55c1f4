/// <reference lib="dom" />
/**
 * The dashboard's page state, shared by its views and its connection: the last snapshot drawn, the
 * rates and sparkline points, the clients that recently disconnected, and the endpoint's clock as
 * estimated from the browser's. Browser TypeScript, bundled with app.ts.
 *
 * @module
 */

import type { ClientSnapshot, ServedStats } from "../snapshot.ts";

/** Bytes per second, both ways. */
export interface Rate {
  /** Bytes per second in. */
  in: number;
  /** Bytes per second out. */
  out: number;
}

/** What the page remembers between snapshots. */
export const state = {
  /** The last snapshot rendered. */
  last: null as ServedStats | null,
  /** "client\0proxy" → the byte counters and endpoint time of the last rate computation. */
  prevBytes: new Map<string, { in: number; out: number; t: number }>(),
  /** Same key → the rate computed then. */
  rates: new Map<string, Rate>(),
  /** Client name → the client as last seen, and when it disappeared (endpoint time). */
  gone: new Map<string, { client: ClientSnapshot; goneAt: number }>(),
  sparkIn: [] as number[],
  sparkOut: [] as number[],
  /** Time of the newest event shown, so newer ones flash. */
  newestEvent: 0,
  /** Endpoint clock minus browser clock. */
  skewMs: 0,
  /** Endpoint time of the last rate computation. */
  rateAt: undefined as number | undefined,
  /** Browser time of the last snapshot. */
  lastUpdate: 0,
};

/** `1 session`, `2 sessions`. */
export function plural(n: number, word: string): string {
  return n + " " + word + (n === 1 ? "" : "s");
}

/** The endpoint's clock, estimated from the browser's. */
export function now(): number {
  return Date.now() + state.skewMs;
}

/// <reference lib="dom" />
/**
 * The dashboard's rates: bytes per second of each proxy, computed from the byte counters of successive
 * snapshots over a window of the endpoint's clock, and the totals that feed the summary sparklines.
 * Browser TypeScript, bundled with app.ts.
 *
 * @module
 */

import type { ProxySnapshot, ServedStats } from "../snapshot.ts";
import { SPARK_POINTS } from "./dom.ts";
import { type Rate, state } from "./state.ts";

/**
 * Rates are byte deltas over at least this much of the endpoint's clock, so the extra snapshots pushed
 * right after an event do not turn a few bytes into a spike.
 */
const RATE_WINDOW_MS = 800;

/**
 * Each proxy of the snapshot with its key ("client\0proxy"); a client with several servers adds each
 * server's copy ("\u0001server\0proxy", left out of the totals: the merged rows already count it).
 */
function proxyRows(snap: ServedStats): Array<{ key: string; p: ProxySnapshot; partial?: boolean }> {
  const rows: Array<{ key: string; p: ProxySnapshot; partial?: boolean }> = [];
  if (snap.role === "server") {
    snap.clients.forEach((c) => c.proxies.forEach((p) => rows.push({ key: c.name + "\u0000" + p.name, p })));
  } else {
    snap.proxies.forEach((p) => rows.push({ key: "\u0000" + p.name, p }));
    snap.servers?.forEach((s) =>
      s.proxies.forEach((p) =>
        rows.push({ key: serverRateKey(s.name) + "\u0000" + p.name, p, partial: true })
      )
    );
  }
  return rows;
}

/** The rates' key prefix of one server of a client with several (see {@linkcode proxyRows}). */
export function serverRateKey(server: string): string {
  return "\u0001" + server;
}

/** Updates the per-proxy rates and the sparklines; returns the total rates. */
export function updateRates(snap: ServedStats): Rate {
  const t = snap.now_ms;
  let totalIn = 0;
  let totalOut = 0;
  const due = state.rateAt === undefined || t - state.rateAt >= RATE_WINDOW_MS;
  const next = due ? new Map<string, { in: number; out: number; t: number }>() : state.prevBytes;
  proxyRows(snap).forEach((row) => {
    const prev = state.prevBytes.get(row.key);
    let rate = state.rates.get(row.key) ?? { in: 0, out: 0 };
    if (due) {
      rate = { in: 0, out: 0 };
      if (prev && t > prev.t && row.p.bytes_in >= prev.in && row.p.bytes_out >= prev.out) {
        const dt = (t - prev.t) / 1000;
        rate = { in: (row.p.bytes_in - prev.in) / dt, out: (row.p.bytes_out - prev.out) / dt };
      }
      state.rates.set(row.key, rate);
    }
    if (due || !prev) next.set(row.key, { in: row.p.bytes_in, out: row.p.bytes_out, t });
    if (row.partial) return;
    totalIn += rate.in;
    totalOut += rate.out;
  });
  state.prevBytes = next;
  if (due) {
    state.rateAt = t;
    state.sparkIn.push(totalIn);
    state.sparkOut.push(totalOut);
    if (state.sparkIn.length > SPARK_POINTS) {
      state.sparkIn.shift();
      state.sparkOut.shift();
    }
  }
  return { in: totalIn, out: totalOut };
}

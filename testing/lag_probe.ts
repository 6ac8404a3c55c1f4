/**
 * Event-loop lag probe, loaded into a real server or client process with `deno run --preload` by the
 * fuzz and soak harnesses (never by the product). A 20 ms ticker measures how late each tick fires;
 * the part of that delay the main thread spent waiting for a CPU (the run-queue wait in
 * `/proc/self/schedstat`, which a busy two-core machine adds without any fault of the program) is
 * subtracted, so what remains is time the event loop itself was blocked (synchronous name lookups,
 * file or crypto work, long garbage collections). Every 250 ms one line goes to stdout:
 * `@probe {"t":<epoch ms>,"lagMaxMs":…,"stallMaxMs":…,"rssBytes":…,"heapUsedBytes":…,"externalBytes":…,"fds":…}`.
 *
 * Deno grants `/proc/self` only with `--allow-all`, so the harnesses run the probed process with it (the
 * product's code is the same; only the permission prompt differs). Without it the probe still reports
 * raw lag and RSS, with `fds` null and no run-queue correction.
 *
 * @module
 */

import { PROBE_PREFIX } from "./proc_stats.ts";

const TICK_MS = 20;
const REPORT_EVERY_TICKS = 12;

/** Nanoseconds this thread has waited on a run queue, or null when the kernel does not say. */
function runQueueWaitNs(): number | null {
  try {
    const fields = Deno.readTextFileSync("/proc/thread-self/schedstat").trim().split(/\s+/);
    const wait = Number(fields[1]);
    return Number.isFinite(wait) ? wait : null;
  } catch {
    return null;
  }
}

/** Open file descriptors of this process, or null when `/proc/self/fd` cannot be read. */
function openDescriptors(): number | null {
  try {
    let count = 0;
    for (const _ of Deno.readDirSync("/proc/self/fd")) count++;
    return count;
  } catch {
    return null;
  }
}

/** RSS and the JS heap in use, so retained native memory can be told from live JS objects. */
function memory(): { rssBytes: number; heapUsedBytes: number; externalBytes: number } {
  const usage = Deno.memoryUsage();
  return { rssBytes: usage.rss, heapUsedBytes: usage.heapUsed, externalBytes: usage.external };
}

const encoder = new TextEncoder();
let lastTickMs = performance.now();
let lastWaitNs = runQueueWaitNs();
let lagMaxMs = 0;
let stallMaxMs = 0;
let ticks = 0;

/** Writes one report line now. */
function report(): void {
  const line = `${PROBE_PREFIX}${
    JSON.stringify({
      t: Date.now(),
      // When the process started (epoch ms): V8's --trace-gc lines count from about then.
      origin: Math.round(performance.timeOrigin),
      lagMaxMs: Math.round(lagMaxMs * 10) / 10,
      stallMaxMs: Math.round(Math.max(0, stallMaxMs) * 10) / 10,
      ...memory(),
      fds: openDescriptors(),
    })
  }\n`;
  lagMaxMs = 0;
  stallMaxMs = 0;
  try {
    Deno.stdout.writeSync(encoder.encode(line));
  } catch {
    // stdout closed: the harness is gone, nothing to report to.
  }
}

// SIGUSR2: one full collection (with --expose-gc), then a report at once. The harness reads memory after
// it to tell live memory from garbage the program's own idle collection has not (yet) collected.
Deno.addSignalListener("SIGUSR2", () => {
  (globalThis as { gc?: () => void }).gc?.();
  report();
});

const timer = setInterval(() => {
  const nowMs = performance.now();
  const waitNs = runQueueWaitNs();
  const lagMs = Math.max(0, nowMs - lastTickMs - TICK_MS);
  const queuedMs = waitNs !== null && lastWaitNs !== null ? (waitNs - lastWaitNs) / 1e6 : 0;
  lagMaxMs = Math.max(lagMaxMs, lagMs);
  stallMaxMs = Math.max(stallMaxMs, lagMs - queuedMs);
  lastTickMs = nowMs;
  lastWaitNs = waitNs;
  if (++ticks % REPORT_EVERY_TICKS === 0) report();
}, TICK_MS);
// The probe must not keep a process alive that would otherwise exit.
Deno.unrefTimer(timer);

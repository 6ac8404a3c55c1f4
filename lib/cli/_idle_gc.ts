/**
 * Gives memory back when the process goes quiet. V8 collects garbage only while JavaScript allocates, so a
 * server or client that has just started (config validation, TLS set-up) or just finished a transfer keeps
 * that garbage, and the heap pages and buffers holding it, for as long as it stays idle: measured, 7.5 MB
 * of a freshly started server and most of the 90 MB a client grew by while receiving 256 MiB. One full
 * collection right after start-up, and one each time traffic stops, returns it; a collection of the small
 * live heap takes a few milliseconds and never runs while bytes are moving.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { exposeFullCollection, type FullCollection } from "../_gc.ts";
import { errorMessage } from "../text.ts";

const logger = getLogger(["tls-tunnel", "cli"]);

/** How often the activity counter is looked at. */
export const IDLE_CHECK_INTERVAL_MS = 10_000;

/** A full garbage collection, or null where the runtime does not offer one. */
export type { FullCollection };

/**
 * V8's full collection, reached through `node:v8` and `node:vm` (Deno has no flag-free way); null if the
 * runtime refuses. Loaded on first use: the two modules cost about 1 MB.
 */
export async function loadFullCollection(): Promise<FullCollection | null> {
  try {
    return await exposeFullCollection();
  } catch (error) {
    logger.debug("No full garbage collection available ({error}); memory is left to V8", {
      error: errorMessage(error),
    });
    return null;
  }
}

/**
 * glibc's `malloc_trim(0)`, or null where it cannot be called (not Linux, no `--allow-ffi`, no glibc).
 * Freed native memory — buffers V8 has collected, Deno's per-socket allocations — stays in glibc's heap,
 * which gives back only what lies at its top: 10,000 connections that came and went left the server 30–50
 * MB above where it started (the next 10,000 reused it). `malloc_trim` returns the free pages in the middle
 * too (measured: 5,000 socket pairs closed, glibc heap 16.6 → 2.9 MB, 1–25 ms per call). It runs on Deno's
 * blocking-call thread, not the event loop: after a burst that grew the process to 260 MB the call took about
 * 100 ms, a stall the live fuzz caught (116 ms with the collection) when it ran on the loop. glibc locks each
 * arena while it trims, so allocation on the loop meanwhile is safe. Loaded on first use.
 */
export function loadAllocatorTrim(): (() => Promise<void>) | null {
  if (Deno.build.os !== "linux") return null;
  try {
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return null;
    const library = Deno.dlopen("libc.so.6", {
      malloc_trim: { parameters: ["usize"], result: "i32", nonblocking: true },
    });
    return async () => void await library.symbols.malloc_trim(0n);
  } catch (error) {
    logger.debug("No malloc_trim ({error}); freed native memory stays in the allocator", {
      error: errorMessage(error),
    });
    return null;
  }
}

/** Options of {@linkcode collectWhenIdle}. */
export interface IdleCollectionOptions {
  /** Start-up is over (the server listens, the client's proxies are registered): collect then. */
  ready?: Promise<unknown>;
  /** A counter that changes whenever the process does work (chunks copied); read once per check. */
  activity: () => number;
  /** Stops the checks. */
  signal: AbortSignal;
  /** How often to look at `activity` (default {@linkcode IDLE_CHECK_INTERVAL_MS}). */
  checkIntervalMs?: number;
  /**
   * The collection to run (default: V8's, see {@linkcode loadFullCollection}, followed by
   * {@linkcode loadAllocatorTrim}'s where available).
   */
  collect?: FullCollection;
}

/**
 * Runs one full collection once start-up is over (`ready`, default now), then one each time `activity`
 * stops changing: when it changed during the previous interval but not during the last one. Returns at
 * once; the work runs in the background until `signal` aborts and never keeps the process alive.
 */
export function collectWhenIdle(options: IdleCollectionOptions): void {
  void startCollecting(options).catch((error) => {
    logger.debug("Idle garbage collection stopped: {error}", {
      error: errorMessage(error),
    });
  });
}

async function startCollecting(options: IdleCollectionOptions): Promise<void> {
  const collect = options.collect ?? withAllocatorTrim(await loadFullCollection());
  if (collect === null) return;
  if (options.ready !== undefined) {
    const aborted = new Promise<void>((resolve) =>
      options.signal.addEventListener("abort", () => resolve(), { once: true })
    );
    await Promise.race([options.ready, aborted]);
  }
  if (options.signal.aborted) return;
  runCollection(collect, "start-up");
  const watcher = new ActivityWatcher(options.activity);
  const timer = setInterval(() => {
    if (watcher.stoppedSinceLastLook()) runCollection(collect, "traffic stopped");
  }, options.checkIntervalMs ?? IDLE_CHECK_INTERVAL_MS);
  Deno.unrefTimer(timer);
  options.signal.addEventListener("abort", () => clearInterval(timer), { once: true });
}

/** Tells, look by look, when a changing activity counter has just stopped changing. */
export class ActivityWatcher {
  #last: number;
  /** The counter changed since the last time activity stopped. */
  #busy = false;

  constructor(readonly activity: () => number) {
    this.#last = activity();
  }

  /** True exactly once per stretch of activity: at the first look that finds the counter unchanged. */
  stoppedSinceLastLook(): boolean {
    const now = this.activity();
    if (now !== this.#last) {
      this.#last = now;
      this.#busy = true;
      return false;
    }
    if (!this.#busy) return false;
    this.#busy = false;
    return true;
  }
}

/** `collect` followed by the allocator's trim, where there is one (and the collection is V8's). */
function withAllocatorTrim(collect: FullCollection | null): FullCollection | null {
  const trim = collect === null ? null : loadAllocatorTrim();
  if (collect === null || trim === null) return collect;
  return () => {
    collect();
    trim().catch((error) => logger.debug("malloc_trim failed: {error}", { error: errorMessage(error) }));
  };
}

function runCollection(collect: FullCollection, why: string): void {
  const before = Deno.memoryUsage();
  const started = performance.now();
  collect();
  const after = Deno.memoryUsage();
  logger.debug(
    "Collected garbage ({why}) in {elapsedMs} ms: heap {heapBeforeMB} → {heapAfterMB} MB, buffers " +
      "{externalBeforeMB} → {externalAfterMB} MB, RSS {rssBeforeMB} → {rssAfterMB} MB",
    {
      why,
      elapsedMs: Math.round((performance.now() - started) * 10) / 10,
      heapBeforeMB: megabytes(before.heapTotal),
      heapAfterMB: megabytes(after.heapTotal),
      externalBeforeMB: megabytes(before.external),
      externalAfterMB: megabytes(after.external),
      rssBeforeMB: megabytes(before.rss),
      rssAfterMB: megabytes(after.rss),
    },
  );
}

function megabytes(bytes: number): number {
  return Math.round(bytes / 1e5) / 10;
}

/**
 * The live fuzz harness: a real server (`deno run main.ts server`, lag probe preloaded) and a real
 * canary client as child processes, and seeded hostile scripts over real TLS from many loopback
 * addresses. Used by `tests/fuzz_test.ts` (≥ 2,000 cases) and `deno task fuzz` (scripts/fuzz.ts).
 *
 * Invariants checked per run: the server never exits; no event-loop stall over the limit (the probe's
 * tick delay minus run-queue wait); once every fuzz session has ended, the server listens on nothing
 * but its tunnel port and the canary's port, and every port it reported bound can be bound again; RSS
 * growth stays under the stated bound; the canary round-trips without a single error.
 *
 * @module
 */

import { canBind, freePortRange } from "./helpers.ts";
import { caseCount, type FuzzScript, scriptArbitrary, scriptAt } from "./fuzz_cases.ts";
import { playScript, ScriptLedger } from "./fuzz_scripts.ts";
import { Canary, formatTable, LIVE_AUTH_KEY, LiveTunnel, mb, round1 } from "./live_tunnel.ts";
import { heldPorts, listeningSockets } from "./proc_stats.ts";

/** Options of {@linkcode runFuzz}. */
export interface FuzzOptions {
  /** Seed of the run: the same seed plays the same scripts. */
  seed: number;
  /** Cases (inputs) to play at least; scripts are started until this many cases were started. */
  cases: number;
  /** Scripts in flight at once. Default 8. */
  concurrency?: number;
  /** Play only these script indices (replay of a failure). */
  only?: number[];
  /** Largest event-loop stall allowed in the server. Default 100 ms. */
  stallLimitMs?: number;
  /** Largest RSS growth of the server from before to after the run. Default 96 MiB. */
  rssGrowthLimitBytes?: number;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

/** One checked property of a run. */
export interface Invariant {
  name: string;
  ok: boolean;
  detail: string;
}

/** What a run found. */
export interface FuzzReport {
  seed: number;
  cases: number;
  scripts: number;
  durationMs: number;
  invariants: Invariant[];
  ok: boolean;
  /** Windows in which the server stalled over the limit, with the scripts in flight then. */
  stalls: Array<
    { t: number; stallMs: number; lagMs: number; scripts: number[]; fullGcMs?: number; gcPauses?: string[] }
  >;
  scriptKinds: Record<string, number>;
  outcomes: Record<string, number>;
  server: Record<string, unknown>;
  canary: Record<string, unknown>;
  serverLogLevels: Record<string, number>;
  /** Full collections the server's idle collector ran during the run (a stall at the same time is one). */
  serverCollections: Array<{ t: number; elapsedMs: number; why: string }>;
  /** V8 collections in the server that paused it 20 ms or more (`--trace-gc`). */
  serverGcPauses: Array<{ t: number; kind: string; pauseMs: number }>;
  serverErrorLines: string[];
  /** The command that replays the run. */
  replay: string;
}

/** Ports in the block fuzz clients may publish (the server's `allow_ports`). */
const BLOCK_SIZE = 16;

/** Runs the fuzz and returns its report (it does not throw on a broken invariant; see `ok`). */
export async function runFuzz(options: FuzzOptions): Promise<FuzzReport> {
  const log = options.log ?? (() => {});
  const stallLimitMs = options.stallLimitMs ?? 100;
  const rssGrowthLimitBytes = options.rssGrowthLimitBytes ?? 96 * 1024 * 1024;
  const concurrency = options.concurrency ?? 8;
  const blockStart = freePortRange(BLOCK_SIZE);
  const started = performance.now();
  await using tunnel = await LiveTunnel.start(
    `allow_ports = "${blockStart}-${blockStart + BLOCK_SIZE - 1},32768-60999"\nhandshake_timeout_secs = 2\n` +
      `keepalive_interval_secs = 1\nkeepalive_timeout_secs = 3\nmax_proxies_per_client = 8\n`,
    `[server.bind_retry]\nmax_retries = 2\ninitial_delay_secs = 0.1\nmax_delay_secs = 0.5\n`,
    // -v: the idle collector logs each full collection and its duration, which tells a GC pause from a stall.
    { verbose: true },
  );
  const server = tunnel.server;
  const canary = new Canary();
  const canaryClient = await tunnel.client("canary", canary.echo.port);
  canary.start(canaryClient.port);
  const ledger = new ScriptLedger();
  const target = { tunnelPort: tunnel.port, caPem: tunnel.caPem, authKey: LIVE_AUTH_KEY };
  const arbitrary = scriptArbitrary({
    tunnelPort: tunnel.port,
    blockStart,
    blockSize: BLOCK_SIZE,
    authKey: LIVE_AUTH_KEY,
  });
  const inFlight = new Map<number, number>();
  const stalls: FuzzReport["stalls"] = [];
  const kinds: Record<string, number> = {};
  let casesStarted = 0;
  let scripts = 0;
  let stopSampling = false;

  // Baseline once the server and canary are up and a first idle collection had its chance.
  await new Promise((resolve) => setTimeout(resolve, 1500));
  server.watch.before = await server.watch.fresh();
  const fuzzStartMs = Date.now();

  // The harness's own event-loop lag: a late canary round is then the harness's fault, not the server's.
  let harnessLagMaxMs = 0;
  let lastTickMs = performance.now();
  const harnessTicker = setInterval(() => {
    const nowMs = performance.now();
    harnessLagMaxMs = Math.max(harnessLagMaxMs, nowMs - lastTickMs - 20);
    lastTickMs = nowMs;
  }, 20);

  const sampling = (async () => {
    let seen = 0;
    while (!stopSampling) {
      for (const report of server.probe.reports.slice(seen)) {
        if (report.t >= fuzzStartMs && report.stallMaxMs > stallLimitMs && stalls.length < 100) {
          stalls.push({
            t: report.t,
            stallMs: report.stallMaxMs,
            lagMs: report.lagMaxMs,
            scripts: [...inFlight.keys()],
          });
        }
      }
      seen = server.probe.reports.length;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  })();

  const queue = options.only ? [...options.only] : null;
  let nextIndex = 0;
  const takeScript = (): [number, FuzzScript] | null => {
    if (server.exited) return null;
    if (queue) {
      const index = queue.shift();
      if (index === undefined) return null;
      const script = scriptAt(arbitrary, options.seed, index);
      casesStarted += caseCount(script);
      return [index, script];
    }
    if (casesStarted >= options.cases) return null;
    const index = nextIndex++;
    const script = scriptAt(arbitrary, options.seed, index);
    casesStarted += caseCount(script);
    return [index, script];
  };
  let lastProgressMs = performance.now();
  const worker = async () => {
    for (let next = takeScript(); next; next = takeScript()) {
      const [index, script] = next;
      scripts++;
      kinds[script.kind] = (kinds[script.kind] ?? 0) + 1;
      inFlight.set(index, Date.now());
      await playScript(script, index, target, ledger);
      inFlight.delete(index);
      if (performance.now() - lastProgressMs > 5000) {
        lastProgressMs = performance.now();
        log(
          `  ${casesStarted} cases, ${scripts} scripts, canary ${canary.rounds} rounds / ${canary.errors} errors`,
        );
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const fuzzEndMs = Date.now();

  // Every fuzz session has ended: bind retries and teardown get a few seconds to finish.
  const expected = new Set([tunnel.port, canaryClient.port]);
  let listening = await listeningSockets(server.pid);
  const settleDeadline = performance.now() + 8000;
  while (listening.some((socket) => !expected.has(socket.port)) && performance.now() < settleDeadline) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    listening = await listeningSockets(server.pid);
  }
  const leaked = listening.filter((socket) => !expected.has(socket.port)).map((socket) => socket.port);
  const unbindable = [...ledger.boundPorts.values()].filter(({ addr, port }) =>
    port !== canaryClient.port && !canBind(port, addr === "::1" || addr === "[::1]" ? "::1" : "127.0.0.1")
  );
  // System-picked ports come from the ephemeral range, where other processes' sockets (other tests, any
  // outgoing connection) may sit by the time of the check: only a port the server itself still holds is its leak.
  const serverHeld = await heldPorts(server.pid);
  const leakedByServer = unbindable.filter(({ port }) => serverHeld.has(port)).map(({ addr, port }) =>
    `${addr}:${port}`
  );
  const heldElsewhere = unbindable.filter(({ port }) => !serverHeld.has(port)).map(({ port }) => port);

  // The canary stops so that the server goes quiet and its idle collection runs (it looks every 10 s, so
  // up to ~20 s after the last byte); memory is read once it is back under the bound, or after 22 s.
  await canary.stop();
  const quietDeadline = performance.now() + 22_000;
  server.watch.after = await server.watch.fresh();
  while (
    (server.watch.after.rssBytes ?? Infinity) - (server.watch.before.rssBytes ?? 0) > rssGrowthLimitBytes &&
    performance.now() < quietDeadline
  ) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    server.watch.after = await server.watch.fresh();
  }
  server.watch.afterFullGc = await server.afterFullGc();
  stopSampling = true;
  await sampling;
  clearInterval(harnessTicker);
  // A stall whose window holds one of the idle collector's full collections is (at least partly) that pause.
  for (const stall of stalls) {
    const collection = server.collections.find((gc) => gc.t <= stall.t + 50 && gc.t >= stall.t - 400);
    if (collection) stall.fullGcMs = collection.elapsedMs;
    const pauses = server.gcPauses.filter((gc) => gc.t <= stall.t + 50 && gc.t >= stall.t - 400);
    if (pauses.length) stall.gcPauses = pauses.map((gc) => `${gc.kind} ${gc.pauseMs} ms`);
  }
  const serverAlive = !server.exited;
  const maxStallMs = server.probe.maxStallMs(fuzzStartMs);
  const growth = (server.watch.after.rssBytes ?? Infinity) - (server.watch.before.rssBytes ?? 0);
  const invariants: Invariant[] = [
    {
      name: "server alive",
      ok: serverAlive,
      detail: serverAlive
        ? "running"
        : `exited ${JSON.stringify(server.exitStatus)}: ${server.tail.slice(-5).join(" | ")}`,
    },
    {
      name: `no event-loop stall > ${stallLimitMs} ms`,
      ok: maxStallMs <= stallLimitMs && server.probe.reports.length > 0,
      detail: `max stall ${maxStallMs} ms (raw lag ${
        server.probe.maxLagMs(fuzzStartMs)
      } ms, ${server.probe.reports.length} probe reports)`,
    },
    {
      name: "no listener left",
      ok: leaked.length === 0,
      detail: leaked.length
        ? `server still listens on ${leaked.join(", ")}`
        : `only ${[...expected].join(", ")}`,
    },
    {
      name: "reported ports bindable again",
      ok: leakedByServer.length === 0,
      detail:
        (leakedByServer.length
          ? `the server still holds ${leakedByServer.slice(0, 20).join(", ")}`
          : `${ledger.boundPorts.size} ports reported bound, none held by the server`) +
        (heldElsewhere.length ? `; ${heldElsewhere.slice(0, 10).join(", ")} held by other processes` : ""),
    },
    {
      name: `RSS growth <= ${mb(rssGrowthLimitBytes)}`,
      ok: growth <= rssGrowthLimitBytes,
      detail:
        `${mb(server.watch.before.rssBytes)} before, ${mb(server.watch.peakRssBytes(fuzzStartMs))} peak, ` +
        `${mb(server.watch.after.rssBytes)} after (JS heap in use ${
          mb(server.watch.before.heapUsedBytes)
        } → ` +
        `${mb(server.watch.after.heapUsedBytes)}; after a forced full GC: RSS ` +
        `${mb(server.watch.afterFullGc?.rssBytes)}, heap ${mb(server.watch.afterFullGc?.heapUsedBytes)})`,
    },
    {
      name: "canary round-trips without errors",
      ok: canary.errors === 0 && canary.rounds > 0,
      detail: `${canary.rounds} rounds, ${canary.errors} errors, max ${round1(canary.maxLatencyMs)} ms ` +
        `(harness lag max ${round1(harnessLagMaxMs)} ms)${
          canary.errorSamples[0] ? `; first error: ${canary.errorSamples[0]}` : ""
        }`,
    },
    {
      name: "server's data-stream headers valid",
      ok: ledger.badServerHeaders.length === 0,
      detail: ledger.badServerHeaders.slice(0, 3).join("; ") ||
        `${ledger.outcomes.get("stream:echo") ?? 0} echoed streams`,
    },
  ];
  await canary.close();
  const report: FuzzReport = {
    seed: options.seed,
    cases: casesStarted,
    scripts,
    durationMs: Math.round(performance.now() - started),
    invariants,
    ok: invariants.every((invariant) => invariant.ok),
    stalls,
    scriptKinds: kinds,
    outcomes: Object.fromEntries([...ledger.outcomes].sort(([a], [b]) => a.localeCompare(b))),
    server: { ...server.watch.toJSON(), fuzz_ms: fuzzEndMs - fuzzStartMs, max_stall_ms: maxStallMs },
    canary: {
      ...canary.toJSON(),
      client_max_stall_ms: canaryClient.process.probe.maxStallMs(fuzzStartMs),
      harness_max_lag_ms: round1(harnessLagMaxMs),
    },
    serverLogLevels: Object.fromEntries(server.levels),
    serverCollections: server.collections.filter((collection) => collection.t >= fuzzStartMs - 1000),
    serverGcPauses: server.gcPauses.filter((gc) => gc.t >= fuzzStartMs).slice(0, 200),
    serverErrorLines: server.errorLines.slice(0, 20),
    replay: `deno task fuzz --seed ${options.seed} --cases ${options.cases}` +
      (options.only ? ` --only ${options.only.join(",")}` : ""),
  };
  return report;
}

/** The run as a printable table. */
export function formatFuzzReport(report: FuzzReport): string {
  const rows: Array<[string, string]> = [
    ["seed", String(report.seed)],
    ["cases", `${report.cases} in ${report.scripts} scripts (${JSON.stringify(report.scriptKinds)})`],
    ["duration", `${(report.durationMs / 1000).toFixed(1)} s`],
    ...report.invariants.map((invariant): [string, string] => [
      `${invariant.ok ? "ok  " : "FAIL"} ${invariant.name}`,
      invariant.detail,
    ]),
  ];
  if (report.stalls.length) {
    rows.push([
      "stalls",
      report.stalls.slice(0, 5).map((stall) =>
        `${stall.stallMs} ms at ${new Date(stall.t).toISOString()} (scripts ${stall.scripts.join(",")}` +
        `${stall.fullGcMs !== undefined ? `; idle full GC took ${stall.fullGcMs} ms` : ""}` +
        `${stall.gcPauses ? `; V8 paused: ${stall.gcPauses.join(", ")}` : ""})`
      ).join("; "),
    ]);
  }
  if (!report.ok) rows.push(["replay", report.replay]);
  return formatTable(`Live fuzz ${report.ok ? "passed" : "FAILED"}`, rows);
}

/**
 * `failover`: what losing one of two servers costs outside users behind haproxy (issue 17). Each run starts
 * two real servers (127.0.0.2, 127.0.0.3, one tunnel port, each publishing on its own address), one client
 * with both, and haproxy on a loopback port balancing the published port with health checks
 * (`check inter 200ms fall 2 rise 1`); a loop opens a connection through haproxy every 20 ms, and after
 * 1 s one server is killed with SIGKILL. Figures per run: connections that failed, those in flight at the
 * kill, the window from the kill to the last failed connection's start, and the time haproxy took to log
 * the server DOWN.
 *
 * - `haproxy redispatch`: `retries 2` + `option redispatch 1`, the configuration docs/DEPLOYMENT.md
 *   recommends and tests/failover_haproxy_test.ts runs: a connect refused by the dead server is retried
 *   on the other.
 * - `haproxy no retry`: `retries 0`: every connection sent to the dead server before the check notices
 *   fails, so the window is the health check's.
 *
 * @module
 */

import type { BenchCase, BenchContext, BenchFigure, BenchSection } from "../_harness.ts";
import { BehindHaproxy, connectionLoop, failoverFigures, haproxyPath } from "../../testing/failover.ts";

const CHECK_INTERVAL_MS = 200;
const FALL = 2;
const LOOP_INTERVAL_MS = 20;
/** Traffic before the kill, and after it. */
const BEFORE_KILL_MS = 1000;
const AFTER_KILL_MS = 1500;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** One run: fresh processes, the loop, the kill; the figures. */
async function oneRun(binary: string, redispatch: boolean, signal: AbortSignal) {
  await using setup = await BehindHaproxy.start(binary, {
    checkIntervalMs: CHECK_INTERVAL_MS,
    fall: FALL,
    redispatch,
  });
  const { fixture, haproxy, frontendPort } = setup;
  const stop = new AbortController();
  signal.addEventListener("abort", () => stop.abort(), { once: true });
  const loop = connectionLoop(frontendPort, LOOP_INTERVAL_MS, stop.signal);
  await sleep(BEFORE_KILL_MS);
  const killedAtMs = performance.now();
  await fixture.killServer(0);
  await sleep(AFTER_KILL_MS);
  stop.abort();
  const attempts = await loop;
  const figures = failoverFigures(attempts, killedAtMs, haproxy.downAtMs("a", killedAtMs));
  return {
    value: figures.failed,
    also: {
      inFlight: figures.inFlightAtKill,
      windowMs: figures.failureWindowMs,
      detectionMs: figures.detectionMs ?? Number.NaN,
      attempts: figures.attempts,
    },
  };
}

function failoverCase(
  context: BenchContext,
  binary: string | null,
  label: string,
  redispatch: boolean,
): BenchCase {
  const also: BenchFigure[] = [
    {
      name: `${label}: in flight at kill`,
      key: "inFlight",
      metric: "connections open at the kill",
      unit: "conns",
    },
    {
      name: `${label}: failure window`,
      key: "windowMs",
      metric: "kill → last failed connection",
      unit: "ms",
    },
    { name: `${label}: haproxy detection`, key: "detectionMs", metric: "kill → server DOWN", unit: "ms" },
    {
      name: `${label}: connections`,
      key: "attempts",
      metric: "connections opened in the run",
      unit: "conns",
    },
  ];
  return {
    name: `${label}: failed connections`,
    metric: `failed of one connection per ${LOOP_INTERVAL_MS} ms`,
    unit: "conns",
    also,
    ...(binary === null ? { skip: "haproxy not found; install it (apt-get install haproxy)" } : {}),
    params: {
      check_inter_ms: CHECK_INTERVAL_MS,
      fall: FALL,
      loop_interval_ms: LOOP_INTERVAL_MS,
      redispatch: redispatch ? "retries 2 + option redispatch" : "retries 0",
      quick: context.quick ? 1 : 0,
    },
    run: (signal) => oneRun(binary ?? "", redispatch, signal),
  };
}

/** The failover section. */
export const failoverSection: BenchSection = {
  name: "failover",
  description:
    "one of two servers killed behind haproxy (health checks every 200 ms, fall 2): failed connections and the window",
  runs: (context) => (context.quick ? 1 : 3),
  warmupRounds: () => 0,
  budgetMs: (context) => (context.quick ? 60_000 : 180_000),
  runTimeoutMs: () => 60_000,
  setup(context) {
    const binary = haproxyPath();
    return Promise.resolve({
      cases: [
        failoverCase(context, binary, "haproxy redispatch", true),
        failoverCase(context, binary, "haproxy no retry", false),
      ],
      teardown: () => Promise.resolve(),
    });
  },
};

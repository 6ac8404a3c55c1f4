/**
 * The soak harness: the floods and faults of issue 10 at once against a real server and client
 * (`deno run main.ts server|client` children with the lag probe), while a canary round-trips through a
 * second client. Used by `tests/soak_test.ts` (short, seeded) and `deno task soak` (scripts/soak.ts).
 *
 * Faults, each a loop for the whole run, all from loopback source addresses other than the canary's:
 * idle TCP connections to the tunnel port (from many addresses, and from one, beyond its pending limit), TLS handshakes stalled after half a ClientHello, wrong-key
 * authentication floods, register floods (authenticate, pipelined registrations, vanish), 1 KiB echo
 * connections held open on the worker client's published port, and `kill -9` + restart of that client.
 *
 * @module
 */

import { Session } from "../lib/mux/mod.ts";
import { RpcPeer } from "../lib/rpc/mod.ts";
import { writeAll } from "../lib/net/conn.ts";
import { EchoService } from "./helpers.ts";
import { dialTcp, dialTls, type FuzzConn, sourceAddress } from "./fuzz_conn.ts";
import { within } from "./fuzz_scripts.ts";
import {
  Canary,
  formatTable,
  LIVE_AUTH_KEY,
  type LiveProcess,
  LiveTunnel,
  mb,
  round1,
} from "./live_tunnel.ts";

/** Sizes of one soak. */
export interface SoakScale {
  /** Idle TCP connections kept open to the tunnel port, each from its own address. */
  idleConnections: number;
  /** Idle TCP connections kept open to the tunnel port from one address (most are refused at once). */
  idleFromOneAddress: number;
  /** TLS handshakes kept stalled. */
  stalledHandshakes: number;
  /** Wrong-key authentications per second. */
  wrongKeysPerSecond: number;
  /** Register-and-vanish sessions per second. */
  registersPerSecond: number;
  /** 1 KiB echo connections held open per wave. */
  echoConnections: number;
  /** Seconds between `kill -9` of the worker client. */
  killEverySecs: number;
}

/** The scale of `deno task soak`. */
export const FULL_SCALE: SoakScale = {
  idleConnections: 2000,
  idleFromOneAddress: 1000,
  stalledHandshakes: 300,
  wrongKeysPerSecond: 20,
  registersPerSecond: 10,
  echoConnections: 2000,
  killEverySecs: 30,
};

/** The scale of the soak inside `deno task test`. */
export const TEST_SCALE: SoakScale = {
  idleConnections: 200,
  idleFromOneAddress: 300,
  stalledHandshakes: 50,
  wrongKeysPerSecond: 10,
  registersPerSecond: 5,
  echoConnections: 200,
  killEverySecs: 6,
};

/** The faults of a soak, by name. */
export const SOAK_FAULTS = ["idle", "stalled", "wrong-key", "register", "echo", "kill"] as const;
/** One fault of a soak. */
export type SoakFault = typeof SOAK_FAULTS[number];

/** Options of {@linkcode runSoak}. */
export interface SoakOptions {
  /** How long the faults run. */
  seconds: number;
  /** Seed of the fault timings. */
  seed: number;
  scale: SoakScale;
  /** How long to wait after the faults for memory and descriptors to come back. Default 25 s. */
  settleSecs?: number;
  log?: (line: string) => void;
  /** Run only these faults (default: all), to find which one a figure comes from. */
  faults?: readonly SoakFault[];
}

/** What a soak measured. */
export interface SoakReport {
  seed: number;
  faultsRun: readonly SoakFault[];
  seconds: number;
  scale: SoakScale;
  canary: Record<string, unknown>;
  processes: Array<Record<string, unknown>>;
  faults: Record<string, number>;
  serverLogLevels: Record<string, number>;
  serverErrorLines: string[];
}

/**
 * What must come back once the faults stop (the soak's pass bars, read by the test and `deno task soak`):
 * descriptors within `fdSlack` of before, RSS within `rssRatio` × before, and the JS heap after a forced
 * full GC within `heapSlackBytes` of before.
 */
export const SOAK_BARS = { fdSlack: 10, rssRatio: 1.25, heapSlackBytes: 16 * 1024 * 1024 } as const;

/** The figures of one watched process in {@linkcode SoakReport.processes} that the pass bars read. */
export interface SoakProcessFigures {
  label: string;
  fds_before: number;
  fds_after: number;
  rss_before_bytes: number;
  rss_after_bytes: number;
  heap_used_before_bytes: number;
  heap_used_after_full_gc_bytes: number;
}

/** The server's and the canary client's figures (the first two of `report.processes`), in that order. */
export function watchedProcesses(report: SoakReport): SoakProcessFigures[] {
  return report.processes.slice(0, 2) as unknown as SoakProcessFigures[];
}

/** mulberry32: a small seeded generator, so a soak's fault timings replay. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** The first bytes of a TLS 1.2 ClientHello record: the handshake then waits for the rest forever. */
const HALF_CLIENT_HELLO = new Uint8Array([
  0x16,
  0x03,
  0x01,
  0x00,
  0xc8,
  0x01,
  0x00,
  0x00,
  0xc4,
  0x03,
  0x03,
  1,
  2,
  3,
  4,
]);

/** Runs the soak and returns what it measured (it asserts nothing; see the test and the task). */
export async function runSoak(options: SoakOptions): Promise<SoakReport> {
  const log = options.log ?? (() => {});
  const random = seededRandom(options.seed);
  const { scale } = options;
  const faults: Record<string, number> = {};
  const count = (key: string) => (faults[key] = (faults[key] ?? 0) + 1);
  await using tunnel = await LiveTunnel.start(
    `allow_ports = "32768-60999"\nhandshake_timeout_secs = 2\nkeepalive_interval_secs = 1\nkeepalive_timeout_secs = 3\n`,
  );
  const workerEcho = new EchoService();
  const canary = new Canary();
  try {
    const canaryClient = await tunnel.client("canary", canary.echo.port);
    let worker = await tunnel.client("worker", workerEcho.port);
    const workerProcesses: LiveProcess[] = [worker.process];
    canary.start(canaryClient.port);
    await sleep(1500);
    const watched = [tunnel.server, canaryClient.process];
    for (const process of [...watched, worker.process]) process.watch.before = await process.watch.fresh();
    const startedMs = Date.now();
    const endAtMs = performance.now() + options.seconds * 1000;
    const running = () => performance.now() < endAtMs;
    let sourceIndex = 1000;
    const nextSource = () => sourceAddress(sourceIndex++);
    const held = new Set<FuzzConn>();
    const hold = (conn: FuzzConn) => {
      held.add(conn);
      return conn;
    };
    const release = (conn: FuzzConn) => {
      held.delete(conn);
      conn.destroy();
    };

    /** Keeps `target` connections made by `open` alive, each for 1–5 s, until the run ends. */
    const keepOpen = async (label: string, target: number, open: () => Promise<FuzzConn>) => {
      let live = 0;
      const one = async () => {
        live++;
        try {
          const conn = hold(await open());
          count(`${label}:opened`);
          const untilMs = 1000 + random() * 4000;
          const openedMs = performance.now();
          await within(readUntilEnd(conn), untilMs, undefined);
          if (conn.ended) count(`${label}:closed-by-server`);
          release(conn);
          // Refused at once (a pending-connection limit): wait out the rest of its slot, so the flood keeps
          // its size instead of turning into a connect loop.
          await sleep(Math.max(0, Math.min(untilMs, 1000) - (performance.now() - openedMs)));
        } catch {
          count(`${label}:failed`);
          await sleep(100);
        } finally {
          live--;
        }
      };
      const tasks = new Set<Promise<void>>();
      while (running()) {
        while (live < target && running()) {
          const task = one().finally(() => tasks.delete(task));
          tasks.add(task);
          if (live % 50 === 0) await sleep(10);
        }
        await sleep(50);
      }
      await Promise.all(tasks);
    };

    /** Runs `act` `perSecond` times a second until the run ends. */
    const atRate = async (perSecond: number, act: () => Promise<void>) => {
      const tasks = new Set<Promise<void>>();
      while (running()) {
        const task = act().finally(() => tasks.delete(task));
        tasks.add(task);
        await sleep((1000 / perSecond) * (0.5 + random()));
      }
      await Promise.all(tasks);
    };

    const session = async (label: string, body: (rpc: RpcPeer) => Promise<void>, source = nextSource()) => {
      let conn: FuzzConn | null = null;
      try {
        conn = hold(await dialTls(tunnel.port, source, tunnel.caPem));
        const mux = new Session(conn, { role: "client", keepaliveIntervalMs: 0 });
        const rpc = new RpcPeer(await mux.open(), { requestTimeoutMs: 5000 });
        await body(rpc);
        rpc.close();
        count(`${label}:done`);
      } catch (error) {
        count(`${label}:${(error as Error)?.name ?? "failed"}`);
      } finally {
        if (conn) release(conn);
      }
    };

    // Every other wrong key comes from one address, which the throttle must stop; the rest from many.
    let wrongKeyCount = 0;
    const wrongKeys = () =>
      session("wrong-key", async (rpc) => {
        await rpc.request("authenticate", {
          auth_key: "wrong-key-0123456789abcdef",
          protocol_version: 1,
          client_id: "flood",
        })
          .catch((error) => count(`wrong-key:answer-${(error as { code?: number }).code ?? "none"}`));
      }, wrongKeyCount++ % 2 === 0 ? "127.9.9.9" : nextSource());
    let floodId = 0;
    const registers = () =>
      session("register", async (rpc) => {
        await rpc.request("authenticate", {
          auth_key: LIVE_AUTH_KEY,
          protocol_version: 1,
          client_id: `flood-${floodId++}`,
        });
        const proxies = Array.from({ length: 4 }, (_, index) => ({
          name: `f${index}`,
          proxy_type: "tcp",
          publish_addr: "127.0.0.1",
          publish_port: 0,
          local_addr: "127.0.0.1",
          local_port: 9,
        }));
        await Promise.allSettled([1, 2].map(() => rpc.request("register_proxies", { proxies })));
      });

    const echoWaves = async () => {
      const payload = new Uint8Array(1024).fill(0x61);
      while (running()) {
        const port = worker.port;
        const conns: Deno.TcpConn[] = [];
        const open = async () => {
          try {
            const conn = await Deno.connect({ hostname: "127.0.0.1", port });
            conns.push(conn);
            await writeAll(conn, payload);
            let read = 0;
            const buffer = new Uint8Array(2048);
            while (read < payload.length) {
              const n = await within(conn.read(buffer), 5000, null);
              if (n === null) throw new Error("echo ended early");
              read += n;
            }
            count("echo:round-trip");
          } catch {
            count("echo:failed");
          }
        };
        for (let index = 0; index < scale.echoConnections && running(); index += 50) {
          await Promise.all(Array.from({ length: Math.min(50, scale.echoConnections - index) }, open));
        }
        await sleep(Math.min(5000, Math.max(0, endAtMs - performance.now())));
        for (const conn of conns) {
          try {
            conn.close();
          } catch {
            // Closed by the worker's death.
          }
        }
      }
    };

    const kills = async () => {
      while (running()) {
        await sleep(scale.killEverySecs * 1000 * (0.75 + random() / 2));
        if (!running()) break;
        worker.process.kill("SIGKILL");
        await worker.process.done;
        count("worker:killed");
        try {
          worker = await tunnel.client("worker", workerEcho.port);
          workerProcesses.push(worker.process);
          count("worker:restarted");
        } catch (error) {
          count("worker:restart-failed");
          log(`worker restart failed: ${String(error).slice(0, 300)}`);
        }
      }
    };

    const progress = (async () => {
      while (running()) {
        await sleep(5000);
        const server = tunnel.server.watch.sample();
        log(
          `  ${Math.round((Date.now() - startedMs) / 1000)} s: server ${
            mb(server.rssBytes)
          }, ${server.fds} fds; ` +
            `canary ${canary.rounds} rounds / ${canary.errors} errors`,
        );
      }
    })();

    const enabled = (fault: SoakFault) => options.faults === undefined || options.faults.includes(fault);
    await Promise.all([
      enabled("idle") && keepOpen("idle", scale.idleConnections, () => dialTcp(tunnel.port, nextSource())),
      enabled("idle") &&
      keepOpen("idle-one-address", scale.idleFromOneAddress, () => dialTcp(tunnel.port, "127.8.8.8")),
      enabled("stalled") && keepOpen("stalled", scale.stalledHandshakes, async () => {
        const conn = await dialTcp(tunnel.port, nextSource());
        await writeAll(conn, HALF_CLIENT_HELLO);
        return conn;
      }),
      enabled("wrong-key") && atRate(scale.wrongKeysPerSecond, wrongKeys),
      enabled("register") && atRate(scale.registersPerSecond, registers),
      enabled("echo") && echoWaves(),
      enabled("kill") && kills(),
      progress,
    ]);
    for (const conn of [...held]) release(conn);
    const faultsEndMs = Date.now();

    // Quiet: the canary stops (the idle collection waits for traffic to stop) and what was held comes back.
    await canary.stop();
    const settleDeadline = performance.now() + (options.settleSecs ?? 25) * 1000;
    const back = (process: LiveProcess) => {
      const now = process.watch.sample();
      const before = process.watch.before;
      return (now.fds ?? Infinity) <= (before?.fds ?? 0) + SOAK_BARS.fdSlack &&
        (now.rssBytes ?? Infinity) <= SOAK_BARS.rssRatio * (before?.rssBytes ?? 0);
    };
    while (performance.now() < settleDeadline && !watched.every(back)) await sleep(500);
    for (const process of [...watched, worker.process]) process.watch.after = await process.watch.fresh();
    for (const process of watched) process.watch.afterFullGc = await process.afterFullGc();

    const processes: Array<Record<string, unknown>> = [tunnel.server, canaryClient.process].map((
      process,
    ) => ({
      ...process.watch.toJSON(),
      max_stall_ms: process.probe.maxStallMs(startedMs),
      max_stall_during_faults_ms: Math.max(
        0,
        ...process.probe.reports.filter((report) => report.t >= startedMs && report.t <= faultsEndMs).map((
          report,
        ) => report.stallMaxMs),
      ),
      // Each stall over 100 ms with the V8 pauses of 20 ms or more around it (a GC pause explains it).
      stalls_over_100ms: process.probe.reports.filter((report) =>
        report.t >= startedMs && report.stallMaxMs > 100
      )
        .slice(0, 50).map((report) => ({
          t: new Date(report.t).toISOString(),
          stall_ms: report.stallMaxMs,
          gc_pauses: process.gcPauses.filter((gc) => gc.t <= report.t + 50 && gc.t >= report.t - 400).map((
            gc,
          ) => `${gc.kind} ${gc.pauseMs} ms`),
        })),
    }));
    const firstWorker = workerProcesses[0]?.watch.before;
    processes.push({
      ...worker.process.watch.toJSON(),
      rss_before_bytes: firstWorker?.rssBytes ?? null,
      fds_before: firstWorker?.fds ?? null,
      label: `worker (last of ${workerProcesses.length})`,
      max_stall_ms: Math.max(0, ...workerProcesses.map((process) => process.probe.maxStallMs(startedMs))),
    });
    return {
      seed: options.seed,
      faultsRun: options.faults ?? SOAK_FAULTS,
      seconds: options.seconds,
      scale,
      canary: canary.toJSON(),
      processes,
      faults: Object.fromEntries(Object.entries(faults).sort(([a], [b]) => a.localeCompare(b))),
      serverLogLevels: Object.fromEntries(tunnel.server.levels),
      serverErrorLines: tunnel.server.errorLines.slice(0, 20),
    };
  } finally {
    await canary.close();
    await workerEcho.close();
  }
}

/** Reads and drops everything until the connection ends. */
async function readUntilEnd(conn: FuzzConn): Promise<void> {
  const buffer = new Uint8Array(4096);
  while ((await conn.read(buffer).catch(() => null)) !== null) { /* dropped */ }
}

/** The soak as a printable table. */
export function formatSoakReport(report: SoakReport): string {
  const canary = report.canary as {
    rounds: number;
    errors: number;
    max_latency_ms: number;
    p99_latency_ms: number;
  };
  const rows: Array<[string, string]> = [
    ["seed", String(report.seed)],
    ["faults ran", `${report.faultsRun.join(", ")} for ${report.seconds} s`],
    [
      "canary",
      `${canary.rounds} rounds, ${canary.errors} errors, max ${canary.max_latency_ms} ms, p99 ${canary.p99_latency_ms} ms`,
    ],
  ];
  for (const process of report.processes) {
    const p = process as Record<string, number | null | string>;
    rows.push([
      String(p.label),
      `RSS ${mb(p.rss_before_bytes as number)} → peak ${mb(p.rss_peak_bytes as number)} → ${
        mb(p.rss_after_bytes as number)
      }` +
      (p.rss_after_full_gc_bytes
        ? ` (forced full GC: RSS ${mb(p.rss_after_full_gc_bytes as number)}, JS heap ${
          mb(p.heap_used_before_bytes as number)
        } → ${mb(p.heap_used_after_full_gc_bytes as number)})`
        : "") +
      "; " +
      `fds ${p.fds_before} → peak ${p.fds_peak} → ${p.fds_after}; max stall ${
        round1(Number(p.max_stall_ms))
      } ms`,
    ]);
  }
  rows.push(["faults", Object.entries(report.faults).map(([key, value]) => `${key} ${value}`).join(", ")]);
  return formatTable("Soak", rows);
}

/**
 * `tunnel-memory-echo`: what outside connections that each echoed a payload and stay open cost the
 * tunnel's server and client (RSS per connection and in total), and whether that memory comes back once
 * they close. Issue 10 item 3: 10,000 connections that each echoed 1,024 bytes used to keep ≈ 145 KiB
 * each on both sides (a 256 KiB copy buffer pinned by the read waiting on every idle socket), and most of
 * it stayed after they closed. Selected by `--only tunnel-memory` as well (a `tunnel-memory-…` section).
 *
 * - `tls-tunnel 1 KiB echo`: fresh server and client processes; 10,000 connections (1,000 quick) each
 *   echo 1,024 bytes and stay open; RSS per held connection and in total; then they close and RSS is
 *   sampled for 30 s; then the same again (a process that already held that many connections once).
 *   `… collected`: the least RSS while the connections stay held through the processes' idle collection
 *   (25 s): what they hold, without the garbage their echoes left.
 * - `tls-tunnel echo shapes`: other payload sizes (1,000 B, 2 KiB, 4 KiB, 16 KiB, 64 KiB), each through
 *   fresh processes, 2,000 connections (500 quick): RSS per held connection, at once and collected.
 *
 * @module
 */

import type {
  BenchBar,
  BenchCase,
  BenchContext,
  BenchFigure,
  BenchRunFigures,
  BenchSection,
} from "../_harness.ts";
import { IdleConnections, tcpConnector } from "../e2e/load.ts";
import { PathSet } from "../e2e/paths.ts";
import { type AgentProcess, treeRssBytes, TunnelPair } from "../e2e/processes.ts";

/** Connections are opened (and echo) this many at a time. */
const CONCURRENCY = 32;
/** Pause before reading RSS, so in-flight work settles. */
const SETTLE_MS = 1_000;
/** How long after the connections close memory has to come back (issue 10: within 30 s). */
const RETURN_WINDOW_MS = 30_000;
/**
 * How long held connections are watched for the processes' idle collection (it runs 10–20 s after traffic
 * stops): what is left then is what the connections hold, not garbage of their echoes.
 */
const COLLECTION_WINDOW_MS = 25_000;
/** RSS is sampled this often during {@linkcode RETURN_WINDOW_MS} and {@linkcode COLLECTION_WINDOW_MS}. */
const RETURN_SAMPLE_MS = 1_000;
/** Greatest RSS per held connection on each side (issue 10). */
const HELD_BAR_KIB = 24;
/** Greatest RSS after the connections closed, as a multiple of RSS before they opened (issue 10). */
const RETURN_BAR_RATIO = 1.25;
/** The payload of the main case. */
const ECHO_BYTES = 1024;
/** The payloads of the shapes case. */
const SHAPE_BYTES = [1000, 2048, 4096, 16 * 1024, 64 * 1024] as const;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const KIB = 1024;

/** Size label of a payload: "1,000 B", "4 KiB". */
function sizeLabel(bytes: number): string {
  return bytes % KIB === 0 ? `${bytes / KIB} KiB` : `${bytes.toLocaleString("en-US")} B`;
}

/** RSS in bytes of the server and the client. */
async function rssOf(pair: TunnelPair): Promise<[number, number]> {
  const [server, client] = await treeRssBytes([pair.server.pid, pair.client.pid]);
  return [server ?? 0, client ?? 0];
}

/** What one burst measured: RSS before, with the connections held, and once they closed. */
interface BurstFigures {
  before: [number, number];
  held: [number, number];
  /** Least RSS while the connections stayed held through the idle collection (with `watchHeld`). */
  heldCollected: [number, number];
  /** RSS at the end of the return window (or as soon as both sides were under the bar). */
  after: [number, number];
}

/**
 * Opens `count` connections through `pair`, echoes `bytes` through each, holds them, reads RSS; then
 * closes them and (with `waitForReturn`) samples RSS until both sides are at most
 * {@linkcode RETURN_BAR_RATIO} × before, or {@linkcode RETURN_WINDOW_MS} passed.
 */
async function echoBurst(
  pair: TunnelPair,
  count: number,
  bytes: number,
  options: { waitForReturn: boolean; watchHeld: boolean },
  signal: AbortSignal,
): Promise<BurstFigures> {
  const before = await rssOf(pair);
  const conns = new IdleConnections();
  let held: [number, number];
  let heldCollected: [number, number];
  try {
    await conns.growTo(tcpConnector(pair.publishPort), count, CONCURRENCY, signal);
    await conns.burst(count, bytes, CONCURRENCY, signal);
    await sleep(SETTLE_MS);
    held = await rssOf(pair);
    heldCollected = held;
    const watchedSince = performance.now();
    while (options.watchHeld && performance.now() - watchedSince < COLLECTION_WINDOW_MS) {
      signal.throwIfAborted();
      await sleep(RETURN_SAMPLE_MS);
      const now = await rssOf(pair);
      heldCollected = [Math.min(heldCollected[0], now[0]), Math.min(heldCollected[1], now[1])];
    }
  } finally {
    conns.closeAll();
  }
  let after = held;
  if (options.waitForReturn) {
    const closedAt = performance.now();
    while (performance.now() - closedAt < RETURN_WINDOW_MS) {
      signal.throwIfAborted();
      await sleep(RETURN_SAMPLE_MS);
      after = await rssOf(pair);
      if (after.every((rss, side) => rss <= RETURN_BAR_RATIO * (before[side] ?? rss))) break;
    }
  }
  return { before, held, heldCollected, after };
}

const perConnKiB = (figures: BurstFigures, side: 0 | 1, count: number) =>
  (figures.held[side] - figures.before[side]) / count / KIB;
const perConnCollectedKiB = (figures: BurstFigures, side: 0 | 1, count: number) =>
  (figures.heldCollected[side] - figures.before[side]) / count / KIB;

function kibFigure(name: string, key: string): BenchFigure {
  return { name, key, metric: "RSS / conn", unit: "KiB", bars: [{ maxValue: HELD_BAR_KIB }] };
}

function mbFigure(name: string, key: string): BenchFigure {
  return { name, key, metric: "RSS", unit: "MB" };
}

function ratioFigure(name: string, key: string): BenchFigure {
  const bars: BenchBar[] = [{ maxValue: RETURN_BAR_RATIO }];
  return { name, key, metric: "RSS / before", unit: "x", bars };
}

/** 1 KiB echoed through each of many connections that stay open, then close; twice in the same processes. */
function echoCase(context: BenchContext, agent: AgentProcess): BenchCase {
  const count = context.quick ? 1_000 : 10_000;
  const k = `@${count / 1000}k`;
  const label = `tls-tunnel ${sizeLabel(ECHO_BYTES)} echo`;
  return {
    name: `${label} server held ${k}`,
    metric: "RSS / conn",
    unit: "KiB",
    bars: [{ maxValue: HELD_BAR_KIB }],
    also: [
      kibFigure(`${label} client held ${k}`, "clientHeld"),
      kibFigure(`${label} server held ${k} collected`, "serverHeldCollected"),
      kibFigure(`${label} client held ${k} collected`, "clientHeldCollected"),
      mbFigure(`${label} server held ${k} total`, "serverHeldMB"),
      mbFigure(`${label} client held ${k} total`, "clientHeldMB"),
      mbFigure(`${label} server before`, "serverBeforeMB"),
      mbFigure(`${label} client before`, "clientBeforeMB"),
      mbFigure(`${label} server after they close total`, "serverAfterMB"),
      mbFigure(`${label} client after they close total`, "clientAfterMB"),
      ratioFigure(`${label} server after they close`, "serverReturn"),
      ratioFigure(`${label} client after they close`, "clientReturn"),
      kibFigure(`${label} server held again ${k}`, "serverHeldAgain"),
      kibFigure(`${label} client held again ${k}`, "clientHeldAgain"),
      ratioFigure(`${label} server after they close again`, "serverReturnAgain"),
      ratioFigure(`${label} client after they close again`, "clientReturnAgain"),
    ],
    params: { connections: count, payloadBytes: ECHO_BYTES, returnWindowMs: RETURN_WINDOW_MS },
    async run(signal): Promise<BenchRunFigures> {
      const pair = await TunnelPair.start(agent.tcpPort);
      try {
        await sleep(SETTLE_MS);
        const first = await echoBurst(
          pair,
          count,
          ECHO_BYTES,
          { waitForReturn: true, watchHeld: true },
          signal,
        );
        const again = await echoBurst(
          pair,
          count,
          ECHO_BYTES,
          { waitForReturn: true, watchHeld: false },
          signal,
        );
        const mb = (bytes: number) => bytes / 1e6;
        return {
          value: perConnKiB(first, 0, count),
          also: {
            clientHeld: perConnKiB(first, 1, count),
            serverHeldCollected: perConnCollectedKiB(first, 0, count),
            clientHeldCollected: perConnCollectedKiB(first, 1, count),
            serverHeldMB: mb(first.held[0]),
            clientHeldMB: mb(first.held[1]),
            serverBeforeMB: mb(first.before[0]),
            clientBeforeMB: mb(first.before[1]),
            serverAfterMB: mb(first.after[0]),
            clientAfterMB: mb(first.after[1]),
            serverReturn: first.after[0] / first.before[0],
            clientReturn: first.after[1] / first.before[1],
            serverHeldAgain: perConnKiB(again, 0, count),
            clientHeldAgain: perConnKiB(again, 1, count),
            serverReturnAgain: again.after[0] / again.before[0],
            clientReturnAgain: again.after[1] / again.before[1],
          },
        };
      } finally {
        await pair.stop();
      }
    },
  };
}

/** Other payload sizes, each through fresh processes: RSS per held connection on each side. */
function shapesCase(context: BenchContext, agent: AgentProcess): BenchCase {
  const count = context.quick ? 500 : 2_000;
  const k = `@${count / 1000}k`;
  const [firstShape, ...otherShapes] = SHAPE_BYTES;
  const name = (bytes: number, side: string) => `tls-tunnel ${sizeLabel(bytes)} echo ${side} held ${k}`;
  return {
    name: name(firstShape, "server"),
    metric: "RSS / conn",
    unit: "KiB",
    bars: [{ maxValue: HELD_BAR_KIB }],
    also: [
      kibFigure(name(firstShape, "client"), `client${firstShape}`),
      ...otherShapes.flatMap((bytes) => [
        kibFigure(name(bytes, "server"), `server${bytes}`),
        kibFigure(name(bytes, "client"), `client${bytes}`),
      ]),
      ...SHAPE_BYTES.flatMap((bytes) => [
        kibFigure(`${name(bytes, "server")} collected`, `serverCollected${bytes}`),
        kibFigure(`${name(bytes, "client")} collected`, `clientCollected${bytes}`),
      ]),
    ],
    params: { connections: count, payloadBytes: SHAPE_BYTES.join("/") },
    async run(signal): Promise<BenchRunFigures> {
      const figures: Record<string, number> = {};
      for (const bytes of SHAPE_BYTES) {
        const pair = await TunnelPair.start(agent.tcpPort);
        try {
          await sleep(SETTLE_MS);
          const burst = await echoBurst(
            pair,
            count,
            bytes,
            { waitForReturn: false, watchHeld: true },
            signal,
          );
          figures[`server${bytes}`] = perConnKiB(burst, 0, count);
          figures[`client${bytes}`] = perConnKiB(burst, 1, count);
          figures[`serverCollected${bytes}`] = perConnCollectedKiB(burst, 0, count);
          figures[`clientCollected${bytes}`] = perConnCollectedKiB(burst, 1, count);
        } finally {
          await pair.stop();
        }
      }
      const { [`server${firstShape}`]: value = Number.NaN, ...also } = figures;
      return { value, also };
    },
  };
}

/** RSS of the tunnel's processes while many connections that echoed a payload stay open, and after. */
export const tunnelMemoryEchoSection: BenchSection = {
  name: "tunnel-memory-echo",
  description:
    "RSS of server and client per held connection after a 1 KiB echo (and other sizes), and once they close",
  runs: () => 1,
  warmupRounds: () => 0,
  budgetMs: (context) => (context.quick ? 300_000 : 600_000),
  runTimeoutMs: (context) => (context.quick ? 240_000 : 300_000),
  async setup(context) {
    const work = await PathSet.start(context, { ssh: "none", tunnel: false });
    const agent = work.agent as AgentProcess;
    return {
      cases: [echoCase(context, agent), shapesCase(context, agent)],
      teardown: () => work.stop(),
    };
  },
};

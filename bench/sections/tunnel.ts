/**
 * End-to-end sections: the whole tunnel (server and client as separate `deno run main.ts` processes over
 * real TLS) against direct TCP, raw Deno TLS and OpenSSH `ssh -R`, side by side in one run. See
 * bench/README.md for what each figure means and docs/PERFORMANCE.md for the latest table.
 *
 * - `tunnel-throughput`: bulk MB/s with 1 and 8 concurrent connections, upload (outside peer → local
 *   service) and download (local service → outside peer).
 * - `tunnel-latency` (_tunnel_latency.ts): 64-byte round trips (p50, p99), new connections per second,
 *   fresh connection + 1 KiB echo and split-write requests.
 * - `tunnel-memory`: RSS of server and client, idle and with 1,000 and 10,000 idle connections.
 * - `tunnel-recovery`: port release after the client is killed, and server restart to traffic.
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
import { bulkDownload, bulkTransfer, type Connector, IdleConnections, tcpConnector } from "../e2e/load.ts";
import { type BenchPath, echoWorks, PathName, PathSet } from "../e2e/paths.ts";
import {
  type AgentProcess,
  buildBundleIn,
  type CliChild,
  startTunnelClient,
  startTunnelServer,
  stopChild,
  treeRssBytes,
  TunnelPair,
} from "../e2e/processes.ts";
import { canBind } from "../../testing/helpers.ts";
import { findSsh, SshForward, SshServer, waitUntil } from "../e2e/ssh.ts";
import { ALL_PATHS, isTunnelPath, requireConnect, skipReason, sum, withCpu } from "./_tunnel_common.ts";
import { tunnelLatencySection } from "./_tunnel_latency.ts";

const MIB = 1024 * 1024;
const GIB = 1024 * MIB;

// --- throughput -----------------------------------------------------------------------------------

/**
 * Bytes per throughput run (all connections together). Quick mode moves 64 MiB: with the tunnel over four
 * transports, ssh and the relays, 256 MiB took minutes on a busy 2-core machine.
 */
const bulkBytes = (context: BenchContext) => (context.quick ? 64 * MIB : 1 * GIB);

/** Which way the bytes of a throughput case go. */
type Direction = "upload" | "download";

function throughputCase(
  path: BenchPath,
  connections: number,
  direction: Direction,
  context: BenchContext,
  agentPid: number,
): BenchCase {
  // Upload cases keep their names from before downloads were measured ("tls-tunnel 1 conn").
  const suffix = `${direction === "download" ? "download " : ""}${
    connections === 1 ? "1 conn" : `${connections} conns`
  }`;
  const bars: BenchBar[] = [];
  if (path.name === PathName.tunnel) {
    bars.push({ minRatio: 2, against: [`${PathName.ssh} ${suffix}`], label: "ssh -R" });
    if (connections === 1) {
      bars.push({ minRatio: 0.6, against: [`${PathName.tls} ${suffix}`], label: "raw TLS" });
    }
  }
  if (path.name === PathName.tunnelWss) {
    // Issue 13: the WebSocket transport keeps at least 70 % of the tls transport's throughput.
    bars.push({ minRatio: 0.7, against: [`${PathName.tunnel} ${suffix}`], label: "tls-tunnel over tls" });
  }
  let runsDone = 0;
  const totalBytes = bulkBytes(context);
  const hasMiddle = isTunnelPath(path.name) || path.name === PathName.relay ||
    path.name === PathName.ssh || path.name === PathName.sshGcm;
  const cpuFigure = (key: string, what: string): BenchFigure => ({
    name: `${path.name} ${suffix} ${what}`,
    key,
    metric: "CPU time",
    unit: "CPU s/GB",
    ...(path.name === PathName.direct || key !== "cpuAll"
      ? {}
      : { baseline: `${PathName.direct} ${suffix} cpu all` }),
  });
  const transfer = direction === "upload" ? bulkTransfer : bulkDownload;
  return {
    name: `${path.name} ${suffix}`,
    metric: direction === "upload" ? "throughput" : "download",
    unit: "MB/s",
    ...(path.name === PathName.direct ? {} : { baseline: `${PathName.direct} ${suffix}` }),
    bars,
    also: [
      cpuFigure("cpuAll", "cpu all"),
      // The middle process the outside peer talks to (tunnel server, sshd, the outer relay): for a download
      // it decrypts (tunnel, ssh) what the other end encrypted.
      ...(hasMiddle ? [cpuFigure("cpuMiddle", "cpu tunnel"), cpuFigure("cpuServer", "cpu server")] : []),
    ],
    ...skipReason(path),
    params: { totalBytes, connections, writeBytes: 256 * 1024, direction },
    async run(signal): Promise<BenchRunFigures> {
      // The first run of every path (the warm-up) hashes what arrives (the agent for uploads, the bench
      // for downloads) and compares it with what was sent.
      const verify = runsDone++ === 0;
      const { result: megabytesPerSecond, used } = await withCpu(
        path,
        agentPid,
        () => transfer(requireConnect(path), { connections, totalBytes, verify }, signal),
      );
      const gigabytes = Math.floor(totalBytes / connections) * connections / 1e9;
      return {
        value: megabytesPerSecond,
        also: {
          cpuAll: sum(used) / gigabytes,
          cpuMiddle: sum(used.slice(2)) / gigabytes,
          cpuServer: (used[2] ?? Number.NaN) / gigabytes,
        },
      };
    },
  };
}

/** Bulk throughput through every path with 1 and 8 concurrent connections, both ways. */
export const tunnelThroughputSection: BenchSection = {
  name: "tunnel-throughput",
  description: "bulk MB/s with 1 and 8 connections, upload and download: direct TCP, raw Deno TLS, " +
    "tls-tunnel (tls, wss, http2 transports and wss through nginx), ssh -R (default, aes128-gcm)",
  runs: (context) => (context.quick ? 1 : 5),
  budgetMs: (context) => (context.quick ? 60_000 : 480_000),
  runTimeoutMs: (context) => (context.quick ? 30_000 : 60_000),
  async setup(context) {
    const set = await PathSet.start(context, { ssh: "both", relay: true, transports: true });
    const agentPid = (set.agent as AgentProcess).child.pid;
    const cases = [1, 8].flatMap((connections) =>
      (["upload", "download"] as const).flatMap((direction) =>
        ALL_PATHS.map((name) => throughputCase(set.get(name), connections, direction, context, agentPid))
      )
    );
    return { cases, teardown: () => set.stop() };
  },
};

// --- memory ------------------------------------------------------------------------------------------

/** Idle connections are opened this many at a time. */
const IDLE_OPEN_CONCURRENCY = 32;
/** Pause before reading RSS, so in-flight work settles. */
const SETTLE_MS = 1_000;

/** Bytes echoed through each of 1,000 held connections for the "after a burst" figure. */
const BURST_BYTES = 1024 * 1024;
/** Connections the burst goes through. */
const BURST_CONNECTIONS = 1_000;

/** How many idle connections the memory cases hold, in steps. */
const idleSteps = (context: BenchContext): number[] => (context.quick ? [1_000] : [1_000, 10_000]);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** What a memory run starts: the two processes whose RSS is read, and a connector through them. */
interface MemorySubject {
  serverPid: number;
  clientPid: number;
  connect: Connector;
  stop(): Promise<void>;
}

function memoryCase(
  label: "tls-tunnel" | "tls-tunnel bundle" | "ssh -R",
  context: BenchContext,
  start: () => Promise<MemorySubject>,
  missing: string | null,
): BenchCase {
  // ssh -R opens only a few hundred connections per second here: 10,000 would take most of a minute per
  // run, so it is measured at 1,000 only. The bundle runs the same code per connection as main.ts: 1,000
  // shows that; its point is the idle figure.
  const steps = label === "tls-tunnel" ? idleSteps(context) : idleSteps(context).slice(0, 1);
  const isTunnel = label !== "ssh -R";
  /** The ssh figure of the same name, when ssh measures it (ssh is not taken to 10,000 connections). */
  const sshSteps = idleSteps(context).slice(0, 1).map((count) => `@${count / 1000}k`);
  const baselineOf = (figure: string) =>
    isTunnel && (!figure.includes("@") || sshSteps.some((step) => figure.includes(step)))
      ? { baseline: `ssh -R ${figure}` }
      : {};
  const perConnBars: BenchBar[] = isTunnel ? [{ maxValue: 4 }] : [];
  const burstFigures = [
    {
      name: `${label} server after 1 MiB burst`,
      key: "serverBurst",
      metric: "RSS / conn",
      unit: "KiB",
      ...baselineOf("server after 1 MiB burst"),
    },
    {
      name: `${label} client after 1 MiB burst`,
      key: "clientBurst",
      metric: "RSS / conn",
      unit: "KiB",
      ...baselineOf("client after 1 MiB burst"),
    },
  ];
  const also = [
    {
      name: `${label} client idle`,
      key: "clientIdle",
      metric: "RSS",
      unit: "MB",
      ...baselineOf("client idle"),
    },
    ...steps.flatMap((count) => {
      const k = `${count / 1000}k`;
      return [
        {
          name: `${label} server @${k} idle conns`,
          key: `server${k}`,
          metric: "RSS / conn",
          unit: "KiB",
          ...baselineOf(`server @${k} idle conns`),
          bars: perConnBars,
        },
        {
          name: `${label} client @${k} idle conns`,
          key: `client${k}`,
          metric: "RSS / conn",
          unit: "KiB",
          ...baselineOf(`client @${k} idle conns`),
          bars: perConnBars,
        },
      ];
    }),
    ...burstFigures,
  ];
  return {
    name: `${label} server idle`,
    metric: "RSS",
    unit: "MB",
    ...baselineOf("server idle"),
    bars: isTunnel ? [{ maxValue: 60 }] : [],
    also,
    ...(missing === null ? {} : { skip: `${label}: ${missing}` }),
    params: { idleConnections: steps.join("/"), openConcurrency: IDLE_OPEN_CONCURRENCY },
    async run(signal): Promise<BenchRunFigures> {
      const subject = await start();
      const idle = new IdleConnections();
      try {
        await sleep(SETTLE_MS);
        const [serverIdle, clientIdle] = await treeRssBytes([subject.serverPid, subject.clientPid]) as [
          number,
          number,
        ];
        const figures: Record<string, number> = { clientIdle: clientIdle / 1e6 };
        for (const count of steps) {
          await idle.growTo(subject.connect, count, IDLE_OPEN_CONCURRENCY, signal);
          await sleep(SETTLE_MS);
          const [server, client] = await treeRssBytes([subject.serverPid, subject.clientPid]) as [
            number,
            number,
          ];
          const k = `${count / 1000}k`;
          figures[`server${k}`] = (server - serverIdle) / count / 1024;
          figures[`client${k}`] = (client - clientIdle) / count / 1024;
        }
        // What 1,000 of those connections keep once each has carried a burst and gone quiet again.
        const [serverBefore, clientBefore] = await treeRssBytes([subject.serverPid, subject.clientPid]) as [
          number,
          number,
        ];
        await idle.burst(BURST_CONNECTIONS, BURST_BYTES, IDLE_OPEN_CONCURRENCY, signal);
        await sleep(SETTLE_MS);
        const [serverAfter, clientAfter] = await treeRssBytes([subject.serverPid, subject.clientPid]) as [
          number,
          number,
        ];
        figures.serverBurst = (serverAfter - serverBefore) / BURST_CONNECTIONS / 1024;
        figures.clientBurst = (clientAfter - clientBefore) / BURST_CONNECTIONS / 1024;
        return { value: serverIdle / 1e6, also: figures };
      } finally {
        idle.closeAll();
        await subject.stop();
      }
    },
  };
}

/** RSS of the tunnel's processes (and of sshd/ssh) idle and with many idle connections. */
export const tunnelMemorySection: BenchSection = {
  name: "tunnel-memory",
  description:
    "RSS of server and client: idle, per idle open connection at 1,000 and 10,000 connections, and after a burst",
  runs: (context) => (context.quick ? 1 : 3),
  warmupRounds: () => 0,
  budgetMs: (context) => (context.quick ? 30_000 : 150_000),
  runTimeoutMs: (context) => (context.quick ? 40_000 : 90_000),
  async setup(context) {
    // Fresh processes in every run: memory is measured from a cold start, as a user's server starts.
    const work = await PathSet.start(context, { ssh: "none", tunnel: false });
    const agent = work.agent as AgentProcess;
    const tools = await findSsh();
    let sshServer: SshServer | null = null;
    let sshMissing: string | null = tools.available ? null : tools.reason;
    if (tools.available) {
      try {
        sshServer = await SshServer.start(tools);
      } catch (error) {
        sshMissing = `sshd could not be started: ${error instanceof Error ? error.message : String(error)}`;
      }
    }
    const tunnelFrom = (entry: string) => async (): Promise<MemorySubject> => {
      const pair = await TunnelPair.start(agent.tcpPort, entry);
      return {
        serverPid: pair.server.pid,
        clientPid: pair.client.pid,
        connect: tcpConnector(pair.publishPort),
        stop: () => pair.stop(),
      };
    };
    const tunnelCase = memoryCase("tls-tunnel", context, tunnelFrom("main.ts"), null);
    // The same server and client from the minified single-file bundle (`deno task bundle`).
    const bundleDir = await Deno.makeTempDir({ prefix: "tls-tunnel-bench-bundle-" });
    let bundleMissing: string | null = null;
    let bundlePath = "";
    try {
      bundlePath = await buildBundleIn(bundleDir);
    } catch (error) {
      bundleMissing = error instanceof Error ? error.message : String(error);
    }
    const bundleCase = memoryCase("tls-tunnel bundle", context, tunnelFrom(bundlePath), bundleMissing);
    const sshCase = memoryCase("ssh -R", context, async () => {
      const server = sshServer as SshServer;
      const forward = await SshForward.start(server, { localPort: agent.tcpPort, cipher: null }, echoWorks);
      return {
        serverPid: server.pid,
        clientPid: forward.pid,
        connect: tcpConnector(forward.publishPort),
        stop: () => stopChild(forward),
      };
    }, sshMissing);
    return {
      cases: [sshCase, tunnelCase, bundleCase],
      teardown: async () => {
        await stopChild(sshServer);
        await work.stop();
        await Deno.remove(bundleDir, { recursive: true }).catch(() => {});
      },
    };
  },
};

// --- recovery ----------------------------------------------------------------------------------------

/** Polls every millisecond until `port` can be bound; resolves to the time since `sinceMs`. */
async function waitForPortFree(port: number, sinceMs: number, timeoutMs: number): Promise<number> {
  const deadline = sinceMs + timeoutMs;
  while (!canBind(port)) {
    if (performance.now() > deadline) throw new Error(`port ${port} still taken after ${timeoutMs} ms`);
    await sleep(1);
  }
  return performance.now() - sinceMs;
}

/** The server's own figure: "released N port(s) in X ms" after `fromLine`. */
async function serverReleaseMs(server: CliChild, fromLine: number): Promise<number> {
  const pattern = /released \d+ port\(s\) in ([\d.]+) ms/;
  await waitUntil(
    () => Promise.resolve(server.cli.lines.slice(fromLine).some((line) => pattern.test(line))),
    5_000,
    "the server to log the release",
  );
  const line = server.cli.lines.slice(fromLine).find((candidate) => pattern.test(candidate)) ?? "";
  return Number(pattern.exec(line)?.[1]);
}

/** Port release after the client dies, and server restart to traffic. */
export const tunnelRecoverySection: BenchSection = {
  name: "tunnel-recovery",
  description:
    "ports released after the client is killed (tls-tunnel, ssh -R); server restart to traffic again",
  runs: (context) => (context.quick ? 1 : 5),
  warmupRounds: () => 0,
  budgetMs: (context) => (context.quick ? 30_000 : 120_000),
  runTimeoutMs: () => 30_000,
  async setup(context) {
    const set = await PathSet.start(context, { ssh: "default" });
    const agent = set.agent as AgentProcess;
    const tunnel = set.tunnel as TunnelPair;
    const sshPath = set.get(PathName.ssh);
    const releaseCase: BenchCase = {
      name: "tls-tunnel port release",
      metric: "kill -9 client → port free",
      unit: "ms",
      baseline: "ssh -R port release",
      bars: [{ maxValue: 100 }],
      also: [{
        name: "tls-tunnel release after notice",
        key: "serverMs",
        metric: "server: notice → released",
        unit: "ms",
        bars: [{ maxValue: 100 }],
      }],
      params: { publishedPorts: 1 },
      async run(): Promise<BenchRunFigures> {
        const fromLine = tunnel.server.cli.lines.length;
        const killedAt = performance.now();
        tunnel.client.killNow();
        const freeMs = await waitForPortFree(tunnel.publishPort, killedAt, 10_000);
        const serverMs = await serverReleaseMs(tunnel.server, fromLine);
        await stopChild(tunnel.client);
        tunnel.client = await startTunnelClient(tunnel.files);
        return { value: freeMs, also: { serverMs } };
      },
    };
    const sshReleaseCase: BenchCase = {
      name: "ssh -R port release",
      metric: "kill -9 client → port free",
      unit: "ms",
      ...skipReason(sshPath),
      params: { publishedPorts: 1 },
      async run() {
        const forward = set.sshForwards.get(PathName.ssh) as SshForward;
        const server = set.sshServer as SshServer;
        const killedAt = performance.now();
        forward.killNow();
        const freeMs = await waitForPortFree(forward.publishPort, killedAt, 10_000);
        await stopChild(forward);
        const restarted = await SshForward.start(
          server,
          { localPort: agent.tcpPort, cipher: null, publishPort: forward.publishPort },
          echoWorks,
        );
        set.sshForwards.set(PathName.ssh, restarted);
        return freeMs;
      },
    };
    const restartCase: BenchCase = {
      name: "tls-tunnel server restart",
      metric: "restart → traffic",
      unit: "ms",
      also: [{ name: "tls-tunnel server start", key: "listenMs", metric: "start → listening", unit: "ms" }],
      params: { reconnect: "client defaults" },
      async run(): Promise<BenchRunFigures> {
        const old = tunnel.server;
        const fromLine = tunnel.client.cli.lines.length;
        old.killNow();
        await stopChild(old);
        // The client notices the loss first, as it would when a server restarts under it.
        await waitUntil(
          () =>
            Promise.resolve(
              tunnel.client.cli.lines.slice(fromLine).some((line) => /Reconnecting in/.test(line)),
            ),
          10_000,
          "the client to notice the server is gone",
        );
        const startedAt = performance.now();
        tunnel.server = await startTunnelServer(tunnel.files);
        const listenMs = performance.now() - startedAt;
        await waitUntil(() => echoWorks(tunnel.publishPort), 25_000, "the tunnel to carry traffic again");
        const trafficMs = performance.now() - startedAt;
        return { value: trafficMs, also: { listenMs } };
      },
    };
    return {
      cases: [sshReleaseCase, releaseCase, restartCase],
      teardown: () => set.stop(),
    };
  },
};

/** The end-to-end sections, in the order they run. */
export const TUNNEL_SECTIONS: readonly BenchSection[] = [
  tunnelThroughputSection,
  tunnelLatencySection,
  tunnelMemorySection,
  tunnelRecoverySection,
];

/**
 * `udp`: a `proxy_type = "udp"` proxy next to direct UDP (issue 14). One server and one client process
 * (`deno run --unstable-net main.ts …`, over `tls`) publish a UDP echo service; a child process
 * (`udp_agent.ts`, which holds the UDP sockets: the bench itself runs without `--unstable-net`) measures,
 * against the echo service directly and through the published port:
 *
 * - round trips: 64-byte datagrams one at a time, p50 (and p99 beside it) in µs;
 * - throughput: 1,200-byte datagrams (a typical UDP payload under a 1,280-byte MTU), 64 in flight, echoed
 *   payload in MB/s, with the share lost beside it.
 *
 * @module
 */

import type { BenchCase, BenchContext, BenchSection } from "../_harness.ts";
import { type ChildHandle, stopChild, track, writeTunnelFiles } from "../e2e/processes.ts";
import { CliChild } from "../e2e/processes.ts";
import { CLI_PERMISSIONS, CliProcess } from "../../testing/helpers.ts";

/** The server's and client's permissions: the default ones plus `--unstable-net`. */
const UNSTABLE = ["--unstable-net", ...CLI_PERMISSIONS];

const RTT_COUNT = { full: 2000, quick: 300 };
const THROUGHPUT_MS = { full: 3000, quick: 1000 };
const DATAGRAM_BYTES = 1200;
const WINDOW = 64;

/** The measuring child: one JSON request line in, one JSON answer line out. */
class UdpAgent implements ChildHandle {
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #lines: AsyncIterator<string>;

  private constructor(
    readonly child: Deno.ChildProcess,
    readonly echoPort: number,
    lines: AsyncIterator<string>,
  ) {
    this.#writer = child.stdin.getWriter();
    this.#lines = lines;
  }

  get pid(): number {
    return this.child.pid;
  }

  static async start(): Promise<UdpAgent> {
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--quiet",
        "--unstable-net",
        "--allow-net",
        new URL("./udp_agent.ts", import.meta.url).pathname,
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const lines = splitLines(child.stdout);
    const first = await lines.next();
    if (first.done) throw new Error("udp_agent.ts exited before it was ready");
    const { echoPort } = JSON.parse(first.value) as { echoPort: number };
    return track(new UdpAgent(child, echoPort, lines));
  }

  /** Sends one measurement and waits for its answer. */
  async ask(request: Record<string, number | string>): Promise<Record<string, number>> {
    await this.#writer.write(new TextEncoder().encode(JSON.stringify(request) + "\n"));
    const answer = await this.#lines.next();
    if (answer.done) throw new Error("udp_agent.ts exited during a measurement");
    return JSON.parse(answer.value) as Record<string, number>;
  }

  async stop(): Promise<void> {
    await this.#writer.close().catch(() => {});
    const timer = setTimeout(() => this.killNow(), 5_000);
    try {
      await this.child.status;
    } finally {
      clearTimeout(timer);
    }
  }

  killNow(): void {
    try {
      this.child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
  }
}

async function* splitLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let pending = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    pending += chunk;
    let newline = pending.indexOf("\n");
    while (newline >= 0) {
      yield pending.slice(0, newline);
      pending = pending.slice(newline + 1);
      newline = pending.indexOf("\n");
    }
  }
}

/** Starts the server and client publishing `echoPort` as a udp proxy; resolves with the published port. */
async function startUdpTunnel(
  echoPort: number,
): Promise<{ children: ChildHandle[]; port: number; cleanup(): Promise<void> }> {
  const files = await writeTunnelFiles(echoPort);
  const config = await Deno.readTextFile(files.clientConfigPath);
  await Deno.writeTextFile(
    files.clientConfigPath,
    config.replace('name = "bench"\n', 'name = "bench"\nproxy_type = "udp"\n'),
  );
  const children: ChildHandle[] = [];
  try {
    const server = track(
      new CliChild(new CliProcess(["server", "-c", files.serverConfigPath], { permissions: UNSTABLE })),
    );
    children.push(server);
    await server.cli.waitForLine(/Listening for clients on/, 20_000);
    const client = track(
      new CliChild(new CliProcess(["client", "-c", files.clientConfigPath], { permissions: UNSTABLE })),
    );
    children.push(client);
    const published = await client.cli.waitForLine(/Proxy bench: 127\.0\.0\.1:(\d+)/, 20_000);
    return { children, port: Number(published[1]), cleanup: () => files.cleanup() };
  } catch (error) {
    for (const child of children.reverse()) await stopChild(child);
    await files.cleanup();
    throw error;
  }
}

function rttCase(
  context: BenchContext,
  agent: () => UdpAgent,
  port: () => number,
  name: string,
  baseline?: string,
): BenchCase {
  const count = context.quick ? RTT_COUNT.quick : RTT_COUNT.full;
  return {
    name: `${name} rtt p50`,
    metric: "round trip, 64 B datagrams",
    unit: "µs",
    ...(baseline ? { baseline: `${baseline} rtt p50` } : {}),
    also: [{
      name: `${name} rtt p99`,
      key: "p99Us",
      metric: "round trip, 64 B datagrams",
      unit: "µs",
      ...(baseline ? { baseline: `${baseline} rtt p99` } : {}),
    }],
    params: { count, size: 64 },
    async run() {
      const answer = await agent().ask({ op: "rtt", port: port(), count, size: 64 });
      if ((answer.lost ?? 0) > 0) throw new Error(`a datagram was not answered within 1 s`);
      return { value: answer.p50Us ?? Number.NaN, also: { p99Us: answer.p99Us ?? Number.NaN } };
    },
  };
}

function throughputCase(
  context: BenchContext,
  agent: () => UdpAgent,
  port: () => number,
  name: string,
  baseline?: string,
): BenchCase {
  const ms = context.quick ? THROUGHPUT_MS.quick : THROUGHPUT_MS.full;
  return {
    name: `${name} throughput`,
    metric: `echo, ${DATAGRAM_BYTES} B × ${WINDOW} in flight`,
    unit: "MB/s",
    ...(baseline ? { baseline: `${baseline} throughput` } : {}),
    also: [{ name: `${name} lost`, key: "lostPct", metric: "datagrams not echoed", unit: "%" }],
    params: { ms, size: DATAGRAM_BYTES, window: WINDOW },
    async run() {
      const answer = await agent().ask({
        op: "throughput",
        port: port(),
        ms,
        size: DATAGRAM_BYTES,
        window: WINDOW,
      });
      return { value: answer.mbPerSec ?? Number.NaN, also: { lostPct: answer.lostPct ?? Number.NaN } };
    },
  };
}

/** The udp section. */
export const udpSection: BenchSection = {
  name: "udp",
  description: "a udp proxy (real processes, tls) next to direct UDP: round trips and echo throughput",
  runs: (context) => (context.quick ? 1 : 5),
  budgetMs: (context) => (context.quick ? 60_000 : 180_000),
  runTimeoutMs: () => 30_000,
  async setup(context) {
    // Two agents: one is the echo service (the local service and the direct target), the other measures,
    // so that the sender's work does not slow the echo down.
    const service = await UdpAgent.start();
    const agent = await UdpAgent.start().catch(async (error) => {
      await stopChild(service);
      throw error;
    });
    let tunnel: Awaited<ReturnType<typeof startUdpTunnel>>;
    try {
      tunnel = await startUdpTunnel(service.echoPort);
    } catch (error) {
      await stopChild(agent);
      await stopChild(service);
      throw error;
    }
    const direct = () => service.echoPort;
    const proxied = () => tunnel.port;
    return {
      cases: [
        rttCase(context, () => agent, direct, "direct"),
        rttCase(context, () => agent, proxied, "udp proxy", "direct"),
        throughputCase(context, () => agent, direct, "direct"),
        throughputCase(context, () => agent, proxied, "udp proxy", "direct"),
      ],
      async teardown() {
        for (const child of [...tunnel.children].reverse()) await stopChild(child);
        await stopChild(agent);
        await stopChild(service);
        await tunnel.cleanup();
      },
    };
  },
};

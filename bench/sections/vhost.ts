/**
 * `vhost`: HTTP requests per second through the shared HTTP vhost port (an `http` proxy, issue 14) next to
 * the same service reached directly and through a plain `tcp` proxy of the same tunnel. One server and
 * one client process (`deno run main.ts …`, over `tls`) publish a small keep-alive HTTP service (its own
 * process, `vhost_backend.ts`) both ways; the bench process sends `GET /` on 8 keep-alive connections for
 * a fixed time, each waiting for its answer before the next request, and reports requests/s with the
 * p50 latency beside it. Then `wrk` (vhost_wrk.ts) loads each path for 10 s with keep-alive connections,
 * alternating the Host header over two names (two `http` proxies on the vhost port): requests/s, p50, p99
 * and errors from wrk's own report.
 *
 * @module
 */

import type { BenchCase, BenchContext, BenchSection } from "../_harness.ts";
import {
  type ChildHandle,
  CliChild,
  ScriptChild,
  stopChild,
  track,
  writeTunnelFiles,
} from "../e2e/processes.ts";
import { CliProcess, freePort } from "../../testing/helpers.ts";
import { wrkCase, wrkPath, wrkScript } from "./vhost_wrk.ts";

const CONNECTIONS = 8;
const DURATION_MS = { full: 3000, quick: 1000 };
/** The backend's answer is exactly this long (vhost_backend.ts). */
const ANSWER_BYTES = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok".length;

/** `connections` keep-alive loops of GET / for `ms`; requests/s and p50 latency in µs. */
async function load(
  port: number,
  host: string,
  ms: number,
  signal: AbortSignal,
): Promise<{ value: number; also: { p50Us: number } }> {
  const request = new TextEncoder().encode(`GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
  const deadline = performance.now() + ms;
  const latencies: number[] = [];
  let done = 0;
  const loop = async () => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.setNoDelay(true);
    const buffer = new Uint8Array(4096);
    try {
      while (performance.now() < deadline && !signal.aborted) {
        const started = performance.now();
        await conn.write(request);
        let received = 0;
        while (received < ANSWER_BYTES) {
          const count = await conn.read(buffer);
          if (count === null) throw new Error("the connection closed during a response");
          received += count;
        }
        if (received !== ANSWER_BYTES) {
          throw new Error(`answer of ${received} bytes, expected ${ANSWER_BYTES}`);
        }
        latencies.push((performance.now() - started) * 1000);
        done++;
      }
    } finally {
      conn.close();
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: CONNECTIONS }, loop));
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    value: done / seconds,
    also: { p50Us: latencies[Math.floor(latencies.length / 2)] ?? Number.NaN },
  };
}

function loadCase(
  context: BenchContext,
  name: string,
  target: () => { port: number; host: string },
  baseline?: string,
): BenchCase {
  const ms = context.quick ? DURATION_MS.quick : DURATION_MS.full;
  return {
    name: `${name} req/s`,
    metric: `GET / keep-alive, ${CONNECTIONS} connections`,
    unit: "req/s",
    ...(baseline ? { baseline: `${baseline} req/s` } : {}),
    also: [{
      name: `${name} p50`,
      key: "p50Us",
      metric: "request latency",
      unit: "µs",
      ...(baseline ? { baseline: `${baseline} p50` } : {}),
    }],
    params: { connections: CONNECTIONS, ms },
    run: (signal) => load(target().port, target().host, ms, signal),
  };
}

/** The vhost section. */
export const vhostSection: BenchSection = {
  name: "vhost",
  description: "HTTP requests/s through the shared vhost port (http proxy) vs a tcp proxy vs direct",
  runs: (context) => (context.quick ? 1 : 5),
  // The wrk cases add 3 × (2 s warm-up + 10 s per measured run).
  budgetMs: (context) => (context.quick ? 120_000 : 360_000),
  runTimeoutMs: () => 30_000,
  async setup(context) {
    const { child: backend, ready } = await ScriptChild.start<{ port: number }>(
      "../sections/vhost_backend.ts",
      [],
      ["--allow-net"],
    );
    const children: ChildHandle[] = [backend];
    const files = await writeTunnelFiles(ready.port);
    const vhostPort = freePort();
    try {
      await Deno.writeTextFile(
        files.serverConfigPath,
        `vhost_http_addr = "127.0.0.1"\nvhost_http_port = ${vhostPort}\n`,
        { append: true },
      );
      await Deno.writeTextFile(
        files.clientConfigPath,
        `\n[[proxies]]\nname = "web"\nproxy_type = "http"\ncustom_domains = ["app.bench"]\n` +
          `local_port = ${ready.port}\n\n[[proxies]]\nname = "api"\nproxy_type = "http"\n` +
          `custom_domains = ["api.bench"]\nlocal_port = ${ready.port}\n`,
        { append: true },
      );
      const scriptPath = `${files.dir}/two_hosts.lua`;
      await Deno.writeTextFile(scriptPath, wrkScript(["app.bench", "api.bench"]));
      const wrk = wrkPath();
      const server = track(new CliChild(new CliProcess(["server", "-c", files.serverConfigPath])));
      children.push(server);
      await server.cli.waitForLine(/Listening for clients on/, 20_000);
      const client = track(new CliChild(new CliProcess(["client", "-c", files.clientConfigPath])));
      children.push(client);
      const published = await client.cli.waitForLine(/Proxy bench: 127\.0\.0\.1:(\d+)/, 20_000);
      await client.cli.waitForLine(/Proxy web: /, 20_000);
      await client.cli.waitForLine(/Proxy api: /, 20_000);
      const tcpPort = Number(published[1]);
      context.log(`vhost: backend :${ready.port}, tcp proxy :${tcpPort}, vhost :${vhostPort}`);
      return {
        cases: [
          loadCase(context, "direct", () => ({ port: ready.port, host: "app.bench" })),
          loadCase(context, "tcp proxy", () => ({ port: tcpPort, host: "app.bench" }), "direct"),
          loadCase(context, "http vhost", () => ({ port: vhostPort, host: "app.bench" }), "direct"),
          wrkCase(context, wrk, scriptPath, "direct", () => ready.port),
          wrkCase(context, wrk, scriptPath, "tcp proxy", () => tcpPort, "direct"),
          wrkCase(context, wrk, scriptPath, "2 http vhosts", () => vhostPort, "direct"),
        ],
        async teardown() {
          for (const child of [...children].reverse()) await stopChild(child);
          await files.cleanup();
        },
      };
    } catch (error) {
      for (const child of [...children].reverse()) await stopChild(child);
      await files.cleanup();
      throw error;
    }
  },
};

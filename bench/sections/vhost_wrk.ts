/**
 * The `vhost` section's `wrk` cases (issue 14: "wrk for 10 s of keep-alive load through two vhosts at
 * once"): `wrk` runs for {@linkcode WRK_SECONDS} s with keep-alive connections, its Lua script sending
 * each request with the next of two Host names in turn, against the backend directly, through a plain
 * `tcp` proxy and through the shared HTTP vhost port (where the two names are two `http` proxies). The
 * figures are wrk's own: requests/s, the latency distribution's 50 % and 99 % (`--latency`), and errors
 * (socket errors plus non-2xx/3xx answers). The warm-up run of each case is short
 * ({@linkcode WRK_WARMUP_SECONDS} s); the measured ones are full length. Cases are skipped when `wrk` is
 * not installed (`.ci/run` installs it).
 *
 * @module
 */

import type { BenchCase, BenchContext } from "../_harness.ts";

/** Seconds of load per measured run. */
export const WRK_SECONDS = 10;
/** Seconds of the first (warm-up) run of each case. */
export const WRK_WARMUP_SECONDS = 2;
/** wrk threads and keep-alive connections (the machine has 2 cores, shared with the tunnel processes). */
const WRK_THREADS = 2;
const WRK_CONNECTIONS = 16;

/** What one wrk run reports. */
export interface WrkFigures {
  requestsPerSec: number;
  p50Us: number;
  p99Us: number;
  /** Socket errors (connect, read, write, timeout) plus non-2xx/3xx answers. */
  errors: number;
}

/** `wrk`'s path, or null when it is not installed. */
export function wrkPath(): string | null {
  for (const path of ["/usr/bin/wrk", "/usr/local/bin/wrk"]) {
    try {
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // Not there.
    }
  }
  return null;
}

/** A wrk latency figure (`312.00us`, `1.23ms`, `2.00s`) in µs; NaN when it does not parse. */
function latencyUs(text: string): number {
  const match = /^([\d.]+)(us|ms|s|m)$/.exec(text);
  if (match === null) return Number.NaN;
  const value = Number(match[1]);
  const scale: Record<string, number> = { us: 1, ms: 1000, s: 1e6, m: 60e6 };
  return value * (scale[match[2] ?? ""] ?? Number.NaN);
}

/** Reads wrk's text report (run with `--latency`); throws naming what is missing. */
export function parseWrk(output: string): WrkFigures {
  const rate = /Requests\/sec:\s+([\d.]+)/.exec(output);
  const p50 = /^\s+50%\s+(\S+)$/m.exec(output);
  const p99 = /^\s+99%\s+(\S+)$/m.exec(output);
  if (rate === null || p50 === null || p99 === null) {
    throw new Error(`wrk's report lacks Requests/sec or the 50%/99% latency lines:\n${output}`);
  }
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(output);
  const socketErrors = socket === null ? 0 : socket.slice(1).reduce((sum, count) => sum + Number(count), 0);
  return {
    requestsPerSec: Number(rate[1]),
    p50Us: latencyUs(p50[1] ?? ""),
    p99Us: latencyUs(p99[1] ?? ""),
    errors: socketErrors + (non2xx === null ? 0 : Number(non2xx[1])),
  };
}

/** The Lua script that alternates the Host header between `hosts` (one counter per wrk thread). */
export function wrkScript(hosts: readonly string[]): string {
  return `local hosts = {${hosts.map((host) => JSON.stringify(host)).join(", ")}}\n` +
    `local i = 0\n` +
    `request = function()\n` +
    `  i = i + 1\n` +
    `  return wrk.format("GET", "/", { ["Host"] = hosts[(i % #hosts) + 1] })\n` +
    `end\n`;
}

/** Runs wrk once against 127.0.0.1:`port` for `seconds`; stops it when `signal` aborts. */
async function runWrk(
  binary: string,
  scriptPath: string,
  port: number,
  seconds: number,
  signal: AbortSignal,
): Promise<WrkFigures> {
  const output = await new Deno.Command(binary, {
    args: [
      `-t${WRK_THREADS}`,
      `-c${WRK_CONNECTIONS}`,
      `-d${seconds}s`,
      "--latency",
      "-s",
      scriptPath,
      `http://127.0.0.1:${port}/`,
    ],
    stdout: "piped",
    stderr: "piped",
    signal,
  }).output();
  const text = new TextDecoder().decode(output.stdout);
  if (!output.success) {
    throw new Error(`wrk exited with ${output.code}: ${new TextDecoder().decode(output.stderr)}${text}`);
  }
  return parseWrk(text);
}

/**
 * A wrk case named `wrk <name>`: requests/s, with p50, p99 and errors as further figures (compared with
 * `baseline`'s). Its first run (the harness's warm-up) is {@linkcode WRK_WARMUP_SECONDS} s long.
 */
export function wrkCase(
  context: BenchContext,
  binary: string | null,
  scriptPath: string,
  name: string,
  port: () => number,
  baseline?: string,
): BenchCase {
  let calls = 0;
  const compare = (figure: string) => baseline ? { baseline: `wrk ${baseline} ${figure}` } : {};
  return {
    name: `wrk ${name} req/s`,
    metric: `wrk ${WRK_SECONDS} s keep-alive, ${WRK_CONNECTIONS} connections, Host alternating over 2 names`,
    unit: "req/s",
    ...(baseline ? { baseline: `wrk ${baseline} req/s` } : {}),
    also: [
      { name: `wrk ${name} p50`, key: "p50Us", metric: "wrk latency 50%", unit: "µs", ...compare("p50") },
      { name: `wrk ${name} p99`, key: "p99Us", metric: "wrk latency 99%", unit: "µs", ...compare("p99") },
      { name: `wrk ${name} errors`, key: "errors", metric: "socket errors + non-2xx/3xx", unit: "count" },
    ],
    ...(binary === null ? { skip: "wrk not found; install it (apt-get install wrk)" } : {}),
    params: {
      seconds: WRK_SECONDS,
      threads: WRK_THREADS,
      connections: WRK_CONNECTIONS,
      quick: context.quick ? 1 : 0,
    },
    async run(signal) {
      const seconds = calls++ === 0 ? WRK_WARMUP_SECONDS : WRK_SECONDS;
      const figures = await runWrk(binary ?? "wrk", scriptPath, port(), seconds, signal);
      return {
        value: figures.requestsPerSec,
        also: { p50Us: figures.p50Us, p99Us: figures.p99Us, errors: figures.errors },
      };
    },
  };
}

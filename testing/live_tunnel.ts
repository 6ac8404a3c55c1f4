/**
 * The real tunnel as child processes for the fuzz and soak harnesses: `deno run main.ts server|client`
 * with the lag probe preloaded, bounded log capture (a run may log millions of lines), and a canary
 * that round-trips through a published port and records every error and its latency.
 *
 * @module
 */

import { EchoService, freePort, makeWorkdir, PROJECT_ROOT } from "./helpers.ts";
import { writeAll } from "../lib/net/conn.ts";
import { ProbeReader, type ProcessSample, ProcessWatch } from "./proc_stats.ts";

/** The key the live server and its clients share. */
export const LIVE_AUTH_KEY = "live-fuzz-key-0123456789abcdef";

/** `--allow-all`: the preloaded probe reads `/proc/self`, which Deno grants only with it (see `_lag_probe.ts`). */
const PERMISSIONS = ["--allow-all"];

/** A `--trace-gc` line: ms since the isolate started, the collection's kind, its main-thread pause in ms. */
const GC_TRACE =
  /(\d+) ms: ([A-Za-z -]+?) [\d.]+ \([\d.]+\) -> [\d.]+ \([\d.]+\) MB,(?: pooled: [\d.]+ MB,)? ([\d.]+) \/ /;

/** A `main.ts` child process with the lag probe, its stderr kept as a bounded tail. */
export class LiveProcess {
  /** Lag reports of the probe. */
  readonly probe = new ProbeReader();
  /** RSS and descriptors over the run. */
  readonly watch: ProcessWatch;
  /** Log lines per level (`error`, `warning`, …). */
  readonly levels = new Map<string, number>();
  /** The first error-level lines (at most 50). */
  readonly errorLines: string[] = [];
  /** V8 collections that paused the main thread 20 ms or more (`--trace-gc`), with their arrival time. */
  readonly gcPauses: Array<{ t: number; kind: string; pauseMs: number }> = [];
  /** Full garbage collections the process logged (with `-v`): when, how long, why. */
  readonly collections: Array<{ t: number; elapsedMs: number; why: string }> = [];
  /** The last 200 stderr lines. */
  readonly tail: string[] = [];
  exitStatus: Deno.CommandStatus | null = null;
  readonly #child: Deno.ChildProcess;
  readonly #done: Promise<void>;
  readonly #outputDir: string;
  #waiters: Array<{ pattern: RegExp; resolve: (match: RegExpMatchArray) => void }> = [];

  constructor(readonly label: string, args: string[], env: Record<string, string> = {}) {
    // stdout and stderr go to files, not pipes: the server logs with a synchronous write, and a pipe that a
    // busy harness reads late would block the server's event loop and count as its stall.
    this.#outputDir = Deno.makeTempDirSync({ prefix: `tls-tunnel-${label}-` });
    const stdoutPath = `${this.#outputDir}/stdout`;
    const stderrPath = `${this.#outputDir}/stderr`;
    this.#child = new Deno.Command("sh", {
      args: [
        "-c",
        'out=$1; err=$2; shift 2; exec "$@" >"$out" 2>"$err"',
        "sh",
        stdoutPath,
        stderrPath,
        Deno.execPath(),
        "run",
        "--quiet",
        ...PERMISSIONS,
        // V8 prints every collection and its pause on stdout, so a stall can be told from a GC pause;
        // --expose-gc lets the probe run a full collection on SIGUSR2 (see `afterFullGc`).
        "--v8-flags=--trace-gc,--expose-gc",
        "--preload=testing/lag_probe.ts",
        "main.ts",
        "--log-format",
        "json",
        ...args,
      ],
      cwd: PROJECT_ROOT,
      env: { NO_COLOR: "1", ...env },
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    this.watch = new ProcessWatch(label, this.probe);
    const status = this.#child.status.then((value) => {
      this.exitStatus = value;
    });
    this.#done = Promise.all([
      status,
      this.#follow(stderrPath, (line) => this.#onLog(line)),
      this.#follow(stdoutPath, (line) => {
        if (this.probe.addLine(line)) return;
        const gc = line.match(GC_TRACE);
        if (gc && Number(gc[3]) >= 20 && this.gcPauses.length < 10_000) {
          // The trace counts ms from the isolate's start; a file is written in blocks, so arrival time lies.
          const origin = this.probe.reports.at(-1)?.origin;
          const t = origin === undefined ? Date.now() : origin + Number(gc[1]);
          this.gcPauses.push({ t, kind: gc[2] as string, pauseMs: Number(gc[3]) });
        }
      }),
    ]).then(() => Deno.remove(this.#outputDir, { recursive: true })).catch(() => {});
  }

  /** Reads the lines of a file the process writes, as they come, until the process has exited. */
  async #follow(path: string, onLine: (line: string) => void): Promise<void> {
    let file: Deno.FsFile | null = null;
    while (file === null) {
      file = await Deno.open(path).catch(() => null);
      if (file === null) {
        if (this.exitStatus !== null) return;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
    const decoder = new TextDecoder();
    const buffer = new Uint8Array(64 * 1024);
    let pending = "";
    try {
      while (true) {
        const exited = this.exitStatus !== null;
        const count = await file.read(buffer);
        if (count === null) {
          if (exited) break;
          await new Promise((resolve) => setTimeout(resolve, 20));
          continue;
        }
        pending += decoder.decode(buffer.subarray(0, count), { stream: true });
        let newline: number;
        while ((newline = pending.indexOf("\n")) >= 0) {
          onLine(pending.slice(0, newline));
          pending = pending.slice(newline + 1);
        }
      }
      if (pending) onLine(pending);
    } finally {
      file.close();
    }
  }

  get pid(): number {
    return this.#child.pid;
  }

  get exited(): boolean {
    return this.exitStatus !== null;
  }

  #onLog(line: string): void {
    let level = "text";
    try {
      const record = JSON.parse(line) as {
        level?: unknown;
        time?: unknown;
        properties?: Record<string, unknown>;
      };
      if (typeof record.level === "string") level = record.level.toLowerCase();
      const elapsedMs = record.properties?.elapsedMs;
      if (
        typeof elapsedMs === "number" && typeof record.properties?.why === "string" &&
        this.collections.length < 10_000
      ) {
        this.collections.push({ t: Date.parse(String(record.time)), elapsedMs, why: record.properties.why });
      }
    } catch {
      // A plain line (an uncaught error's stack, for example).
    }
    this.levels.set(level, (this.levels.get(level) ?? 0) + 1);
    if ((level === "error" || level === "fatal" || level === "text") && this.errorLines.length < 50) {
      this.errorLines.push(line.slice(0, 2000));
    }
    this.tail.push(line.slice(0, 2000));
    if (this.tail.length > 200) this.tail.shift();
    for (const waiter of [...this.#waiters]) {
      const match = line.match(waiter.pattern);
      if (match) {
        this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
        waiter.resolve(match);
      }
    }
  }

  /** Waits for a later stderr line matching `pattern`. */
  waitForLine(pattern: RegExp, timeoutMs = 20_000): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((waiter) => waiter.pattern !== pattern);
        reject(
          new Error(
            `${this.label}: no line matching ${pattern} within ${timeoutMs} ms:\n${this.tail.join("\n")}`,
          ),
        );
      }, timeoutMs);
      this.#waiters.push({
        pattern,
        resolve: (match) => {
          clearTimeout(timer);
          resolve(match);
        },
      });
      this.#done.then(() => {
        clearTimeout(timer);
        reject(new Error(`${this.label} exited before printing ${pattern}:\n${this.tail.join("\n")}`));
      });
    });
  }

  /**
   * Memory after one full collection the harness asks for (SIGUSR2 to the probe): live memory, without the
   * garbage the program's own idle collection may not have collected yet.
   */
  async afterFullGc(): Promise<ProcessSample> {
    const count = this.probe.reports.length;
    this.kill("SIGUSR2");
    const deadline = performance.now() + 3000;
    while (this.probe.reports.length === count && performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return this.watch.sample();
  }

  /** Sends `signal` (ignored once exited). */
  kill(signal: Deno.Signal): void {
    try {
      this.#child.kill(signal);
    } catch {
      // Already gone.
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves once exited and the output is read. */
  async stop(graceMs = 5000): Promise<Deno.CommandStatus> {
    if (!this.exited) {
      this.kill("SIGTERM");
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([this.#done, new Promise((resolve) => (timer = setTimeout(resolve, graceMs)))]);
      clearTimeout(timer);
      if (!this.exited) this.kill("SIGKILL");
    }
    await this.#done;
    return this.exitStatus as Deno.CommandStatus;
  }

  /** Resolves when the process has exited and its output is read. */
  get done(): Promise<void> {
    return this.#done;
  }
}

/** The client's log line once a proxy is published; group 1 is the port. */
export function publishedLine(name: string): RegExp {
  return new RegExp(`Proxy ${name}: 127\\.0\\.0\\.1:(\\d+)`);
}

/** A server process and the files it runs from. */
export class LiveTunnel implements AsyncDisposable {
  readonly #processes: LiveProcess[] = [];

  private constructor(
    readonly dir: string,
    readonly caPem: string,
    readonly caPath: string,
    readonly port: number,
    readonly server: LiveProcess,
    readonly cleanup: () => Promise<void>,
  ) {
    this.#processes.push(server);
  }

  /** Writes the config (with `serverExtra` TOML lines under `[server]`) and starts the server. */
  static async start(serverExtra = "", tail = "", options: { verbose?: boolean } = {}): Promise<LiveTunnel> {
    const work = await makeWorkdir();
    const port = freePort();
    const configPath = `${work.dir}/server.toml`;
    await Deno.writeTextFile(
      configPath,
      `[server]\nbind_addr = "127.0.0.1"\nbind_port = ${port}\ncert_path = "${work.certPath}"\n` +
        `key_path = "${work.keyPath}"\nauth_key = "${LIVE_AUTH_KEY}"\n${serverExtra}\n${tail}`,
    );
    const server = new LiveProcess("server", [
      ...(options.verbose ? ["-v"] : []),
      "server",
      "-c",
      configPath,
    ]);
    const tunnel = new LiveTunnel(
      work.dir,
      await Deno.readTextFile(work.caPath),
      work.caPath,
      port,
      server,
      work.cleanup,
    );
    try {
      await server.waitForLine(/Listening for clients on/);
    } catch (error) {
      await tunnel[Symbol.asyncDispose]();
      throw error;
    }
    return tunnel;
  }

  /**
   * Starts a client process named `name` publishing one proxy `proxy` (port 0) for 127.0.0.1:`localPort`
   * and waits until it is published; returns the process and the published port.
   */
  async client(name: string, localPort: number, extra = ""): Promise<{ process: LiveProcess; port: number }> {
    const path = `${this.dir}/${name}.toml`;
    await Deno.writeTextFile(
      path,
      `[client]\nserver_addr = "127.0.0.1"\nserver_port = ${this.port}\nserver_name = "localhost"\n` +
        `ca_cert_path = "${this.caPath}"\nauth_key = "${LIVE_AUTH_KEY}"\nclient_id = "${name}"\n${extra}\n` +
        `[client.reconnect]\ninitial_delay_secs = 0.2\nmax_delay_secs = 1\n\n` +
        `[[proxies]]\nname = "${name}"\npublish_addr = "127.0.0.1"\npublish_port = 0\n` +
        `local_addr = "127.0.0.1"\nlocal_port = ${localPort}\n`,
    );
    const process = new LiveProcess(name, ["client", "-c", path]);
    this.#processes.push(process);
    const match = await process.waitForLine(publishedLine(name));
    return { process, port: Number(match[1]) };
  }

  /** Stops every process (clients first) and removes the work folder. */
  async [Symbol.asyncDispose](): Promise<void> {
    for (const process of [...this.#processes].reverse()) await process.stop();
    await this.cleanup();
  }
}

/** Round trips through a published port, every `intervalMs`, until stopped. */
export class Canary {
  rounds = 0;
  errors = 0;
  maxLatencyMs = 0;
  readonly latenciesMs: number[] = [];
  readonly errorSamples: string[] = [];
  /** Rounds over 1 s: when, how long, and how much of it was the TCP connect. */
  readonly slowRounds: Array<{ t: number; latencyMs: number; connectMs: number }> = [];
  maxConnectMs = 0;
  readonly echo = new EchoService();
  #port = 0;
  #stopped = false;
  #loop: Promise<void> | null = null;

  /** Starts round-tripping through `port` (the canary client's published port). */
  start(port: number, intervalMs = 100): void {
    this.#port = port;
    this.#loop = this.#run(intervalMs);
  }

  async #run(intervalMs: number): Promise<void> {
    const payload = new TextEncoder().encode("canary ".repeat(20));
    while (!this.#stopped) {
      const started = performance.now();
      try {
        const connectMs = await this.#roundTrip(payload);
        const latencyMs = performance.now() - started;
        this.maxLatencyMs = Math.max(this.maxLatencyMs, latencyMs);
        this.maxConnectMs = Math.max(this.maxConnectMs, connectMs);
        if (this.latenciesMs.length < 100_000) this.latenciesMs.push(latencyMs);
        if (latencyMs > 1000 && this.slowRounds.length < 20) {
          this.slowRounds.push({ t: Date.now(), latencyMs: round1(latencyMs), connectMs: round1(connectMs) });
        }
      } catch (error) {
        this.errors++;
        if (this.errorSamples.length < 10) {
          this.errorSamples.push(`${new Date().toISOString()} ${String(error)}`);
        }
      }
      this.rounds++;
      const waitMs = Math.max(0, intervalMs - (performance.now() - started));
      await new Promise((resolve) => setTimeout(resolve, waitMs));
    }
  }

  /**
   * One round trip: the TCP connect within 30 s, then the echo within 10 s; returns how long the connect
   * took. The connect gets the longer bound because under heavy load loopback connects on the development VM
   * (gVisor) now and then take 5.8-8.2 s, like dropped and retransmitted SYNs, while no probed process
   * stalls; the client fuzz's canary, whose only new TCP connection goes to the harness's own echo
   * listener, sees the same. A slow connect is reported (`slow_rounds`); one that fails is an error.
   */
  async #roundTrip(payload: Uint8Array): Promise<number> {
    const started = performance.now();
    const conn = await Deno.connect({
      hostname: "127.0.0.1",
      port: this.#port,
      signal: AbortSignal.timeout(30_000),
    });
    const connectMs = performance.now() - started;
    const timer = setTimeout(() => conn.close(), 10_000);
    try {
      await writeAll(conn, payload);
      await conn.closeWrite();
      const received = new Uint8Array(payload.length + 1);
      let count = 0;
      while (true) {
        const n = await conn.read(received.subarray(count));
        if (n === null) break;
        count += n;
        if (count > payload.length) break;
      }
      if (
        count !== payload.length || received.subarray(0, count).some((byte, index) => byte !== payload[index])
      ) {
        throw new Error(`echoed ${count} bytes that differ from the ${payload.length} sent`);
      }
      return connectMs;
    } finally {
      clearTimeout(timer);
      try {
        conn.close();
      } catch {
        // Closed by the timer.
      }
    }
  }

  /** A latency percentile (0–100) over the rounds so far. */
  percentileMs(p: number): number {
    const sorted = [...this.latenciesMs].sort((a, b) => a - b);
    return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
  }

  /** Stops the loop (after the round in flight). */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#loop;
  }

  /** Stops the loop and the echo service. */
  async close(): Promise<void> {
    await this.stop();
    await this.echo.close();
  }

  /** A plain record for the JSON report. */
  toJSON(): Record<string, unknown> {
    return {
      rounds: this.rounds,
      errors: this.errors,
      max_latency_ms: round1(this.maxLatencyMs),
      p50_latency_ms: round1(this.percentileMs(50)),
      p99_latency_ms: round1(this.percentileMs(99)),
      max_connect_ms: round1(this.maxConnectMs),
      slow_rounds: this.slowRounds,
      error_samples: this.errorSamples,
    };
  }
}

/** Rounds to one decimal. */
export function round1(value: number): number {
  return Math.round(value * 10) / 10;
}

/** Prints `rows` as a two-column table. */
export function formatTable(title: string, rows: Array<[string, string]>): string {
  const width = Math.max(...rows.map(([key]) => key.length), 8);
  return [title, ...rows.map(([key, value]) => `  ${key.padEnd(width)}  ${value}`)].join("\n");
}

/** Megabytes with one decimal, or "-" for null. */
export function mb(bytes: number | null | undefined): string {
  return bytes === null || bytes === undefined ? "-" : `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/** Writes `report` to bench/results/`prefix`-<time>.json and returns the path. */
export async function writeReport(prefix: string, report: unknown): Promise<string> {
  const dir = `${PROJECT_ROOT}bench/results`;
  await Deno.mkdir(dir, { recursive: true });
  const path = `${dir}/${prefix}-${new Date().toISOString().replace(/[:.]/g, "-")}.json`;
  await Deno.writeTextFile(path, JSON.stringify(report, null, 2) + "\n");
  return path;
}

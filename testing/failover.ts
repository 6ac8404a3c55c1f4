/**
 * The failover measurement shared by tests/failover_haproxy_test.ts and the bench's failover section:
 * haproxy on a loopback port balancing over two servers' published ports with health checks, and a loop
 * that opens one connection every few milliseconds through it and records which failed and when.
 *
 * @module
 */

import { freePort, waitFor } from "./helpers.ts";
import { echoesAt, SERVER_ADDRESSES, TwoServers } from "./multi_server.ts";

/** Where haproxy is, or null when it is not installed. */
export function haproxyPath(): string | null {
  for (const path of ["/usr/sbin/haproxy", "/usr/bin/haproxy", "/usr/local/sbin/haproxy"]) {
    try {
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // Not there.
    }
  }
  return null;
}

/** Options of {@linkcode Haproxy.start}. */
export interface HaproxyOptions {
  /** The haproxy binary. */
  binary: string;
  /** Folder for its config file. */
  dir: string;
  /** Port of its frontend on 127.0.0.1. */
  frontendPort: number;
  /** The servers it balances over: name and address. */
  backends: { name: string; host: string; port: number }[];
  /** Health check interval (`check inter`). */
  checkIntervalMs: number;
  /** Failed checks before a server is taken out (`fall`). */
  fall: number;
  /**
   * `option redispatch` with `retries 2`: a connect refused by a dead server is retried on another one
   * (the recommended setup). Without it a refused connect fails the client's connection.
   */
  redispatch: boolean;
}

/** A haproxy process (foreground, logging to stdout), stopped by its PID. */
export class Haproxy implements AsyncDisposable {
  /** Its log lines, each with the time the test saw it (performance.now()). */
  readonly lines: { atMs: number; text: string }[] = [];
  readonly #child: Deno.ChildProcess;
  readonly #pump: Promise<void>;

  private constructor(child: Deno.ChildProcess) {
    this.#child = child;
    this.#pump = (async () => {
      const decoder = new TextDecoderStream();
      let rest = "";
      for await (const chunk of child.stdout.pipeThrough(decoder)) {
        const parts = (rest + chunk).split("\n");
        rest = parts.pop() ?? "";
        for (const text of parts) this.lines.push({ atMs: performance.now(), text });
      }
    })();
  }

  /** Writes the config and starts haproxy; resolves once its frontend accepts connections. */
  static async start(options: HaproxyOptions): Promise<Haproxy> {
    const check = `check inter ${options.checkIntervalMs}ms fall ${options.fall} rise 1`;
    const config = [
      "global",
      "  log stdout format raw local0 info",
      "  maxconn 2000",
      "defaults",
      "  mode tcp",
      "  log global",
      "  timeout connect 1s",
      "  timeout client 10s",
      "  timeout server 10s",
      ...(options.redispatch ? ["  retries 2", "  option redispatch 1"] : ["  retries 0"]),
      "frontend tunnel_published",
      `  bind 127.0.0.1:${options.frontendPort}`,
      "  default_backend tunnel_servers",
      "backend tunnel_servers",
      "  balance roundrobin",
      ...options.backends.map((backend) =>
        `  server ${backend.name} ${backend.host}:${backend.port} ${check}`
      ),
      "",
    ].join("\n");
    const path = `${options.dir}/haproxy.cfg`;
    await Deno.writeTextFile(path, config);
    const child = new Deno.Command(options.binary, {
      args: ["-db", "-f", path],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const haproxy = new Haproxy(child);
    const deadline = Date.now() + 5000;
    while (true) {
      try {
        (await Deno.connect({ hostname: "127.0.0.1", port: options.frontendPort })).close();
        break;
      } catch (error) {
        if (Date.now() > deadline) {
          await haproxy[Symbol.asyncDispose]();
          throw new Error(`haproxy did not listen on 127.0.0.1:${options.frontendPort}: ${error}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    return haproxy;
  }

  /** When haproxy logged that server `name` went DOWN (performance.now()), or null. */
  downAtMs(name: string, afterMs = 0): number | null {
    return this.lines.find((line) => line.atMs >= afterMs && new RegExp(`/${name} is DOWN`).test(line.text))
      ?.atMs ??
      null;
  }

  /** When haproxy logged that server `name` came UP (performance.now()), or null. */
  upAtMs(name: string, afterMs = 0): number | null {
    return this.lines.find((line) => line.atMs >= afterMs && new RegExp(`/${name} is UP`).test(line.text))
      ?.atMs ??
      null;
  }

  /** Stops haproxy (SIGTERM to its PID) and waits for it. */
  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.#child.kill("SIGTERM");
    } catch {
      // Already gone.
    }
    await this.#child.status;
    await this.#pump.catch(() => {});
  }
}

/** How haproxy checks and retries in a {@linkcode BehindHaproxy} set-up. */
export type FailoverHaproxyOptions = Pick<HaproxyOptions, "checkIntervalMs" | "fall" | "redispatch">;

/**
 * The two-server set-up the failover test and bench run: two servers and their client
 * ({@linkcode TwoServers}), the proxy answering on both addresses, and haproxy on a free loopback port
 * balancing its published port over the two (servers `a` and `b`). Disposing it stops haproxy, then the
 * processes.
 */
export class BehindHaproxy implements AsyncDisposable {
  private constructor(
    /** The servers and the client. */
    readonly fixture: TwoServers,
    /** haproxy in front of them. */
    readonly haproxy: Haproxy,
    /** haproxy's frontend port on 127.0.0.1. */
    readonly frontendPort: number,
  ) {}

  /** Starts both servers, the client and haproxy (`binary`); resolves once the proxy answers on both. */
  static async start(binary: string, options: FailoverHaproxyOptions): Promise<BehindHaproxy> {
    const fixture = await TwoServers.create();
    try {
      const { publishPort } = fixture;
      await fixture.startServer(0);
      await fixture.startServer(1);
      fixture.startClient();
      for (const address of SERVER_ADDRESSES) {
        await waitFor(() => echoesAt(address, publishPort), 15_000, `the proxy on ${address}`, 50);
      }
      const frontendPort = freePort();
      const haproxy = await Haproxy.start({
        binary,
        dir: fixture.dir,
        frontendPort,
        backends: SERVER_ADDRESSES.map((host, index) => ({
          name: "ab"[index] ?? "",
          host,
          port: publishPort,
        })),
        ...options,
      });
      return new BehindHaproxy(fixture, haproxy, frontendPort);
    } catch (error) {
      await fixture[Symbol.asyncDispose]();
      throw error;
    }
  }

  /** Stops haproxy, then the servers and the client. */
  async [Symbol.asyncDispose](): Promise<void> {
    try {
      await this.haproxy[Symbol.asyncDispose]();
    } finally {
      await this.fixture[Symbol.asyncDispose]();
    }
  }
}

/** One connection of the loop. */
export interface Attempt {
  /** When it was opened (performance.now()). */
  startedMs: number;
  /** When it ended. */
  endedMs: number;
  /** Whether the echo came back whole. */
  ok: boolean;
  /** Why not. */
  error?: string;
}

/**
 * Opens a connection to `127.0.0.1:port` every `intervalMs` until `signal` aborts, each sending a short
 * text and expecting it back whole within `timeoutMs`; resolves with every attempt once all have ended.
 */
export async function connectionLoop(
  port: number,
  intervalMs: number,
  signal: AbortSignal,
  timeoutMs = 3000,
): Promise<Attempt[]> {
  const attempts: Promise<Attempt>[] = [];
  let sequence = 0;
  while (!signal.aborted) {
    const text = `attempt-${sequence++}`;
    attempts.push(oneAttempt(port, text, timeoutMs));
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  return await Promise.all(attempts);
}

async function oneAttempt(port: number, text: string, timeoutMs: number): Promise<Attempt> {
  const startedMs = performance.now();
  let conn: Deno.TcpConn | null = null;
  const timer = setTimeout(() => conn?.close(), timeoutMs);
  try {
    conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(new TextEncoder().encode(text));
    await conn.closeWrite();
    let received = "";
    const buffer = new Uint8Array(256);
    const decoder = new TextDecoder();
    while (true) {
      const read = await conn.read(buffer);
      if (read === null) break;
      received += decoder.decode(buffer.subarray(0, read), { stream: true });
    }
    const ok = received === text;
    return {
      startedMs,
      endedMs: performance.now(),
      ok,
      ...(ok ? {} : { error: `got ${received.length} bytes` }),
    };
  } catch (error) {
    return { startedMs, endedMs: performance.now(), ok: false, error: String(error) };
  } finally {
    clearTimeout(timer);
    try {
      conn?.close();
    } catch {
      // Closed already.
    }
  }
}

/** What a failover run measured, relative to the kill. */
export interface FailoverFigures {
  /** Connections opened in all. */
  attempts: number;
  /** Connections that failed. */
  failed: number;
  /** Connections that were open at the kill (started before it, ended after it). */
  inFlightAtKill: number;
  /** From the kill to the start of the last connection that failed, ms (0 when none failed). */
  failureWindowMs: number;
  /** From the kill to haproxy's "is DOWN" log line, ms (null when it did not log one). */
  detectionMs: number | null;
}

/** The figures of a run whose server was killed at `killedAtMs`. */
export function failoverFigures(
  attempts: Attempt[],
  killedAtMs: number,
  downAtMs: number | null,
): FailoverFigures {
  const failures = attempts.filter((attempt) => !attempt.ok);
  const lastFailure = Math.max(killedAtMs, ...failures.map((attempt) => attempt.startedMs));
  return {
    attempts: attempts.length,
    failed: failures.length,
    inFlightAtKill: attempts.filter((a) => a.startedMs <= killedAtMs && a.endedMs >= killedAtMs).length,
    failureWindowMs: failures.length === 0 ? 0 : Math.round(lastFailure - killedAtMs),
    detectionMs: downAtMs === null ? null : Math.round(downAtMs - killedAtMs),
  };
}

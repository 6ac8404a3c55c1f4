/**
 * Helpers for the end-to-end tests: certificates, config files, the real CLI as a child process with
 * its log lines, and local services (echo, sink) on loopback.
 *
 * @module
 */

import { generateCertificates } from "../lib/pki/cert.ts";
import { closeQuietly } from "../lib/transport/pipe.ts";
import { writeAll } from "../lib/net/conn.ts";
import type { EventSnapshot } from "../lib/stats/snapshot.ts";
import type { TunnelClient } from "../lib/client/client.ts";

export { patternBytes, sha256Hex } from "./bytes.ts";
import { concatBytes, readAll } from "./bytes.ts";

/** Project root, where main.ts lives. */
export const PROJECT_ROOT = new URL("../", import.meta.url).pathname;

/** A throw-away CA and server certificate for localhost/127.0.0.1, made once per test process. */
let certificatesOnce: ReturnType<typeof generateCertificates> | null = null;
export function testCertificates(): ReturnType<typeof generateCertificates> {
  certificatesOnce ??= generateCertificates({ commonName: "localhost", altNames: [], validityDays: 2 });
  return certificatesOnce;
}

/** A temp folder with the certificate files written into it. */
export async function makeWorkdir(): Promise<
  { dir: string; certPath: string; keyPath: string; caPath: string; cleanup(): Promise<void> }
> {
  const dir = await Deno.makeTempDir({ prefix: "tls-tunnel-test-" });
  const certs = await testCertificates();
  const certPath = `${dir}/cert.pem`;
  const keyPath = `${dir}/key.pem`;
  const caPath = `${dir}/ca.pem`;
  await Promise.all([
    Deno.writeTextFile(certPath, certs.serverChainPem),
    Deno.writeTextFile(keyPath, certs.serverKeyPem),
    Deno.writeTextFile(caPath, certs.caCertPem),
  ]);
  return { dir, certPath, keyPath, caPath, cleanup: () => Deno.remove(dir, { recursive: true }) };
}

/** A port that was free a moment ago (bind it soon: another process may take it). */
export function freePort(): number {
  return freePortRange(1);
}

/**
 * Where test ports are picked: below Linux's ephemeral range (32768-60999), so the source port of some
 * parallel test's outgoing connection, or another `port: 0` listener, cannot take a port between the
 * moment it is picked and the moment the test binds it.
 */
const TEST_PORTS = { start: 20000, end: 32000 };

/** The first of `count` consecutive ports that were free a moment ago, from a random start. */
export function freePortRange(count: number): number {
  for (let attempt = 0; attempt < 200; attempt++) {
    const start = TEST_PORTS.start + Math.floor(Math.random() * (TEST_PORTS.end - TEST_PORTS.start - count));
    const ports = Array.from({ length: count }, (_, index) => start + index);
    if (ports.every((port) => canBind(port))) return start;
  }
  throw new Error(`no ${count} consecutive free ports found in ${TEST_PORTS.start}-${TEST_PORTS.end}`);
}

/** Whether `port` on 127.0.0.1 can be bound right now. */
export function canBind(port: number, hostname = "127.0.0.1"): boolean {
  try {
    Deno.listen({ hostname, port }).close();
    return true;
  } catch {
    return false;
  }
}

/** Resolves once `check` returns true, polling every `intervalMs`; rejects after `timeoutMs`. */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string,
  intervalMs = 10,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** One parsed JSON log line of a child process. */
export interface LogRecord {
  level: string;
  message: string;
  category?: string | string[];
  properties?: Record<string, unknown>;
  [key: string]: unknown;
}

/** `line` as a JSON log record (an object with a string `level`), or null. */
export function parseRecord(line: string): LogRecord | null {
  try {
    const value: unknown = JSON.parse(line);
    if (typeof value !== "object" || value === null || Array.isArray(value)) return null;
    return typeof (value as { level?: unknown }).level === "string" ? value as LogRecord : null;
  } catch {
    return null;
  }
}

/** The permissions a {@linkcode CliProcess} runs with unless told otherwise (those `deno task server` grants). */
export const CLI_PERMISSIONS: readonly string[] = [
  "--allow-net",
  "--allow-read",
  "--allow-env",
  "--allow-sys=hostname",
  "--allow-ffi",
];

/** The real CLI (`deno run main.ts …`) as a child process, with its stderr log lines collected. */
export class CliProcess {
  readonly lines: string[] = [];
  readonly records: LogRecord[] = [];
  /**
   * Standard output as text: the process runs with `--log-format json`, so each JSON record printed
   * there adds its message (the text a text-format run prints); other lines are added as they are.
   */
  stdout = "";
  /** The JSON records printed on standard output (the command's own output in JSON format). */
  readonly stdoutRecords: LogRecord[] = [];
  /** Standard output's lines as printed. */
  readonly stdoutLines: string[] = [];
  readonly #child: Deno.ChildProcess;
  readonly #pumps: Promise<void>;
  #waiters: Array<() => void> = [];
  #status: Promise<Deno.CommandStatus>;
  exited = false;

  /**
   * @param args the CLI's arguments
   * @param options `entry`: the program to run instead of `main.ts` (the bundle, for example); `cwd`:
   *   the working directory (default the project root; a relative `entry` is resolved from the root)
   */
  constructor(
    args: string[],
    options: { env?: Record<string, string>; permissions?: string[]; entry?: string; cwd?: string } = {},
  ) {
    const permissions = options.permissions ?? CLI_PERMISSIONS;
    const entry = options.entry ?? "main.ts";
    this.#child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--quiet",
        ...permissions,
        entry.startsWith("/") ? entry : `${PROJECT_ROOT}${entry}`,
        "--log-format",
        "json",
        ...args,
      ],
      cwd: options.cwd ?? PROJECT_ROOT,
      env: { NO_COLOR: "1", ...options.env },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#status = this.#child.status.then((status) => {
      this.exited = true;
      this.#wake();
      return status;
    });
    this.#pumps = Promise.all([
      this.#pump(this.#child.stderr, (line) => {
        this.lines.push(line);
        try {
          const record = JSON.parse(line) as LogRecord;
          if (typeof record === "object" && record !== null) this.records.push(record);
        } catch {
          // Not a JSON log line (a plain error message): kept in `lines`.
        }
      }),
      this.#pump(this.#child.stdout, (line) => {
        this.stdoutLines.push(line);
        const record = parseRecord(line);
        if (record !== null) this.stdoutRecords.push(record);
        this.stdout += (typeof record?.message === "string" ? record.message : line) + "\n";
      }),
    ]).then(() => {});
  }

  get pid(): number {
    return this.#child.pid;
  }

  async #pump(stream: ReadableStream<Uint8Array>, onLine: (line: string) => void): Promise<void> {
    const decoder = new TextDecoder();
    let pending = "";
    for await (const chunk of stream) {
      pending += decoder.decode(chunk, { stream: true });
      let newline: number;
      while ((newline = pending.indexOf("\n")) >= 0) {
        onLine(pending.slice(0, newline));
        pending = pending.slice(newline + 1);
      }
      this.#wake();
    }
    if (pending) onLine(pending);
    this.#wake();
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const wake of waiters) wake();
  }

  /** All output so far, for assertion messages. */
  get output(): string {
    return this.lines.join("\n") + (this.stdout ? `\n[stdout]\n${this.stdout}` : "");
  }

  /** Waits for a stderr line matching `pattern`; returns the match. */
  async waitForLine(pattern: RegExp, timeoutMs = 15_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    let scanned = 0;
    while (true) {
      for (; scanned < this.lines.length; scanned++) {
        const match = (this.lines[scanned] ?? "").match(pattern);
        if (match) return match;
      }
      if (this.exited) {
        throw new Error(`Process exited before printing ${pattern}. Output:\n${this.output}`);
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new Error(`Timed out waiting for ${pattern}. Output:\n${this.output}`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        timer = setTimeout(resolve, Math.min(remaining, 200));
        this.#waiters.push(resolve);
      });
      clearTimeout(timer);
    }
  }

  /** Sends a signal (ignoring a process that already exited). */
  kill(signal: Deno.Signal = "SIGTERM"): void {
    try {
      this.#child.kill(signal);
    } catch {
      // Already exited.
    }
  }

  /** Waits for exit and the end of its output. */
  async status(): Promise<Deno.CommandStatus> {
    const status = await this.#status;
    await this.#pumps;
    return status;
  }

  /** Terminates (SIGTERM, then SIGKILL after `graceMs`) and waits. */
  async stop(graceMs = 5000): Promise<Deno.CommandStatus> {
    if (!this.exited) {
      this.kill("SIGCONT");
      this.kill("SIGTERM");
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        this.#status,
        new Promise((resolve) => (timer = setTimeout(resolve, graceMs))),
      ]);
      clearTimeout(timer);
      if (!this.exited) this.kill("SIGKILL");
    }
    return await this.status();
  }
}

/** A TCP echo service on 127.0.0.1 for the tunnel to publish. */
export class EchoService {
  readonly listener: Deno.TcpListener;
  readonly #loop: Promise<void>;
  readonly #conns = new Set<Deno.Conn>();
  readonly #tasks = new Set<Promise<void>>();
  /** Connections accepted so far. */
  accepted = 0;

  /** @param port a fixed port (to bring a service back where it was), or 0 for any. */
  constructor(port = 0) {
    this.listener = Deno.listen({ hostname: "127.0.0.1", port });
    this.#loop = this.#accept();
  }

  get port(): number {
    return this.listener.addr.port;
  }

  async #accept(): Promise<void> {
    while (true) {
      let conn: Deno.Conn;
      try {
        conn = await this.listener.accept();
      } catch {
        return;
      }
      this.accepted++;
      this.#conns.add(conn);
      const task = this.#echo(conn).finally(() => {
        this.#conns.delete(conn);
        this.#tasks.delete(task);
      });
      this.#tasks.add(task);
    }
  }

  async #echo(conn: Deno.Conn): Promise<void> {
    const buffer = new Uint8Array(64 * 1024);
    try {
      while (true) {
        const count = await conn.read(buffer);
        if (count === null) break;
        await writeAll(conn, buffer.subarray(0, count));
      }
      await conn.closeWrite();
    } catch {
      // Reset by the peer: the test decides whether that was expected.
    } finally {
      closeQuietly(conn);
    }
  }

  async close(): Promise<void> {
    closeQuietly(this.listener);
    for (const conn of this.#conns) closeQuietly(conn);
    await this.#loop;
    await Promise.all([...this.#tasks]);
  }
}

/** Connects to 127.0.0.1:`port`, writes `request`, half-closes, and reads everything back. */
export async function roundTrip(
  port: number,
  request: Uint8Array,
  timeoutMs = 10_000,
): Promise<Uint8Array<ArrayBuffer>> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const timer = setTimeout(() => closeQuietly(conn), timeoutMs);
  try {
    let writeError: unknown = null;
    // Caught at once: when the read side fails first, the write's failure must not go unhandled.
    const writing = writeAll(conn, request).then(() => conn.closeWrite()).catch((error) => {
      writeError = error;
    });
    const chunks: Uint8Array[] = [];
    const buffer = new Uint8Array(64 * 1024);
    while (true) {
      const count = await conn.read(buffer);
      if (count === null) break;
      chunks.push(buffer.slice(0, count));
    }
    await writing;
    if (writeError !== null) throw writeError;
    return concatBytes(chunks);
  } finally {
    clearTimeout(timer);
    closeQuietly(conn);
  }
}

/** Whether a round trip of `text` through 127.0.0.1:`port` (an echo, maybe through a tunnel) echoes it within 3 s. */
export async function echoes(port: number, text: string): Promise<boolean> {
  try {
    return new TextDecoder().decode(await roundTrip(port, new TextEncoder().encode(text), 3000)) === text;
  } catch {
    return false;
  }
}

/**
 * Connects to 127.0.0.1:`port` and sends `text`; returns what came back (the first read's bytes, at most
 * 64; with `untilEnd`, everything up to the end after half-closing), or the error that ended the connect,
 * the write or the read. A refused connection (a visitor's) shows as an Error or "": a reset can beat the
 * connect's own completion.
 */
export async function tryExchange(
  port: number,
  text: string,
  options: { untilEnd?: boolean } = {},
): Promise<string | Error> {
  let conn: Deno.TcpConn;
  try {
    conn = await Deno.connect({ hostname: "127.0.0.1", port });
  } catch (error) {
    return error as Error;
  }
  try {
    await writeAll(conn, new TextEncoder().encode(text));
    if (options.untilEnd !== true) {
      const buffer = new Uint8Array(64);
      const count = await conn.read(buffer);
      return count === null ? "" : new TextDecoder().decode(buffer.subarray(0, count));
    }
    await conn.closeWrite();
    return new TextDecoder().decode(await readAll(conn, 4096));
  } catch (error) {
    return error as Error;
  } finally {
    conn.close();
  }
}

/** The events with `code` that `client` has recorded (from the server's notices and its own). */
export function eventsOf(client: TunnelClient, code: string): EventSnapshot[] {
  return client.events.recent().filter((event) => event.code === code);
}

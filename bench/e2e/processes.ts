/**
 * The processes the end-to-end bench starts: the agent (sink/echo service), the tunnel's server and
 * client as `deno run main.ts` children, and their memory as the kernel counts it (RSS).
 *
 * Everything started here is registered, and stopped on teardown, on error, and on Ctrl-C/SIGTERM
 * ({@linkcode stopAllChildren}).
 *
 * @module
 */

import { CLI_PERMISSIONS, CliProcess, freePort, makeWorkdir, PROJECT_ROOT } from "../../testing/helpers.ts";
import { buildBundle } from "../../scripts/compile_all.ts";

/** Something the bench started and must stop. */
export interface ChildHandle {
  /** Process id (for RSS). */
  readonly pid: number;
  /** Stops the process (SIGTERM, then SIGKILL after a grace period) and waits for it. */
  stop(): Promise<void>;
  /** Sends SIGKILL at once (used on Ctrl-C, when there is no time to wait). */
  killNow(): void;
}

const children = new Set<ChildHandle>();
let signalsInstalled = false;

/** Registers `child` so it is stopped even when the bench is interrupted; returns it. */
export function track<T extends ChildHandle>(child: T): T {
  children.add(child);
  if (!signalsInstalled) {
    signalsInstalled = true;
    const onSignal = () => {
      console.error("[bench] interrupted: stopping the processes it started");
      for (const child of children) child.killNow();
      Deno.exit(130);
    };
    for (const signal of ["SIGINT", "SIGTERM"] as const) {
      try {
        Deno.addSignalListener(signal, onSignal);
      } catch {
        // Signals unsupported (Windows SIGTERM): the teardown still stops everything.
      }
    }
  }
  return child;
}

/** Stops `child` and forgets it. */
export async function stopChild(child: ChildHandle | null | undefined): Promise<void> {
  if (!child) return;
  children.delete(child);
  await child.stop();
}

/** Stops every child still running (the sections' teardown calls this last). */
export async function stopAllChildren(): Promise<void> {
  await Promise.all([...children].map((child) => stopChild(child)));
}

/** Runs `command` with `args` and returns its stdout, or throws with its stderr. */
export async function runCommand(command: string, args: string[]): Promise<string> {
  const output = await new Deno.Command(command, { args, stdin: "null", stdout: "piped", stderr: "piped" })
    .output();
  const text = new TextDecoder();
  if (!output.success) {
    throw new Error(
      `${command} ${args.join(" ")} failed (${output.code}): ${text.decode(output.stderr).trim()}`,
    );
  }
  return text.decode(output.stdout);
}

/**
 * Resident set size in bytes of each process of `rootPids` together with all its descendants (sshd
 * forks a process per connection). Read with `ps`, since Deno grants /proc only with --allow-all.
 */
export async function treeRssBytes(rootPids: readonly number[]): Promise<number[]> {
  const table = await runCommand("ps", ["-e", "-o", "pid=,ppid=,rss="]);
  const rssKiB = new Map<number, number>();
  const childrenOf = new Map<number, number[]>();
  for (const line of table.split("\n")) {
    const [pid, ppid, rss] = line.trim().split(/\s+/).map(Number);
    if (pid === undefined || ppid === undefined || rss === undefined || Number.isNaN(rss)) continue;
    rssKiB.set(pid, rss);
    const siblings = childrenOf.get(ppid) ?? [];
    siblings.push(pid);
    childrenOf.set(ppid, siblings);
  }
  return rootPids.map((root) => {
    if (!rssKiB.has(root)) throw new Error(`process ${root} is gone; cannot read its memory`);
    let total = 0;
    const pending = [root];
    while (pending.length > 0) {
      const pid = pending.pop() as number;
      total += rssKiB.get(pid) ?? 0;
      pending.push(...(childrenOf.get(pid) ?? []));
    }
    return total * 1024;
  });
}

/** Clock ticks per second of /proc/PID/stat times (USER_HZ; 100 on Linux). */
const USER_HZ = 100;

/** A process whose CPU time is counted, alone or with its descendants (sshd forks one per session). */
export interface CpuTarget {
  pid: number;
  withDescendants: boolean;
}

/**
 * CPU time (user + system, in seconds) used so far by each target. Read from /proc through `cat` (Deno
 * grants /proc only with --allow-all); 10 ms resolution. Linux only: elsewhere it throws.
 */
export async function cpuSeconds(targets: readonly CpuTarget[]): Promise<number[]> {
  const text = await runCommand("sh", ["-c", "cat /proc/[0-9]*/stat 2>/dev/null; true"]);
  const ticks = new Map<number, number>();
  const childrenOf = new Map<number, number[]>();
  for (const line of text.split("\n")) {
    const close = line.lastIndexOf(")");
    if (close < 0) continue;
    const pid = Number(line.slice(0, line.indexOf(" ")));
    // Fields after the command name: state, ppid, … utime (14th field overall), stime (15th).
    const fields = line.slice(close + 2).split(" ");
    const ppid = Number(fields[1]);
    const used = Number(fields[11]) + Number(fields[12]);
    if (!Number.isFinite(pid) || !Number.isFinite(used)) continue;
    ticks.set(pid, used);
    const siblings = childrenOf.get(ppid) ?? [];
    siblings.push(pid);
    childrenOf.set(ppid, siblings);
  }
  return targets.map(({ pid: root, withDescendants }) => {
    if (!ticks.has(root)) throw new Error(`process ${root} is gone; cannot read its CPU time`);
    let total = 0;
    const pending = [root];
    while (pending.length > 0) {
      const pid = pending.pop() as number;
      total += ticks.get(pid) ?? 0;
      if (withDescendants) pending.push(...(childrenOf.get(pid) ?? []));
    }
    return total / USER_HZ;
  });
}

/**
 * A bench script run as a child process (`deno run SCRIPT ARGS`): it prints one JSON line on stdout once
 * ready and runs until its stdin closes, so it never outlives the bench.
 */
export class ScriptChild implements ChildHandle {
  readonly #child: Deno.ChildProcess;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;

  private constructor(child: Deno.ChildProcess) {
    this.#child = child;
    this.#stdin = child.stdin.getWriter();
  }

  get pid(): number {
    return this.#child.pid;
  }

  /** Starts `script` (a file next to this module) and resolves with its first JSON line once ready. */
  static async start<T>(
    script: string,
    args: string[],
    permissions: string[],
  ): Promise<{ child: ScriptChild; ready: T }> {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--quiet", ...permissions, new URL(script, import.meta.url).pathname, ...args],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const handle = track(new ScriptChild(child));
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    const timer = setTimeout(() => handle.killNow(), 20_000);
    try {
      while (!text.includes("\n")) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`bench helper ${script} exited before it was ready: ${text}`);
        text += value;
      }
    } catch (error) {
      await stopChild(handle);
      throw error;
    } finally {
      clearTimeout(timer);
    }
    // Keep draining stdout so the child never blocks on it.
    (async () => {
      while (!(await reader.read()).done) { /* discard */ }
    })().catch(() => {});
    return { child: handle, ready: JSON.parse(text.slice(0, text.indexOf("\n"))) as T };
  }

  async stop(): Promise<void> {
    await this.#stdin.close().catch(() => {});
    const timer = setTimeout(() => this.killNow(), 5_000);
    try {
      await this.#child.status;
    } finally {
      clearTimeout(timer);
    }
  }

  killNow(): void {
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
  }
}

/** The agent child process: the sink/echo service behind every path (see agent.ts). */
export interface AgentProcess {
  readonly child: ScriptChild;
  readonly tcpPort: number;
  readonly tlsPort: number;
}

/** Starts the agent with the TLS certificate at `certPath`/`keyPath`; resolves once it listens. */
export async function startAgent(certPath: string, keyPath: string): Promise<AgentProcess> {
  const { child, ready } = await ScriptChild.start<{ tcpPort: number; tlsPort: number }>(
    "./agent.ts",
    [certPath, keyPath],
    ["--allow-net", "--allow-read"],
  );
  return { child, tcpPort: ready.tcpPort, tlsPort: ready.tlsPort };
}

/** Starts a bare Deno TCP relay (relay.ts) to 127.0.0.1:`targetPort`; resolves with it and its port. */
export async function startRelay(targetPort: number): Promise<{ child: ScriptChild; port: number }> {
  const { child, ready } = await ScriptChild.start<{ port: number }>(
    "./relay.ts",
    [String(targetPort)],
    ["--allow-net"],
  );
  return { child, port: ready.port };
}

/** A `deno run main.ts …` child (server or client) as a {@linkcode ChildHandle}. */
export class CliChild implements ChildHandle {
  constructor(readonly cli: CliProcess) {}
  get pid(): number {
    return this.cli.pid;
  }
  async stop(): Promise<void> {
    await this.cli.stop(3_000);
  }
  killNow(): void {
    this.cli.kill("SIGKILL");
  }
}

/** Certificates and configs for a loopback tunnel, in a temp folder. */
export interface TunnelFiles {
  dir: string;
  certPath: string;
  keyPath: string;
  caPath: string;
  serverConfigPath: string;
  clientConfigPath: string;
  serverPort: number;
  publishPort: number;
  cleanup(): Promise<void>;
}

const AUTH_KEY = "bench-auth-key-0123456789abcdef";

/** How a bench tunnel is carried. */
export interface TunnelOptions {
  /** The transport both ends use (any the registry knows: "tls", "wss", "http2", …); default "tls". */
  transport?: string;
  /** The server serves plain text for a reverse proxy in front of it (`behind_proxy = true`). */
  behindProxy?: boolean;
  /**
   * A reverse proxy between client and server (nginx): `port` is where the client dials; `start` runs
   * once the server listens, before the client starts, and returns the proxy's process.
   */
  front?: { port: number; start(files: TunnelFiles): Promise<ChildHandle> };
  /**
   * Deno permissions and flags of the server and client processes (default: `CliProcess`'s). A transport
   * that needs `--unstable-net` (quic) adds it here.
   */
  permissions?: string[];
}

/**
 * Writes a server and a client config for one proxy `bench` publishing `localPort` on a free port. No
 * keepalive or reconnect keys: the defaults, as a user gets them.
 */
export async function writeTunnelFiles(localPort: number, options: TunnelOptions = {}): Promise<TunnelFiles> {
  const transport = options.transport ?? "tls";
  const work = await makeWorkdir();
  const serverPort = freePort();
  const publishPort = freePort();
  const serverConfigPath = `${work.dir}/server.toml`;
  const clientConfigPath = `${work.dir}/client.toml`;
  await Deno.writeTextFile(
    serverConfigPath,
    `[server]\nbind_addr = "127.0.0.1"\nbind_port = ${serverPort}\ncert_path = "${work.certPath}"\n` +
      `key_path = "${work.keyPath}"\nauth_key = "${AUTH_KEY}"\ntransport = "${transport}"\n` +
      (options.behindProxy === true ? "behind_proxy = true\n" : ""),
  );
  await Deno.writeTextFile(
    clientConfigPath,
    `[client]\nserver_addr = "127.0.0.1"\nserver_port = ${
      options.front?.port ?? serverPort
    }\nserver_name = "localhost"\n` +
      `ca_cert_path = "${work.caPath}"\nauth_key = "${AUTH_KEY}"\ntransport = "${transport}"\n\n` +
      `[[proxies]]\nname = "bench"\npublish_addr = "127.0.0.1"\npublish_port = ${publishPort}\n` +
      `local_addr = "127.0.0.1"\nlocal_port = ${localPort}\n`,
  );
  return {
    ...work,
    serverConfigPath,
    clientConfigPath,
    serverPort,
    publishPort,
    cleanup: () => work.cleanup().catch(() => {}),
  };
}

/** Log line of the server once it accepts clients. */
export const SERVER_LISTENING = /Listening for clients on/;
/** Log line of the client once the bench proxy is published; group 1 is the port. */
export const PROXY_PUBLISHED = /Proxy bench: 127\.0\.0\.1:(\d+)/;

/** Environment variable with extra Deno flags for the tunnel's server and client processes. */
export const TUNNEL_FLAGS_ENV = "TLS_TUNNEL_BENCH_TUNNEL_FLAGS";

/**
 * Extra Deno flags for every tunnel server and client the bench starts, from {@linkcode TUNNEL_FLAGS_ENV}
 * split on whitespace (e.g. `--v8-flags=--min-semi-space-size=16,--max-semi-space-size=16`), so an A/B
 * of runtime flags needs no code change. Each must start with `--`: anything else would be taken for the
 * script.
 */
export function tunnelFlagsFromEnv(): string[] {
  const text = Deno.env.get(TUNNEL_FLAGS_ENV)?.trim() ?? "";
  if (text === "") return [];
  const flags = text.split(/\s+/);
  const bad = flags.find((flag) => !flag.startsWith("--"));
  if (bad !== undefined) {
    throw new Error(
      `${TUNNEL_FLAGS_ENV} holds "${bad}", which is not a Deno flag: give flags such as ` +
        `"--v8-flags=--min-semi-space-size=16,--max-semi-space-size=16", separated by spaces`,
    );
  }
  if (!tunnelFlagsShown) {
    tunnelFlagsShown = true;
    console.error(`[bench] tunnel server and client run with ${TUNNEL_FLAGS_ENV}: ${flags.join(" ")}`);
  }
  return flags;
}

let tunnelFlagsShown = false;

/**
 * Starts `deno run [TUNNEL FLAGS] ENTRY ROLE -c CONFIG` and waits for `readyLine`; stops it if that
 * never comes.
 */
async function startTunnelRole(
  role: "server" | "client",
  configPath: string,
  readyLine: RegExp,
  entry: string,
  permissions: readonly string[] = CLI_PERMISSIONS,
): Promise<CliChild> {
  const child = track(
    new CliChild(
      new CliProcess([role, "-c", configPath], {
        entry,
        permissions: [...tunnelFlagsFromEnv(), ...permissions],
      }),
    ),
  );
  try {
    await child.cli.waitForLine(readyLine, 20_000);
  } catch (error) {
    await stopChild(child);
    throw error;
  }
  return child;
}

/**
 * Starts `deno run main.ts server -c …` (or `entry` instead of main.ts: the bundle) and waits until it
 * listens.
 */
export function startTunnelServer(
  files: TunnelFiles,
  entry = "main.ts",
  permissions?: string[],
): Promise<CliChild> {
  return startTunnelRole("server", files.serverConfigPath, SERVER_LISTENING, entry, permissions);
}

/** Starts `deno run main.ts client -c …` (or `entry`) and waits until its proxy is published. */
export function startTunnelClient(
  files: TunnelFiles,
  entry = "main.ts",
  permissions?: string[],
): Promise<CliChild> {
  return startTunnelRole("client", files.clientConfigPath, PROXY_PUBLISHED, entry, permissions);
}

/** A running tunnel: server and client processes publishing the agent's TCP port. */
export class TunnelPair {
  private constructor(
    readonly files: TunnelFiles,
    public server: CliChild,
    public client: CliChild,
    /** The reverse proxy between them (nginx), if any. */
    readonly front: ChildHandle | null = null,
  ) {}

  /** The published port on 127.0.0.1. */
  get publishPort(): number {
    return this.files.publishPort;
  }

  /**
   * Starts a server and a client publishing `localPort`, both running `entry` (main.ts or the bundle),
   * connected over `options.transport` (default "tls"), through `options.front` when given.
   */
  static async start(localPort: number, entry = "main.ts", options: TunnelOptions = {}): Promise<TunnelPair> {
    const files = await writeTunnelFiles(localPort, options);
    let server: CliChild | null = null;
    let front: ChildHandle | null = null;
    try {
      server = await startTunnelServer(files, entry, options.permissions);
      if (options.front) front = await options.front.start(files);
      const client = await startTunnelClient(files, entry, options.permissions);
      return new TunnelPair(files, server, client, front);
    } catch (error) {
      await stopChild(front);
      await stopChild(server);
      await files.cleanup();
      throw error;
    }
  }

  /** Stops the processes (client, proxy, server) and removes the files. */
  async stop(): Promise<void> {
    await stopChild(this.client);
    await stopChild(this.front);
    await stopChild(this.server);
    await this.files.cleanup();
  }
}

/** Builds the single-file bundle as `deno task bundle` does, into `dir`, and returns its path. */
export async function buildBundleIn(dir: string): Promise<string> {
  const path = `${dir}/tls-tunnel.js`;
  await buildBundle(path, PROJECT_ROOT);
  return path;
}

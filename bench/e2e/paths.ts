/**
 * The paths the end-to-end sections compare, each ending at the agent's sink/echo service:
 *
 * 1. direct TCP (no tunnel): the floor;
 * 2. raw TLS between two Deno processes (the bench and the agent) with `conn.read`/`conn.write`: the
 *    ceiling for any Deno tunnel;
 * 3. tls-tunnel: server and client as separate `deno run main.ts` processes over real TLS, and the same
 *    over each other transport ({@linkcode TRANSPORT_PATHS}: wss, http2, and wss through nginx, which
 *    terminates TLS in front of a `behind_proxy` server);
 * 4. OpenSSH `ssh -R` against our own sshd, with the default cipher and with aes128-gcm (when installed),
 *    and, for the latency section, `ssh -tt -R` (a terminal session: OpenSSH's interactive mode, Nagle off);
 *
 * and, for reference, two bare Deno TCP relays in a row (relay.ts): the floor of any two-process Deno
 * tunnel, without TLS and without multiplexing.
 *
 * @module
 */

import { CLI_PERMISSIONS, freePort, makeWorkdir } from "../../testing/helpers.ts";
import type { BenchContext } from "../_harness.ts";
import { connectionChurn, type Connector, tcpConnector, tlsConnector } from "./load.ts";
import {
  type AgentProcess,
  type ChildHandle,
  type CpuTarget,
  startAgent,
  startRelay,
  stopChild,
  type TunnelFiles,
  TunnelPair,
} from "./processes.ts";
import { findSsh, type SshCipher, SshForward, SshServer } from "./ssh.ts";
import { findNginx, NginxChild } from "./nginx.ts";

/** Names of the paths, as they appear in case names. */
export const PathName = {
  direct: "direct TCP",
  tls: "raw TLS",
  relay: "Deno relay x2",
  tunnel: "tls-tunnel",
  tunnelWss: "tls-tunnel wss",
  tunnelHttp2: "tls-tunnel http2",
  tunnelNginx: "tls-tunnel wss via nginx",
  /** Experimental; its processes run with `--unstable-net`. */
  tunnelQuic: "tls-tunnel quic",
  ssh: "ssh -R",
  sshGcm: "ssh -R aes128-gcm",
  sshTty: "ssh -tt -R",
} as const;

/** One of {@linkcode PathName}'s values. */
export type PathNameValue = typeof PathName[keyof typeof PathName];

/** A tunnel path over a transport other than tls: how its server and client are started. */
export interface TransportPath {
  /** The path's name in case names. */
  name: PathNameValue;
  /** The `transport` of both configs. */
  transport: string;
  /** Through nginx: the server is `behind_proxy`, nginx terminates TLS in front of it. */
  viaNginx?: boolean;
  /** Deno flags of both processes instead of the defaults (quic needs `--unstable-net`). */
  permissions?: string[];
}

/**
 * The tunnel over every other transport, beside the tls tunnel ({@linkcode PathName.tunnel}); quic's
 * processes get `--unstable-net` besides the CLI's usual permissions.
 */
export const TRANSPORT_PATHS: readonly TransportPath[] = [
  { name: PathName.tunnelWss, transport: "wss" },
  { name: PathName.tunnelHttp2, transport: "http2" },
  { name: PathName.tunnelNginx, transport: "wss", viaNginx: true },
  { name: PathName.tunnelQuic, transport: "quic", permissions: ["--unstable-net", ...CLI_PERMISSIONS] },
];

/** The cipher of the second ssh variant. */
export const SSH_GCM_CIPHER = "aes128-gcm@openssh.com";

/** A path the bench can drive, or why it is missing. */
export interface BenchPath {
  readonly name: PathNameValue;
  /** Opens a connection that ends at the agent; null when the path is unavailable. */
  readonly connect: Connector | null;
  /** Why the path is unavailable (e.g. OpenSSH not installed), or null. */
  readonly missing: string | null;
  /**
   * The processes between the load generator and the agent (the tunnel's two ends), whose CPU time is
   * charged to the path; read at run time, since a process may be restarted. Empty for direct TCP and
   * raw TLS, whose work is done by the bench and the agent themselves.
   */
  readonly middle: () => CpuTarget[];
}

/** Which paths a section wants. */
export interface PathsWanted {
  /** ssh variants to start (none, the default cipher only, or both). */
  ssh: "none" | "default" | "both";
  /** Also start `ssh -tt -R` (default cipher, interactive mode) when ssh is wanted (default false). */
  sshTty?: boolean;
  /** Start a shared tunnel pair (default true). */
  tunnel?: boolean;
  /** Also start a tunnel pair over each of {@linkcode TRANSPORT_PATHS} (default false). */
  transports?: boolean;
  /** Start the two reference relays (default false). */
  relay?: boolean;
}

/** Running paths with everything they started. */
export class PathSet {
  readonly paths: BenchPath[] = [];
  readonly #stops: Array<() => Promise<void>> = [];
  agent: AgentProcess | null = null;
  tunnel: TunnelPair | null = null;
  sshServer: SshServer | null = null;
  readonly sshForwards = new Map<PathNameValue, SshForward>();

  /** The path named `name` (every wanted name is present, possibly as missing). */
  get(name: PathNameValue): BenchPath {
    const path = this.paths.find((candidate) => candidate.name === name);
    if (path === undefined) throw new Error(`bench path "${name}" was not set up`);
    return path;
  }

  /** Starts the agent, the tunnel, the relays and (if wanted and installed) sshd with its forwards. */
  static async start(context: BenchContext, wanted: PathsWanted): Promise<PathSet> {
    const set = new PathSet();
    try {
      const work = await makeWorkdir();
      set.#stops.push(() => work.cleanup().catch(() => {}));
      const caPem = await Deno.readTextFile(work.caPath);
      const agent = await startAgent(work.certPath, work.keyPath);
      set.agent = agent;
      set.#stops.push(() => stopChild(agent.child));
      const none = (): CpuTarget[] => [];
      set.paths.push({
        name: PathName.direct,
        connect: tcpConnector(agent.tcpPort),
        missing: null,
        middle: none,
      });
      set.paths.push({
        name: PathName.tls,
        connect: tlsConnector(agent.tlsPort, caPem),
        missing: null,
        middle: none,
      });
      if (wanted.relay === true) {
        const inner = await startRelay(agent.tcpPort);
        set.#stops.push(() => stopChild(inner.child));
        const outer = await startRelay(inner.port);
        set.#stops.push(() => stopChild(outer.child));
        set.paths.push({
          name: PathName.relay,
          connect: tcpConnector(outer.port),
          missing: null,
          middle: () => [
            { pid: outer.child.pid, withDescendants: false },
            { pid: inner.child.pid, withDescendants: false },
          ],
        });
      }
      if (wanted.tunnel !== false) {
        const tunnel = await TunnelPair.start(agent.tcpPort);
        set.tunnel = tunnel;
        set.#stops.push(() => tunnel.stop());
        set.paths.push({
          name: PathName.tunnel,
          connect: tcpConnector(tunnel.publishPort),
          missing: null,
          middle: () => [
            { pid: tunnel.server.pid, withDescendants: false },
            { pid: tunnel.client.pid, withDescendants: false },
          ],
        });
      }
      if (wanted.transports === true) {
        for (const transportPath of TRANSPORT_PATHS) {
          set.paths.push(await set.#startTransport(context, transportPath, agent.tcpPort));
        }
      }
      await set.#startSsh(context, wanted, agent.tcpPort);
      return set;
    } catch (error) {
      await set.stop();
      throw error;
    }
  }

  /** A tunnel pair over `path.transport` (behind nginx when asked), or the path marked missing. */
  async #startTransport(context: BenchContext, path: TransportPath, localPort: number): Promise<BenchPath> {
    const missing = (reason: string): BenchPath => {
      context.log(`${path.name} figures are missing: ${reason}`);
      return { name: path.name, connect: null, missing: reason, middle: () => [] };
    };
    let front: { port: number; start(files: TunnelFiles): Promise<ChildHandle> } | undefined;
    if (path.viaNginx === true) {
      const nginx = findNginx();
      if ("missing" in nginx) return missing(nginx.missing);
      const port = freePort();
      front = {
        port,
        start: (files) =>
          NginxChild.start(nginx.path, {
            upstreamPort: files.serverPort,
            certPath: files.certPath,
            keyPath: files.keyPath,
            port,
          }),
      };
    }
    let pair: TunnelPair;
    try {
      pair = await TunnelPair.start(localPort, "main.ts", {
        transport: path.transport,
        behindProxy: path.viaNginx === true,
        ...(front ? { front } : {}),
        ...(path.permissions ? { permissions: path.permissions } : {}),
      });
    } catch (error) {
      return missing(`the tunnel over ${path.transport} did not start: ${errorText(error)}`);
    }
    this.#stops.push(() => pair.stop());
    return {
      name: path.name,
      connect: tcpConnector(pair.publishPort),
      missing: null,
      // Server first: the throughput cases read the server's share as the first middle process.
      middle: () => [
        { pid: pair.server.pid, withDescendants: false },
        { pid: pair.client.pid, withDescendants: false },
        ...(pair.front ? [{ pid: pair.front.pid, withDescendants: true }] : []),
      ],
    };
  }

  async #startSsh(context: BenchContext, wanted: PathsWanted, localPort: number): Promise<void> {
    if (wanted.ssh === "none") return;
    const variants: Array<[PathNameValue, SshCipher, boolean]> = wanted.ssh === "both"
      ? [[PathName.ssh, null, false], [PathName.sshGcm, SSH_GCM_CIPHER, false]]
      : [[PathName.ssh, null, false]];
    if (wanted.sshTty === true) variants.push([PathName.sshTty, null, true]);
    const missing = (name: PathNameValue, reason: string): BenchPath => ({
      name,
      connect: null,
      missing: reason,
      middle: () => [],
    });
    const tools = await findSsh();
    if (!tools.available) {
      context.log(`ssh -R figures are missing: ${tools.reason}`);
      for (const [name] of variants) this.paths.push(missing(name, tools.reason));
      return;
    }
    let server: SshServer;
    try {
      server = await SshServer.start(tools);
    } catch (error) {
      const reason = `sshd could not be started: ${error instanceof Error ? error.message : String(error)}`;
      context.log(`ssh -R figures are missing: ${reason}`);
      for (const [name] of variants) this.paths.push(missing(name, reason));
      return;
    }
    this.sshServer = server;
    this.#stops.push(() => stopChild(server));
    for (const [name, cipher, tty] of variants) {
      try {
        const forward = await SshForward.start(server, { localPort, cipher, tty }, echoWorks);
        this.sshForwards.set(name, forward);
        // Forwards stop before sshd (stops run in reverse order).
        this.#stops.push(() => stopChild(this.sshForwards.get(name)));
        this.paths.push({
          name,
          connect: tcpConnector(forward.publishPort),
          missing: null,
          // sshd's process for this session is a child of the listener; with two sessions both are counted,
          // but only the one carrying traffic uses CPU.
          middle: () => [
            { pid: server.pid, withDescendants: true },
            { pid: this.sshForwards.get(name)?.pid ?? forward.pid, withDescendants: false },
          ],
        });
      } catch (error) {
        const reason = `ssh ${tty ? "-tt" : "-N"} -R${
          cipher ? ` -c ${cipher}` : ""
        } could not publish a port: ${error instanceof Error ? error.message : String(error)}`;
        context.log(reason);
        this.paths.push(missing(name, reason));
      }
    }
  }

  /** Stops everything started, last started first. */
  async stop(): Promise<void> {
    for (const stop of this.#stops.splice(0).reverse()) {
      try {
        await stop();
      } catch {
        // Keep stopping the rest.
      }
    }
  }
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Whether one echo through 127.0.0.1:`port` works (the path carries traffic). */
export async function echoWorks(port: number): Promise<boolean> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new Error("echo timed out")), 2_000);
  try {
    await connectionChurn(
      tcpConnector(port),
      { total: 1, concurrency: 1, messageBytes: 8 },
      controller.signal,
    );
    return true;
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}

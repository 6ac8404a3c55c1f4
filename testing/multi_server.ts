/**
 * Two servers and one client with both (`[client] servers`), as real `deno run main.ts` processes on
 * loopback: the servers on 127.0.0.2 and 127.0.0.3, the same tunnel port, each publishing on its own
 * address (`default_publish_addr`). Shared by tests/multi_server_test.ts, tests/failover_haproxy_test.ts
 * and the failover bench.
 *
 * @module
 */

import { CliProcess, EchoService, freePort, makeWorkdir, testCertificates } from "./helpers.ts";
import { parseConfigText } from "../lib/config/load.ts";
import type { ServerConfig } from "../lib/config/types.ts";
import { TunnelServer } from "../lib/server/server.ts";
import { FAST_RECONNECT, PROCESS_AUTH_KEY } from "./process_tunnel.ts";
import type { ClientRoleSnapshot } from "../lib/stats/snapshot.ts";

/** The two servers' loopback addresses. */
export const SERVER_ADDRESSES = ["127.0.0.2", "127.0.0.3"] as const;

/** Whether `port` can be bound on `hostname` right now. */
export function canBindOn(hostname: string, port: number): boolean {
  try {
    Deno.listen({ hostname, port }).close();
    return true;
  } catch {
    return false;
  }
}

/** A port free on 127.0.0.1 and on both server addresses a moment ago. */
export function freePortOnAll(): number {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = freePort();
    if (SERVER_ADDRESSES.every((address) => canBindOn(address, port))) return port;
  }
  throw new Error("no port free on 127.0.0.1, 127.0.0.2 and 127.0.0.3");
}

/** Sends `text` to `hostname:port` and reads the answer until the peer closes (bounded by `timeoutMs`). */
export async function echoAt(
  hostname: string,
  port: number,
  text: string,
  timeoutMs = 3000,
): Promise<string> {
  const conn = await Deno.connect({ hostname, port });
  const timer = setTimeout(() => conn.close(), timeoutMs);
  try {
    await conn.write(new TextEncoder().encode(text));
    await conn.closeWrite();
    const chunks: Uint8Array[] = [];
    const buffer = new Uint8Array(4096);
    while (true) {
      const read = await conn.read(buffer);
      if (read === null) break;
      chunks.push(buffer.slice(0, read));
    }
    return new TextDecoder().decode(new Uint8Array(chunks.flatMap((chunk) => [...chunk])));
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch {
      // Closed by the timer.
    }
  }
}

/** Whether an echo through `hostname:port` comes back whole. */
export async function echoesAt(hostname: string, port: number): Promise<boolean> {
  try {
    return (await echoAt(hostname, port, "ping")) === "ping";
  } catch {
    return false;
  }
}

/** Two server processes, one client process with both, and a local echo service. */
export class TwoServers implements AsyncDisposable {
  /** The local service the client publishes. */
  readonly echo = new EchoService();
  /** The running server processes, by index into {@linkcode SERVER_ADDRESSES} (null when stopped). */
  readonly servers: (CliProcess | null)[] = [null, null];
  /** The client process, once started. */
  client: CliProcess | null = null;
  readonly #stopped: CliProcess[] = [];

  private constructor(
    readonly dir: string,
    readonly caPath: string,
    /** The tunnel port, the same on both addresses. */
    readonly tunnelPort: number,
    /** The port the client publishes, on both servers. */
    readonly publishPort: number,
    /** The client's stats endpoint port on 127.0.0.1. */
    readonly statsPort: number,
    readonly cleanup: () => Promise<void>,
  ) {}

  /**
   * Writes both servers' configs (with `serverExtra` lines in `[server]`) and the client's (proxy `web` on
   * one free port, no publish_addr).
   */
  static async create(serverExtra = ""): Promise<TwoServers> {
    const work = await makeWorkdir();
    const fixture = new TwoServers(
      work.dir,
      work.caPath,
      freePortOnAll(),
      freePortOnAll(),
      freePort(),
      work.cleanup,
    );
    for (const [index, address] of SERVER_ADDRESSES.entries()) {
      await Deno.writeTextFile(
        fixture.#serverConfigPath(index),
        `[server]\nbind_addr = "${address}"\nbind_port = ${fixture.tunnelPort}\n` +
          `default_publish_addr = "${address}"\n` +
          `cert_path = "${work.certPath}"\nkey_path = "${work.keyPath}"\nauth_key = "${PROCESS_AUTH_KEY}"\n` +
          `keepalive_interval_secs = 1\nkeepalive_timeout_secs = 3\n${serverExtra}`,
        { mode: 0o600 },
      );
    }
    await Deno.writeTextFile(
      fixture.clientConfigPath,
      `[client]\nserver_port = ${fixture.tunnelPort}\nserver_name = "localhost"\n` +
        `ca_cert_path = "${work.caPath}"\nauth_key = "${PROCESS_AUTH_KEY}"\n` +
        `keepalive_interval_secs = 1\nkeepalive_timeout_secs = 3\nstats_port = ${fixture.statsPort}\n\n` +
        SERVER_ADDRESSES.map((address, index) =>
          `[[client.servers]]\nname = "${"ab"[index]}"\nserver_addr = "${address}"\n`
        ).join("\n") +
        `\n[client.reconnect]\nmax_delay_secs = 1\n\n` +
        `[[proxies]]\nname = "web"\npublish_port = ${fixture.publishPort}\n` +
        `local_addr = "127.0.0.1"\nlocal_port = ${fixture.echo.port}\n`,
      { mode: 0o600 },
    );
    return fixture;
  }

  #serverConfigPath(index: number): string {
    return `${this.dir}/server-${index}.toml`;
  }

  /** The client's config file. */
  get clientConfigPath(): string {
    return `${this.dir}/client.toml`;
  }

  /** Starts server `index` (0 → 127.0.0.2, 1 → 127.0.0.3); resolves once it listens. */
  async startServer(index: number): Promise<CliProcess> {
    const server = new CliProcess(["server", "-c", this.#serverConfigPath(index)]);
    this.servers[index] = server;
    await server.waitForLine(/Listening for clients on/);
    return server;
  }

  /** Kills server `index` with SIGKILL and waits for it to be gone. */
  async killServer(index: number): Promise<void> {
    const server = this.servers[index];
    if (!server) return;
    server.kill("SIGKILL");
    await server.status();
    this.servers[index] = null;
    this.#stopped.push(server);
  }

  /** Starts the client (fast reconnects). */
  startClient(): CliProcess {
    this.client = new CliProcess(["client", "-c", this.clientConfigPath], { env: FAST_RECONNECT });
    return this.client;
  }

  /** The client's `/api/stats`. */
  async clientStats(): Promise<ClientRoleSnapshot> {
    const response = await fetch(`http://127.0.0.1:${this.statsPort}/api/stats`);
    if (!response.ok) throw new Error(`client stats answered ${response.status}`);
    return await response.json() as ClientRoleSnapshot;
  }

  /** The client's `/metrics` text. */
  async clientMetrics(): Promise<string> {
    const response = await fetch(`http://127.0.0.1:${this.statsPort}/metrics`);
    return await response.text();
  }

  /** The state the client's stats give server `name` ("a" or "b"), or "?" when the endpoint is not up. */
  async serverState(name: string): Promise<string> {
    try {
      const stats = await this.clientStats();
      return stats.servers?.find((server) => server.name === name)?.state ?? "?";
    } catch {
      return "?";
    }
  }

  /** Stops the client, then the servers, the echo service, and removes the work folder. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.client?.stop();
    for (const server of this.servers) await server?.stop();
    for (const server of this.#stopped) await server.status();
    await this.echo.close();
    await this.cleanup();
  }
}

/** An in-process server on 127.0.0.1 (any port) that accepts `authKey`; disposed with `await using`. */
export async function serverWithKey(authKey: string) {
  const certs = await testCertificates();
  const stop = new AbortController();
  const config = parseConfigText(
    `[server]\nbind_addr = "127.0.0.1"\nbind_port = 0\nauth_key = "${authKey}"\n`,
    { env: {} },
  ).config as ServerConfig;
  const server = new TunnelServer({
    config,
    certPem: certs.serverChainPem,
    keyPem: certs.serverKeyPem,
    signal: stop.signal,
  });
  const { port } = await server.listen();
  const serving = server.serve();
  return {
    port,
    async [Symbol.asyncDispose]() {
      stop.abort();
      await serving;
    },
  };
}

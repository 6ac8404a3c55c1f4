/**
 * A tunnel made of real processes for the end-to-end tests: a work folder with certificates and
 * configs, `deno run main.ts server|client` children, and an echo service to publish. Everything it
 * started is stopped when the fixture is disposed (`await using`).
 *
 * @module
 */

import { CLI_PERMISSIONS, CliProcess, EchoService, freePort, makeWorkdir, roundTrip } from "./helpers.ts";

/** The key the fixture's server and clients share. */
export const PROCESS_AUTH_KEY = "process-test-key-0123456789";
/** Short reconnect delays so the tests do not wait for the 5 s default. */
export const FAST_RECONNECT = { TLS_TUNNEL_RECONNECT_DELAY_SECS: "0.2" };
/** The server's log line once it accepts clients. */
export const LISTENING = /Listening for clients on/;

/** The client's log line once a proxy is published; group 1 is the port. */
export function proxyUp(name: string): RegExp {
  return new RegExp(`Proxy ${name}: 127\\.0\\.0\\.1:(\\d+)`);
}

/** One `[[proxies]]` entry of a client config. */
export interface ProcessProxy {
  name: string;
  publishPort: number;
  /** Defaults to the fixture's echo service. */
  localPort?: number;
  /** More TOML lines for this proxy; with `local_backends`, set `omitLocal`. */
  lines?: string;
  /** Leave out local_addr/local_port (the proxy lists `local_backends` in `lines`). */
  omitLocal?: boolean;
}

/** Sends `text` through 127.0.0.1:`port` and returns what came back. */
export async function echoThrough(port: number, text: string): Promise<string> {
  return new TextDecoder().decode(await roundTrip(port, new TextEncoder().encode(text)));
}

/** Server, clients and a local echo service as real processes on loopback. */
export class ProcessTunnel implements AsyncDisposable {
  /** The local service the proxies publish by default. */
  readonly echo = new EchoService();
  readonly #processes: CliProcess[] = [];

  private constructor(
    readonly dir: string,
    readonly serverConfigPath: string,
    readonly serverPort: number,
    readonly caPath: string,
    readonly cleanup: () => Promise<void>,
    readonly entry: string,
    /** Deno flags added to every process's permissions (`--unstable-net` for QUIC and UDP). */
    readonly denoFlags: readonly string[] = [],
  ) {}

  /**
   * Writes the server config (with `serverExtra` TOML lines) into a fresh work folder. With
   * `generatedCertificate`, the config names no certificate, so the server makes a throw-away one.
   * `entry`: the program the processes run (default `main.ts`; the bundle, for example). `denoFlags`:
   * Deno flags every process gets beside the default permissions (`["--unstable-net"]` for QUIC).
   */
  static async create(
    serverExtra = "",
    options: { generatedCertificate?: boolean; entry?: string; denoFlags?: string[] } = {},
  ): Promise<ProcessTunnel> {
    const work = await makeWorkdir();
    const serverPort = freePort();
    const serverConfigPath = `${work.dir}/server.toml`;
    const certificate = options.generatedCertificate
      ? ""
      : `cert_path = "${work.certPath}"\nkey_path = "${work.keyPath}"\n`;
    await Deno.writeTextFile(
      serverConfigPath,
      `[server]\nbind_addr = "127.0.0.1"\nbind_port = ${serverPort}\n${certificate}` +
        `auth_key = "${PROCESS_AUTH_KEY}"\nkeepalive_interval_secs = 1\nkeepalive_timeout_secs = 3\n${serverExtra}`,
      // It holds auth_key: 0600, as the CLI asks of configs (else every start warns).
      { mode: 0o600 },
    );
    return new ProcessTunnel(
      work.dir,
      serverConfigPath,
      serverPort,
      work.caPath,
      work.cleanup,
      options.entry ?? "main.ts",
      options.denoFlags,
    );
  }

  /**
   * Writes a client config named `name` and returns its path. It trusts the fixture's CA, or with
   * `skipVerify` verifies nothing.
   */
  async clientConfig(
    name: string,
    proxies: ProcessProxy[],
    extra = "",
    options: { skipVerify?: boolean } = {},
  ): Promise<string> {
    const path = `${this.dir}/${name}.toml`;
    const trust = options.skipVerify ? "skip_verify = true" : `ca_cert_path = "${this.caPath}"`;
    await Deno.writeTextFile(
      path,
      `[client]\nserver_addr = "127.0.0.1"\nserver_port = ${this.serverPort}\nserver_name = "localhost"\n` +
        `${trust}\nauth_key = "${PROCESS_AUTH_KEY}"\nkeepalive_interval_secs = 1\n` +
        `keepalive_timeout_secs = 3\n${extra}\n[client.reconnect]\nmax_delay_secs = 1\n\n` +
        proxies.map((proxy) =>
          `[[proxies]]\nname = "${proxy.name}"\npublish_addr = "127.0.0.1"\npublish_port = ${proxy.publishPort}\n` +
          (proxy.omitLocal
            ? ""
            : `local_addr = "127.0.0.1"\nlocal_port = ${proxy.localPort ?? this.echo.port}\n`) +
          (proxy.lines ? `${proxy.lines}\n` : "")
        ).join("\n"),
      { mode: 0o600 },
    );
    return path;
  }

  /** Starts a server process; with `waitUntilListening`, returns once it accepts clients. */
  async server(waitUntilListening = true): Promise<CliProcess> {
    const server = this.#track(
      new CliProcess(["server", "-c", this.serverConfigPath], { entry: this.entry, ...this.#permissions() }),
    );
    if (waitUntilListening) await server.waitForLine(LISTENING);
    return server;
  }

  /**
   * Starts a server and a client (config "client", `extra` TOML lines in its `[client]` table) that
   * publishes `proxy` on a free port; resolves once the client reports the proxy up.
   */
  async serverAndClient(
    proxy: Omit<ProcessProxy, "publishPort">,
    extra = "",
  ): Promise<{ server: CliProcess; client: CliProcess; publishPort: number }> {
    const publishPort = freePort();
    const server = await this.server();
    const client = this.client(await this.clientConfig("client", [{ ...proxy, publishPort }], extra));
    await client.waitForLine(proxyUp(proxy.name));
    return { server, client, publishPort };
  }

  /** Starts a client process with the config at `configPath` (fast reconnects), `env` added to its environment. */
  client(configPath: string, env: Record<string, string> = {}): CliProcess {
    return this.#track(
      new CliProcess(["client", "-c", configPath], {
        env: { ...FAST_RECONNECT, ...env },
        entry: this.entry,
        ...this.#permissions(),
      }),
    );
  }

  /** The processes' permissions when `denoFlags` adds to the defaults; else nothing (the defaults). */
  #permissions(): { permissions?: string[] } {
    return this.denoFlags.length === 0 ? {} : { permissions: [...CLI_PERMISSIONS, ...this.denoFlags] };
  }

  #track(process: CliProcess): CliProcess {
    this.#processes.push(process);
    return process;
  }

  /** Stops every process (clients first), the echo service, and removes the work folder. */
  async [Symbol.asyncDispose](): Promise<void> {
    for (const process of [...this.#processes].reverse()) await process.stop();
    await this.echo.close();
    await this.cleanup();
  }
}

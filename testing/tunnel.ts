/**
 * In-process tunnels for the end-to-end tests: a server and clients built from TOML text (so the real
 * config validation applies), over real TLS on loopback.
 *
 * @module
 */

import assert from "node:assert/strict";
import { parseConfigText } from "../lib/config/mod.ts";
import type { ClientConfig, ServerConfig } from "../lib/config/types.ts";
import type { ProxyRegistration } from "../lib/protocol/control.ts";
import { TunnelClient } from "../lib/client/client.ts";
import { TunnelServer } from "../lib/server/server.ts";
import { EchoService, testCertificates } from "./helpers.ts";

export const AUTH_KEY = "test-key-0123456789abcdef";

export function serverConfig(extra = ""): ServerConfig {
  return parseConfigText(
    `[server]\nbind_addr = "127.0.0.1"\nbind_port = 0\nauth_key = "${AUTH_KEY}"\n` +
      `keepalive_interval_secs = 1\nkeepalive_timeout_secs = 3\n${extra}`,
    { sourceName: "test server", env: {} },
  ).config as ServerConfig;
}

export interface ProxyLine {
  name: string;
  publishPort: number;
  localPort: number;
  /** Defaults to 127.0.0.1. */
  publishAddr?: string;
  /** More TOML lines for this proxy (publish_port_range, health_check…). */
  extra?: string;
  /** Leave out local_addr/local_port (and ignore `localPort`), e.g. when `extra` sets local_backends. */
  omitLocal?: boolean;
}

export function clientConfig(
  serverPort: number,
  proxies: ProxyLine[],
  options: { authKey?: string; extra?: string } = {},
) {
  const proxyText = proxies.map((proxy) =>
    `[[proxies]]\nname = "${proxy.name}"\npublish_addr = "${proxy.publishAddr ?? "127.0.0.1"}"\n` +
    `publish_port = ${proxy.publishPort}\n${
      proxy.omitLocal ? "" : `local_addr = "127.0.0.1"\nlocal_port = ${proxy.localPort}\n`
    }${proxy.extra ?? ""}\n`
  ).join("\n");
  return parseConfigText(
    `[client]\nserver_addr = "127.0.0.1"\nserver_port = ${serverPort}\nserver_name = "localhost"\n` +
      `auth_key = "${
        options.authKey ?? AUTH_KEY
      }"\nkeepalive_interval_secs = 1\nkeepalive_timeout_secs = 3\n` +
      `local_connect_retries = 1\nlocal_retry_delay_ms = 50\n${options.extra ?? ""}\n` +
      `[client.reconnect]\ninitial_delay_secs = 0.2\nmax_delay_secs = 1\n\n${proxyText}`,
    { sourceName: "test client", env: {} },
  ).config as ClientConfig;
}

/** A server and the means to stop it. */
export async function startServer(extra = "") {
  const certs = await testCertificates();
  const stop = new AbortController();
  const server = new TunnelServer({
    config: serverConfig(extra),
    certPem: certs.serverChainPem,
    keyPem: certs.serverKeyPem,
    signal: stop.signal,
  });
  const addr = await server.listen();
  const serving = server.serve();
  return {
    server,
    port: addr.port,
    async stop() {
      stop.abort();
      await serving;
    },
  };
}

/** A client that resolves `registered` with the server's answers to its first registration. */
export async function startClient(config: ClientConfig) {
  const certs = await testCertificates();
  const stop = new AbortController();
  let onRegistered: (registrations: ProxyRegistration[]) => void = () => {};
  const registered = new Promise<ProxyRegistration[]>((resolve) => (onRegistered = resolve));
  const client = new TunnelClient({
    config,
    caCertPem: certs.caCertPem,
    signal: stop.signal,
    onRegistered: (registrations) => onRegistered(registrations),
  });
  const running = client.run();
  running.catch(() => {});
  return {
    client,
    registered,
    running,
    async stop() {
      stop.abort();
      await running.catch(() => {});
    },
  };
}

export function acceptedPort(registrations: ProxyRegistration[], name: string): number {
  const entry = registrations.find((registration) => registration.name === name);
  assert.ok(entry, `no registration for ${name}`);
  assert.equal(entry.status, "accepted", JSON.stringify(entry));
  return entry.publish_port;
}

/** A started client as {@linkcode startClient} returns it. */
export type StartedClient = Awaited<ReturnType<typeof startClient>>;

/**
 * An in-process server plus whatever clients and echo services a test adds; all of it is stopped when
 * the fixture is disposed (`await using`), clients first.
 */
export class TunnelFixture implements AsyncDisposable {
  readonly #cleanups: Array<() => Promise<void>> = [];

  private constructor(readonly started: Awaited<ReturnType<typeof startServer>>) {}

  /** Starts a server with `serverExtra` TOML lines under `[server]`. */
  static async start(serverExtra = ""): Promise<TunnelFixture> {
    return new TunnelFixture(await startServer(serverExtra));
  }

  /** The server. */
  get server(): TunnelServer {
    return this.started.server;
  }

  /** The server's tunnel port. */
  get port(): number {
    return this.started.port;
  }

  /** An echo service on 127.0.0.1 (`port` 0 = any), closed with the fixture. */
  echo(port = 0): EchoService {
    const echo = new EchoService(port);
    this.#cleanups.push(() => echo.close());
    return echo;
  }

  /** Starts a client of this server with `proxies`, stopped with the fixture. */
  async client(
    proxies: ProxyLine[],
    options: { authKey?: string; extra?: string } = {},
  ): Promise<StartedClient> {
    const client = await startClient(clientConfig(this.port, proxies, options));
    this.#cleanups.push(() => client.stop());
    return client;
  }

  /** Stops the clients, then the echo services, then the server. */
  async [Symbol.asyncDispose](): Promise<void> {
    const clients = this.#cleanups.splice(0);
    for (const cleanup of clients.reverse()) await cleanup();
    await this.started.stop();
  }
}

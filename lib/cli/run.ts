/**
 * The long-running commands: `server`, `client` and `demo`.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { collectWhenIdle } from "./_idle_gc.ts";
import { copiedChunks } from "../transport/pipe.ts";
import type { ClientConfig, ServerConfig } from "../config/types.ts";
import { processEnv } from "../config/env.ts";
import { type EnvironmentProxy, proxyFromEnvironment } from "../net/no_proxy.ts";
import { type OutboundProxy, ProxyUrlError } from "../net/proxy_url.ts";
import {
  type ClientFlags,
  prepareClient,
  prepareServer,
  resolveClient,
  resolveServer,
  type ServerFlags,
} from "./role_setup.ts";
import { reloadClient, Reloader, reloadServer, startReloadTriggers } from "./reload.ts";
import { resolveConfigPath } from "./config_path.ts";
import { fingerprintSha256 } from "../pki/fingerprint.ts";
import { keyMatchesCertificate } from "../pki/key_match.ts";
import { formatHostPort } from "../net/address.ts";
import { BindError } from "../net/tcp.ts";
import { tcpResetUnavailableReason } from "../net/tcp_reset.ts";
import { hasUnstableNet, UnstableNetRequiredError } from "../net/unstable.ts";
import { errorMessage, escapeForTerminal } from "../text.ts";
import { writeOutput } from "./logging.ts";
import { TunnelServer } from "../server/server.ts";
import { type ClientProxyState, FatalClientError } from "../client/client.ts";
import { MultiServerClient } from "../client/multi_server.ts";
import { InsecureStatsEndpointError, startStatsServer, type StatsServer } from "../stats/http.ts";
import type { EventLog } from "../stats/event_log.ts";
import type { StatsSnapshot } from "../stats/snapshot.ts";

const logger = getLogger(["tls-tunnel", "cli"]);

/** Options of {@linkcode serverCommand}: its flags (see `role_setup.ts`) and the shutdown signal. */
export interface ServerCommandOptions extends ServerFlags {
  /** Aborted on SIGINT/SIGTERM. */
  signal: AbortSignal;
}

/** Reads the certificate and key named in the config, or generates a throw-away pair. */
async function serverCertificate(config: ServerConfig): Promise<{ certPem: string; keyPem: string } | null> {
  if (config.listeners.every((listener) => listener.behindProxy)) {
    // The reverse proxy terminates TLS; the listeners serve plain text (ws or h2c) and need no certificate.
    logger.info(
      "behind_proxy: serving plain-text {protocol} on {path} for a reverse proxy that terminates TLS" +
        "{ignored}",
      {
        protocol: config.transport === "http2" ? "HTTP/2 (h2c)" : "WebSocket",
        path: config.serverPath,
        ignored: config.certPath !== undefined ? " (cert_path and key_path are not used)" : "",
      },
    );
    return { certPem: "", keyPem: "" };
  }
  if (config.certPath !== undefined && config.keyPath !== undefined) {
    const loaded = await loadServerCertificate(config.certPath, config.keyPath);
    if (typeof loaded === "string") {
      console.error(`tls-tunnel: ${loaded}`);
      return null;
    }
    logger.info("Using certificate {path} (SHA-256 {fingerprint})", {
      path: config.certPath,
      fingerprint: loaded.fingerprint,
    });
    return loaded;
  }
  // Loaded only here: the X.509 library costs a running server about 17 MB it rarely needs.
  const { generateCertificates } = await import("../pki/cert.ts");
  const generated = await generateCertificates({
    commonName: config.bindAddr === "0.0.0.0" ? "localhost" : config.bindAddr,
    altNames: [],
    validityDays: 30,
  });
  logger.warn(
    "No cert_path/key_path: generated a throw-away certificate (CA SHA-256 {fingerprint}). Clients must use " +
      "skip_verify or trust this CA; run `tls-tunnel cert` for a lasting one.",
    { fingerprint: generated.caFingerprintSha256 },
  );
  return { certPem: generated.serverChainPem, keyPem: generated.serverKeyPem };
}

/**
 * The certificate a reloaded config names, read again even when its paths are unchanged (a renewed
 * certificate is written over the old one); null when the server has none of its own to swap (generated
 * at start, or behind a TLS-terminating proxy).
 */
function reloadCertificate(
  config: ServerConfig,
): Promise<{ certPem: string; keyPem: string; fingerprint: string } | string | null> {
  if (config.behindProxy || config.certPath === undefined || config.keyPath === undefined) {
    return Promise.resolve(null);
  }
  return loadServerCertificate(config.certPath, config.keyPath);
}

/**
 * Reads `cert_path` and `key_path` and checks that they go together, so that a wrong file stops the
 * server at start with its name and problem instead of failing every handshake. Returns the PEM texts
 * and the leaf's fingerprint, or the message saying which file is wrong and why.
 */
async function loadServerCertificate(
  certPath: string,
  keyPath: string,
): Promise<{ certPem: string; keyPem: string; fingerprint: string } | string> {
  const texts: string[] = [];
  for (const [key, path] of [["cert_path", certPath], ["key_path", keyPath]] as const) {
    try {
      texts.push(await Deno.readTextFile(path));
    } catch (error) {
      return `cannot read server.${key} ${path}: ${errorMessage(error)}`;
    }
  }
  const [certPem = "", keyPem = ""] = texts;
  let fingerprint: string;
  try {
    fingerprint = await fingerprintSha256(certPem);
  } catch (error) {
    return `server.cert_path ${certPath}: ${errorMessage(error)}; ` +
      "point it at the PEM certificate chain (`tls-tunnel cert` writes cert.pem)";
  }
  if (!/-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----/.test(keyPem)) {
    return `server.key_path ${keyPath} holds no PEM private key (-----BEGIN PRIVATE KEY-----); point it at ` +
      "the key of cert_path's certificate (`tls-tunnel cert` writes key.pem)";
  }
  const match = await keyMatchesCertificate(certPem, keyPem);
  if (match.match === false) {
    return `server.key_path ${keyPath} does not belong to the certificate in ${certPath}: ${match.reason}; ` +
      "use the key file written together with that certificate";
  }
  return { certPem, keyPem, fingerprint };
}

/**
 * Starts the stats endpoint when the config sets `stats_port`: null when it does not, false when the
 * endpoint cannot start (the reason is printed).
 */
function startStatsEndpoint(
  config: { statsAddr: string; statsPort?: number; statsToken?: string },
  source: { snapshot: () => StatsSnapshot; events: EventLog; reload?: Reloader },
  signal: AbortSignal,
): StatsServer | null | false {
  if (config.statsPort === undefined) return null;
  const reloader = source.reload;
  try {
    const stats = startStatsServer({
      hostname: config.statsAddr,
      port: config.statsPort,
      ...(config.statsToken !== undefined ? { token: config.statsToken } : {}),
      snapshot: source.snapshot,
      events: source.events,
      ...(reloader ? { reload: () => reloader.httpAnswer() } : {}),
      signal,
    });
    logger.info("Stats: dashboard {url}, JSON {url}api/stats, Prometheus {url}metrics", { url: stats.url });
    return stats;
  } catch (error) {
    if (error instanceof BindError || error instanceof InsecureStatsEndpointError) {
      console.error(`tls-tunnel: ${error.message}`);
      return false;
    }
    throw error;
  }
}

/** `tls-tunnel server [-c FILE] [flags]`: runs the server until SIGINT/SIGTERM. */
export async function serverCommand(options: ServerCommandOptions): Promise<number> {
  const prepared = await prepareServer(options);
  if (typeof prepared === "number") return prepared;
  const { config, announce } = prepared;
  // The QUIC transport needs Deno's --unstable-net: say so now, not when binding.
  if ([config, ...config.listeners].some((listener) => listener.transport === "quic") && !hasUnstableNet()) {
    console.error(`tls-tunnel: ${new UnstableNetRequiredError('transport = "quic"').message}`);
    return 1;
  }
  const certificate = await serverCertificate(config);
  if (!certificate) return 1;
  const resetUnavailable = tcpResetUnavailableReason();
  if (resetUnavailable !== null) {
    logger.warn(
      "Outside connections cut by a lost session or a reset will end with FIN, not a TCP reset, so a cut " +
        "download can look complete: {reason}",
      { reason: resetUnavailable },
    );
  }
  const server = new TunnelServer({
    config,
    ...certificate,
    signal: options.signal,
    transport: config.transport,
  });
  const reloader = new Reloader((source) =>
    reloadServer(server, async () => (await resolveServer(options)).config, reloadCertificate, source)
  );
  const stats = startStatsEndpoint(
    config,
    { snapshot: () => server.snapshot(), events: server.events, reload: reloader },
    options.signal,
  );
  if (stats === false) return 1;
  try {
    const bound = await server.listen();
    announce?.(bound.port);
  } catch (error) {
    await stats?.shutdown();
    if (error instanceof BindError) {
      console.error(`tls-tunnel: ${error.message}`);
      return 1;
    }
    throw error;
  }
  startReloadTriggers({
    configPath: await resolveConfigPath("server", options.configPath),
    reloader,
    signal: options.signal,
  });
  // A client's session set-up is work too: its garbage goes once the next check finds things quiet.
  collectWhenIdle({ activity: () => copiedChunks() + server.sessionsTotal, signal: options.signal });
  try {
    await server.serve();
  } finally {
    await stats?.shutdown();
  }
  logger.info("Server stopped");
  return 0;
}

/** Options of {@linkcode clientCommand}: its flags (see `role_setup.ts`) and the shutdown signal. */
export interface ClientCommandOptions extends ClientFlags {
  /** Aborted on SIGINT/SIGTERM. */
  signal: AbortSignal;
}

/** `tls-tunnel client [-c FILE] [flags]`: runs the client until SIGINT/SIGTERM or a fatal refusal. */
export async function clientCommand(options: ClientCommandOptions): Promise<number> {
  const config = await prepareClient(options);
  if (typeof config === "number") return config;
  // UDP proxies need Deno's --unstable-net: say so now, not at the first datagram.
  if (config.proxies.some((proxy) => proxy.proxyType === "udp") && !hasUnstableNet()) {
    console.error(`tls-tunnel: ${new UnstableNetRequiredError('proxy_type = "udp"').message}`);
    return 1;
  }
  if ([config, ...config.servers].some((server) => server.transport === "quic") && !hasUnstableNet()) {
    console.error(`tls-tunnel: ${new UnstableNetRequiredError('transport = "quic"').message}`);
    return 1;
  }
  // Every server's ca_cert_path (one with server_addr; each [[client.servers]] may name its own).
  const caCertPems = new Map<string, string>();
  for (const path of new Set(config.servers.flatMap((server) => server.caCertPath ?? []))) {
    try {
      caCertPems.set(path, await Deno.readTextFile(path));
    } catch (error) {
      console.error(`tls-tunnel: cannot read client.ca_cert_path ${path}: ${errorMessage(error)}`);
      return 1;
    }
  }
  if (config.serverFingerprint !== undefined) {
    logger.info("Server certificate pinned to SHA-256 {fingerprint}: only that certificate is accepted", {
      fingerprint: config.serverFingerprint,
    });
  } else if (config.skipVerify) {
    logger.warn(
      "skip_verify = true: the server's certificate is NOT verified; anyone on the path can impersonate it. " +
        "Use ca_cert_path in production.",
    );
  }
  // The outbound proxy towards each server (NO_PROXY may list some of them).
  const proxies = new Map<string, OutboundProxy | null>();
  for (const server of config.servers) {
    const proxy = outboundProxyOf({ ...config, serverAddr: server.serverAddr }, server.transport === "quic");
    if (typeof proxy === "number") return proxy;
    proxies.set(server.name, proxy);
  }
  const registered = Promise.withResolvers<void>();
  const several = config.servers.length > 1;
  const client = new MultiServerClient({
    config,
    caCertPems,
    proxyFor: (server) => proxies.get(server.name) ?? null,
    signal: options.signal,
    onStatusChange: (server, proxies) => {
      printProxyTable(proxies, several ? server.name : undefined);
      registered.resolve();
    },
  });
  const reloader = new Reloader((source) => reloadClient(client, () => resolveClient(options), source));
  const stats = startStatsEndpoint(
    config,
    { snapshot: () => client.snapshot(), events: client.events, reload: reloader },
    options.signal,
  );
  startReloadTriggers({
    configPath: await resolveConfigPath("client", options.configPath),
    reloader,
    signal: options.signal,
  });
  if (stats === false) return 1;
  collectWhenIdle({
    activity: () => copiedChunks() + client.sessionsEstablished,
    signal: options.signal,
    ready: registered.promise,
  });
  try {
    await client.run();
  } catch (error) {
    if (error instanceof FatalClientError) {
      // The message may quote the server's words: escaped, like every log line.
      console.error(`tls-tunnel: ${escapeForTerminal(error.message)}`);
      return 1;
    }
    throw error;
  } finally {
    await stats?.shutdown();
  }
  logger.info("Client stopped");
  return 0;
}

/**
 * The outbound proxy to the server: `proxy_url`, else the environment's (`HTTPS_PROXY`… unless
 * `NO_PROXY` lists the server), said once in the log with its credentials masked; an exit code when the
 * environment's proxy URL is malformed. A server reached over quic (`overUdp`) never takes the
 * environment's proxy: HTTP CONNECT and SOCKS5 carry TCP only, so every dial would fail (`proxy_url` with
 * quic is refused by the config already).
 */
function outboundProxyOf(config: ClientConfig, overUdp = false): OutboundProxy | null | number {
  if (config.proxyUrl !== undefined) {
    logger.info("Leaving through {hop} ({url}, proxy_url)", {
      hop: config.proxyUrl.hop,
      url: config.proxyUrl.masked,
    });
    return config.proxyUrl;
  }
  let found: EnvironmentProxy;
  try {
    found = proxyFromEnvironment(processEnv, config.serverAddr);
  } catch (error) {
    if (!(error instanceof ProxyUrlError)) throw error;
    console.error(`tls-tunnel: ${escapeForTerminal(error.message)} (or unset it to connect directly)`);
    return 1;
  }
  if (found.kind === "proxy" && overUdp) {
    logger.info(
      '{variable} is not used for {server}: transport = "quic" runs over UDP, which a proxy cannot carry',
      {
        variable: found.variable,
        server: config.serverAddr,
      },
    );
    return null;
  }
  if (found.kind === "proxy") {
    logger.info("Leaving through {hop} ({url}, from {variable})", {
      hop: found.proxy.hop,
      url: found.proxy.masked,
      variable: found.variable,
    });
    return found.proxy;
  }
  if (found.kind === "bypass") {
    logger.info("{variable} lists {server}: connecting directly, not through the proxy", {
      variable: found.variable,
      server: config.serverAddr,
    });
  }
  return null;
}

/**
 * Prints the proxies' state: `web  healthy  0.0.0.0:8080 → 127.0.0.1:3000` (`private:5432 → …` for a
 * proxy only visitors reach); with several servers, one
 * table per server, each line naming it (`[a.example.com:8443] web  healthy  …`).
 */
function printProxyTable(proxies: ClientProxyState[], server?: string): void {
  // A client with only [[visitors]] or [[forwarders]] has no table to print.
  if (proxies.length === 0) return;
  const rows = proxies.map(({ config, registration, stats }) => {
    const port = registration && registration.status !== "rejected"
      ? registration.publish_port
      : config.publishPort;
    // A private proxy is not bound on the server: visitors reach it by name and publish_port.
    const published = config.visibility === "private"
      ? `private:${port}`
      : formatHostPort(registration?.publish_addr || (config.publishAddr ?? "0.0.0.0"), port) +
        (config.proxyType === "udp" ? "/udp" : "");
    return [
      config.name,
      stats.status,
      `${published} → ${formatHostPort(config.localAddr, config.localPort)}`,
    ];
  });
  const widths = [0, 1].map((column) => Math.max(...rows.map((row) => (row[column] ?? "").length)));
  const lines = rows.map((row) =>
    `${(row[0] ?? "").padEnd(widths[0] ?? 0)}  ${(row[1] ?? "").padEnd(widths[1] ?? 0)}  ${row[2]}`
  );
  // One record per change (one event, one line), the structured rows beside the rendered ones.
  const structured = rows.map(([name, status, route]) => ({ name, status, route }));
  if (server === undefined) logger.info("{table}", { table: lines.join("; "), proxies: structured });
  else logger.info("[{server}] {table}", { server, table: lines.join("; "), proxies: structured });
}

/** Options of {@linkcode demoCommand}. */
export interface DemoCommandOptions {
  /** Aborted on SIGINT/SIGTERM. */
  signal: AbortSignal;
}

/**
 * `tls-tunnel demo`: a server with a throw-away certificate, a small local web service and a client
 * publishing it, all on loopback; fetches the published URL through the tunnel, prints it, and runs
 * until interrupted.
 */
export async function demoCommand(options: DemoCommandOptions): Promise<number> {
  const { startDemo } = await import("./demo.ts");
  const demo = await startDemo({ signal: options.signal });
  try {
    // One message, so that --log-format json prints one record with the details in their own fields.
    writeOutput("stdout", {
      level: "info",
      text: [
        `Tunnel demo is up: ${demo.publishedUrl} → local web service ${demo.localUrl}`,
        `Fetched through the tunnel: HTTP ${demo.firstResponse.status}: ${demo.firstResponse.body}`,
        "Press Ctrl-C to stop.",
      ].join("\n"),
      properties: {
        publishedUrl: demo.publishedUrl,
        localUrl: demo.localUrl,
        status: demo.firstResponse.status,
        body: demo.firstResponse.body,
      },
    });
    await demo.done;
    return 0;
  } finally {
    await demo.stop();
  }
}

/**
 * The long-running commands: `server`, `client` and `demo`.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { collectWhenIdle } from "./_idle_gc.ts";
import { copiedChunks } from "../transport/pipe.ts";
import type { ServerConfig } from "../config/types.ts";
import { type ClientFlags, prepareClient, prepareServer, type ServerFlags } from "./role_setup.ts";
import { fingerprintSha256 } from "../pki/fingerprint.ts";
import { formatHostPort } from "../net/address.ts";
import { BindError } from "../net/tcp.ts";
import { tcpResetUnavailableReason } from "../net/tcp_reset.ts";
import { escapeForTerminal } from "../text.ts";
import { TunnelServer } from "../server/server.ts";
import { type ClientProxyState, FatalClientError, TunnelClient } from "../client/client.ts";
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
  if (config.certPath !== undefined && config.keyPath !== undefined) {
    try {
      const [certPem, keyPem] = await Promise.all([
        Deno.readTextFile(config.certPath),
        Deno.readTextFile(config.keyPath),
      ]);
      logger.info("Using certificate {path} (SHA-256 {fingerprint})", {
        path: config.certPath,
        fingerprint: await fingerprintSha256(certPem),
      });
      return { certPem, keyPem };
    } catch (error) {
      console.error(
        `tls-tunnel: cannot read server.cert_path/key_path (${config.certPath}, ${config.keyPath}): ` +
          `${error instanceof Error ? error.message : String(error)}`,
      );
      return null;
    }
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
 * Starts the stats endpoint when the config sets `stats_port`: null when it does not, false when the
 * endpoint cannot start (the reason is printed).
 */
function startStatsEndpoint(
  config: { statsAddr: string; statsPort?: number; statsToken?: string },
  source: { snapshot: () => StatsSnapshot; events: EventLog },
  signal: AbortSignal,
): StatsServer | null | false {
  if (config.statsPort === undefined) return null;
  try {
    const stats = startStatsServer({
      hostname: config.statsAddr,
      port: config.statsPort,
      ...(config.statsToken !== undefined ? { token: config.statsToken } : {}),
      ...source,
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
  const server = new TunnelServer({ config, ...certificate, signal: options.signal });
  const stats = startStatsEndpoint(
    config,
    { snapshot: () => server.snapshot(), events: server.events },
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
  let caCertPem: string | undefined;
  if (config.caCertPath !== undefined) {
    try {
      caCertPem = await Deno.readTextFile(config.caCertPath);
    } catch (error) {
      console.error(
        `tls-tunnel: cannot read client.ca_cert_path ${config.caCertPath}: ` +
          `${error instanceof Error ? error.message : String(error)}`,
      );
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
  const registered = Promise.withResolvers<void>();
  const client = new TunnelClient({
    config,
    ...(caCertPem !== undefined ? { caCertPem } : {}),
    signal: options.signal,
    onStatusChange: (proxies) => {
      printProxyTable(proxies);
      registered.resolve();
    },
  });
  const stats = startStatsEndpoint(
    config,
    { snapshot: () => client.snapshot(), events: client.events },
    options.signal,
  );
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

/** Prints the proxies' state: `web  healthy  0.0.0.0:8080 → 127.0.0.1:3000`. */
function printProxyTable(proxies: ClientProxyState[]): void {
  const rows = proxies.map(({ config, registration, stats }) => {
    const port = registration && registration.status !== "rejected"
      ? registration.publish_port
      : config.publishPort;
    return [
      config.name,
      stats.status,
      `${formatHostPort(config.publishAddr, port)} → ${formatHostPort(config.localAddr, config.localPort)}`,
    ];
  });
  const widths = [0, 1].map((column) => Math.max(...rows.map((row) => (row[column] ?? "").length)));
  for (const row of rows) {
    logger.info("{line}", {
      line: `${(row[0] ?? "").padEnd(widths[0] ?? 0)}  ${(row[1] ?? "").padEnd(widths[1] ?? 0)}  ${row[2]}`,
    });
  }
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
    console.log(`Tunnel demo is up: ${demo.publishedUrl} → local web service ${demo.localUrl}`);
    console.log(`Fetched through the tunnel: HTTP ${demo.firstResponse.status}: ${demo.firstResponse.body}`);
    console.log("Press Ctrl-C to stop.");
    await demo.done;
    return 0;
  } finally {
    await demo.stop();
  }
}

/**
 * Reloading a running server or client's config: what triggers it (SIGHUP, a change of the config
 * file, `tls-tunnel reload` through the stats endpoint's `POST /api/reload`), one reload at a time, and
 * what each role does with the new config. The roles apply it (`TunnelServer.applyConfig`,
 * `TunnelClient.applyConfig`); this module loads and validates it first: an invalid config is refused
 * with the messages `check` prints, and the running config stays.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { parse as parseToml } from "smol-toml";
import { ConfigError, type ConfigIssue } from "../config/errors.ts";
import type { ClientConfig, ServerConfig } from "../config/types.ts";
import { watchConfigFile } from "../config/watch.ts";
import { formatHostPort, isWildcard } from "../net/address.ts";
import { type ClientReloadResult, describeReload } from "../client/reload.ts";
import type { TunnelServer } from "../server/server.ts";
import { errorMessage, escapeForTerminal } from "../text.ts";
import { expandHome } from "./config_path.ts";
import { writeOutput } from "./logging.ts";
import { DEFAULT_TOP_URL, type StatsTarget, statsTargetFromConfig } from "./top.ts";

const logger = getLogger(["tls-tunnel", "cli", "reload"]);

/** What one reload did. */
export interface ReloadOutcome {
  /** True when the new config was applied (keys needing a restart aside). */
  ok: boolean;
  /** One line for people: what changed, or why nothing did. */
  summary: string;
  /** Changed keys (TOML spelling) that need a restart; they keep their running values. */
  restartKeys: string[];
  /** For a refused config: its problems, as `check` lists them. */
  issues?: ConfigIssue[];
  /** What the role reports besides (added, removed… proxies; disconnected clients). */
  details?: Record<string, unknown>;
}

/**
 * Runs reloads one at a time (a SIGHUP and a file change together reload twice, in turn). At most one
 * waits behind the running one: asking again while one waits joins it (it reads the file when it starts,
 * so it sees every change made before), so a burst of signals or requests cannot queue unbounded work.
 */
export class Reloader {
  #tail: Promise<unknown> = Promise.resolve();
  /** The reload waiting for the running one, if any. */
  #waiting: Promise<ReloadOutcome> | null = null;

  /** @param apply loads the config again and applies it; `source` says what asked, for the log. */
  constructor(readonly apply: (source: string) => Promise<ReloadOutcome>) {}

  /** Reloads once every reload asked before has finished (or joins the one waiting); never rejects. */
  run(source: string): Promise<ReloadOutcome> {
    if (this.#waiting !== null) return this.#waiting;
    const result = this.#tail.then(() => {
      this.#waiting = null;
      return this.apply(source);
    }).catch((error): ReloadOutcome => {
      logger.error("Reload ({source}) failed: {error}", { source, error: errorMessage(error) });
      return { ok: false, summary: `reload failed: ${errorMessage(error)}`, restartKeys: [] };
    });
    this.#waiting = result;
    this.#tail = result;
    return result;
  }

  /** The answer of `POST /api/reload`: 200 with what changed, 422 with the problems of a refused config. */
  async httpAnswer(): Promise<{ status: number; body: Record<string, unknown> }> {
    const outcome = await this.run("tls-tunnel reload");
    return {
      status: outcome.ok ? 200 : 422,
      body: {
        ok: outcome.ok,
        summary: outcome.summary,
        restart_needed: outcome.restartKeys,
        ...(outcome.issues ? { issues: outcome.issues } : {}),
        ...(outcome.details ?? {}),
      },
    };
  }
}

/** Options of {@linkcode startReloadTriggers}. */
export interface ReloadTriggerOptions {
  /** The config file to watch; null (flags only) watches nothing. */
  configPath: string | null;
  /** Runs one reload. */
  reloader: Reloader;
  /** Stops watching and listening for SIGHUP. */
  signal: AbortSignal;
}

/**
 * Reloads on SIGHUP (where the platform has it: elsewhere nothing is listened for, and nothing else
 * changes) and on each change of the config file (debounced, lib/config/watch.ts).
 */
export function startReloadTriggers(options: ReloadTriggerOptions): void {
  const { reloader, signal, configPath } = options;
  if (Deno.build.os !== "windows") {
    const onHangup = () => void reloader.run("SIGHUP");
    try {
      Deno.addSignalListener("SIGHUP", onHangup);
      signal.addEventListener("abort", () => Deno.removeSignalListener("SIGHUP", onHangup), { once: true });
    } catch (error) {
      logger.debug("SIGHUP is not available here ({error}); reload with `tls-tunnel reload`", {
        error: errorMessage(error),
      });
    }
  }
  if (configPath !== null && !signal.aborted) {
    watchConfigFile(configPath, () => void reloader.run("config file change"), { signal }).catch((error) => {
      logger.warn("Not watching {path} for changes ({error}); reload with SIGHUP or `tls-tunnel reload`", {
        path: configPath,
        error: errorMessage(error),
      });
    });
  }
}

/** The outcome of a config that could not be loaded, told in the log with `check`'s lines. */
function refused(source: string, error: unknown): ReloadOutcome {
  if (!(error instanceof ConfigError)) throw error;
  // One record in JSON format: the issues in their own field, as at start.
  writeOutput("stderr", {
    level: "error",
    text: `Reload (${source}) refused; still running with the previous config. ${error.message}`,
    message: `Reload (${source}) refused; still running with the previous config`,
    properties: { file: error.sourceName, issues: error.issues },
  });
  return { ok: false, summary: error.message, restartKeys: [], issues: error.issues };
}

function warnRestart(restartKeys: string[]): void {
  if (restartKeys.length === 0) return;
  logger.warn(
    "Reload: {keys} changed but cannot change while running; they keep their running values until a restart",
    { keys: restartKeys.join(", "), restartKeys },
  );
}

/** What a client reload applies the new config to: a `TunnelClient`, or a wrapper of one per server. */
export interface ReloadableClient {
  /** Applies a validated config on the live session(s). */
  applyConfig(next: ClientConfig): Promise<ClientReloadResult>;
}

/**
 * One client reload: `load` reads and validates the config again (as at start: file, flags,
 * environment); the client applies it on its live session(s).
 */
export async function reloadClient(
  client: ReloadableClient,
  load: () => Promise<ClientConfig>,
  source: string,
): Promise<ReloadOutcome> {
  let next: ClientConfig;
  try {
    next = await load();
  } catch (error) {
    return refused(source, error);
  }
  logger.info("Reloading the config ({source})", { source });
  const result = await client.applyConfig(next);
  warnRestart(result.restartKeys);
  return {
    ok: true,
    summary: describeReload(result),
    restartKeys: result.restartKeys,
    details: {
      added: result.added,
      removed: result.removed,
      changed: result.changed,
      unchanged: result.unchanged,
      registrations: result.registrations,
    },
  };
}

/** A certificate pair read for the server, or why it could not be. */
export type LoadedCertificate = { certPem: string; keyPem: string; fingerprint: string } | string | null;

/**
 * One server reload: `load` reads and validates the config again; `loadCertificate` reads its
 * certificate and key (null when the server has none of its own to swap: generated, or behind a proxy).
 * A certificate that cannot be used refuses the whole reload.
 */
export async function reloadServer(
  server: TunnelServer,
  load: () => Promise<ServerConfig>,
  loadCertificate: (config: ServerConfig) => Promise<LoadedCertificate>,
  source: string,
): Promise<ReloadOutcome> {
  let next: ServerConfig;
  try {
    next = await load();
  } catch (error) {
    return refused(source, error);
  }
  const certificate = await loadCertificate(next);
  if (typeof certificate === "string") {
    logger.error("Reload ({source}) refused; still running with the previous config: {error}", {
      source,
      error: certificate,
    });
    return { ok: false, summary: certificate, restartKeys: [] };
  }
  logger.info("Reloading the config ({source})", { source });
  const report = await server.applyConfig(next, certificate ?? undefined);
  warnRestart(report.restartKeys);
  for (const kept of report.certificateKept) {
    logger.warn("Listener {listener} keeps its certificate until a restart", { listener: kept });
  }
  if (certificate !== null) {
    logger.info("New TLS handshakes present the certificate SHA-256 {fingerprint}", {
      fingerprint: certificate.fingerprint,
    });
  }
  const summary = [
    `${server.clients.size} client(s) connected`,
    report.disconnected.length > 0 ? `disconnected (key revoked): ${report.disconnected.join(", ")}` : "",
    report.revokedProxies.length > 0
      ? `proxies stopped (allow_ports): ${report.revokedProxies.join(", ")}`
      : "",
  ].filter((part) => part !== "").join("; ");
  logger.info("Config reloaded: {summary}", { summary });
  return {
    ok: true,
    summary,
    restartKeys: report.restartKeys,
    details: {
      disconnected: report.disconnected,
      revoked_proxies: report.revokedProxies,
      ...(certificate !== null ? { certificate_fingerprint: certificate.fingerprint } : {}),
    },
  };
}

/** Options of {@linkcode reloadCommand}. */
export interface ReloadCommandOptions {
  /** The stats endpoint (`http://ADDR:PORT`); default: the config's, else {@linkcode DEFAULT_TOP_URL}. */
  url?: string;
  /** The server's or client's config file, to find its stats endpoint and token. */
  config?: string;
  /** The endpoint's `stats_token`. */
  token?: string;
}

/**
 * The stats endpoint a config names, even when the file no longer validates (the reload is what will
 * say why): its role table's `stats_addr`, `stats_port` and `stats_token` read as they are.
 */
async function reloadTarget(path: string): Promise<StatsTarget> {
  try {
    return await statsTargetFromConfig(path);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    let table: Record<string, unknown> | null = null;
    try {
      const document = parseToml(await Deno.readTextFile(expandHome(path)));
      const role = document.server ?? document.client;
      if (typeof role === "object" && role !== null && !Array.isArray(role)) {
        table = role as Record<string, unknown>;
      }
    } catch {
      // Not even TOML: the loader's message below says where.
    }
    const port = table?.stats_port;
    if (typeof port !== "number" || port <= 0) throw error;
    const addr = typeof table?.stats_addr === "string" ? table.stats_addr : "127.0.0.1";
    const host = isWildcard(addr) ? (addr.includes(":") ? "::1" : "127.0.0.1") : addr;
    const token = typeof table?.stats_token === "string" ? table.stats_token : undefined;
    return { url: `http://${formatHostPort(host, port)}`, ...(token !== undefined ? { token } : {}) };
  }
}

/**
 * `tls-tunnel reload [-u URL] [-c FILE] [--token T]`: asks a running server or client to reload its
 * config (`POST /api/reload` on its stats endpoint) and prints what changed, or why the new config was
 * refused. Exit 0 when applied, 1 when refused or unreachable.
 */
export async function reloadCommand(options: ReloadCommandOptions): Promise<number> {
  let target: StatsTarget = { url: DEFAULT_TOP_URL };
  if (options.config !== undefined) {
    try {
      target = await reloadTarget(options.config);
    } catch (error) {
      console.error(`tls-tunnel: ${escapeForTerminal(errorMessage(error))}`);
      return 1;
    }
  }
  const token = options.token ?? target.token;
  let url: URL;
  try {
    url = new URL("/api/reload", options.url ?? target.url);
  } catch {
    console.error(
      `tls-tunnel: --url ${JSON.stringify(options.url)} is not a URL; write http://127.0.0.1:9100`,
    );
    return 1;
  }
  let response: Response;
  try {
    response = await fetch(url, {
      method: "POST",
      headers: token !== undefined ? { authorization: `Bearer ${token}` } : {},
      signal: AbortSignal.timeout(30_000),
    });
  } catch (error) {
    console.error(
      `tls-tunnel: cannot reach the stats endpoint at ${url.origin}: ${
        errorMessage(error)
      }; is the server or ` +
        "client running with stats_port set?",
    );
    return 1;
  }
  const body: unknown = await response.json().catch(() => null);
  const fields = typeof body === "object" && body !== null ? body as Record<string, unknown> : {};
  if (response.status === 401) {
    console.error(
      `tls-tunnel: the stats endpoint at ${url.origin} ${
        token === undefined ? "needs a token; pass --token with its stats_token" : "refused the token"
      }`,
    );
    return 1;
  }
  if (response.status === 404) {
    console.error(`tls-tunnel: ${url.origin} does not offer reloads (an older tls-tunnel?)`);
    return 1;
  }
  // A refusal's summary is `check`'s report: one problem a line, each line escaped on its own.
  const summary = typeof fields.summary === "string"
    ? fields.summary.split("\n").map(escapeForTerminal).join("\n")
    : "";
  const restart = Array.isArray(fields.restart_needed) ? fields.restart_needed.map(String) : [];
  if (response.ok && fields.ok === true) {
    writeOutput("stdout", {
      level: "info",
      text: `Reloaded: ${summary}` +
        (restart.length > 0 ? `\nNeed a restart to apply: ${restart.join(", ")}` : ""),
      properties: fields,
    });
    return 0;
  }
  writeOutput("stderr", {
    level: "error",
    text: `tls-tunnel: reload refused; still running with the previous config.\n${summary}`,
    properties: fields,
  });
  return 1;
}

/**
 * `tls-tunnel top`: a live terminal view of a server's or client's stats endpoint (`/api/stats`).
 *
 * On a terminal it redraws a full screen every interval (clients, proxies, byte rates from the
 * difference between two polls, recent events) and quits on `q`; otherwise it prints one plain table
 * and exits, so `tls-tunnel top | grep web` and scripts work.
 *
 * @module
 */

import { loadConfig } from "../config/mod.ts";
import { formatHostPort, isWildcard } from "../net/address.ts";
import type { ServedStats } from "../stats/http.ts";
import { formatDuration } from "../stats/format.ts";
import type { ProxySnapshot } from "../stats/snapshot.ts";
import { errorMessage, escapeForTerminal } from "../text.ts";
import {
  computeRates,
  forwarderCounts,
  type Rates,
  renderScreen,
  visitorCounts,
  visitorTarget,
} from "./_top_screen.ts";
import { expandHome } from "./config_path.ts";
import { activeLogFormat, writeOutput } from "./logging.ts";

export {
  computeRates,
  type LaidColumn,
  proxyTableLayout,
  type Rates,
  renderScreen,
  type ScreenOptions,
} from "./_top_screen.ts";

/** Default `--url`: the stats endpoint of a server on this machine with `stats_port = 9100`. */
export const DEFAULT_TOP_URL = "http://127.0.0.1:9100";
/** How long one poll may take before it counts as failed. */
const FETCH_TIMEOUT_MS = 5000;

/** Options of {@linkcode topCommand}. */
export interface TopCommandOptions {
  /**
   * Base URL of the stats endpoint (`/api/stats` is appended unless present). Default: the config's
   * endpoint with `config`, else {@linkcode DEFAULT_TOP_URL}.
   */
  url?: string;
  /** Bearer token (the endpoint's `stats_token`); default: the config's `stats_token` with `config`. */
  token?: string;
  /** A server or client config file to read the endpoint's URL and token from (`top -c FILE`). */
  config?: string;
  /** Time between polls in the live view. */
  intervalMs: number;
  /** Ends the live view. */
  signal: AbortSignal;
}

/** The stats endpoint could not be read; the message says what to check. */
export class StatsFetchError extends Error {
  override name = "StatsFetchError";
  constructor(message: string, readonly status: number | null = null, options?: ErrorOptions) {
    super(message, options);
  }
}

/** Turns a user's `--url` into the `/api/stats` URL; throws for a URL that cannot be parsed. */
export function statsUrl(url: string): URL {
  let parsed: URL;
  try {
    parsed = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(url) ? url : `http://${url}`);
  } catch {
    throw new StatsFetchError(`'${url}' is not a URL; pass e.g. --url ${DEFAULT_TOP_URL}`);
  }
  if (!parsed.pathname.endsWith("/api/stats")) {
    parsed.pathname = parsed.pathname.replace(/\/+$/, "") + "/api/stats";
  }
  return parsed;
}

/** Where `top -c FILE` found the stats endpoint: its URL and, when the file sets one, its token. */
export interface StatsTarget {
  /** `http://ADDR:PORT` of the config's `stats_addr`/`stats_port` (a wildcard address → loopback). */
  url: string;
  /** The config's `stats_token` (after `TLS_TUNNEL_STATS_TOKEN`), if any. */
  token?: string;
}

/**
 * The stats endpoint a server or client config describes (`top -c FILE`): `stats_addr:stats_port`, with
 * a wildcard address (`0.0.0.0`, `::`) read as this machine's loopback, and `stats_token`. The file is
 * loaded and validated as the role would (environment overrides included).
 *
 * @throws {InvalidConfigError} when the file cannot be read or is invalid.
 * @throws {StatsFetchError} when the config has no `stats_port` (no endpoint to watch).
 */
export async function statsTargetFromConfig(path: string): Promise<StatsTarget> {
  const file = expandHome(path);
  const parsed = await loadConfig(file);
  const { statsAddr, statsPort, statsToken } = parsed.config;
  if (statsPort === undefined || statsPort === 0) {
    throw new StatsFetchError(
      `${file} sets no stats_port, so its ${parsed.kind} has no stats endpoint; add stats_port = 9100 to ` +
        `[${parsed.kind}] and restart it, or pass --url`,
    );
  }
  const host = isWildcard(statsAddr) ? (statsAddr.includes(":") ? "::1" : "127.0.0.1") : statsAddr;
  return {
    url: `http://${formatHostPort(host, statsPort)}`,
    ...(statsToken !== undefined ? { token: statsToken } : {}),
  };
}

/** Reads `/api/stats` once. Throws {@linkcode StatsFetchError} with a hint on any failure. */
export async function fetchStats(url: string, token?: string, signal?: AbortSignal): Promise<ServedStats> {
  const target = statsUrl(url);
  const timeout = AbortSignal.timeout(FETCH_TIMEOUT_MS);
  let response: Response;
  try {
    response = await fetch(target, {
      headers: token !== undefined ? { authorization: `Bearer ${token}` } : {},
      signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
    });
  } catch (error) {
    const reason = timeout.aborted
      ? `no answer within ${FETCH_TIMEOUT_MS / 1000} s`
      : innermostMessage(error);
    throw new StatsFetchError(
      `Cannot reach the stats endpoint at ${target.origin}: ${reason}; check that the server or client runs ` +
        `with stats_port set and that --url points at it`,
      null,
      { cause: error },
    );
  }
  if (response.status === 401) {
    await response.body?.cancel();
    throw new StatsFetchError(
      token === undefined
        ? `The stats endpoint at ${target.origin} needs a token; pass --token with its stats_token`
        : `The stats endpoint at ${target.origin} refused the token; check --token against stats_token`,
      401,
    );
  }
  if (!response.ok) {
    await response.body?.cancel();
    throw new StatsFetchError(
      `The stats endpoint at ${target} answered HTTP ${response.status}`,
      response.status,
    );
  }
  let body: unknown;
  try {
    body = await response.json();
  } catch (error) {
    throw new StatsFetchError(`${target} did not answer JSON; is --url a tls-tunnel stats endpoint?`, 200, {
      cause: error,
    });
  }
  if (!isServedStats(body)) {
    throw new StatsFetchError(`${target} answered JSON that is not tls-tunnel stats; check --url`, 200);
  }
  return body;
}

/** The most specific message in an error's cause chain (`fetch failed` hides `Connection refused`). */
function innermostMessage(error: unknown): string {
  let message = errorMessage(error);
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current instanceof Error && current.cause !== undefined; depth++) {
    current = current.cause;
    if (current instanceof Error && current.message) message = current.message;
  }
  // "client error (Connect): tcp connect error: Connection refused (os error 111)" → the last part.
  return message.split(": ").at(-1) ?? message;
}

function isServedStats(value: unknown): value is ServedStats {
  if (typeof value !== "object" || value === null) return false;
  const record = value as Record<string, unknown>;
  if (typeof record.now_ms !== "number" || typeof record.version !== "string") return false;
  if (record.role === "server") return Array.isArray(record.clients);
  if (record.role === "client") return Array.isArray(record.proxies) && typeof record.state === "string";
  return false;
}

// ---- the plain table ------------------------------------------------------------------------------

/**
 * Lays out rows as columns two spaces apart; `right` lists the right-aligned column indexes. Cells are
 * escaped first ({@linkcode escapeForTerminal}): names and errors come from peers.
 */
export function formatColumns(cells: string[][], right: ReadonlySet<number> = new Set()): string[] {
  const rows = cells.map((row) => row.map(escapeForTerminal));
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, index) => (widths[index] = Math.max(widths[index] ?? 0, cell.length)));
  }
  return rows.map((row) =>
    row.map((cell, index) => {
      const last = index === row.length - 1;
      if (right.has(index)) return cell.padStart(widths[index] ?? 0);
      return last ? cell : cell.padEnd(widths[index] ?? 0);
    }).join("  ").trimEnd()
  );
}

/**
 * The one-shot view printed when stdout is not a terminal: exact counts, one row per proxy. Every
 * string from the endpoint is escaped ({@linkcode escapeForTerminal}).
 */
export function renderPlainTable(stats: ServedStats): string {
  const lines: string[] = [];
  const proxyHeader = [
    "PROXY",
    "STATUS",
    "PUBLISHED",
    "LOCAL",
    "ACTIVE",
    "TOTAL",
    "FAILED",
    "BYTES_IN",
    "BYTES_OUT",
    "LAST_ERROR",
  ];
  const proxyCells = (proxy: ProxySnapshot): string[] => [
    proxy.name,
    proxy.status,
    `${proxy.publish_addr}:${proxy.publish_port}`,
    `${proxy.local_addr}:${proxy.local_port}`,
    String(proxy.active_connections),
    String(proxy.total_connections),
    String(proxy.failed_connections),
    String(proxy.bytes_in),
    String(proxy.bytes_out),
    proxy.last_error ?? "-",
  ];
  if (stats.role === "server") {
    lines.push(
      `tls-tunnel server ${stats.version} on ${
        stats.listen_addr || "?"
      }: ${stats.clients.length} client(s) ` +
        `connected, ${stats.sessions_total} session(s) and ${stats.auth_failures_total} auth failure(s) since ` +
        `start, up ${formatDuration(stats.now_ms - stats.started_at_ms)}`,
      "",
    );
    if (stats.clients.length === 0) {
      lines.push("(no clients connected)");
      return lines.map(escapeForTerminal).join("\n") + "\n";
    }
    lines.push(
      ...formatColumns([
        ["CLIENT", "CLIENT_ID", "REMOTE", "CONNECTED_SINCE", "RTT_MS", "STREAMS", "PROXIES"],
        ...stats.clients.map((client) => [
          client.name,
          client.client_id,
          client.remote_addr,
          new Date(client.connected_since_ms).toISOString(),
          client.rtt_ms === null ? "-" : client.rtt_ms.toFixed(2),
          String(client.streams),
          String(client.proxies.length),
        ]),
      ], new Set([4, 5, 6])),
      "",
    );
    lines.push(
      ...formatColumns([
        ["CLIENT", ...proxyHeader],
        ...stats.clients.flatMap((client) =>
          client.proxies.map((proxy) => [client.name, ...proxyCells(proxy)])
        ),
      ], new Set([5, 6, 7, 8, 9])),
    );
    // Groups of clients sharing a port or domain (README "Groups"), when there are any.
    const groups = stats.groups ?? [];
    if (groups.length > 0) {
      lines.push(
        "",
        ...formatColumns([
          ["GROUP", "KIND", "PUBLISHED", "POLICY", "MEMBERS", "HEALTHY", "TOTAL", "REFUSED", "CLIENTS"],
          ...groups.map((group) => [
            group.name,
            group.kind,
            group.hosts?.length ? group.hosts.join(",") : group.publish_addr,
            group.lb_policy,
            String(group.members.length),
            String(group.members.filter((member) => member.healthy).length),
            String(group.connections_total),
            String(group.refused_total),
            group.members.map((member) => member.client).join(","),
          ]),
        ], new Set([4, 5, 6, 7])),
      );
    }
    // The vhost ports' routes (host → client/proxy) with each host's requests by status.
    const routes = stats.vhost?.route_list ?? [];
    if (routes.length > 0) {
      const statuses = (host: string) =>
        (stats.vhost?.http_requests ?? []).filter((entry) => entry.host === host)
          .map((entry) => `${entry.status}:${entry.count}`).join(",") || "-";
      lines.push(
        "",
        ...formatColumns([
          ["ROUTE", "KIND", "CLIENT", "PROXY", "GROUP", "REQUESTS"],
          ...routes.map((route) => [
            route.host + (route.location === "/" ? "" : route.location),
            route.kind,
            route.client,
            route.proxy,
            route.group ?? "-",
            route.kind === "http"
              ? statuses(route.host)
              : `${
                stats.vhost?.https_connections.find((entry) => entry.host === route.host)?.count ?? 0
              } routed`,
          ]),
        ]),
      );
    }
    // Tunnel listeners, when there are several (one is already named on the first line).
    const listeners = stats.listeners ?? [];
    if (listeners.length > 1) {
      lines.push(
        "",
        ...formatColumns([
          ["LISTENER", "ADDRESS", "PATH", "CONNECTIONS", "SESSIONS"],
          ...listeners.map((listener) => [
            listener.transport + (listener.behind_proxy ? " (behind proxy)" : ""),
            listener.listen_addr,
            listener.transport === "tls" ? "-" : listener.server_path,
            String(listener.connections_total),
            String(listener.sessions_total),
          ]),
        ], new Set([3, 4])),
      );
    }
  } else {
    const countdown = stats.state === "waiting" && stats.next_attempt_at_ms !== null
      ? `, reconnecting in ${((stats.next_attempt_at_ms - stats.now_ms) / 1000).toFixed(1)} s`
      : "";
    lines.push(
      `tls-tunnel client ${stats.version}, server ${stats.server_addr}: ${stats.state}${countdown}; ` +
        `${stats.sessions_total} session(s) since start, rtt ${
          stats.rtt_ms === null ? "-" : `${stats.rtt_ms.toFixed(2)} ms`
        }, up ${formatDuration(stats.now_ms - stats.started_at_ms)}`,
      ...(stats.servers ?? []).map((server) =>
        `  server ${server.name} (${server.server_addr}): ${server.state}, ` +
        `${server.sessions_total} session(s), rtt ${
          server.rtt_ms === null ? "-" : `${server.rtt_ms.toFixed(2)} ms`
        }`
      ),
      "",
      ...formatColumns([proxyHeader, ...stats.proxies.map(proxyCells)], new Set([4, 5, 6, 7, 8])),
    );
    const visitors = stats.visitors ?? [];
    if (visitors.length > 0) {
      lines.push(
        "",
        ...formatColumns([
          ["VISITOR", "TARGET", "LISTEN", "ACTIVE", "TOTAL", "OK", "DENIED", "REFUSED", "LAST_ERROR"],
          ...visitors.map((visitor) => {
            const counts = visitorCounts(visitor);
            return [
              visitor.bind,
              visitorTarget(visitor),
              visitor.listen_addr ?? "-",
              String(visitor.active_connections),
              String(visitor.total_connections),
              String(counts.ok),
              String(counts.denied),
              String(counts.otherRefused),
              visitor.last_error ?? "-",
            ];
          }),
        ], new Set([3, 4, 5, 6, 7])),
      );
    }
    const forwarders = stats.forwarders ?? [];
    if (forwarders.length > 0) {
      lines.push(
        "",
        ...formatColumns([
          ["FORWARDER", "TYPE", "LISTEN", "ACTIVE", "OK", "REFUSED", "BYTES_IN", "BYTES_OUT"],
          ...forwarders.map((forwarder) => {
            const counts = forwarderCounts(forwarder);
            return [
              forwarder.name,
              forwarder.proxy_type,
              forwarder.listen_addr ?? "-",
              String(forwarder.active_connections),
              String(counts.ok),
              String(counts.refused),
              String(forwarder.bytes_in),
              String(forwarder.bytes_out),
            ];
          }),
        ], new Set([3, 4, 5, 6, 7])),
      );
    }
  }
  return lines.map(escapeForTerminal).join("\n") + "\n";
}

// ---- the command ----------------------------------------------------------------------------------

async function writeText(file: { write(p: Uint8Array): Promise<number> }, text: string): Promise<void> {
  let bytes = new TextEncoder().encode(text);
  while (bytes.length > 0) bytes = bytes.subarray(await file.write(bytes));
}

/** Waits `ms`, or less when `wake` resolves first. */
function pause(ms: number, wake: Promise<unknown>): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    new Promise<void>((resolve) => (timer = setTimeout(resolve, ms))),
    wake.then(() => {}),
  ]).finally(() => clearTimeout(timer));
}

/** Resolves when the user presses `q` (or Ctrl-C in raw mode) on the terminal. */
async function waitForQuitKey(): Promise<void> {
  const buffer = new Uint8Array(16);
  while (true) {
    const count = await Deno.stdin.read(buffer);
    if (count === null) return new Promise(() => {}); // stdin closed: only the signal can end the view.
    for (const byte of buffer.subarray(0, count)) {
      if (byte === 0x71 || byte === 0x51 || byte === 0x03) return;
    }
  }
}

/**
 * Runs `top`: a live screen on a terminal, or one plain table otherwise. Returns the exit code: 0, or 1
 * when the endpoint cannot be read (the plain table's only poll failed).
 */
export async function topCommand(given: TopCommandOptions): Promise<number> {
  let target: StatsTarget = { url: DEFAULT_TOP_URL };
  if (given.config !== undefined) {
    try {
      target = await statsTargetFromConfig(given.config);
    } catch (error) {
      console.error(`tls-tunnel: ${errorMessage(error)}`);
      return 1;
    }
  }
  // Flags win over the file.
  const token = given.token ?? target.token;
  const options = { ...given, url: given.url ?? target.url, ...(token !== undefined ? { token } : {}) };
  try {
    statsUrl(options.url);
  } catch (error) {
    console.error(`tls-tunnel: ${errorMessage(error)}`);
    return 2;
  }
  // --log-format json: one record holding the stats, never the live screen.
  const json = activeLogFormat() === "json";
  if (!Deno.stdout.isTerminal() || json) {
    try {
      const stats = await fetchStats(options.url, options.token, options.signal);
      if (json) {
        writeOutput("stdout", {
          level: "info",
          text: "",
          message: `Stats of ${options.url}`,
          properties: { stats },
        });
      } else await writeText(Deno.stdout, renderPlainTable(stats));
      return 0;
    } catch (error) {
      // The message may quote the endpoint's answer.
      console.error(
        `tls-tunnel: ${escapeForTerminal(errorMessage(error))}`,
      );
      return 1;
    }
  }
  const url = statsUrl(options.url).origin;
  const color = !Deno.env.get("NO_COLOR");
  const intervalMs = Math.max(100, options.intervalMs);
  const rawInput = Deno.stdin.isTerminal();
  const aborted = new Promise<void>((resolve) => {
    if (options.signal.aborted) resolve();
    options.signal.addEventListener("abort", () => resolve(), { once: true });
  });
  let quit = false;
  const quitKey = rawInput ? waitForQuitKey().then(() => (quit = true)) : new Promise<never>(() => {});
  const stop = Promise.race([aborted, quitKey]);
  if (rawInput) Deno.stdin.setRaw(true, { cbreak: true });
  // Alternate screen, hidden cursor; both undone in `finally` whatever happens.
  await writeText(Deno.stdout, "\x1b[?1049h\x1b[?25l");
  try {
    let previous: ServedStats | null = null;
    let rates: Rates = new Map();
    while (!quit && !options.signal.aborted) {
      let error: string | undefined;
      try {
        const stats = await fetchStats(options.url, options.token, options.signal);
        // Keep the last rates when polls come faster than the endpoint's clock moves.
        if (!previous || stats.now_ms > previous.now_ms) rates = computeRates(previous, stats);
        previous = stats;
      } catch (caught) {
        if (options.signal.aborted) break;
        error = caught instanceof Error ? caught.message : String(caught);
      }
      const { columns, rows } = Deno.consoleSize();
      const screen = renderScreen(previous, rates, {
        columns,
        rows,
        color,
        url,
        intervalMs,
        ...(error !== undefined ? { error } : {}),
      });
      await writeText(Deno.stdout, "\x1b[H" + screen.map((line) => line + "\x1b[K").join("\r\n") + "\x1b[J");
      await pause(intervalMs, stop);
    }
    return 0;
  } finally {
    // Leave the alternate screen first: some terminals restore the cursor mode saved on entering it.
    await writeText(Deno.stdout, "\x1b[?1049l\x1b[?25h");
    if (rawInput) {
      try {
        Deno.stdin.setRaw(false);
      } catch {
        // The terminal went away; nothing to restore.
      }
    }
  }
}

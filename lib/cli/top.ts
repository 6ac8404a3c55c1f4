/**
 * `tls-tunnel top`: a live terminal view of a server's or client's stats endpoint (`/api/stats`).
 *
 * On a terminal it redraws a full screen every interval (clients, proxies, byte rates from the
 * difference between two polls, recent events) and quits on `q`; otherwise it prints one plain table
 * and exits, so `tls-tunnel top | grep web` and scripts work.
 *
 * @module
 */

import type { ServedStats } from "../stats/http.ts";
import { escapeForTerminal } from "../text.ts";
import type { ProxyStatus } from "../protocol/proxy_status.ts";
import type { ClientSnapshot, EventSnapshot, ProxySnapshot } from "../stats/snapshot.ts";

/** Default `--url`: the stats endpoint of a server on this machine with `stats_port = 9100`. */
export const DEFAULT_TOP_URL = "http://127.0.0.1:9100";
/** How long one poll may take before it counts as failed. */
const FETCH_TIMEOUT_MS = 5000;

/** Options of {@linkcode topCommand}. */
export interface TopCommandOptions {
  /** Base URL of the stats endpoint (`/api/stats` is appended unless present). */
  url: string;
  /** Bearer token (the endpoint's `stats_token`). */
  token?: string;
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
  let message = error instanceof Error ? error.message : String(error);
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

// ---- formatting -----------------------------------------------------------------------------------

/** `1536` → `1.50 KiB`. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${Math.round(bytes)} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 2 : value < 100 ? 1 : 0)} ${units[unit]}`;
}

/** Bytes per second for people; `null` (no previous poll) is shown as a dash. */
export function formatRate(bytesPerSec: number | null): string {
  if (bytesPerSec === null) return "–";
  return bytesPerSec < 0.5 ? "0 B/s" : `${formatBytes(bytesPerSec)}/s`;
}

/** `3723000` → `1h02m`. */
export function formatDuration(ms: number): string {
  const secs = Math.max(0, Math.floor(ms / 1000));
  const days = Math.floor(secs / 86400);
  const hours = Math.floor((secs % 86400) / 3600);
  const minutes = Math.floor((secs % 3600) / 60);
  if (days > 0) return `${days}d${String(hours).padStart(2, "0")}h`;
  if (hours > 0) return `${hours}h${String(minutes).padStart(2, "0")}m`;
  if (minutes > 0) return `${minutes}m${String(secs % 60).padStart(2, "0")}s`;
  return `${secs}s`;
}

function formatRtt(ms: number | null): string {
  if (ms === null) return "–";
  return ms < 10 ? `${ms.toFixed(2)} ms` : `${Math.round(ms)} ms`;
}

function formatClock(ms: number): string {
  const date = new Date(ms);
  return [date.getHours(), date.getMinutes(), date.getSeconds()].map((part) => String(part).padStart(2, "0"))
    .join(":");
}

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

// ---- the plain table ------------------------------------------------------------------------------

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
  } else {
    const countdown = stats.state === "waiting" && stats.next_attempt_at_ms !== null
      ? `, reconnecting in ${((stats.next_attempt_at_ms - stats.now_ms) / 1000).toFixed(1)} s`
      : "";
    lines.push(
      `tls-tunnel client ${stats.version}, server ${stats.server_addr}: ${stats.state}${countdown}; ` +
        `${stats.sessions_total} session(s) since start, rtt ${
          stats.rtt_ms === null ? "-" : `${stats.rtt_ms.toFixed(2)} ms`
        }, up ${formatDuration(stats.now_ms - stats.started_at_ms)}`,
      "",
      ...formatColumns([proxyHeader, ...stats.proxies.map(proxyCells)], new Set([4, 5, 6, 7, 8])),
    );
  }
  return lines.map(escapeForTerminal).join("\n") + "\n";
}

// ---- the live screen ------------------------------------------------------------------------------

/** Byte rates per proxy key (`client\0proxy`; client role: `\0proxy`), bytes per second. */
export type Rates = Map<string, { in: number; out: number }>;

function proxyKey(client: string, proxy: string): string {
  return `${client}\0${proxy}`;
}

function proxiesByKey(stats: ServedStats): Map<string, ProxySnapshot> {
  const map = new Map<string, ProxySnapshot>();
  if (stats.role === "server") {
    for (const client of stats.clients) {
      for (const proxy of client.proxies) map.set(proxyKey(client.name, proxy.name), proxy);
    }
  } else {
    for (const proxy of stats.proxies) map.set(proxyKey("", proxy.name), proxy);
  }
  return map;
}

/**
 * Byte rates between two polls: the difference of each proxy's counters over the time between the
 * snapshots. A proxy missing from `previous`, or whose counters went down (a new session), has none.
 */
export function computeRates(previous: ServedStats | null, current: ServedStats): Rates {
  const rates: Rates = new Map();
  if (!previous) return rates;
  const elapsedSecs = (current.now_ms - previous.now_ms) / 1000;
  if (elapsedSecs <= 0) return rates;
  const before = proxiesByKey(previous);
  for (const [key, proxy] of proxiesByKey(current)) {
    const old = before.get(key);
    if (!old || proxy.bytes_in < old.bytes_in || proxy.bytes_out < old.bytes_out) continue;
    rates.set(key, {
      in: (proxy.bytes_in - old.bytes_in) / elapsedSecs,
      out: (proxy.bytes_out - old.bytes_out) / elapsedSecs,
    });
  }
  return rates;
}

/** What the live screen shows besides the stats. */
export interface ScreenOptions {
  /** Terminal width in columns; lines are cut to it. */
  columns: number;
  /** Terminal height in rows; the screen stops there. */
  rows: number;
  /** ANSI colours. */
  color: boolean;
  /** The endpoint's URL, shown in the header. */
  url: string;
  /** Poll interval, shown in the footer. */
  intervalMs: number;
  /** The last poll's failure, if it failed. */
  error?: string;
}

const ANSI = {
  reset: "\x1b[0m",
  bold: "\x1b[1m",
  dim: "\x1b[2m",
  inverse: "\x1b[7m",
  red: "\x1b[31m",
  green: "\x1b[32m",
  yellow: "\x1b[33m",
  blue: "\x1b[34m",
  cyan: "\x1b[36m",
  grey: "\x1b[90m",
};

// Keyed by any string (a remote stats endpoint may send a status this version does not know); the
// `satisfies` makes a proxy status added to PROXY_STATUSES fail to compile until it has a colour.
const STATUS_COLORS: Record<string, string> = {
  healthy: ANSI.green,
  connected: ANSI.green,
  pending: ANSI.blue,
  connecting: ANSI.blue,
  unhealthy: ANSI.yellow,
  waiting: ANSI.yellow,
  warning: ANSI.yellow,
  bind_failed: ANSI.red,
  error: ANSI.red,
  closed: ANSI.grey,
  stopped: ANSI.grey,
  info: ANSI.cyan,
} satisfies Record<ProxyStatus, string> & Record<string, string>;

/**
 * One screen line: plain text escaped ({@linkcode escapeForTerminal}: names, errors and events come from
 * peers) and cut to the width, then coloured (so colour codes never count as width).
 */
class Line {
  constructor(readonly segments: Array<{ text: string; style?: string }>) {}

  render(columns: number, color: boolean): string {
    let remaining = columns;
    let out = "";
    for (const segment of this.segments) {
      if (remaining <= 0) break;
      const text = [...escapeForTerminal(segment.text)].slice(0, remaining).join("");
      remaining -= [...text].length;
      out += color && segment.style ? `${segment.style}${text}${ANSI.reset}` : text;
    }
    return out;
  }
}

const PROXY_COLUMNS: Array<{ title: string; width: number; right?: boolean }> = [
  { title: "PROXY", width: 18 },
  { title: "STATUS", width: 12 },
  { title: "PUBLISHED", width: 22 },
  { title: "LOCAL TARGET", width: 22 },
  { title: "ACTIVE", width: 6, right: true },
  { title: "TOTAL", width: 7, right: true },
  { title: "FAILED", width: 6, right: true },
  { title: "IN", width: 10, right: true },
  { title: "OUT", width: 10, right: true },
  { title: "IN/s", width: 11, right: true },
  { title: "OUT/s", width: 11, right: true },
];

function fit(raw: string, width: number, right = false): string {
  // Escaped before measuring, so that columns stay aligned once `Line.render` escapes (a no-op then).
  const text = escapeForTerminal(raw);
  const chars = [...text];
  const cut = chars.length > width ? chars.slice(0, Math.max(0, width - 1)).join("") + "…" : text;
  return right ? cut.padStart(width) : cut.padEnd(width);
}

function proxyLine(
  indent: string,
  proxy: ProxySnapshot,
  rate: { in: number; out: number } | undefined,
): Line {
  const cells = [
    proxy.name,
    proxy.status === "bind_failed" ? "bind failed" : proxy.status,
    `${proxy.publish_addr}:${proxy.publish_port || "–"}`,
    `${proxy.local_addr}:${proxy.local_port}`,
    String(proxy.active_connections),
    String(proxy.total_connections),
    String(proxy.failed_connections),
    formatBytes(proxy.bytes_in),
    formatBytes(proxy.bytes_out),
    formatRate(rate?.in ?? null),
    formatRate(rate?.out ?? null),
  ];
  const segments: Array<{ text: string; style?: string }> = [{ text: indent }];
  cells.forEach((cell, index) => {
    const column = PROXY_COLUMNS[index] ?? { title: "", width: 8 };
    const text = fit(cell, column.width, column.right) + " ";
    if (index === 0) segments.push({ text, style: ANSI.bold });
    else if (index === 1) segments.push({ text, style: STATUS_COLORS[proxy.status] ?? "" });
    else if (index >= 9 && (index === 9 ? rate?.in ?? 0 : rate?.out ?? 0) >= 1024) {
      segments.push({ text, style: ANSI.cyan });
    } else segments.push({ text });
  });
  return new Line(segments);
}

function proxyHeaderLine(indent: string): Line {
  return new Line([{
    text: indent +
      PROXY_COLUMNS.map((column) => fit(column.title, column.width, column.right) + " ").join(""),
    style: ANSI.dim,
  }]);
}

function errorLine(indent: string, proxy: ProxySnapshot): Line | null {
  if (!proxy.last_error) return null;
  return new Line([{ text: `${indent}  ↳ last error: ` }, { text: proxy.last_error, style: ANSI.red }]);
}

function eventLines(events: EventSnapshot[], room: number): Line[] {
  if (room <= 1 || events.length === 0) return [];
  const newest = events.slice(-(room - 1)).reverse();
  return [
    new Line([{ text: "RECENT EVENTS", style: ANSI.dim }]),
    ...newest.map((event) =>
      new Line([
        { text: `${formatClock(event.time_ms)} `, style: ANSI.grey },
        { text: `${event.level.toUpperCase().padEnd(7)} `, style: STATUS_COLORS[event.level] ?? "" },
        { text: `${event.code.padEnd(22)} `, style: ANSI.dim },
        { text: event.message },
      ])
    ),
  ];
}

function clientLine(client: ClientSnapshot, nowMs: number): Line {
  return new Line([
    { text: "● ", style: ANSI.green },
    { text: fit(client.name, 16) + " ", style: ANSI.bold },
    { text: `from ${client.remote_addr}  ` },
    { text: `up ${formatDuration(nowMs - client.connected_since_ms)}  rtt ${formatRtt(client.rtt_ms)}  ` },
    { text: `${client.streams} stream(s)  ` },
    { text: client.client_id === client.name ? "" : `id ${client.client_id}`, style: ANSI.grey },
  ]);
}

/**
 * The live screen as lines (without clearing codes). Pure: the same inputs give the same lines, so it
 * is tested without a terminal. `stats` is null before the first successful poll.
 */
export function renderScreen(
  stats: ServedStats | null,
  rates: Rates,
  options: ScreenOptions,
): string[] {
  const lines: Line[] = [];
  const nowMs = stats?.now_ms ?? Date.now();
  const title = stats
    ? ` tls-tunnel top · ${stats.role} ${stats.version} · ${
      stats.role === "server" ? stats.listen_addr : `server ${stats.server_addr}`
    } · up ${formatDuration(nowMs - stats.started_at_ms)}`
    : " tls-tunnel top";
  const clock = `${formatClock(nowMs)} `;
  const gap = Math.max(1, options.columns - [...title].length - clock.length);
  lines.push(new Line([{ text: title + " ".repeat(gap) + clock, style: ANSI.inverse }]));
  let totalIn = 0;
  let totalOut = 0;
  for (const rate of rates.values()) {
    totalIn += rate.in;
    totalOut += rate.out;
  }
  const body: Line[] = [];
  if (!stats) {
    body.push(new Line([{ text: `Waiting for ${options.url} …` }]));
  } else if (stats.role === "server") {
    const proxies = stats.clients.reduce((sum, client) => sum + client.proxies.length, 0);
    const active = stats.clients.reduce(
      (sum, client) => sum + client.proxies.reduce((inner, proxy) => inner + proxy.active_connections, 0),
      0,
    );
    lines.push(
      new Line([
        { text: `clients ` },
        { text: String(stats.clients.length), style: ANSI.bold },
        {
          text:
            `  proxies ${proxies}  active conns ${active}  sessions ${stats.sessions_total}  auth failures `,
        },
        { text: String(stats.auth_failures_total), style: stats.auth_failures_total > 0 ? ANSI.red : "" },
        {
          text: `  in ${formatRate(rates.size ? totalIn : null)}  out ${
            formatRate(rates.size ? totalOut : null)
          }`,
        },
      ]),
      new Line([]),
    );
    if (stats.clients.length === 0) {
      body.push(new Line([{ text: "No clients connected.", style: ANSI.dim }]));
    } else {
      body.push(proxyHeaderLine("  "));
      for (const client of stats.clients) {
        body.push(clientLine(client, nowMs));
        for (const proxy of client.proxies) {
          body.push(proxyLine("  ", proxy, rates.get(proxyKey(client.name, proxy.name))));
          const error = errorLine("  ", proxy);
          if (error) body.push(error);
        }
      }
    }
  } else {
    const countdown = stats.state === "waiting" && stats.next_attempt_at_ms !== null
      ? ` — reconnecting in ${(Math.max(0, stats.next_attempt_at_ms - nowMs) / 1000).toFixed(1)} s`
      : "";
    lines.push(
      new Line([
        { text: "state " },
        { text: stats.state + countdown, style: `${ANSI.bold}${STATUS_COLORS[stats.state] ?? ""}` },
        { text: `  sessions ${stats.sessions_total}  rtt ${formatRtt(stats.rtt_ms)}` },
        {
          text: `  in ${formatRate(rates.size ? totalIn : null)}  out ${
            formatRate(rates.size ? totalOut : null)
          }`,
        },
      ]),
      new Line([]),
    );
    body.push(proxyHeaderLine(""));
    for (const proxy of stats.proxies) {
      body.push(proxyLine("", proxy, rates.get(proxyKey("", proxy.name))));
      const error = errorLine("", proxy);
      if (error) body.push(error);
    }
  }
  const footer = new Line([
    { text: options.error ? `! ${options.error}` : "", style: ANSI.red },
    { text: options.error ? "   " : "" },
    { text: `q quit · every ${(options.intervalMs / 1000).toFixed(1)} s · ${options.url}`, style: ANSI.dim },
  ]);
  // The header, the body, the events, then the footer on the last row; the body is cut to fit.
  const bodyRoom = Math.max(0, options.rows - lines.length - 1);
  const shownBody = body.slice(0, bodyRoom);
  lines.push(...shownBody);
  const eventRoom = bodyRoom - shownBody.length - 1;
  if (stats && eventRoom > 2) {
    lines.push(new Line([]), ...eventLines(stats.recent_events, Math.min(eventRoom, 11)));
  }
  while (lines.length < options.rows - 1) lines.push(new Line([]));
  lines.push(footer);
  return lines.slice(0, Math.max(1, options.rows)).map((line) => line.render(options.columns, options.color));
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
export async function topCommand(options: TopCommandOptions): Promise<number> {
  try {
    statsUrl(options.url);
  } catch (error) {
    console.error(`tls-tunnel: ${error instanceof Error ? error.message : String(error)}`);
    return 2;
  }
  if (!Deno.stdout.isTerminal()) {
    try {
      const stats = await fetchStats(options.url, options.token, options.signal);
      await writeText(Deno.stdout, renderPlainTable(stats));
      return 0;
    } catch (error) {
      // The message may quote the endpoint's answer.
      console.error(
        `tls-tunnel: ${escapeForTerminal(error instanceof Error ? error.message : String(error))}`,
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

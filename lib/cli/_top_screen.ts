/**
 * The live screen of `tls-tunnel top`: byte rates between two polls and the full-screen layout
 * (header, totals, clients and their proxies, recent events, footer) as plain lines, cut to the
 * terminal's width and height and coloured with ANSI codes. Pure functions of the stats, so they are
 * tested without a terminal (lib/cli/top_test.ts); top.ts polls and draws.
 *
 * @module
 */

import type { ProxyStatus } from "../protocol/proxy_status.ts";
import type { ServedStats } from "../stats/http.ts";
import {
  formatBytes,
  formatClock,
  formatDuration,
  formatRate,
  formatRtt,
  statusLabel,
} from "../stats/format.ts";
import type {
  ClientServerSnapshot,
  ClientSnapshot,
  EventSnapshot,
  ForwarderSnapshot,
  ListenerSnapshot,
  ProxySnapshot,
  VhostSnapshot,
  VisitorSnapshot,
} from "../stats/snapshot.ts";
import { escapeForTerminal } from "../text.ts";

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
  refused: ANSI.red,
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

/**
 * A column of the proxy table. `width` is the preferred width, `min` the narrowest it may get (the cell
 * is cut with `…` below its length); `drop` orders which columns go first when even the narrowest
 * layout is too wide (lowest first); a column without `drop` is always shown: the byte counters and
 * rates, which are what `top` is for.
 */
interface ProxyColumn {
  title: string;
  width: number;
  min: number;
  right?: boolean;
  drop?: number;
}

const PROXY_COLUMNS: readonly ProxyColumn[] = [
  { title: "PROXY", width: 18, min: 8 },
  { title: "STATUS", width: 12, min: 9, drop: 5 },
  { title: "PUBLISHED", width: 22, min: 12, drop: 3 },
  { title: "LOCAL TARGET", width: 22, min: 12, drop: 0 },
  { title: "ACTIVE", width: 6, min: 6, right: true, drop: 4 },
  { title: "TOTAL", width: 7, min: 6, right: true, drop: 2 },
  { title: "FAILED", width: 6, min: 6, right: true, drop: 1 },
  // "1023 KiB" is the longest byte count, "1023 KiB/s" the longest rate (format.ts).
  { title: "IN", width: 9, min: 8, right: true },
  { title: "OUT", width: 9, min: 8, right: true },
  { title: "IN/s", width: 11, min: 10, right: true },
  { title: "OUT/s", width: 11, min: 10, right: true },
];

/** One shown column of the proxy table: its index in the column list (PROXY, STATUS, …, OUT/s) and its width. */
export interface LaidColumn {
  index: number;
  width: number;
}

function layoutWidth(columns: readonly LaidColumn[]): number {
  return columns.reduce((sum, column) => sum + column.width, 0) + Math.max(0, columns.length - 1);
}

/**
 * The proxy table's columns for `available` characters: every column at its preferred width when that
 * fits; otherwise the columns shrunk towards their minimum (the extra room goes back to the widest
 * first), dropping the lowest-`drop` columns one at a time until the narrowest layout fits. The byte
 * and rate columns are never dropped; below ~50 columns the line is cut at the edge instead.
 */
export function proxyTableLayout(available: number): LaidColumn[] {
  const dropOrder = PROXY_COLUMNS
    .map((column, index) => ({ index, drop: column.drop }))
    .filter((entry): entry is { index: number; drop: number } => entry.drop !== undefined)
    .sort((a, b) => a.drop - b.drop)
    .map((entry) => entry.index);
  let kept: LaidColumn[] = [];
  for (let dropped = 0; dropped <= dropOrder.length; dropped++) {
    const gone = new Set(dropOrder.slice(0, dropped));
    const indexes = PROXY_COLUMNS.map((_, index) => index).filter((index) => !gone.has(index));
    const preferred = indexes.map((index) => ({ index, width: PROXY_COLUMNS[index]?.width ?? 0 }));
    if (layoutWidth(preferred) <= available) return preferred;
    kept = indexes.map((index) => ({ index, width: PROXY_COLUMNS[index]?.min ?? 0 }));
    if (layoutWidth(kept) <= available) break;
  }
  // Hand the spare room back one character at a time to the column furthest below its preference.
  let spare = available - layoutWidth(kept);
  while (spare > 0) {
    let best: LaidColumn | undefined;
    let bestShort = 0;
    for (const column of kept) {
      const short = (PROXY_COLUMNS[column.index]?.width ?? 0) - column.width;
      if (short > bestShort) [best, bestShort] = [column, short];
    }
    if (best === undefined) break;
    best.width++;
    spare--;
  }
  return kept;
}

function fit(raw: string, width: number, right = false): string {
  // Escaped before measuring, so that columns stay aligned once `Line.render` escapes (a no-op then).
  const text = escapeForTerminal(raw);
  const chars = [...text];
  const cut = chars.length > width ? chars.slice(0, Math.max(0, width - 1)).join("") + "…" : text;
  return right ? cut.padStart(width) : cut.padEnd(width);
}

function proxyLine(
  indent: string,
  layout: readonly LaidColumn[],
  proxy: ProxySnapshot,
  rate: { in: number; out: number } | undefined,
): Line {
  const cells = [
    proxy.name,
    statusLabel(proxy.status),
    `${proxy.publish_addr}:${proxy.publish_port || "–"}${proxy.udp ? "/udp" : ""}`,
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
  for (const { index, width } of layout) {
    const column = PROXY_COLUMNS[index];
    const text = fit(cells[index] ?? "", width, column?.right) + " ";
    if (index === 0) segments.push({ text, style: ANSI.bold });
    else if (index === 1) segments.push({ text, style: STATUS_COLORS[proxy.status] ?? "" });
    else if (index >= 9 && (index === 9 ? rate?.in ?? 0 : rate?.out ?? 0) >= 1024) {
      segments.push({ text, style: ANSI.cyan });
    } else segments.push({ text });
  }
  return new Line(segments);
}

function proxyHeaderLine(indent: string, layout: readonly LaidColumn[]): Line {
  return new Line([{
    text: indent +
      layout.map(({ index, width }) => {
        const column = PROXY_COLUMNS[index];
        return fit(column?.title ?? "", width, column?.right) + " ";
      }).join(""),
    style: ANSI.dim,
  }]);
}

/**
 * The totals line: `full` when it fits in `columns`, else `compact` (the traffic first, so that a cut
 * at the edge takes the counts, not the rates).
 */
function fitting(columns: number, full: Line, compact: Line): Line {
  const width = (line: Line) => line.segments.reduce((sum, segment) => sum + [...segment.text].length, 0);
  return width(full) <= columns ? full : compact;
}

/** A udp proxy's flows and datagrams, under its row: `↳ udp: 3 flows, 1000 in, 998 out, 2 dropped (queue_full 2)`. */
function udpLine(indent: string, proxy: ProxySnapshot): Line | null {
  const udp = proxy.udp;
  if (!udp) return null;
  const drops = Object.entries(udp.dropped).filter(([, count]) => count > 0);
  const dropped = drops.reduce((sum, [, count]) => sum + count, 0);
  const detail = drops.length > 0
    ? ` (${drops.map(([reason, count]) => `${reason} ${count}`).join(", ")})`
    : "";
  return new Line([
    { text: `${indent}  ↳ udp: ${udp.flows_open} flows, ${udp.datagrams_in} in, ${udp.datagrams_out} out, ` },
    { text: `${dropped} dropped${detail}`, style: dropped > 0 ? ANSI.yellow : ANSI.dim },
  ]);
}

/** The shared HTTP/HTTPS vhost ports (server): where, how many routes, requests, 503s and 504s. */
function vhostLine(vhost: VhostSnapshot): Line {
  const requests = vhost.http_requests.reduce((sum, entry) => sum + entry.count, 0);
  const routed = vhost.https_connections.reduce((sum, entry) => sum + entry.count, 0);
  const ports = [
    ...(vhost.http_addr !== null ? [`http ${vhost.http_addr}`] : []),
    ...(vhost.https_addr !== null ? [`https ${vhost.https_addr}`] : []),
  ].join(", ");
  const bad = vhost.http_no_tunnel_total + vhost.http_timeouts_total > 0;
  return new Line([
    { text: `vhosts ${ports}  routes ${vhost.routes}  requests ${requests}  ` },
    {
      text: `503 ${vhost.http_no_tunnel_total}  504 ${vhost.http_timeouts_total}`,
      style: bad ? ANSI.yellow : ANSI.dim,
    },
    { text: `  tls routed ${routed} refused ${vhost.https_refused_total}` },
  ]);
}

/** A visitor's counts: carried (`ok`, open ones included), refused by the server as `denied`, and the rest. */
export interface VisitorCounts {
  ok: number;
  denied: number;
  /** Not carried for any other reason (`not_found`, `no_session`, `failed`, …). */
  otherRefused: number;
}

/** Sums a visitor's results: every accepted connection was carried unless it is counted as refused. */
export function visitorCounts(visitor: VisitorSnapshot): VisitorCounts {
  let refused = 0;
  for (const count of Object.values(visitor.refused)) refused += count;
  const denied = visitor.refused.denied ?? 0;
  return { ok: Math.max(0, visitor.total_connections - refused), denied, otherRefused: refused - denied };
}

/** Where a visitor leads: `owner/proxy:port` (`*` when any client's proxy of that name will do). */
export function visitorTarget(visitor: VisitorSnapshot): string {
  return `${visitor.client ?? "*"}/${visitor.name}:${visitor.publish_port}`;
}

/** A forwarder's results summed over routes: `ok`, and everything else as refused. */
export function forwarderCounts(forwarder: ForwarderSnapshot): { ok: number; refused: number } {
  let ok = 0;
  let refused = 0;
  for (const results of Object.values(forwarder.results)) {
    for (const [result, count] of Object.entries(results)) {
      if (result === "ok") ok += count;
      else refused += count;
    }
  }
  return { ok, refused };
}

/** A visitor of the client: `127.0.0.1:15432 → office/db:5432  open 1  ok 9  denied 1  refused 0`. */
function visitorLine(visitor: VisitorSnapshot): Line {
  const counts = visitorCounts(visitor);
  return new Line([
    { text: `${visitor.listen_addr ?? `${visitor.bind} (not bound)`} → `, style: ANSI.bold },
    { text: `${visitorTarget(visitor)}  open ${visitor.active_connections}  ok ${counts.ok}  ` },
    {
      text: `denied ${counts.denied}  refused ${counts.otherRefused}`,
      style: counts.denied + counts.otherRefused > 0 ? ANSI.yellow : ANSI.dim,
    },
    { text: `  in ${formatBytes(visitor.bytes_in)} out ${formatBytes(visitor.bytes_out)}` },
    { text: visitor.last_error ? `  ${visitor.last_error}` : "", style: ANSI.red },
  ]);
}

/** A forwarder of the client: `egress http 127.0.0.1:3128  open 1  ok 12  refused 3  in … out …`. */
function forwarderLine(forwarder: ForwarderSnapshot): Line {
  const counts = forwarderCounts(forwarder);
  return new Line([
    { text: `${fit(forwarder.name, 16)} `, style: ANSI.bold },
    { text: `${forwarder.proxy_type} ${forwarder.listen_addr ?? "(not bound)"}  ` },
    { text: `open ${forwarder.active_connections}  ok ${counts.ok}  ` },
    { text: `refused ${counts.refused}`, style: counts.refused > 0 ? ANSI.yellow : ANSI.dim },
    { text: `  in ${formatBytes(forwarder.bytes_in)} out ${formatBytes(forwarder.bytes_out)}` },
  ]);
}

/** The client's visitors and forwarders under its proxies: a title line, then one line each. */
function clientStreamLines(
  visitors: VisitorSnapshot[] | undefined,
  forwarders: ForwarderSnapshot[] | undefined,
): Line[] {
  const lines: Line[] = [];
  if (visitors && visitors.length > 0) {
    lines.push(new Line([]), new Line([{ text: "VISITORS (bind → owner/proxy:port)", style: ANSI.dim }]));
    lines.push(...visitors.map(visitorLine));
  }
  if (forwarders && forwarders.length > 0) {
    lines.push(new Line([]), new Line([{ text: "FORWARDERS", style: ANSI.dim }]));
    lines.push(...forwarders.map(forwarderLine));
  }
  return lines;
}

/** The server's tunnel listeners, with several: `listeners tls 0.0.0.0:8443 3/2 · wss 0.0.0.0:443 /tunnel 0/0`. */
function listenersLine(listeners: ListenerSnapshot[] | undefined): Line | null {
  if (!listeners || listeners.length < 2) return null;
  return new Line([
    { text: "listeners (conns/sessions) " },
    {
      text: listeners.map((listener) =>
        `${listener.transport} ${listener.listen_addr}${
          listener.transport === "tls" ? "" : ` ${listener.server_path}`
        } ${listener.connections_total}/${listener.sessions_total}`
      ).join(" · "),
    },
  ]);
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

/** One server of a client with several: `● a  127.0.0.2:8443  connected  rtt 0.4 ms  1 session(s)`. */
function serverLine(server: ClientServerSnapshot, nowMs: number): Line {
  const color = STATUS_COLORS[server.state] ?? "";
  const retry = server.state === "waiting" && server.next_attempt_at_ms !== null
    ? ` — reconnecting in ${(Math.max(0, server.next_attempt_at_ms - nowMs) / 1000).toFixed(1)} s`
    : "";
  return new Line([
    { text: "● ", style: color },
    { text: fit(server.name, 16) + " ", style: ANSI.bold },
    { text: `${server.server_addr}  ` },
    { text: server.state + retry, style: color },
    { text: `  rtt ${formatRtt(server.rtt_ms)}  ${server.sessions_total} session(s)` },
    { text: server.last_error ? `  ${server.last_error}` : "", style: ANSI.grey },
  ]);
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
  const traffic = `in ${formatRate(rates.size ? totalIn : null)}  out ${
    formatRate(rates.size ? totalOut : null)
  }`;
  const body: Line[] = [];
  if (!stats) {
    body.push(new Line([{ text: `Waiting for ${options.url} …` }]));
  } else if (stats.role === "server") {
    const proxies = stats.clients.reduce((sum, client) => sum + client.proxies.length, 0);
    const active = stats.clients.reduce(
      (sum, client) => sum + client.proxies.reduce((inner, proxy) => inner + proxy.active_connections, 0),
      0,
    );
    const failuresStyle = stats.auth_failures_total > 0 ? ANSI.red : "";
    lines.push(
      fitting(
        options.columns,
        new Line([
          { text: `clients ` },
          { text: String(stats.clients.length), style: ANSI.bold },
          {
            text:
              `  proxies ${proxies}  active conns ${active}  sessions ${stats.sessions_total}  auth failures `,
          },
          { text: String(stats.auth_failures_total), style: failuresStyle },
          { text: `  ${traffic}` },
        ]),
        new Line([
          { text: `${traffic}  clients ` },
          { text: String(stats.clients.length), style: ANSI.bold },
          { text: ` proxies ${proxies} conns ${active} sessions ${stats.sessions_total} auth fail ` },
          { text: String(stats.auth_failures_total), style: failuresStyle },
        ]),
      ),
      ...(stats.vhost ? [vhostLine(stats.vhost)] : []),
      ...[listenersLine(stats.listeners)].filter((line) => line !== null),
      new Line([]),
    );
    if (stats.clients.length === 0) {
      body.push(new Line([{ text: "No clients connected.", style: ANSI.dim }]));
    } else {
      const layout = proxyTableLayout(options.columns - 2);
      body.push(proxyHeaderLine("  ", layout));
      for (const client of stats.clients) {
        body.push(clientLine(client, nowMs));
        for (const proxy of client.proxies) {
          body.push(proxyLine("  ", layout, proxy, rates.get(proxyKey(client.name, proxy.name))));
          const udp = udpLine("  ", proxy);
          if (udp) body.push(udp);
          const error = errorLine("  ", proxy);
          if (error) body.push(error);
        }
      }
    }
  } else {
    const countdown = stats.state === "waiting" && stats.next_attempt_at_ms !== null
      ? ` — reconnecting in ${(Math.max(0, stats.next_attempt_at_ms - nowMs) / 1000).toFixed(1)} s`
      : "";
    const stateStyle = `${ANSI.bold}${STATUS_COLORS[stats.state] ?? ""}`;
    lines.push(
      fitting(
        options.columns,
        new Line([
          { text: "state " },
          { text: stats.state + countdown, style: stateStyle },
          { text: `  sessions ${stats.sessions_total}  rtt ${formatRtt(stats.rtt_ms)}` },
          { text: `  ${traffic}` },
        ]),
        new Line([
          { text: `${traffic}  ` },
          { text: stats.state + countdown, style: stateStyle },
          { text: `  sessions ${stats.sessions_total}  rtt ${formatRtt(stats.rtt_ms)}` },
        ]),
      ),
      // Several servers: one line each (the proxies below are merged over them).
      ...(stats.servers ?? []).map((server) => serverLine(server, nowMs)),
      new Line([]),
    );
    const layout = proxyTableLayout(options.columns);
    body.push(proxyHeaderLine("", layout));
    for (const proxy of stats.proxies) {
      body.push(proxyLine("", layout, proxy, rates.get(proxyKey("", proxy.name))));
      const udp = udpLine("", proxy);
      if (udp) body.push(udp);
      const error = errorLine("", proxy);
      if (error) body.push(error);
    }
    body.push(...clientStreamLines(stats.visitors, stats.forwarders));
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

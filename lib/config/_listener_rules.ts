/**
 * Cross-key rules of the server's listeners (`[server]`'s own and `[[server.listeners]]`): no two bind
 * the same port on overlapping addresses, `behind_proxy` only on an HTTP transport, the stats endpoint
 * on a port of its own, and no listener key in `[server]` that no listener uses. They read the raw
 * document, like every rule in `_rules.ts`, and skip values of the wrong type (the schema reports those).
 *
 * @module
 */

import { addressesOverlap, formatHostPort } from "../net/address.ts";
import type { ConfigIssue } from "./errors.ts";
import { DEFAULTS } from "./defaults.ts";

type Table = Record<string, unknown>;

/**
 * Transports carried over UDP (the others are over TCP): a UDP listener and a TCP listener may share a
 * port number, since they are different sockets.
 */
const UDP_TRANSPORTS: ReadonlySet<string> = new Set(["quic"]);

/** The transports that serve plain text to a reverse proxy with `behind_proxy = true`. */
const PROXYABLE_TRANSPORTS: ReadonlySet<string> = new Set(["wss", "http2"]);

/** One listener as written, with where it was written (`server` or `server.listeners[i]`). */
interface RawListener {
  path: string;
  transport: string | undefined;
  addr: string | undefined;
  port: number | undefined;
  behindProxy: boolean;
}

function table(value: unknown): Table | undefined {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Date)
    ? value as Table
    : undefined;
}

function str(t: Table, key: string, fallback: string): string | undefined {
  if (t[key] === undefined) return fallback;
  const value = t[key];
  return typeof value === "string" ? value : undefined;
}

function num(t: Table, key: string, fallback?: number): number | undefined {
  if (t[key] === undefined) return fallback;
  const value = t[key];
  return typeof value === "number" && Number.isInteger(value) ? value : undefined;
}

/** `tls on 0.0.0.0:8443` for messages. */
function describeListener(listener: RawListener): string {
  return `${listener.transport ?? "?"} on ${formatHostPort(listener.addr ?? "?", listener.port ?? 0)}`;
}

/**
 * The listeners the server will bind, as written: `[server]`'s (when there is no entry, or it writes
 * transport, bind_addr or bind_port) and then each `[[server.listeners]]` entry. The same choice as the
 * schema's transform (`schema.ts`, `effectiveListeners`).
 */
function rawListeners(server: Table): { listeners: RawListener[]; ownListener: boolean } {
  const entries = Array.isArray(server.listeners) ? server.listeners.map(table) : [];
  const ownListener = serverMakesListener(server);
  const listeners: RawListener[] = [];
  if (ownListener) {
    listeners.push({
      path: "server",
      transport: str(server, "transport", DEFAULTS.server.transport),
      addr: str(server, "bind_addr", DEFAULTS.server.bind_addr),
      port: num(server, "bind_port", DEFAULTS.server.bind_port),
      behindProxy: server.behind_proxy === true,
    });
  }
  entries.forEach((entry, index) => {
    if (entry === undefined) return;
    listeners.push({
      path: `server.listeners[${index}]`,
      transport: typeof entry.transport === "string" ? entry.transport : undefined,
      addr: str(entry, "bind_addr", DEFAULTS.server.bind_addr),
      port: num(entry, "bind_port"),
      behindProxy: entry.behind_proxy === true,
    });
  });
  return { listeners, ownListener };
}

/**
 * Whether `[server]` (raw) makes a listener of its own: when there is no `[[server.listeners]]` entry, or
 * it writes transport, bind_addr or bind_port.
 */
export function serverMakesListener(server: Table): boolean {
  const entries = Array.isArray(server.listeners) ? server.listeners.length : 0;
  return entries === 0 || ["transport", "bind_addr", "bind_port"].some((key) => server[key] !== undefined);
}

/** Cross-key rules of the server's listeners; `server` is the raw `[server]` table. */
export function listenerRules(server: Table): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const { listeners, ownListener } = rawListeners(server);

  if (!ownListener) {
    // [server]'s own listener keys with no listener of [server] to apply to: say so rather than drop them.
    for (const key of ["server_path", "behind_proxy"]) {
      if (server[key] === undefined) continue;
      issues.push({
        path: `server.${key}`,
        message: `${key} is set in [server], but with [[server.listeners]] and no transport, bind_addr or ` +
          "bind_port in [server], [server] makes no listener for it to apply to",
        hint: `set ${key} in the [[server.listeners]] entries it is meant for, or set [server]'s bind_port ` +
          "to make [server]'s listener the first one",
      });
    }
  }

  for (const listener of listeners) {
    // [server]'s own behind_proxy is checked by the rule in _rules.ts (it predates the listeners).
    if (listener.path === "server" || !listener.behindProxy || listener.transport === undefined) continue;
    if (PROXYABLE_TRANSPORTS.has(listener.transport)) continue;
    issues.push({
      path: `${listener.path}.behind_proxy`,
      message: `behind_proxy = true needs transport = "wss" or "http2" (this listener's transport is ${
        JSON.stringify(listener.transport)
      })`,
      hint: `set transport = "wss" (or "http2") in this entry, or remove its behind_proxy`,
    });
  }

  const seen: RawListener[] = [];
  for (const listener of listeners) {
    const { addr, port, transport } = listener;
    if (addr === undefined || port === undefined || port === 0 || transport === undefined) continue;
    const udp = UDP_TRANSPORTS.has(transport);
    const clash = seen.find((other) =>
      other.port === port && UDP_TRANSPORTS.has(other.transport ?? "") === udp &&
      addressesOverlap(other.addr ?? "", addr)
    );
    if (clash !== undefined) {
      issues.push({
        path: `${listener.path}.bind_port`,
        message: `this listener (${describeListener(listener)}) binds the same ${
          udp ? "UDP" : "TCP"
        } port as ${clash.path === "server" ? "[server]'s listener" : clash.path} (${
          describeListener(clash)
        })`,
        hint: "give each listener its own bind_port (or addresses that do not overlap: 0.0.0.0 and :: " +
          "overlap every address)",
      });
    } else seen.push(listener);
  }

  const statsPort = num(server, "stats_port");
  const statsAddr = str(server, "stats_addr", DEFAULTS.server.stats_addr);
  if (statsPort !== undefined && statsPort !== 0 && statsAddr !== undefined) {
    for (const listener of listeners) {
      // [server]'s own listener is checked by the stats_port rule in _rules.ts.
      if (listener.path === "server" || listener.port !== statsPort || listener.addr === undefined) continue;
      if (!addressesOverlap(statsAddr, listener.addr) || UDP_TRANSPORTS.has(listener.transport ?? "")) {
        continue;
      }
      issues.push({
        path: "server.stats_port",
        message: `stats_port ${statsPort} is also the bind_port of ${listener.path} (${
          describeListener(listener)
        })`,
        hint: "give the stats endpoint its own port, e.g. stats_port = 9090",
      });
    }
  }
  return issues;
}

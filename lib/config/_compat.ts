/**
 * Keys and values of the Rust tls-tunnel's configs that load here with a meaning of their own, and the
 * notes `check` prints about them. They are accepted (its example files must load) but mean less here than
 * they say, so a user learns what became of them instead of guessing:
 *
 * - `proxy_type = "http/1.1"`, `"http/2.0"` and `"ssh"` (and the `type` key its examples write instead of
 *   `proxy_type`) are TCP proxies: in the Rust tool these values only changed how connections to the local
 *   service were pooled and whether TCP_NODELAY was set. Here every outside connection is its own yamux
 *   stream with its own local connection and every socket has TCP_NODELAY, so they reach the roles, and the
 *   wire's `proxy_type`, as `"tcp"`.
 *
 * The notes are read from the raw document after it validated (so every value has its type), like the
 * rules of `_rules.ts`.
 *
 * @module
 */

import type { ConfigIssue } from "./errors.ts";

/** The Rust tls-tunnel's proxy types that are carried as TCP proxies here. */
export const RUST_TCP_PROXY_TYPES = ["http/1.1", "http/2.0", "ssh"] as const;

/** The proxy kinds routed by host name on the server's shared vhost ports (`vhost_http_port`, `vhost_https_port`). */
export const VHOST_PROXY_TYPES = ["http", "https"] as const;

/**
 * Every accepted value of a proxy's `proxy_type` (or `type`): `"tcp"`, the vhost kinds and the Rust
 * tool's aliases of `"tcp"`.
 */
export const PROXY_TYPES = ["tcp", "udp", ...VHOST_PROXY_TYPES, ...RUST_TCP_PROXY_TYPES] as const;

/** A value of `proxy_type` as written in a config file. */
export type ProxyTypeKey = typeof PROXY_TYPES[number];

/**
 * What each accepted `proxy_type` is carried as: the proxy kind the roles and the wire know (a kind added
 * to the protocol gets its own row).
 */
const CARRIED_AS = {
  "tcp": "tcp",
  "udp": "udp",
  "http": "http",
  "https": "https",
  "http/1.1": "tcp",
  "http/2.0": "tcp",
  "ssh": "tcp",
} as const satisfies Record<ProxyTypeKey, "tcp" | "udp" | "http" | "https">;

/**
 * The proxy kind a `proxy_type` value is carried as.
 *
 * ```ts
 * import { carriedProxyType } from "./_compat.ts";
 *
 * console.log(carriedProxyType("http/1.1")); // "tcp"
 * ```
 */
export function carriedProxyType(value: ProxyTypeKey): typeof CARRIED_AS[ProxyTypeKey] {
  return CARRIED_AS[value];
}

/** The Rust tool's names of the `[[forwarders]]` kinds: a clear refusal when written in `[[proxies]]`. */
export const FORWARDER_TYPES: readonly string[] = ["socks5"];

type Table = Record<string, unknown>;

function table(value: unknown): Table | undefined {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Date)
    ? value as Table
    : undefined;
}

const TCP_EXPLAINED = "the Rust tls-tunnel only changed connection pooling and TCP_NODELAY for it; here " +
  "every outside connection gets its own connection to the local service and every socket has " +
  "TCP_NODELAY, so HTTP, SSH and databases work unchanged";

function proxyTypeNote(path: string, key: "proxy_type" | "type", value: string): ConfigIssue | undefined {
  const isRust = (RUST_TCP_PROXY_TYPES as readonly string[]).includes(value);
  if (key === "proxy_type") {
    if (!isRust) return undefined;
    return {
      path,
      message: `proxy_type ${JSON.stringify(value)} is carried as a TCP proxy ("tcp")`,
      hint: `${TCP_EXPLAINED}; write proxy_type = "tcp" to drop this note`,
    };
  }
  const carried = (PROXY_TYPES as readonly string[]).includes(value)
    ? carriedProxyType(value as ProxyTypeKey)
    : "tcp";
  return {
    path,
    message: `type = ${
      JSON.stringify(value)
    } (the Rust tls-tunnel examples' name for proxy_type) is read as proxy_type = "${carried}"`,
    hint: isRust
      ? `${TCP_EXPLAINED}; write proxy_type = "tcp" instead of type to drop this note`
      : `write proxy_type = "${carried}" instead of type to drop this note`,
  };
}

/**
 * The notes about the Rust tls-tunnel keys and values a valid document uses (see the module doc), in file
 * order; empty for a config that uses none.
 */
export function compatNotes(kind: "server" | "client", document: Table): ConfigIssue[] {
  const notes: ConfigIssue[] = [];
  if (kind === "server") {
    // allow_forward means here what it meant there (forwarders exist, issue 15): no note.
    return notes;
  }
  const proxies = Array.isArray(document.proxies) ? document.proxies : [];
  proxies.forEach((entry, index) => {
    const proxy = table(entry);
    for (const key of ["proxy_type", "type"] as const) {
      const value = proxy?.[key];
      if (typeof value !== "string") continue;
      const note = proxyTypeNote(`proxies[${index}].${key}`, key, value);
      if (note !== undefined) notes.push(note);
    }
    const privateNote = rustPrivateNote(document, proxy, index);
    if (privateNote !== undefined) notes.push(privateNote);
  });
  const visitors = Array.isArray(document.visitors) ? document.visitors : [];
  visitors.forEach((entry, index) => {
    const value = table(entry)?.type;
    if (typeof value !== "string") return;
    notes.push({
      path: `visitors[${index}].type`,
      message:
        `type = ${JSON.stringify(value)} on a visitor changes nothing: a visitor carries TCP, whatever ` +
        `the target proxy's type`,
      hint: "remove type from the [[visitors]] entry to drop this note",
    });
  });
  return notes;
}

/**
 * The note for a proxy that is private because the file is written like the Rust tool's (its `type` key,
 * or `[[visitors]]` in the file) and it names no `publish_addr` (schema.ts decides the same).
 */
function rustPrivateNote(document: Table, proxy: Table | undefined, index: number): ConfigIssue | undefined {
  if (proxy === undefined || proxy.visibility !== undefined || proxy.publish_addr !== undefined) {
    return undefined;
  }
  const visitors = Array.isArray(document.visitors) && document.visitors.length > 0;
  if (proxy.type === undefined && !visitors) return undefined;
  return {
    path: `proxies[${index}]`,
    message:
      `has no publish_addr in a config written like the Rust tls-tunnel's (${
        proxy.type !== undefined ? "the type key" : "[[visitors]]"
      }), so it is private there and here: not bound on the server, reached only by other clients' ` +
      `[[visitors]] as (name, publish_port)`,
    hint: `write visibility = "private" to drop this note, or publish_addr (with visibility = "both") to ` +
      `publish it on the server too`,
  };
}

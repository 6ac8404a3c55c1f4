/**
 * The client's list of servers: `servers = ["a.example.com:8443", …]` or `[[client.servers]]` tables, and
 * how it relates to the single-server keys of `[client]`.
 *
 * The rule: a client names its servers EITHER with `server_addr` (one server, as before) OR with `servers`
 * (one or more); both at once is an error, since it is unclear whether `server_addr` is one more server or
 * meant to be replaced. The other connection keys of `[client]` (`server_port`, `server_name`,
 * `ca_cert_path`, `server_fingerprint`, `transport`, `server_path`) are the defaults of every `servers` entry
 * that does not set its own; an entry's `server_name` defaults to `[client] server_name`, else to the
 * entry's own `server_addr`.
 *
 * @module
 */

import { z } from "zod";
import { formatHostPort } from "../net/address.ts";
import { camelKeys } from "./_camel.ts";
import { filePath, host, name, parseHostPort, port, serverPath, sha256Fingerprint } from "./_fields.ts";
import type { ConfigIssue } from "./errors.ts";

/** Most servers one client may keep sessions to. */
export const MAX_SERVERS = 16;

/** Transports a `[[client.servers]]` entry may name (the same as `[client] transport`). */
const SERVER_TRANSPORTS = ["tls", "wss", "http2", "quic"] as const;

/** One `[[client.servers]]` table; unset keys fall back to `[client]`'s. */
export const serverEntrySchema = z.strictObject({
  /** Label in logs, the status table, stats and metrics (default: `server_addr:server_port`). */
  name: name.optional(),
  /** Host name or address of this server. */
  server_addr: host,
  /** Its tunnel port (default: `[client] server_port`). */
  server_port: port.optional(),
  /** Name its certificate must carry (default: `[client] server_name`, else this entry's `server_addr`). */
  server_name: host.optional(),
  /** PEM CA to trust for this server (default: `[client] ca_cert_path`). */
  ca_cert_path: filePath.optional(),
  /** SHA-256 pin of this server's certificate (default: `[client] server_fingerprint`). */
  server_fingerprint: sha256Fingerprint.optional(),
  /** How this server is reached (default: `[client] transport`). */
  transport: z.enum(SERVER_TRANSPORTS).optional(),
  /** HTTP path of the tunnel on this server (default: `[client] server_path`). */
  server_path: serverPath.optional(),
}).transform((table) => camelKeys(table));

/** A `servers` string entry: `"host:port"`, `"[v6]:port"` or a bare host (port from `[client] server_port`). */
const serverText = z.string().transform((text, ctx) => {
  const parsed = parseHostPort(text);
  if ("host" in parsed) return { serverAddr: parsed.host, serverPort: parsed.port };
  if (!text.includes(":") && host.safeParse(text).success) return { serverAddr: text };
  ctx.addIssue({
    code: "custom",
    message: parsed.problem,
    params: { hint: `write each server as "host:port", e.g. "a.example.com:8443" or "[2001:db8::1]:8443"` },
  });
  return z.NEVER;
});

/** One entry of `servers` before `[client]`'s defaults are applied. */
export type ServerEntryInput = z.output<typeof serverEntrySchema> | z.output<typeof serverText>;

/**
 * `servers`: strings and tables (the two TOML spellings of the key), each checked by its own schema so a
 * mistake is reported on the entry's key, not as "matches neither form".
 */
export const serverListSchema = z.array(z.unknown()).max(MAX_SERVERS).transform((entries, ctx) => {
  const out: ServerEntryInput[] = [];
  entries.forEach((entry, index) => {
    const result = typeof entry === "string"
      ? serverText.safeParse(entry)
      : serverEntrySchema.safeParse(entry);
    if (result.success) out.push(result.data);
    else for (const issue of result.error.issues) ctx.addIssue({ ...issue, path: [index, ...issue.path] });
  });
  return out;
});

/** One server the client keeps a session to, with every default applied. */
export interface ServerEndpoint {
  /** Label in logs, status, stats (`server` label of the metrics). */
  name: string;
  /** Host name or address dialed. */
  serverAddr: string;
  /** Tunnel port. */
  serverPort: number;
  /** Name the certificate must carry. */
  serverName: string;
  /** PEM CA to trust, if any. */
  caCertPath?: string;
  /** SHA-256 pin (upper-case colon form), if any. */
  serverFingerprint?: string;
  /** Transport key. */
  transport: typeof SERVER_TRANSPORTS[number];
  /** HTTP path of the tunnel. */
  serverPath: string;
}

/** The `[client]` keys that are defaults of the entries (camelCase, as the client table's transform sees them). */
export interface ServerDefaults {
  serverAddr?: string | undefined;
  serverPort: number;
  serverName?: string | undefined;
  caCertPath?: string | undefined;
  serverFingerprint?: string | undefined;
  transport: typeof SERVER_TRANSPORTS[number];
  serverPath: string;
}

/**
 * The servers of a client: its `servers` entries with `[client]`'s defaults, or the one server of
 * `server_addr`; empty when neither is set (the rules report it).
 */
export function resolveServers(
  client: ServerDefaults,
  servers: ServerEntryInput[] | undefined,
): ServerEndpoint[] {
  const entries: ServerEntryInput[] = servers ??
    (client.serverAddr !== undefined ? [{ serverAddr: client.serverAddr }] : []);
  return entries.map((entry) => {
    const full: Partial<z.output<typeof serverEntrySchema>> = entry;
    const serverPort = full.serverPort ?? client.serverPort;
    const caCertPath = full.caCertPath ?? client.caCertPath;
    const serverFingerprint = full.serverFingerprint ?? client.serverFingerprint;
    return {
      name: full.name ?? formatHostPort(entry.serverAddr, serverPort),
      serverAddr: entry.serverAddr,
      serverPort,
      serverName: full.serverName ?? client.serverName ?? entry.serverAddr,
      ...(caCertPath !== undefined ? { caCertPath } : {}),
      ...(serverFingerprint !== undefined ? { serverFingerprint } : {}),
      transport: full.transport ?? client.transport,
      serverPath: full.serverPath ?? client.serverPath,
    };
  });
}

/**
 * Cross-key rules of the server list, on the raw `[client]` table: exactly one of `server_addr` and
 * `servers`, at least one server, no name or address twice.
 */
export function serversRule(client: Record<string, unknown>, defaultPort: number): ConfigIssue[] {
  const hasAddr = client.server_addr !== undefined;
  const list = client.servers;
  if (hasAddr && list !== undefined) {
    return [{
      path: "client.servers",
      message: "server_addr and servers are both set: it is unclear whether server_addr is one more server",
      hint: "list every server in servers (and remove server_addr), or keep server_addr alone for one server",
    }];
  }
  if (!hasAddr && list === undefined) {
    return [{
      path: "client.server_addr",
      message: "missing required key `server_addr`",
      hint:
        `add server_addr = "tunnel.example.com", or servers = ["a.example.com:8443", "b.example.com:8443"]`,
    }];
  }
  if (!Array.isArray(list)) return [];
  if (list.length === 0) {
    return [{
      path: "client.servers",
      message: "servers is empty",
      hint: `list at least one server, e.g. servers = ["a.example.com:8443"]`,
    }];
  }
  const issues: ConfigIssue[] = [];
  const names = new Map<string, number>();
  const addresses = new Map<string, number>();
  const serverPort = typeof client.server_port === "number" ? client.server_port : defaultPort;
  list.forEach((entry, index) => {
    let addr: string | undefined;
    let entryPort = serverPort;
    let label: string | undefined;
    if (typeof entry === "string") {
      const parsed = parseHostPort(entry);
      if ("host" in parsed) [addr, entryPort] = [parsed.host, parsed.port];
      else if (!entry.includes(":")) addr = entry;
    } else if (typeof entry === "object" && entry !== null && !Array.isArray(entry)) {
      const table = entry as Record<string, unknown>;
      if (typeof table.server_addr === "string") addr = table.server_addr;
      if (typeof table.server_port === "number") entryPort = table.server_port;
      if (typeof table.name === "string") label = table.name;
    }
    if (addr === undefined) return;
    const key = `${addr.toLowerCase()}|${entryPort}`;
    const first = addresses.get(key);
    if (first !== undefined) {
      issues.push({
        path: `client.servers[${index}]`,
        message: `${formatHostPort(addr, entryPort)} is already listed as servers[${first}]`,
        hint: "list every server once; two sessions to one server would replace each other",
      });
    } else addresses.set(key, index);
    label ??= formatHostPort(addr, entryPort);
    const named = names.get(label);
    if (named !== undefined && first === undefined) {
      issues.push({
        path: `client.servers[${index}].name`,
        message: `server name "${label}" is already used by servers[${named}]`,
        hint: "give every server its own name; stats and metrics tell them apart by name",
      });
    } else if (named === undefined) names.set(label, index);
  });
  return issues;
}

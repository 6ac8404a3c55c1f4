/**
 * The `[[proxies]]` keys of groups, the PROXY protocol and limits (README "Groups", "PROXY protocol and
 * limits"): their schemas, the parsing of `bandwidth_limit` ("10MB" → bytes per second) and their
 * cross-key rules.
 *
 * @module
 */

import { z } from "zod";
import type { ConfigIssue } from "./errors.ts";

/** Longest `group_key` (the wire's bound). */
export const GROUP_KEY_MAX_CHARS = 1024;
/** Largest `max_connections` (the wire's bound). */
export const MAX_PROXY_CONNECTIONS = 1_000_000;
/** The PROXY protocol versions a proxy may send to its local service. */
export const PROXY_PROTOCOL_VERSIONS = ["v1", "v2"] as const;

/** Units of `bandwidth_limit`, per second (frp's spelling: KB and MB are 1024-based). */
const BANDWIDTH_UNITS: Readonly<Record<string, number>> = { B: 1, KB: 1024, MB: 1024 * 1024, GB: 1024 ** 3 };
/** Smallest `bandwidth_limit`: below it the token bucket's chunks would be smaller than a packet. */
export const MIN_BANDWIDTH_BYTES_PER_SEC = 1024;
/** Largest `bandwidth_limit` (1 TB per second: beyond it, leave it unset). */
export const MAX_BANDWIDTH_BYTES_PER_SEC = 1024 ** 4;

/**
 * `bandwidth_limit` in bytes per second: a number and a unit, `"10MB"`, `"512KB"`, `"1.5MB"`, `"1GB"`
 * (KB = 1,024 bytes, as frp), or a bare number of bytes. Null when it is not one.
 *
 * @example
 * ```ts
 * import { parseBandwidth } from "./_groups_limits.ts";
 * parseBandwidth("10MB"); // 10485760
 * parseBandwidth("fast"); // null
 * ```
 */
export function parseBandwidth(text: string): number | null {
  const match = /^\s*(\d{1,12}(?:\.\d{1,6})?)\s*(B|KB|MB|GB)?\s*$/i.exec(text);
  if (!match || match[1] === undefined) return null;
  const unit = BANDWIDTH_UNITS[(match[2] ?? "B").toUpperCase()];
  if (unit === undefined) return null;
  return Math.floor(Number(match[1]) * unit);
}

/** `bandwidth_limit`: validated and turned into bytes per second. */
const bandwidthLimit = z.string().max(32).transform((text, ctx) => {
  const bytes = parseBandwidth(text);
  if (bytes === null || bytes < MIN_BANDWIDTH_BYTES_PER_SEC || bytes > MAX_BANDWIDTH_BYTES_PER_SEC) {
    ctx.addIssue({
      code: "custom",
      message: `bandwidth_limit ${JSON.stringify(text)} is not a rate from 1KB to 1024GB per second`,
      params: { hint: 'write a number and a unit, e.g. bandwidth_limit = "10MB" (KB/MB/GB per second)' },
    });
    return z.NEVER;
  }
  return bytes;
});

/** A group name: 1-64 letters, digits, `.`, `_`, `-` (the wire's name). */
const groupName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, {
  message: "a group name is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
});

/** The keys, for `proxySchema`. */
export const groupLimitProxyKeys = {
  /** Serve one published port (tcp) or domain (http/https) together with other clients' proxies. */
  group: groupName.optional(),
  /** The group's shared secret; every member presents the same one. */
  group_key: z.string().min(1).max(GROUP_KEY_MAX_CHARS).optional(),
  /** Prepend a PROXY protocol header (`v1` text, `v2` binary) to each connection to the local service. */
  proxy_protocol: z.enum(PROXY_PROTOCOL_VERSIONS).optional(),
  /** Most bytes per second through the proxy, both directions together (`"10MB"`); absent = unlimited. */
  bandwidth_limit: bandwidthLimit.optional(),
  /** Most outside connections the server carries at once for the proxy; beyond it they are closed. */
  max_connections: z.number().int().min(1).max(MAX_PROXY_CONNECTIONS).optional(),
};

/** The cross-key issues of one `[[proxies]]` entry at `prefix` whose `proxy_type` is `proxyType`. */
export function groupLimitProxyRules(
  proxy: Record<string, unknown>,
  prefix: string,
  proxyType: string | undefined,
): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const has = (key: string) => proxy[key] !== undefined;
  const type = proxyType ?? "tcp";
  if (has("group_key") && !has("group")) {
    issues.push({
      path: `${prefix}.group_key`,
      message: "group_key needs group (the group it is the key of)",
      hint: 'add group = "<name>", or remove group_key',
    });
  }
  if (has("group") && !has("group_key")) {
    issues.push({
      path: `${prefix}.group`,
      message: "group needs group_key, the secret every member of the group presents",
      hint: 'add group_key = "<a long random secret shared by the members>"',
    });
  }
  if (has("group") && type === "udp") {
    issues.push({
      path: `${prefix}.group`,
      message: 'a proxy_type = "udp" proxy cannot be in a group',
      hint: "remove group and group_key",
    });
  }
  const port = proxy["publish_port"];
  if (
    has("group") && type !== "http" && type !== "https" &&
    (port === 0 || port === undefined || has("publish_port_range"))
  ) {
    issues.push({
      path: `${prefix}.group`,
      message:
        "every member of a group publishes the same explicit publish_port (not 0, no publish_port_range)",
      hint: "set publish_port to the group's port on every member",
    });
  }
  if (has("group") && proxy["visibility"] === "private") {
    issues.push({
      path: `${prefix}.group`,
      message: 'a visibility = "private" proxy is not published, so it cannot be in a group',
      hint: "remove group, or make the proxy public",
    });
  }
  if (type === "udp") {
    for (const key of ["proxy_protocol", "bandwidth_limit", "max_connections"]) {
      if (!has(key)) continue;
      issues.push({
        path: `${prefix}.${key}`,
        message: `${key} applies to connections (tcp, http, https); a proxy_type = "udp" proxy has none`,
        hint: key === "max_connections"
          ? "use max_udp_flows to bound a udp proxy"
          : `remove ${key} from this proxy`,
      });
    }
  }
  return issues;
}

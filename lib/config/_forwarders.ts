/**
 * The config tables of the forwarders (issue 15), with the Rust tls-tunnel's keys and meaning:
 * `[[forwarders]]` on the client (a local HTTP or SOCKS5 proxy whose connections leave through the server,
 * or directly by `[forwarders.routing]`), and on the server the switches that allow it (`allow_forward`,
 * `forward_allow_private`, the per-client limit) and `[server.rate_limit]`. `schema.ts` puts these into the
 * role schemas; each key's meaning is documented here, on the key.
 *
 * @module
 */

import { z } from "zod";
import { camelKeys } from "./_camel.ts";
import { bindablePort, bindAddress, cidr, filePath, name, seconds } from "./_fields.ts";
import { DEFAULTS } from "./defaults.ts";
import { addressesOverlap, isHostname } from "../net/address.ts";
import type { ConfigIssue } from "./errors.ts";
import { unsafeCharacter } from "../text.ts";

/** The kinds of local proxy a forwarder runs. */
export const FORWARDER_PROXY_TYPES = ["http", "socks5"] as const;

/** Where a routed connection goes: through the tunnel (`"proxy"`) or from the client itself. */
export const ROUTING_STRATEGIES = ["direct", "proxy"] as const;

/** Most entries of one routing list. */
export const MAX_ROUTING_ENTRIES = 10_000;

/** An ISO 3166-1 alpha-2 country code, any case; reaches the roles in upper case. */
const countryCode = z.string().refine((value) => /^[A-Za-z]{2}$/.test(value), {
  message: "is not a two-letter country code",
  params: { hint: `write ISO 3166-1 alpha-2 codes such as "CN", "HK", "US"` },
}).transform((code) => code.toUpperCase());

/**
 * A domain pattern of `direct_domains`/`proxy_domains`: `"example.com"` (that name only),
 * `"*.example.com"` (the name and every name under it) or `".example.com"` (only names under it).
 */
export const domainPattern = z.string().refine((value) => {
  const bare = value.startsWith("*.") ? value.slice(2) : value.startsWith(".") ? value.slice(1) : value;
  return isHostname(bare);
}, {
  message: "is not a domain pattern",
  params: {
    hint: `write "example.com", "*.example.com" (with its subdomains) or ".example.com" (subdomains only)`,
  },
}).transform((value) => value.toLowerCase());

/** A SOCKS5 user name or password (RFC 1929: 1-255 bytes), printable. */
const credential = z.string().min(1).max(255).refine((value) => unsafeCharacter(value) === null, {
  message: "contains a control character, bidi control or lone surrogate",
  params: { hint: "use printable characters only" },
}).refine((value) => new TextEncoder().encode(value).length <= 255, {
  message: "is longer than 255 bytes (the SOCKS5 limit)",
});

/** `[forwarders.routing]`: which destinations the client connects to itself instead of through the server. */
export const routingSchema = z.strictObject({
  /** MaxMind-format country database (`GeoLite2-Country.mmdb`); without it the country lists match nothing. */
  geoip_db: filePath.optional(),
  /** Countries whose addresses are connected directly. */
  direct_countries: z.array(countryCode).max(300).default([]),
  /** Countries whose addresses go through the server (the default strategy covers the rest). */
  proxy_countries: z.array(countryCode).max(300).default([]),
  /** Addresses and CIDR networks connected directly. */
  direct_ips: z.array(cidr).max(MAX_ROUTING_ENTRIES).default([]),
  /** Addresses and CIDR networks that go through the server. */
  proxy_ips: z.array(cidr).max(MAX_ROUTING_ENTRIES).default([]),
  /** Domain patterns connected directly (checked before every other rule). */
  direct_domains: z.array(domainPattern).max(MAX_ROUTING_ENTRIES).default([]),
  /** Domain patterns that go through the server. */
  proxy_domains: z.array(domainPattern).max(MAX_ROUTING_ENTRIES).default([]),
  /** Where a destination no rule matched goes. */
  default_strategy: z.enum(ROUTING_STRATEGIES).default(DEFAULTS.forwarders.routing.default_strategy),
}).transform((table) => camelKeys(table));

/** One `[[forwarders]]` entry: a local HTTP or SOCKS5 proxy whose connections leave through the server. */
export const forwarderSchema = z.strictObject({
  /** Unique name within the client (logs, stats, and the server's per-forwarder counters). */
  name,
  /** `"http"` (CONNECT and absolute-URI requests) or `"socks5"` (CONNECT). */
  proxy_type: z.enum(FORWARDER_PROXY_TYPES),
  /** Address the local proxy binds: loopback by default, since anyone who reaches it uses the tunnel. */
  bind_addr: bindAddress.default(DEFAULTS.forwarders.bind_addr),
  /** Port the local proxy binds (0: the system picks one, logged at start). */
  bind_port: bindablePort,
  /** With `password`: SOCKS5 user/password authentication, or HTTP `Proxy-Authorization: Basic`. */
  username: credential.optional(),
  /** The password that goes with `username`. */
  password: credential.optional(),
  /** Local connections this forwarder carries at once; more are refused (503 / SOCKS5 0x01). */
  max_connections: z.int().min(1).max(100_000).default(DEFAULTS.forwarders.max_connections),
  /** Routing rules; absent → every connection goes through the server. */
  routing: routingSchema.optional(),
}).transform((table) => camelKeys(table));

/** `[server.rate_limit]` (the Rust tool's keys): token buckets on new connections. */
export const rateLimitSchema = z.strictObject({
  /** New connections per second allowed, sustained (per source address; per client for outside ones). */
  requests_per_second: z.number().positive().max(1_000_000).default(
    DEFAULTS.server.rate_limit.requests_per_second,
  ),
  /** New connections allowed at once after a quiet period. */
  burst_size: z.int().min(1).max(1_000_000).default(DEFAULTS.server.rate_limit.burst_size),
}).transform((table) => camelKeys(table));

/** The server's forwarding keys, spread into `[server]`. */
export const forwardServerKeys = {
  /**
   * Forward clients' `[[forwarders]]` connections to their destinations (the Rust tool's key). Off by
   * default: a forwarding server is an open proxy for whoever holds a key.
   */
  allow_forward: z.boolean().default(DEFAULTS.server.allow_forward),
  /** Also forward to private, loopback, link-local and other internal addresses (SSRF guard off). */
  forward_allow_private: z.boolean().default(DEFAULTS.server.forward_allow_private),
  /** Forwarded connections one client may have open at once; more are refused with `LIMIT`. */
  max_forwards_per_client: z.int().min(1).max(1_000_000).default(DEFAULTS.server.max_forwards_per_client),
  /** Time the server gives a forwarded connection to reach its destination (lookup and connect). */
  forward_connect_timeout_secs: seconds.default(DEFAULTS.server.forward_connect_timeout_secs),
  /** `[server.rate_limit]`; absent → no rate limit. */
  rate_limit: rateLimitSchema.optional(),
};

type Table = Record<string, unknown>;

function asTable(value: unknown): Table | undefined {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Date)
    ? value as Table
    : undefined;
}

/**
 * The rules that relate several keys of `[[forwarders]]` (read from the raw document, like `_rules.ts`):
 * unique names, `username` and `password` together, no two forwarders on one port of overlapping addresses.
 */
export function forwarderRules(document: Table): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const entries = Array.isArray(document.forwarders) ? document.forwarders.map(asTable) : [];
  const names = new Map<string, number>();
  const bindings: { index: number; addr: string; port: number }[] = [];
  entries.forEach((entry, index) => {
    if (entry === undefined) return;
    const prefix = `forwarders[${index}]`;
    const entryName = typeof entry.name === "string" ? entry.name : undefined;
    if (entryName !== undefined) {
      const first = names.get(entryName);
      if (first !== undefined) {
        issues.push({
          path: `${prefix}.name`,
          message: `forwarder name "${entryName}" is already used by forwarders[${first}]`,
          hint:
            "give every [[forwarders]] entry its own name; logs and the server's counters tell them apart by it",
        });
      } else names.set(entryName, index);
    }
    for (const [key, other] of [["username", "password"], ["password", "username"]] as const) {
      if (entry[key] !== undefined && entry[other] === undefined) {
        issues.push({
          path: `${prefix}.${key}`,
          message: `${key} is set without ${other}`,
          hint: `set both username and password (the local proxy then asks for them), or neither`,
        });
      }
    }
    const port = entry.bind_port;
    const addr = entry.bind_addr === undefined ? DEFAULTS.forwarders.bind_addr : entry.bind_addr;
    if (typeof port !== "number" || port === 0 || typeof addr !== "string") return;
    const clash = bindings.find((binding) => binding.port === port && addressesOverlap(binding.addr, addr));
    if (clash !== undefined) {
      issues.push({
        path: `${prefix}.bind_port`,
        message:
          `${addr}:${port} collides with forwarders[${clash.index}], which listens on ${clash.addr}:${clash.port}`,
        hint: "give each forwarder its own bind_port",
      });
    } else bindings.push({ index, addr, port });
  });
  return issues;
}

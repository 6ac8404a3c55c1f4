/**
 * The config keys of HTTP and HTTPS virtual hosts, spread into the server's and the proxies' schemas
 * (`schema.ts`), and the rules that relate them (called from `_rules.ts`): the server's shared ports
 * (`vhost_http_port`, `vhost_https_port`), its `subdomain_host` and `request_timeout_secs`; a proxy's
 * `custom_domains`, `subdomain`, `locations`, `host_header_rewrite`, `http_user`/`http_password`.
 *
 * @module
 */

import { z } from "zod";
import { normalizeDomain } from "../net/sni.ts";
import { bindablePort, bindAddress, seconds } from "./_fields.ts";
import type { ConfigIssue } from "./errors.ts";
import { DEFAULTS } from "./defaults.ts";

/** Defaults of the vhost keys: `DEFAULTS.server`'s (one place for every default). */
export const VHOST_DEFAULTS = {
  vhost_http_addr: DEFAULTS.server.vhost_http_addr,
  vhost_https_addr: DEFAULTS.server.vhost_https_addr,
  request_timeout_secs: DEFAULTS.server.request_timeout_secs,
} as const;

/** A virtual host's name: a DNS name, taken in any letter case and kept in lower case. */
const domain = z.string().transform((text, ctx) => {
  const normalized = normalizeDomain(text);
  if (normalized === null) {
    ctx.addIssue({
      code: "custom",
      message: `${JSON.stringify(text)} is not a DNS host name`,
      params: { hint: `write a name such as "app.example.com" (no scheme, port, path or IP address)` },
    });
    return z.NEVER;
  }
  return normalized;
});

/** `[server]` keys of the shared HTTP and HTTPS ports. */
export const vhostServerKeys = {
  /** Address of the shared HTTP port. */
  vhost_http_addr: bindAddress.default(VHOST_DEFAULTS.vhost_http_addr),
  /** Port on which `proxy_type = "http"` proxies are served by Host; absent → no HTTP vhosts. */
  vhost_http_port: bindablePort.optional(),
  /** Address of the shared HTTPS (SNI-routed) port. */
  vhost_https_addr: bindAddress.default(VHOST_DEFAULTS.vhost_https_addr),
  /** Port on which `proxy_type = "https"` proxies are served by SNI; absent → no HTTPS vhosts. */
  vhost_https_port: bindablePort.optional(),
  /** Domain under which a proxy's `subdomain = "app"` is served as `app.<subdomain_host>`. */
  subdomain_host: domain.optional(),
  /** An HTTP request the client's service has not answered (response head) within this gets a 504. */
  request_timeout_secs: seconds.default(VHOST_DEFAULTS.request_timeout_secs),
};

/** `[[proxies]]` keys of `proxy_type = "http"` and `"https"`. */
export const vhostProxyKeys = {
  /** Host names routed to this proxy (http, https). */
  custom_domains: z.array(domain).max(64).optional(),
  /** Served as `<subdomain>.<server's subdomain_host>` (http, https). */
  subdomain: z.string().regex(/^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$/, {
    error: "must be one DNS label: 1-63 letters, digits or '-'",
  }).transform((label) => label.toLowerCase()).optional(),
  /** Path prefixes routed to this proxy (http; default "/"). */
  locations: z.array(
    z.string().regex(/^\/[\x21-\x7e]{0,255}$/, {
      error: "must start with '/' and hold at most 256 printable ASCII characters without spaces",
    }),
  ).max(64).optional(),
  /** Host header the local service sees instead of the outside one (http). */
  host_header_rewrite: z.string().regex(/^[A-Za-z0-9.\-\[\]:]{1,255}$/, {
    error: "must be a host name or address, optionally with :port",
  }).optional(),
  /** Basic auth user asked of outside requests (http; with http_password). */
  http_user: z.string().min(1).max(256).regex(/^[^:\p{Cc}]+$/u, {
    error: "must be 1-256 characters without ':' or control characters",
  }).optional(),
  /** Basic auth password (http; with http_user). */
  http_password: z.string().min(1).max(256).regex(/^\P{Cc}+$/u, {
    error: "must be 1-256 characters without control characters",
  }).optional(),
};

/** Keys only an http proxy may set. */
const HTTP_ONLY = ["locations", "host_header_rewrite", "http_user", "http_password"] as const;
/** Keys only http and https proxies may set. */
const VHOST_ONLY = ["custom_domains", "subdomain"] as const;

/** Cross-key rules of one `[[proxies]]` entry about the vhost keys; `type` is its `proxy_type`. */
export function vhostProxyRules(
  proxy: Record<string, unknown>,
  prefix: string,
  type: string | undefined,
): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const has = (key: string) => proxy[key] !== undefined;
  const isVhost = type === "http" || type === "https";
  for (const key of [...VHOST_ONLY, ...HTTP_ONLY]) {
    if (!has(key)) continue;
    const allowed = (HTTP_ONLY as readonly string[]).includes(key) ? type === "http" : isVhost;
    if (allowed) continue;
    issues.push({
      path: `${prefix}.${key}`,
      message: `${key} is for ${
        (HTTP_ONLY as readonly string[]).includes(key) ? `proxy_type = "http"` : `http and https proxies`
      }; this proxy's proxy_type is ${JSON.stringify(type ?? "tcp")}`,
      hint: `remove ${key}, or set proxy_type = "http"`,
    });
  }
  if (!isVhost) return issues;
  const domains = proxy.custom_domains;
  if (!has("subdomain") && (!Array.isArray(domains) || domains.length === 0)) {
    issues.push({
      path: `${prefix}.custom_domains`,
      message: `an ${type} proxy needs custom_domains or subdomain: the server routes by host name`,
      hint:
        `add custom_domains = ["app.example.com"], or subdomain = "app" (served under the server's subdomain_host)`,
    });
  }
  if (has("http_user") !== has("http_password")) {
    const missing = has("http_user") ? "http_password" : "http_user";
    issues.push({
      path: `${prefix}.${missing}`,
      message: `http_user and http_password go together; ${missing} is missing`,
      hint: "set both for basic auth, or neither",
    });
  }
  for (const key of ["publish_port", "publish_port_range"]) {
    if (!has(key)) continue;
    issues.push({
      path: `${prefix}.${key}`,
      message: `an ${type} proxy has no port of its own: it is served on the server's vhost_${type}_port`,
      hint: `remove ${key}`,
    });
  }
  return issues;
}

/**
 * Cross-key rules of `[server]` about the vhost ports: neither may be the tunnel's or the stats port,
 * nor the other vhost port, on overlapping addresses. `bindPort` is the tunnel's port as configured.
 */
export function vhostServerRules(
  server: Record<string, unknown>,
  bindPort: number | undefined,
): ConfigIssue[] {
  const port = (key: string) =>
    typeof server[key] === "number" && server[key] !== 0 ? server[key] : undefined;
  const taken = new Map<number, string>();
  if (bindPort !== undefined && bindPort !== 0) taken.set(bindPort, "the tunnel's bind_port");
  const stats = port("stats_port");
  if (stats !== undefined) taken.set(stats, "stats_port");
  const issues: ConfigIssue[] = [];
  for (const key of ["vhost_http_port", "vhost_https_port"]) {
    const value = port(key);
    if (value === undefined) continue;
    const other = taken.get(value);
    if (other !== undefined) {
      issues.push({
        path: `server.${key}`,
        message: `${key} ${value} is also ${other}`,
        hint: `give the ${key === "vhost_http_port" ? "HTTP" : "HTTPS"} vhosts a port of their own, e.g. ${
          key === "vhost_http_port" ? 80 : 443
        }`,
      });
    } else taken.set(value, key);
  }
  return issues;
}

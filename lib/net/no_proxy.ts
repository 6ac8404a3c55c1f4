/**
 * The proxy the environment names, as curl reads it, for a client without `proxy_url`: `https_proxy` or
 * `HTTPS_PROXY` (the tunnel is a TLS connection), else `all_proxy` or `ALL_PROXY` (the lower-case
 * spelling first, as curl does), unless `no_proxy`/`NO_PROXY` lists the server.
 *
 * `NO_PROXY` is a list separated by commas or spaces; each entry is `*` (no proxy for anything), a host
 * name (matching itself and every name under it: `example.com` and `.example.com` both match
 * `example.com` and `www.example.com`, not `notexample.com`), an IP address (`127.0.0.1`, `::1`,
 * `[::1]`), or a CIDR block (`10.0.0.0/8`, `fd00::/8`). Names are compared without letter case and
 * without a trailing dot; nothing is resolved, so `localhost` does not match `127.0.0.1`.
 *
 * @example The server is in NO_PROXY
 * ```ts
 * import { noProxyMatches } from "./no_proxy.ts";
 *
 * console.log(noProxyMatches("localhost,.corp.example,10.0.0.0/8", "tunnel.corp.example")); // true
 * console.log(noProxyMatches("localhost,.corp.example,10.0.0.0/8", "10.1.2.3")); // true
 * console.log(noProxyMatches("localhost,.corp.example,10.0.0.0/8", "203.0.113.9")); // false
 * ```
 *
 * @module
 */

import { isIpv4, isIpv6 } from "./address.ts";
import { ipv6Bytes } from "./proxy_handshake.ts";
import { type OutboundProxy, parseProxyUrl } from "./proxy_url.ts";

/** The variables read for the proxy, in order (curl's order for an https URL). */
export const PROXY_VARIABLES = ["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"] as const;

/** The variables read for the exceptions, in order. */
export const NO_PROXY_VARIABLES = ["no_proxy", "NO_PROXY"] as const;

/** What the environment says about reaching one server. */
export type EnvironmentProxy =
  /** No proxy variable is set. */
  | { readonly kind: "none" }
  /** `variable` names `proxy`. */
  | { readonly kind: "proxy"; readonly proxy: OutboundProxy; readonly variable: string }
  /** A proxy is set, but `variable` (no_proxy/NO_PROXY) lists the server: connect directly. */
  | { readonly kind: "bypass"; readonly variable: string };

/**
 * The proxy the environment names for the server `hostname`.
 *
 * @param env reads one variable; unset and empty read alike
 * @throws {ProxyUrlError} when the proxy variable is malformed (the message names it, credentials masked)
 */
export function proxyFromEnvironment(
  env: (name: string) => string | undefined,
  hostname: string,
): EnvironmentProxy {
  const read = (name: string) => {
    const value = env(name)?.trim();
    return value === undefined || value === "" ? undefined : value;
  };
  const variable = PROXY_VARIABLES.find((name) => read(name) !== undefined);
  if (variable === undefined) return { kind: "none" };
  const noProxyVariable = NO_PROXY_VARIABLES.find((name) => read(name) !== undefined);
  if (noProxyVariable !== undefined && noProxyMatches(read(noProxyVariable) ?? "", hostname)) {
    return { kind: "bypass", variable: noProxyVariable };
  }
  const proxy = parseProxyUrl(read(variable) ?? "", variable, { lenient: true });
  return { kind: "proxy", proxy, variable };
}

/** Longest `NO_PROXY` list read (longer lists are read up to here). */
const MAX_NO_PROXY_CHARS = 64 * 1024;

/** True when the `NO_PROXY` list `list` exempts `hostname` (see the module doc for the rules). */
export function noProxyMatches(list: string, hostname: string): boolean {
  const host = bare(hostname).toLowerCase().replace(/\.$/, "");
  const hostAddress = addressBytes(host);
  for (const raw of list.slice(0, MAX_NO_PROXY_CHARS).split(/[\s,]+/)) {
    const entry = bare(raw).toLowerCase();
    if (entry === "") continue;
    if (entry === "*") return true;
    const slash = entry.indexOf("/");
    if (slash >= 0) {
      if (hostAddress !== null && inBlock(hostAddress, entry.slice(0, slash), entry.slice(slash + 1))) {
        return true;
      }
      continue;
    }
    const entryAddress = addressBytes(entry);
    if (entryAddress !== null || hostAddress !== null) {
      if (entryAddress !== null && hostAddress !== null && sameBytes(entryAddress, hostAddress)) return true;
      continue;
    }
    const name = entry.replace(/^\./, "").replace(/\.$/, "");
    if (name !== "" && (host === name || host.endsWith(`.${name}`))) return true;
  }
  return false;
}

/** `[::1]` → `::1`; anything else unchanged. */
function bare(text: string): string {
  return text.startsWith("[") && text.endsWith("]") ? text.slice(1, -1) : text;
}

/** The bytes of an IPv4 (4) or IPv6 (16) address, or null for anything else. */
function addressBytes(text: string): Uint8Array | null {
  if (isIpv4(text)) return new Uint8Array(text.split(".").map(Number));
  if (isIpv6(text)) return ipv6Bytes(text);
  return null;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, index) => byte === b[index]);
}

/** True when `address` lies in `network/prefixText` (same family; a malformed block matches nothing). */
function inBlock(address: Uint8Array, network: string, prefixText: string): boolean {
  const block = addressBytes(bare(network));
  if (block === null || block.length !== address.length || !/^\d{1,3}$/.test(prefixText)) return false;
  const prefixBits = Number(prefixText);
  if (prefixBits > block.length * 8) return false;
  for (let bit = 0; bit < prefixBits; bit++) {
    const mask = 0x80 >> (bit % 8);
    if (((address[bit >> 3] ?? 0) & mask) !== ((block[bit >> 3] ?? 0) & mask)) return false;
  }
  return true;
}

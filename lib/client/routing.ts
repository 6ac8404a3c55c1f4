/**
 * `[forwarders.routing]`: whether a forwarder's destination is reached through the server (`"proxy"`) or
 * by the client itself (`"direct"`), with the Rust tls-tunnel's rules and order:
 *
 * 1. a host name matching `direct_domains` → direct; matching `proxy_domains` → proxy;
 * 2. an IP address (the destination's, or each address a name resolves to) in `direct_ips` → direct, in
 *    `proxy_ips` → proxy;
 * 3. its country (from the MaxMind-format `geoip_db`, read with `mmdb-lib`) in `direct_countries` → direct,
 *    in `proxy_countries` → proxy;
 * 4. `default_strategy`.
 *
 * A name is resolved (with `Deno.resolveDns` and a deadline, never the blocking resolver) only when an IP
 * or country rule could apply; it goes direct when any of its addresses does, as in the Rust tool. A
 * failed lookup falls to the default strategy.
 *
 * Domain patterns follow what the Rust tool's example config documents: `"example.com"` matches that name
 * only, `"*.example.com"` the name and every name under it, `".example.com"` only names under it. Unlike
 * the Rust code, matching respects label boundaries (`*.example.com` does not match `badexample.com`) and
 * ignores letter case and a trailing dot.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { type CountryResponse, Reader } from "mmdb-lib";
import { isIpAddress, unmapIpv4 } from "../net/address.ts";
import { type Cidr, cidrContains, parseCidr } from "../net/cidr.ts";
import { errorMessage } from "../text.ts";

/** Where a forwarded connection goes. */
export type Route = "direct" | "proxy";

/** The routing rules, as the config gives them (`[forwarders.routing]`). */
export interface RoutingRules {
  /** Path of the country database, if any. */
  geoipDb?: string | undefined;
  /** Upper-case country codes connected directly. */
  directCountries: readonly string[];
  /** Upper-case country codes sent through the server. */
  proxyCountries: readonly string[];
  /** CIDR texts connected directly. */
  directIps: readonly string[];
  /** CIDR texts sent through the server. */
  proxyIps: readonly string[];
  /** Lower-case domain patterns connected directly. */
  directDomains: readonly string[];
  /** Lower-case domain patterns sent through the server. */
  proxyDomains: readonly string[];
  /** Where the rest goes. */
  defaultStrategy: Route;
}

/** A routing decision and the rule that made it (for logs and stats). */
export interface RouteDecision {
  /** Where the connection goes. */
  route: Route;
  /** The rule: `direct_domains "*.qq.com"`, `direct_ips 10.0.0.0/8`, `country CN`, `default_strategy`. */
  rule: string;
  /** The addresses the name resolved to, when it was resolved (a direct connection uses them). */
  addresses?: string[];
}

/** Deadline of the lookup a routing decision makes for a host name. */
export const ROUTING_RESOLVE_TIMEOUT_MS = 3000;

/** The country database could not be read; the message names the file and says what to do. */
export class GeoIpDatabaseError extends Error {
  override name = "GeoIpDatabaseError";
  constructor(
    /** What is wrong with the file. */
    readonly problem: string,
    /** What to do about it. */
    readonly hint: string,
    options?: ErrorOptions,
  ) {
    super(`${problem}; ${hint}`, options);
  }
}

/** Whether `host` matches a `direct_domains`/`proxy_domains` pattern (see the module doc). */
export function domainMatches(host: string, pattern: string): boolean {
  const name = host.toLowerCase().replace(/\.$/, "");
  if (pattern.startsWith("*.")) {
    const suffix = pattern.slice(2);
    return name === suffix || name.endsWith(`.${suffix}`);
  }
  if (pattern.startsWith(".")) return name.endsWith(pattern) && name.length > pattern.length;
  return name === pattern;
}

/** Reads a MaxMind-format database (`.mmdb`) into a country lookup. */
export async function loadCountryDatabase(path: string): Promise<(address: string) => string | null> {
  let reader: Reader<CountryResponse>;
  try {
    const bytes = await Deno.readFile(path);
    reader = new Reader<CountryResponse>(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  } catch (error) {
    throw new GeoIpDatabaseError(
      error instanceof Deno.errors.NotFound
        ? `geoip_db ${path} does not exist (relative paths start at the current directory)`
        : `geoip_db ${path} is not a readable MaxMind database: ${errorMessage(error)}`,
      "download a MaxMind-format country database (GeoLite2-Country.mmdb) and point geoip_db at it, or " +
        "remove geoip_db to route without countries",
      { cause: error },
    );
  }
  return (address) => {
    try {
      const record = reader.get(unmapIpv4(address));
      const code = record?.country?.iso_code ?? record?.registered_country?.iso_code;
      return typeof code === "string" ? code.toUpperCase() : null;
    } catch {
      // An address the database cannot hold (an IPv6 one in an IPv4-only file): no country.
      return null;
    }
  };
}

/** Options of {@linkcode ForwardRouter}. */
export interface ForwardRouterOptions {
  /** The country lookup ({@linkcode loadCountryDatabase}); absent → countries match nothing. */
  countryOf?: ((address: string) => string | null) | undefined;
  /** The resolver (tests replace it); default `Deno.resolveDns`. */
  resolveDns?: (name: string, type: "A" | "AAAA", options: { signal: AbortSignal }) => Promise<string[]>;
  /** Deadline of a lookup. */
  resolveTimeoutMs?: number;
}

/** Decides the route of each forwarded connection by the rules of one forwarder. */
export class ForwardRouter {
  readonly #directIps: Cidr[];
  readonly #proxyIps: Cidr[];
  readonly #resolveDns: NonNullable<ForwardRouterOptions["resolveDns"]>;
  readonly #resolveTimeoutMs: number;

  constructor(readonly rules: RoutingRules, readonly options: ForwardRouterOptions = {}) {
    this.#directIps = rules.directIps.flatMap((text) => parseCidr(text) ?? []);
    this.#proxyIps = rules.proxyIps.flatMap((text) => parseCidr(text) ?? []);
    this.#resolveDns = options.resolveDns ?? ((name, type, opts) => Deno.resolveDns(name, type, opts));
    this.#resolveTimeoutMs = options.resolveTimeoutMs ?? ROUTING_RESOLVE_TIMEOUT_MS;
  }

  /** Loads the rules' `geoip_db` (if any) and returns the router. */
  static async load(rules: RoutingRules, options: ForwardRouterOptions = {}): Promise<ForwardRouter> {
    const countryOf = options.countryOf ??
      (rules.geoipDb !== undefined ? await loadCountryDatabase(rules.geoipDb) : undefined);
    return new ForwardRouter(rules, { ...options, countryOf });
  }

  /** Whether an IP or country rule could apply, so that a name is worth resolving. */
  get #usesAddresses(): boolean {
    return this.#directIps.length > 0 || this.#proxyIps.length > 0 ||
      (this.options.countryOf !== undefined &&
        (this.rules.directCountries.length > 0 || this.rules.proxyCountries.length > 0));
  }

  /** The route of an IP address by the IP and country rules, or null when none matches. */
  routeOfAddress(address: string): RouteDecision | null {
    const direct = this.#directIps.find((network) => cidrContains(network, address));
    if (direct) return { route: "direct", rule: `direct_ips ${direct.text}` };
    const proxy = this.#proxyIps.find((network) => cidrContains(network, address));
    if (proxy) return { route: "proxy", rule: `proxy_ips ${proxy.text}` };
    const country = this.options.countryOf?.(address) ?? null;
    if (country !== null) {
      if (this.rules.directCountries.includes(country)) {
        return { route: "direct", rule: `country ${country}` };
      }
      if (this.rules.proxyCountries.includes(country)) return { route: "proxy", rule: `country ${country}` };
    }
    return null;
  }

  /** The route of `host` (an IP address or a host name). Never rejects: a failed lookup is the default. */
  async decide(host: string): Promise<RouteDecision> {
    const fallback: RouteDecision = { route: this.rules.defaultStrategy, rule: "default_strategy" };
    if (isIpAddress(host)) return this.routeOfAddress(host) ?? fallback;
    const direct = this.rules.directDomains.find((pattern) => domainMatches(host, pattern));
    if (direct !== undefined) return { route: "direct", rule: `direct_domains ${JSON.stringify(direct)}` };
    const proxy = this.rules.proxyDomains.find((pattern) => domainMatches(host, pattern));
    if (proxy !== undefined) return { route: "proxy", rule: `proxy_domains ${JSON.stringify(proxy)}` };
    if (!this.#usesAddresses) return fallback;
    const addresses = await this.#resolve(host);
    let first: RouteDecision | null = null;
    for (const address of addresses) {
      const decision = this.routeOfAddress(address);
      if (decision?.route === "direct") return { ...decision, addresses };
      first ??= decision;
    }
    return { ...(first ?? fallback), addresses };
  }

  async #resolve(host: string): Promise<string[]> {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), this.#resolveTimeoutMs);
    try {
      const answers = await Promise.allSettled([
        this.#resolveDns(host, "A", { signal: controller.signal }),
        this.#resolveDns(host, "AAAA", { signal: controller.signal }),
      ]);
      return answers.flatMap((answer) => answer.status === "fulfilled" ? answer.value : [])
        .filter(isIpAddress);
    } finally {
      clearTimeout(timer);
    }
  }
}

/**
 * The server's virtual hosts: the shared HTTP and HTTPS ports (each only when configured), one router
 * per protocol, and the registration of `http`/`https` proxies onto them. The registrar hands a
 * registered proxy to {@linkcode VhostService.publish}; it answers like a port bind would: accepted
 * (published on the shared port) or rejected with a code and a reason.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { ServerConfig } from "../../config/types.ts";
import { addressesOverlap, formatAddr } from "../../net/address.ts";
import { ProxyRejectCode, type ProxyRejectCodeValue, type ProxySpec } from "../../protocol/control.ts";
import type { VhostSnapshot } from "../../stats/snapshot.ts";
import { VhostHttpServer } from "./http_server.ts";
import { VhostHttpsServer } from "./https_server.ts";
import { VhostRouter } from "./router.ts";
import { VhostStats } from "./stats.ts";
import { type RoutedProxy, type VhostProxyTarget, VhostPublication } from "./target.ts";
import { VhostGroups } from "../group_vhost.ts";
import type { GroupSnapshot } from "../../stats/snapshot.ts";

const logger = getLogger(["tls-tunnel", "server", "vhost"]);

/** Most routes `/api/stats` lists (the count is always whole): keeps the snapshot small. */
const MAX_LISTED_ROUTES = 200;

/** Why a vhost proxy is not published. */
export interface VhostRefusal {
  code: ProxyRejectCodeValue;
  reason: string;
}

/** The vhost settings of the server's config. */
export type VhostConfig = Pick<
  ServerConfig,
  | "vhostHttpAddr"
  | "vhostHttpPort"
  | "vhostHttpsAddr"
  | "vhostHttpsPort"
  | "subdomainHost"
  | "requestTimeoutSecs"
>;

/** The shared vhost ports of one server. */
export class VhostService {
  readonly stats = new VhostStats();
  readonly #routers = {
    http: new VhostRouter<VhostProxyTarget>(),
    https: new VhostRouter<VhostProxyTarget>(),
  };
  #http: VhostHttpServer | null = null;
  #https: VhostHttpsServer | null = null;
  #serving: Promise<void>[] = [];
  /** Groups of clients serving one domain (`group`/`group_key`, `../group_vhost.ts`). */
  readonly #groups = new VhostGroups();

  constructor(readonly config: VhostConfig) {}

  /** Whether the config asks for either port. */
  static wanted(config: VhostConfig): boolean {
    return config.vhostHttpPort !== undefined || config.vhostHttpsPort !== undefined;
  }

  /** Binds the configured ports and starts serving. @throws {BindError} when one cannot be bound */
  listen(): void {
    if (this.config.vhostHttpPort !== undefined && !this.#http) {
      this.#http = new VhostHttpServer({
        hostname: this.config.vhostHttpAddr,
        port: this.config.vhostHttpPort,
        router: this.#routers.http,
        stats: this.stats,
        requestTimeoutMs: this.config.requestTimeoutSecs * 1000,
      });
      this.#serving.push(this.#http.serve());
      logger.info("Serving HTTP vhosts on {addr}", { addr: formatAddr(this.#http.addr) });
    }
    if (this.config.vhostHttpsPort !== undefined && !this.#https) {
      try {
        this.#https = new VhostHttpsServer({
          hostname: this.config.vhostHttpsAddr,
          port: this.config.vhostHttpsPort,
          router: this.#routers.https,
          stats: this.stats,
        });
      } catch (error) {
        void this.#http?.close();
        this.#http = null;
        throw error;
      }
      this.#serving.push(this.#https.serve());
      logger.info("Serving HTTPS vhosts (by SNI) on {addr}", { addr: formatAddr(this.#https.addr) });
    }
  }

  /** The HTTP port's address, once bound. */
  get httpAddr(): Deno.NetAddr | null {
    return this.#http?.addr ?? null;
  }

  /** The HTTPS port's address, once bound. */
  get httpsAddr(): Deno.NetAddr | null {
    return this.#https?.addr ?? null;
  }

  /** Whether `addr:port` is one of the shared ports (for the registrar's reserved-port check). */
  holds(addr: string, port: number): "vhost_http_port" | "vhost_https_port" | null {
    const overlaps = (bound: Deno.NetAddr | undefined, configured: string) =>
      bound !== undefined && bound.port === port && addressesOverlap(addr, configured);
    if (overlaps(this.#http?.addr, this.config.vhostHttpAddr)) return "vhost_http_port";
    if (overlaps(this.#https?.addr, this.config.vhostHttpsAddr)) return "vhost_https_port";
    return null;
  }

  /** The host names a proxy asks for: its custom_domains and its subdomain under `subdomain_host`. */
  hostsOf(spec: ProxySpec): string[] | VhostRefusal {
    const hosts = [...(spec.custom_domains ?? [])];
    if (spec.subdomain !== undefined) {
      if (this.config.subdomainHost === undefined) {
        return {
          code: ProxyRejectCode.invalidProxy,
          reason: `subdomain "${spec.subdomain}" needs the server's subdomain_host, which is not set; ` +
            `use custom_domains, or ask the server's operator to set subdomain_host`,
        };
      }
      hosts.push(`${spec.subdomain}.${this.config.subdomainHost}`);
    }
    if (hosts.length === 0) {
      return {
        code: ProxyRejectCode.invalidProxy,
        reason: `an ${spec.proxy_type} proxy needs custom_domains or subdomain`,
      };
    }
    return hosts;
  }

  /**
   * Puts `proxy` on the shared port of its kind: adds its routes (all or none) and returns the
   * publication to attach to it, or the refusal. A host (and location) another client's proxy serves is
   * refused with `DOMAIN_IN_USE`, unless both are in one group (same `group` and `group_key`): a
   * proxy with `group` joins its group's shared route (`../group_vhost.ts`).
   */
  publish(proxy: RoutedProxy, kind: "http" | "https", client: { clientId: string; name: string }):
    | VhostPublication
    | VhostRefusal {
    const spec = proxy.spec;
    const server = kind === "http" ? this.#http : this.#https;
    if (!server) {
      return {
        code: ProxyRejectCode.invalidProxy,
        reason: `this server serves no ${kind} proxies: its vhost_${kind}_port is not set`,
      };
    }
    if (
      kind === "https" && (spec.locations?.length || spec.http_user !== undefined || spec.host_header_rewrite)
    ) {
      return {
        code: ProxyRejectCode.invalidProxy,
        reason:
          "locations, host_header_rewrite and http_user are for http proxies; an https proxy is routed by SNI only",
      };
    }
    if ((spec.http_user === undefined) !== (spec.http_password === undefined)) {
      return { code: ProxyRejectCode.invalidProxy, reason: "http_user and http_password go together" };
    }
    const hosts = this.hostsOf(spec);
    if (!Array.isArray(hosts)) return hosts;
    const router = this.#routers[kind];
    if (spec.group !== undefined) {
      return this.#groups.publish(proxy, kind, client, hosts, router, server.addr);
    }
    const publication = new VhostPublication(
      proxy,
      client.clientId,
      client.name,
      server.addr,
      (self) => router.remove(self),
    );
    const conflict = router.add(publication, hosts, kind === "http" ? spec.locations ?? [] : []);
    if (conflict === "full") {
      return {
        code: ProxyRejectCode.invalidProxy,
        reason: "this server holds as many vhost routes as it may",
      };
    }
    if (conflict && conflict.group !== undefined) {
      return {
        code: ProxyRejectCode.domainInUse,
        reason: `${conflict.host}${conflict.location === "/" ? "" : conflict.location} is served by group ` +
          `'${conflict.group}'; set group = "${conflict.group}" and its group_key to join it, or pick another domain`,
      };
    }
    if (conflict) {
      const same = conflict.clientName === client.name;
      return {
        code: ProxyRejectCode.domainInUse,
        reason: `${conflict.host}${conflict.location === "/" ? "" : conflict.location} is served by proxy ` +
          `'${conflict.proxyName}' of ${same ? "this client" : `client '${conflict.clientName}'`}; ` +
          `pick another domain${kind === "http" ? " or location" : ""}`,
      };
    }
    return publication;
  }

  /** The counters for the stats endpoint. */
  snapshot(): VhostSnapshot {
    return this.stats.snapshot({
      http: this.#http ? formatAddr(this.#http.addr) : null,
      https: this.#https ? formatAddr(this.#https.addr) : null,
      routes: this.#routers.http.size + this.#routers.https.size,
      routeList: (["http", "https"] as const).flatMap((kind) =>
        this.#routers[kind].list(MAX_LISTED_ROUTES).map((route) => ({
          kind,
          host: route.host,
          location: route.location,
          client: route.target.clientName,
          proxy: route.target.proxyName,
          ...(route.target.group !== undefined ? { group: route.target.group } : {}),
        }))
      ).slice(0, MAX_LISTED_ROUTES),
    });
  }

  /** The vhost groups and their members, for the stats endpoint. */
  groupsSnapshot(): GroupSnapshot[] {
    return this.#groups.snapshot();
  }

  /** Closes both ports and their connections. */
  async close(): Promise<void> {
    await Promise.all([this.#http?.close(), this.#https?.close()]);
    await Promise.all(this.#serving);
  }
}

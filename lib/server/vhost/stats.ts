/**
 * Counters of the shared vhost ports: HTTP requests by virtual host and status, the 503s for hosts no
 * tunnel serves and the 504s for requests not answered in time, HTTPS connections routed and refused.
 * Bounded: at most {@linkcode MAX_COUNTED_VHOSTS} host names get counters of their own (only routed
 * ones; a request for an unknown host counts under `""`), the rest share `"(other)"`.
 *
 * @module
 */

import type { VhostRouteSnapshot, VhostSnapshot } from "../../stats/snapshot.ts";

export type { VhostSnapshot };

/** Host names with counters of their own; beyond it they share `"(other)"`. */
export const MAX_COUNTED_VHOSTS = 1024;

/** Live vhost counters. */
export class VhostStats {
  readonly #requests = new Map<string, Map<number, number>>();
  readonly #https = new Map<string, number>();
  noTunnelTotal = 0;
  timeoutsTotal = 0;
  httpsRefusedTotal = 0;

  #key(map: Map<string, unknown>, host: string): string {
    return map.has(host) || map.size < MAX_COUNTED_VHOSTS ? host : "(other)";
  }

  /** One HTTP request answered with `status`; `host` is the routed host, or null when none matched. */
  request(host: string | null, status: number): void {
    const key = this.#key(this.#requests, host ?? "");
    let byStatus = this.#requests.get(key);
    if (!byStatus) {
      byStatus = new Map();
      this.#requests.set(key, byStatus);
    }
    byStatus.set(status, (byStatus.get(status) ?? 0) + 1);
    if (status === 504) this.timeoutsTotal++;
  }

  /** One HTTPS connection routed to `host`. */
  httpsRouted(host: string): void {
    const key = this.#key(this.#https, host);
    this.#https.set(key, (this.#https.get(key) ?? 0) + 1);
  }

  /** The counters in the stats endpoint's form. */
  snapshot(
    addrs: { http: string | null; https: string | null; routes: number; routeList?: VhostRouteSnapshot[] },
  ): VhostSnapshot {
    const requests: VhostSnapshot["http_requests"] = [];
    for (const [host, byStatus] of [...this.#requests].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)) {
      for (const [status, count] of [...byStatus].sort(([a], [b]) => a - b)) {
        requests.push({ host, status, count });
      }
    }
    return {
      http_addr: addrs.http,
      https_addr: addrs.https,
      routes: addrs.routes,
      ...(addrs.routeList !== undefined ? { route_list: addrs.routeList } : {}),
      http_requests: requests,
      http_no_tunnel_total: this.noTunnelTotal,
      http_timeouts_total: this.timeoutsTotal,
      https_connections: [...this.#https].sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)
        .map(([host, count]) => ({ host, count })),
      https_refused_total: this.httpsRefusedTotal,
    };
  }
}

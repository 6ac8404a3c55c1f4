/**
 * Groups of clients serving one domain on a shared vhost port (README "Groups"): `http`/`https` proxies
 * that name the same `group` with the same `group_key` share one route target, a
 * {@linkcode VhostGroupTarget}. The route is added when the first member joins and removed when the last
 * leaves; each request's stream (`http`) or each connection (`https`) goes to one live member by the
 * group's `lb_policy` (`lib/balance.ts`), skipping unhealthy members unless all are. Members must ask for
 * the same routing (hosts, locations, host_header_rewrite, basic auth): a route has one meaning.
 *
 * @module
 */

import { type BalancePolicy, BalanceRotation } from "../balance.ts";
import { formatAddr, hostOfHostPort } from "../net/address.ts";
import type { DuplexConn } from "../net/conn.ts";
import { ProxyRejectCode, type ProxySpec } from "../protocol/control.ts";
import { ProxyStats } from "../stats/proxy_stats.ts";
import type { GroupSnapshot } from "../stats/snapshot.ts";
import { secretsEqual } from "../text.ts";
import { GROUP_PROBE_INTERVAL_MS } from "./groups.ts";
import type { OutsideConn } from "./proxy_kinds/kind.ts";
import type { VhostRouter } from "./vhost/router.ts";
import type { VhostRefusal } from "./vhost/service.ts";
import { type RoutedProxy, type VhostProxyTarget, VhostPublication } from "./vhost/target.ts";

/** The routing a proxy asks for, as one comparable string (members must agree on it). */
function routingOf(spec: ProxySpec, hosts: readonly string[]): string {
  return JSON.stringify([
    [...new Set(hosts)].sort(),
    [...new Set(spec.locations ?? [])].sort(),
    spec.host_header_rewrite ?? null,
    spec.http_user ?? null,
    spec.http_password ?? null,
  ]);
}

/** One group's route target: picks a member per request (`http`) or connection (`https`). */
export class VhostGroupTarget implements VhostProxyTarget {
  readonly #members: VhostPublication[] = [];
  readonly #rotation = new BalanceRotation();
  /** When each member last got a probe while marked unhealthy by failed connections (ms since epoch). */
  readonly #lastProbeMs = new WeakMap<VhostPublication, number>();
  /** Bytes of the group's requests (the members count their streams; the vhost server counts bytes here). */
  readonly stats = new ProxyStats();
  /** Streams and connections handed to a member since the group formed. */
  connectionsTotal = 0;
  /** Requests or connections no member could take. */
  refusedTotal = 0;

  constructor(
    readonly name: string,
    readonly key: string,
    readonly kind: "http" | "https",
    readonly policy: BalancePolicy,
    /** The routing every member asks for ({@linkcode routingOf}). */
    readonly routing: string,
    readonly hosts: readonly string[],
    readonly addr: Deno.NetAddr,
    /** The spec of the member that formed the group: routing fields are the same for all. */
    readonly firstSpec: ProxySpec,
    /** The clock for probes (ms since epoch); tests pass a fake one. */
    readonly nowMs: () => number = Date.now,
  ) {
    this.stats.setStatus("healthy");
  }

  /** Routes of another client see this as the group. */
  get clientId(): string {
    return `\u0000group\u0000${this.name}`;
  }

  /** For refusals: the group, not a client. */
  get clientName(): string {
    return `group '${this.name}'`;
  }

  /** The group's name. */
  get proxyName(): string {
    return this.name;
  }

  /** The group stands for this group. */
  get group(): string {
    return this.name;
  }

  /** The routing fields (same for every member). */
  get spec(): ProxySpec {
    return this.#members[0]?.spec ?? this.firstSpec;
  }

  /** The members now. */
  get members(): readonly VhostPublication[] {
    return this.#members;
  }

  /** True when no member can take a request now. */
  get unavailable(): boolean {
    return this.#members.every((member) => member.unavailable);
  }

  /** Adds a member. */
  add(member: VhostPublication): void {
    this.#members.push(member);
  }

  /** Removes a member; returns how many are left. */
  remove(member: VhostPublication): number {
    const index = this.#members.indexOf(member);
    if (index >= 0) this.#members.splice(index, 1);
    return this.#members.length;
  }

  /**
   * The member for a new request or connection from `peer` ("host:port"), or null. A member marked
   * unhealthy by failed connections gets one as a probe every {@linkcode GROUP_PROBE_INTERVAL_MS} (as
   * in a tcp group).
   */
  pick(peer: string): VhostPublication | null {
    const live = this.#members.filter((member) => !member.unavailable);
    const healthy = live.filter((member) => member.stats.status !== "unhealthy");
    if (healthy.length > 0 && healthy.length < live.length) {
      const now = this.nowMs();
      const probe = live.find((member) =>
        member.stats.status === "unhealthy" &&
        now - Math.max(
                this.#lastProbeMs.get(member) ?? Number.NEGATIVE_INFINITY,
                member.stats.statusSinceMs,
              ) >=
          GROUP_PROBE_INTERVAL_MS
      );
      if (probe) {
        this.#lastProbeMs.set(probe, now);
        return probe;
      }
    }
    const pool = healthy.length > 0 ? healthy : live;
    const order = this.#rotation.plan(
      pool.length,
      this.policy,
      hostOfHostPort(peer),
      (index) => pool[index]?.stats.activeConnections ?? 0,
    );
    const first = order[0];
    return first === undefined ? null : pool[first] ?? null;
  }

  /** Opens a stream to the member picked for `peer` (counted there); rejects when no member is available. */
  openRoutedStream(peer: string): Promise<{ stream: DuplexConn & { reset?(): void }; done: () => void }> {
    const member = this.pick(peer);
    if (!member) {
      this.refusedTotal++;
      return Promise.reject(new Error(`no member of group '${this.name}' is available`));
    }
    this.connectionsTotal++;
    return member.openRoutedStream(peer);
  }

  /** Hands an https connection to the member picked for its peer; false (counted) when none takes it. */
  deliver(conn: OutsideConn): boolean {
    const member = this.pick(formatAddr(conn.remoteAddr));
    if (member?.deliver(conn)) {
      this.connectionsTotal++;
      return true;
    }
    this.refusedTotal++;
    return false;
  }

  /** The group for the stats endpoint. */
  snapshot(): GroupSnapshot {
    return {
      name: this.name,
      kind: this.kind,
      publish_addr: formatAddr(this.addr),
      hosts: [...this.hosts],
      lb_policy: this.policy,
      connections_total: this.connectionsTotal,
      refused_total: this.refusedTotal,
      members: this.#members.map((member) => ({
        client: member.clientName,
        proxy: member.proxyName,
        healthy: !member.unavailable && member.stats.status !== "unhealthy",
        active_connections: member.stats.activeConnections,
      })),
    };
  }
}

/** The vhost groups of one server, by kind and name. */
export class VhostGroups {
  readonly #groups = new Map<string, VhostGroupTarget>();

  /**
   * Joins `proxy` (whose spec has `group`) to its group on `router`, forming the group (and adding its
   * routes) when it is the first member. Returns the member's publication, or the refusal: another key,
   * other routing than the group's, or routes another proxy or group holds.
   */
  publish(
    proxy: RoutedProxy,
    kind: "http" | "https",
    client: { clientId: string; name: string },
    hosts: readonly string[],
    router: VhostRouter<VhostProxyTarget>,
    addr: Deno.NetAddr,
  ): VhostPublication | VhostRefusal {
    const spec = proxy.spec;
    const name = spec.group ?? spec.name;
    const mapKey = `${kind}\u0000${name}`;
    const routing = routingOf(spec, hosts);
    let group = this.#groups.get(mapKey);
    if (group) {
      if (!secretsEqual(spec.group_key ?? "", group.key)) {
        return {
          code: ProxyRejectCode.domainInUse,
          reason: `group_key does not match ${kind} group '${name}' (serving ${group.hosts.join(", ")}); ` +
            `use the key its members share`,
        };
      }
      if (routing !== group.routing) {
        return {
          code: ProxyRejectCode.domainInUse,
          reason: `${kind} group '${name}' serves ${group.hosts.join(", ")}; every member must ask for the ` +
            `same custom_domains/subdomain, locations, host_header_rewrite and http_user/http_password`,
        };
      }
    } else {
      group = new VhostGroupTarget(
        name,
        spec.group_key ?? "",
        kind,
        spec.lb_policy ?? "round_robin",
        routing,
        [...new Set(hosts)].sort(),
        addr,
        spec,
      );
      const conflict = router.add(group, hosts, kind === "http" ? spec.locations ?? [] : []);
      if (conflict === "full") {
        return {
          code: ProxyRejectCode.invalidProxy,
          reason: "this server holds as many vhost routes as it may",
        };
      }
      if (conflict) {
        return {
          code: ProxyRejectCode.domainInUse,
          reason:
            `${conflict.host}${conflict.location === "/" ? "" : conflict.location} is served by proxy ` +
            `'${conflict.proxyName}' of client '${conflict.clientName}', which is not in group '${name}'; ` +
            `pick another domain`,
        };
      }
      this.#groups.set(mapKey, group);
    }
    const target = group;
    const member = new VhostPublication(proxy, client.clientId, client.name, addr, (self) => {
      if (target.remove(self) > 0) return;
      router.remove(target);
      if (this.#groups.get(mapKey) === target) this.#groups.delete(mapKey);
    });
    target.add(member);
    return member;
  }

  /** Every vhost group, for the stats endpoint. */
  snapshot(): GroupSnapshot[] {
    return [...this.#groups.values()].map((group) => group.snapshot());
  }
}

/**
 * Groups of clients serving one published TCP port (README "Groups"): proxies of several clients that
 * name the same `group` with the same `group_key` share one listener per (publish_addr, publish_port).
 * The listener belongs to the group, not to a session: the first member binds it, every member's
 * {@linkcode PublishedProxy} gets a {@linkcode GroupMembership} as its publication, and the port is
 * freed when the last member leaves (its session ends, it is unregistered, revoked). Each new outside
 * connection goes to one live member, by the group's `lb_policy` (`lib/balance.ts`, the same picking as a
 * client's local backends), skipping members whose proxy is unhealthy unless all are; the member's own
 * accept loop then carries it (its limits, counters and stream header apply as for a proxy of its own).
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { type BalancePolicy, BalanceRotation } from "../balance.ts";
import { acceptEach } from "../net/accept.ts";
import { addressesOverlap, formatAddr, hostOfHostPort } from "../net/address.ts";
import type { ProxySpec } from "../protocol/control.ts";
import type { ProxyStats } from "../stats/proxy_stats.ts";
import type { GroupSnapshot } from "../stats/snapshot.ts";
import { secretsEqual } from "../text.ts";
import { abortQuietly } from "../transport/pipe.ts";
import { HandedConnections } from "./handed_connections.ts";
import type { OutsideConn, PublishedListener } from "./proxy_kinds/kind.ts";

const logger = getLogger(["tls-tunnel", "server", "group"]);

/**
 * How often a member marked unhealthy by failed connections (not by its client's health check) gets one
 * connection as a probe: only a connection that reaches its service can mark it healthy again, and a
 * member that is always skipped would never get one. (A health check reports recovery by itself.)
 */
export const GROUP_PROBE_INTERVAL_MS = 5_000;

/** What a group needs of a member's proxy (a `PublishedProxy`). */
export interface GroupMemberProxy {
  /** The proxy as registered. */
  readonly spec: ProxySpec;
  /** Its counters: `activeConnections` for least_connections, `status` for health. */
  readonly stats: ProxyStats;
  /** The owning client's name. */
  readonly clientName: string;
  /** Whether the proxy was stopped. */
  readonly stopped: boolean;
  /** Whether the client reported its local service down. */
  readonly refuseConnections: boolean;
}

/** Whether `proxy` counts as healthy for picking: not refusing and not marked unhealthy. */
function healthy(proxy: GroupMemberProxy): boolean {
  return !proxy.refuseConnections && proxy.stats.status !== "unhealthy";
}

/**
 * One member's place in a group: the publication its proxy attaches (`PublishedProxy.attach`), which
 * yields the outside connections the group hands it. Closing it (the proxy stops) leaves the group; when it
 * was the last member, its pending `accept()` rejects only once the group's port is free, so the proxy's
 * `stop()`/`stopListening()` resolve with the port released, as for a port of its own.
 */
export class GroupMembership implements PublishedListener {
  /** Connections the group handed this member, for its accept loop. */
  readonly #handed = new HandedConnections();
  /** Resolves once the group no longer needs this member (and, if it was the last, the port is free). */
  #left: Promise<void> = Promise.resolve();
  /** When this member last got a probe connection while unhealthy (ms since epoch, the group's clock). */
  lastProbeMs = Number.NEGATIVE_INFINITY;

  constructor(readonly group: PublishedGroup, readonly proxy: GroupMemberProxy) {}

  /** The group's bound address. */
  get addr(): Deno.NetAddr {
    return this.group.addr;
  }

  /** Whether this member left. */
  get closed(): boolean {
    return this.#handed.closed;
  }

  /** Hands `conn` to this member's accept loop; false when it left or its queue is full. */
  deliver(conn: OutsideConn): boolean {
    return this.#handed.deliver(conn);
  }

  /** The next connection the group handed this member. */
  accept(): Promise<OutsideConn> {
    return this.#handed.accept(() => this.#left.then(() => Promise.reject(closedError())));
  }

  /** Leaves the group; connections queued for this member go to the others (or are reset). */
  close(): void {
    if (this.#handed.closed) return;
    const { queued, rejectWaiting } = this.#handed.close();
    this.#left = this.group.leave(this);
    for (const conn of queued) this.group.dispatch(conn, true);
    if (rejectWaiting) void this.#left.then(() => rejectWaiting(closedError()));
  }
}

function closedError(): Error {
  return new Deno.errors.BadResource("the group membership is closed");
}

/** A group's port, its members and how it spreads connections over them. */
export class PublishedGroup {
  readonly #members: GroupMembership[] = [];
  readonly #rotation = new BalanceRotation();
  readonly #loop: Promise<void>;
  #closed = false;
  /** Outside connections accepted on the group's port since it was bound. */
  connectionsTotal = 0;
  /** Outside connections reset because no member could take them. */
  refusedTotal = 0;

  constructor(
    /** The group's name (`group`). */
    readonly name: string,
    /** The shared secret every member presents. */
    readonly key: string,
    /** `publish_addr` as the first member asked for it: members must ask for the same. */
    readonly publishAddr: string,
    /** How new connections are spread (the first member's `lb_policy`). */
    readonly policy: BalancePolicy,
    readonly listener: PublishedListener,
    /** Called once when the last member left and the listener is closed. */
    readonly onEmpty: (group: PublishedGroup) => void,
    /** The clock for probes (ms since epoch, as a proxy's `statusSinceMs`); tests pass a fake one. */
    readonly nowMs: () => number = Date.now,
  ) {
    this.#loop = acceptEach(listener, (conn) => this.dispatch(conn), {
      stopped: () => this.#closed,
      onError: (error) =>
        logger.warn("Accept on group {group} failed: {error}", { group: name, error: String(error) }),
    });
  }

  /** The bound address. */
  get addr(): Deno.NetAddr {
    return this.listener.addr;
  }

  /** Whether the port was released (the last member left). */
  get closed(): boolean {
    return this.#closed;
  }

  /** The members now, in joining order. */
  get members(): readonly GroupMembership[] {
    return this.#members;
  }

  /**
   * Why `spec` (of another client, asking for this group's binding) may not join, or null when it may:
   * another group, a different key, or another publish_addr. The reason names the group.
   */
  refusal(spec: ProxySpec): string | null {
    const where = formatAddr(this.addr);
    if (spec.group !== this.name) {
      return spec.group === undefined
        ? `Port ${this.addr.port} on ${where} is served by group '${this.name}'; to join it set group = ` +
          `"${this.name}" and its group_key, else pick another publish_port`
        : `Port ${this.addr.port} on ${where} is served by group '${this.name}', not '${spec.group}'; ` +
          `pick another publish_port or join group '${this.name}'`;
    }
    if (!secretsEqual(spec.group_key ?? "", this.key)) {
      return `group_key does not match group '${this.name}' on ${where}; use the key its members share`;
    }
    if (spec.publish_addr !== this.publishAddr) {
      return `group '${this.name}' listens on ${where}; its members must use publish_addr = ` +
        `"${this.publishAddr}"`;
    }
    return null;
  }

  /** Adds a member; the caller attaches the returned publication to `proxy`. */
  join(proxy: GroupMemberProxy): GroupMembership {
    const membership = new GroupMembership(this, proxy);
    if (this.#closed) membership.close();
    else this.#members.push(membership);
    return membership;
  }

  /**
   * Removes `membership`; when it was the last, closes the listener. Resolves once the group's accept loop
   * has ended in that case (the port is free then), at once otherwise.
   */
  leave(membership: GroupMembership): Promise<void> {
    const index = this.#members.indexOf(membership);
    if (index >= 0) this.#members.splice(index, 1);
    if (this.#members.length > 0 || this.#closed) return this.#closed ? this.#loop : Promise.resolve();
    this.#closed = true;
    try {
      this.listener.close();
    } catch {
      // Already closed.
    }
    this.onEmpty(this);
    logger.info("Group {group} has no member left; released {addr}", {
      group: this.name,
      addr: formatAddr(this.addr),
    });
    return this.#loop;
  }

  /**
   * The member a new connection from `peerHost` goes to: the policy's pick among the live, healthy
   * members (among all live ones when none is healthy), or null when none is live. A member marked
   * unhealthy by failed connections gets one as a probe every {@linkcode GROUP_PROBE_INTERVAL_MS}.
   */
  pick(peerHost: string): GroupMembership | null {
    const live = this.#members.filter((member) => !member.closed && !member.proxy.stopped);
    const healthyOnes = live.filter((member) => healthy(member.proxy));
    if (healthyOnes.length > 0 && healthyOnes.length < live.length) {
      const now = this.nowMs();
      const probe = live.find((member) =>
        !member.proxy.refuseConnections && member.proxy.stats.status === "unhealthy" &&
        // The interval counts from the mark, then from the last probe.
        now - Math.max(member.lastProbeMs, member.proxy.stats.statusSinceMs) >= GROUP_PROBE_INTERVAL_MS
      );
      if (probe) {
        probe.lastProbeMs = now;
        return probe;
      }
    }
    const pool = healthyOnes.length > 0 ? healthyOnes : live;
    const order = this.#rotation.plan(
      pool.length,
      this.policy,
      peerHost,
      (index) => pool[index]?.proxy.stats.activeConnections ?? 0,
    );
    for (const index of order) {
      const member = pool[index];
      if (member) return member;
    }
    return null;
  }

  /**
   * Hands an outside connection to a member, or resets it (counted) when none can take it. `again`: a
   * leaving member's queued connection, counted when it was first accepted.
   */
  dispatch(conn: OutsideConn, again = false): void {
    if (!again) this.connectionsTotal++;
    const peerHost = hostOfHostPort(formatAddr(conn.remoteAddr));
    // The pick first; a member whose queue is full (its accept loop is behind) passes to the next.
    for (let attempt = 0; attempt < this.#members.length; attempt++) {
      const member = this.pick(peerHost);
      if (member === null) break;
      if (member.deliver(conn)) return;
    }
    this.refusedTotal++;
    abortQuietly(conn);
  }

  /** The group for the stats endpoint. */
  snapshot(): GroupSnapshot {
    return {
      name: this.name,
      kind: "tcp",
      publish_addr: formatAddr(this.addr),
      lb_policy: this.policy,
      connections_total: this.connectionsTotal,
      refused_total: this.refusedTotal,
      members: this.#members.map((member) => ({
        client: member.proxy.clientName,
        proxy: member.proxy.spec.name,
        healthy: healthy(member.proxy),
        active_connections: member.proxy.stats.activeConnections,
      })),
    };
  }
}

/** Every group of one server (TCP ports; vhost groups are the vhost service's). */
export class GroupRegistry {
  readonly #groups = new Set<PublishedGroup>();

  /** @param nowMs the clock of the groups' probes (ms); tests pass a fake one */
  constructor(readonly nowMs: () => number = Date.now) {}

  /** The group whose binding overlaps `addr:port`, or null. */
  at(addr: string, port: number): PublishedGroup | null {
    if (port === 0) return null;
    for (const group of this.#groups) {
      if (!group.closed && group.addr.port === port && addressesOverlap(group.publishAddr, addr)) {
        return group;
      }
    }
    return null;
  }

  /** Makes a group on a bound `listener` for its first member's `spec` (which has `group`). */
  create(spec: ProxySpec, listener: PublishedListener): PublishedGroup {
    const group = new PublishedGroup(
      spec.group ?? spec.name,
      spec.group_key ?? "",
      spec.publish_addr,
      spec.lb_policy ?? "round_robin",
      listener,
      (empty) => this.#groups.delete(empty),
      this.nowMs,
    );
    this.#groups.add(group);
    return group;
  }

  /** Groups holding a port now. */
  get size(): number {
    return this.#groups.size;
  }

  /** Every group, for the stats endpoint. */
  snapshot(): GroupSnapshot[] {
    return [...this.#groups].map((group) => group.snapshot());
  }
}

/**
 * Why `spec` cannot be a group member at all (before any port is looked at), or null: `group_key` without
 * `group` or the reverse, a `udp` or private proxy, no explicit `publish_port` for a `tcp` one.
 */
export function groupSpecProblem(spec: ProxySpec): string | null {
  if (spec.group === undefined) {
    return spec.group_key !== undefined ? "group_key needs group (the group it is the key of)" : null;
  }
  if (spec.group_key === undefined) {
    return `group '${spec.group}' needs group_key, the secret every member presents`;
  }
  if (spec.proxy_type === "udp") return `group '${spec.group}': a udp proxy cannot be in a group`;
  if ((spec.visibility ?? "public") === "private") {
    return `group '${spec.group}': a private proxy is not published, so it cannot be in a group`;
  }
  if (spec.proxy_type === "tcp" && (spec.publish_port === 0 || spec.publish_port_range !== undefined)) {
    return `group '${spec.group}': every member publishes one explicit publish_port (no 0, no publish_port_range)`;
  }
  return null;
}

/**
 * The server-wide virtual-host router: which proxy serves a host name (and, for HTTP, a path prefix).
 * Registration adds a proxy's routes in one step or not at all; they are removed when the proxy stops
 * (its session ends, the client leaves). A host name (with location, for HTTP) is served by one client:
 * another client asking for it is refused (`DOMAIN_IN_USE`). Several clients serve one domain as a group:
 * the route's target is then the group's (`../group_vhost.ts`), which picks a member per request.
 *
 * @module
 */

/** What a route leads to: the proxy, with the name of its client (for refusals and stats). */
export interface VhostTarget {
  /** The owning client's id: routes of one client never conflict with another's silently. */
  readonly clientId: string;
  /** The owning client's name, for messages. */
  readonly clientName: string;
  /** The proxy's name, for messages. */
  readonly proxyName: string;
  /** Set on a group's shared target (`../group_vhost.ts`): the group's name. */
  readonly group?: string;
}

/** One route: a host name and a path prefix ("/" for every path; always "/" for HTTPS). */
export interface VhostRoute<T extends VhostTarget> {
  readonly host: string;
  readonly location: string;
  readonly target: T;
}

/** A route asked for is served by a proxy of another client. */
export interface VhostConflict {
  host: string;
  location: string;
  clientName: string;
  proxyName: string;
  /** The group holding the route, when a group does. */
  group?: string;
}

/** Most routes one router holds (a bound on what clients can make the server keep). */
export const MAX_VHOST_ROUTES = 65_536;

/**
 * Routes by host name, then by the longest location that prefixes the path. A location `/api` matches
 * `/api`, `/api/…` and `/api?…`, not `/apis`; a location ending in `/` matches every path under it.
 */
export class VhostRouter<T extends VhostTarget> {
  /** Per host: its routes, longest location first. */
  readonly #hosts = new Map<string, VhostRoute<T>[]>();
  #count = 0;

  /** Routes held now. */
  get size(): number {
    return this.#count;
  }

  /** Host names served now, sorted. */
  hosts(): string[] {
    return [...this.#hosts.keys()].sort();
  }

  /**
   * Adds the routes of `target` for every `host` × `location`, or none: returns the first conflict (a
   * route of another target) and adds nothing then. A route the same target already holds is kept.
   * Returns "full" when the router would exceed {@linkcode MAX_VHOST_ROUTES}.
   */
  add(target: T, hosts: readonly string[], locations: readonly string[]): VhostConflict | "full" | null {
    const wanted: { host: string; location: string }[] = [];
    for (const host of new Set(hosts)) {
      for (const location of new Set(locations.length > 0 ? locations : ["/"])) {
        const existing = this.#hosts.get(host)?.find((route) => route.location === location);
        if (existing && existing.target !== target) {
          return {
            host,
            location,
            clientName: existing.target.clientName,
            proxyName: existing.target.proxyName,
            ...(existing.target.group !== undefined ? { group: existing.target.group } : {}),
          };
        }
        if (!existing) wanted.push({ host, location });
      }
    }
    if (this.#count + wanted.length > MAX_VHOST_ROUTES) return "full";
    for (const { host, location } of wanted) {
      const routes = this.#hosts.get(host) ?? [];
      routes.push({ host, location, target });
      routes.sort((a, b) => b.location.length - a.location.length);
      this.#hosts.set(host, routes);
      this.#count++;
    }
    return null;
  }

  /** Removes every route of `target`; returns how many there were. */
  remove(target: T): number {
    let removed = 0;
    for (const [host, routes] of this.#hosts) {
      const kept = routes.filter((route) => route.target !== target);
      removed += routes.length - kept.length;
      if (kept.length === 0) this.#hosts.delete(host);
      else if (kept.length !== routes.length) this.#hosts.set(host, kept);
    }
    this.#count -= removed;
    return removed;
  }

  /** The route serving `host` and `path` (a request target's path, query allowed), or null. */
  match(host: string, path = "/"): VhostRoute<T> | null {
    const routes = this.#hosts.get(host);
    if (!routes) return null;
    for (const route of routes) {
      if (locationMatches(route.location, path)) return route;
    }
    return null;
  }

  /** Up to `max` routes, by host then longest location first (the stats endpoint's list). */
  list(max: number): VhostRoute<T>[] {
    const out: VhostRoute<T>[] = [];
    for (const host of this.hosts()) {
      for (const route of this.#hosts.get(host) ?? []) {
        if (out.length >= max) return out;
        out.push(route);
      }
    }
    return out;
  }

  /** Whether any route serves `host`. */
  serves(host: string): boolean {
    return this.#hosts.has(host);
  }
}

/** Whether `location` prefixes `path` at a segment boundary. */
export function locationMatches(location: string, path: string): boolean {
  if (location === "/" || path === location) return true;
  if (!path.startsWith(location)) return false;
  if (location.endsWith("/")) return true;
  const next = path[location.length];
  return next === "/" || next === "?" || next === "#";
}

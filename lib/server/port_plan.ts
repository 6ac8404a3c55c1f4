/**
 * Which ports to try, in order, for a proxy: the port it had last time (sticky), the one it asked for,
 * the rest of its range, and the system's choice as a last resort.
 *
 * @module
 */

import type { PortRange } from "../config/types.ts";

/** What decides the candidates. */
export interface PortRequest {
  /** The port asked for; 0 = no preference. */
  publishPort: number;
  /** Range to search. */
  range?: PortRange;
  /** Take a system-picked port when nothing else binds. */
  fallbackToSystemPort: boolean;
  /** The port this client's proxy of the same name had last, if remembered. */
  stickyPort?: number;
  /**
   * The ports this client may publish. When given, "let the system pick" is followed by the ports of
   * these ranges, for when the system's pick falls outside them (e.g. `allow_ports` excludes the
   * ephemeral range).
   */
  allowPorts?: PortRange[];
}

/** Most ports of a range tried for one registration, so a huge range cannot stall the control stream. */
export const MAX_RANGE_CANDIDATES = 4096;

/**
 * Candidate ports in the order to try them, without duplicates. `0` stands for "let the system
 * pick" and comes last when allowed: when asked for (port 0 without a range) or as the fallback;
 * with `allowPorts` it is followed by the allowed ports (at most {@linkcode MAX_RANGE_CANDIDATES} in
 * all), which are tried only when the system's pick is not one of them.
 */
export function candidatePorts(request: PortRequest): number[] {
  const ordered: number[] = [];
  // A set, not ordered.includes: a 4096-port range would cost 8 million comparisons per proxy.
  const seen = new Set<number>();
  const add = (port: number) => {
    if (seen.has(port)) return;
    seen.add(port);
    ordered.push(port);
  };
  const inRange = (port: number) =>
    request.range === undefined || (port >= request.range.start && port <= request.range.end);
  if (request.stickyPort !== undefined && request.stickyPort !== 0 && inRange(request.stickyPort)) {
    // The sticky port only wins over an explicit request when it is that request or within its range.
    if (request.publishPort === 0 || request.publishPort === request.stickyPort || request.range) {
      add(request.stickyPort);
    }
  }
  if (request.publishPort !== 0) add(request.publishPort);
  if (request.range) {
    const end = Math.min(request.range.end, request.range.start + MAX_RANGE_CANDIDATES - 1);
    for (let port = request.range.start; port <= end; port++) add(port);
  }
  if (request.fallbackToSystemPort || (request.publishPort === 0 && !request.range)) {
    add(0);
    let budget = MAX_RANGE_CANDIDATES;
    for (const allowed of request.allowPorts ?? []) {
      for (let port = Math.max(1, allowed.start); port <= allowed.end && budget > 0; port++, budget--) {
        add(port);
      }
    }
  }
  return ordered;
}

/** The port the client would expect to get: the sticky or requested one, or null for "any". */
export function preferredPort(request: PortRequest): number | null {
  const first = candidatePorts(request)[0];
  return first === undefined || first === 0 ? null : first;
}

/** The ports clients' proxies last had, offered to them again when they come back within a while. */
export class StickyPorts {
  readonly #entries = new Map<string, { port: number; expiresAtMs: number }>();

  constructor(readonly ttlMs: number, readonly now: () => number = Date.now) {}

  static #key(clientId: string, proxyName: string): string {
    return `${clientId}\u0000${proxyName}`;
  }

  /** Remembers the port a proxy got; kept while its client is connected. */
  remember(clientId: string, proxyName: string, port: number): void {
    this.#entries.set(StickyPorts.#key(clientId, proxyName), { port, expiresAtMs: Infinity });
    if (this.#entries.size > 100_000) this.#prune();
  }

  /** Starts the countdown for a disconnected client's ports. */
  release(clientId: string, proxyNames: Iterable<string>): void {
    for (const name of proxyNames) {
      const entry = this.#entries.get(StickyPorts.#key(clientId, name));
      if (entry) entry.expiresAtMs = this.now() + this.ttlMs;
    }
  }

  /** The port to offer again, if remembered and not expired. */
  lookup(clientId: string, proxyName: string): number | undefined {
    const key = StickyPorts.#key(clientId, proxyName);
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    if (entry.expiresAtMs <= this.now()) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry.port;
  }

  #prune(): void {
    const now = this.now();
    for (const [key, entry] of this.#entries) if (entry.expiresAtMs <= now) this.#entries.delete(key);
  }
}

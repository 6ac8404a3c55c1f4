/**
 * Server-side authentication: constant-time key comparison, mapping a key to the client it belongs to,
 * and a per-address throttle on failures.
 *
 * @module
 */

import type { PortRange, ServerConfig } from "../config/types.ts";

/** Who a key belongs to, and what that client may do. */
export interface ClientGrant {
  /** The `[[server.clients]]` name, or null for the shared `auth_key`. */
  entryName: string | null;
  /** Ports the client may publish. */
  allowPorts: PortRange[];
  /** Proxies the client may register. */
  maxProxies: number;
}

const encoder = new TextEncoder();

async function sha256(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", encoder.encode(text)));
}

/**
 * Compares two secrets in time that does not depend on where they differ: both are hashed first, so
 * lengths leak nothing either.
 */
export async function secretsEqual(presented: string, expected: string): Promise<boolean> {
  const [a, b] = await Promise.all([sha256(presented), sha256(expected)]);
  let difference = 0;
  for (let i = 0; i < a.length; i++) difference |= (a[i] ?? 0) ^ (b[i] ?? 0);
  return difference === 0;
}

/** Finds the grant for a presented key, checking every configured key so timing reveals nothing. */
export async function findGrant(config: ServerConfig, presentedKey: string): Promise<ClientGrant | null> {
  let grant: ClientGrant | null = null;
  for (const entry of config.clients) {
    if (await secretsEqual(presentedKey, entry.authKey)) {
      grant ??= { entryName: entry.name, allowPorts: entry.allowPorts, maxProxies: entry.maxProxies };
    }
  }
  if (config.authKey !== undefined && await secretsEqual(presentedKey, config.authKey)) {
    grant ??= { entryName: null, allowPorts: config.allowPorts, maxProxies: config.maxProxiesPerClient };
  }
  return grant;
}

/** Options of {@linkcode FailureThrottle}. */
export interface FailureThrottleOptions {
  /** Failures allowed from one address within `windowMs` before it is blocked. */
  maxFailures: number;
  /** Window over which failures are counted, and how long a block lasts. */
  windowMs: number;
  /** Clock, for tests. */
  now?: () => number;
}

/** Counts authentication failures per remote address and blocks addresses that fail too often. */
export class FailureThrottle {
  #failures = new Map<string, number[]>();
  #now: () => number;

  constructor(readonly options: FailureThrottleOptions) {
    this.#now = options.now ?? Date.now;
  }

  /** Milliseconds until `address` may try again, or 0 when it may try now. */
  retryAfterMs(address: string): number {
    const recent = this.#recent(address);
    if (recent.length < this.options.maxFailures) return 0;
    const oldest = recent[recent.length - this.options.maxFailures] ?? this.#now();
    return Math.max(0, oldest + this.options.windowMs - this.#now());
  }

  /** Records a failed attempt from `address`. */
  recordFailure(address: string): void {
    const recent = this.#recent(address);
    recent.push(this.#now());
    this.#failures.set(address, recent);
    if (this.#failures.size > 10_000) this.#prune();
  }

  /** Forgets `address`'s failures after it authenticated. */
  recordSuccess(address: string): void {
    this.#failures.delete(address);
  }

  #recent(address: string): number[] {
    const cutoff = this.#now() - this.options.windowMs;
    return (this.#failures.get(address) ?? []).filter((time) => time > cutoff);
  }

  #prune(): void {
    for (const address of [...this.#failures.keys()]) {
      if (this.#recent(address).length === 0) this.#failures.delete(address);
    }
  }
}

/**
 * Picking one of several equivalent targets for a new connection, by policy: in turn (`round_robin`),
 * the least busy (`least_connections`, ties in turn) or by the peer's address (`ip_hash`). Shared by the
 * client's local backends (`client/load_balancer.ts`) and the server's groups of clients
 * (`server/groups.ts`), so both roles spread connections the same way. A root leaf file: it imports
 * nothing from lib/, so every folder may use it.
 *
 * @example An order for three targets
 * ```ts
 * import { BalanceRotation } from "./balance.ts";
 *
 * const rotation = new BalanceRotation();
 * rotation.plan(3, "round_robin", "192.0.2.1", () => 0); // [0, 1, 2]
 * rotation.plan(3, "round_robin", "192.0.2.1", () => 0); // [1, 2, 0]
 * ```
 *
 * @module
 */

/** How the first target of a new connection is picked. */
export type BalancePolicy = "round_robin" | "least_connections" | "ip_hash";

/** The policies, in the order the docs list them. */
export const BALANCE_POLICIES: readonly BalancePolicy[] = ["round_robin", "least_connections", "ip_hash"];

/** FNV-1a, 32 bits: stable across runs and processes, unlike anything keyed by object identity. */
export function stableHash(text: string): number {
  let hash = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(text)) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash;
}

/** The turn of one set of targets: where the next round-robin order starts. */
export class BalanceRotation {
  /** Next start of the rotation, for round_robin and for breaking least_connections ties. */
  #nextIndex = 0;

  /**
   * The order in which to try `count` targets (indices 0…count-1) for one new connection from
   * `peerHost` (an address without port): every target once, the policy's pick first, the others in a
   * fixed rotation after it (so a failed target is replaced by the same neighbour every time).
   * `active(index)` is the target's open connections (read by `least_connections` only). Advances the
   * turn for `round_robin` and `least_connections`.
   */
  plan(count: number, policy: BalancePolicy, peerHost: string, active: (index: number) => number): number[] {
    if (count <= 0) return [];
    const rotation = (start: number) =>
      Array.from({ length: count }, (_, offset) => (start + offset) % count);
    switch (policy) {
      case "ip_hash":
        return rotation(stableHash(peerHost) % count);
      case "least_connections": {
        // Ties go to the rotation, so that an idle set is still spread evenly.
        const start = this.#nextIndex % count;
        this.#nextIndex = (start + 1) % count;
        const order = rotation(start);
        const activeNow = order.map((index) => active(index));
        return order
          .map((index, position) => ({ index, position, load: activeNow[position] ?? 0 }))
          .sort((a, b) => a.load - b.load || a.position - b.position)
          .map((entry) => entry.index);
      }
      case "round_robin": {
        const start = this.#nextIndex % count;
        this.#nextIndex = (start + 1) % count;
        return rotation(start);
      }
    }
  }
}

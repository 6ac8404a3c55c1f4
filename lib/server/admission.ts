/**
 * Admission of connections to the tunnel port before they authenticate: at most so many in all and from
 * one address, so idle sockets and stalled handshakes from one host cannot take every file descriptor.
 *
 * @module
 */

/** Why a connection was refused before authenticating (the `reason` label of the refused counter). */
export type RefusalReason = "pending_limit" | "pending_per_ip_limit";

/** Limits of {@linkcode PendingConnections}. */
export interface AdmissionLimits {
  /** Unauthenticated connections at most, in all. */
  maxPending: number;
  /** Unauthenticated connections at most from one address. */
  maxPendingPerIp: number;
}

/** Counts unauthenticated connections per address and refuses those beyond the limits. */
export class PendingConnections {
  readonly #perIp = new Map<string, number>();
  #total = 0;
  /** Connections refused since start, by reason. */
  readonly refused: Record<RefusalReason, number> = { pending_limit: 0, pending_per_ip_limit: 0 };

  constructor(readonly limits: AdmissionLimits) {}

  /** Connections admitted and not yet released. */
  get pending(): number {
    return this.#total;
  }

  /**
   * Admits a connection from `host`: returns its release function (idempotent; call it once the
   * connection authenticated or closed), or the reason it is refused (then counted).
   */
  admit(host: string): (() => void) | RefusalReason {
    const fromHost = this.#perIp.get(host) ?? 0;
    const reason: RefusalReason | null = this.#total >= this.limits.maxPending
      ? "pending_limit"
      : fromHost >= this.limits.maxPendingPerIp
      ? "pending_per_ip_limit"
      : null;
    if (reason) {
      this.refused[reason]++;
      return reason;
    }
    this.#total++;
    this.#perIp.set(host, fromHost + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#total--;
      const left = (this.#perIp.get(host) ?? 1) - 1;
      if (left <= 0) this.#perIp.delete(host);
      else this.#perIp.set(host, left);
    };
  }
}

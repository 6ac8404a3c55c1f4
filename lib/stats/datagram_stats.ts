/**
 * Counters of a `udp` proxy's flows and datagrams, on either side, beside its {@linkcode ProxyStats}
 * (whose connection counters count flows and whose byte counters count datagram payloads).
 *
 * @module
 */

import type { UdpSnapshot } from "./snapshot.ts";

/**
 * Why a datagram was not carried: `oversized` (above 65,507 bytes), `empty` (zero bytes: not carried),
 * `queue_full` (its flow's stream did not keep up), `no_flow` (no stream for its peer: the local service
 * is reported down, or the stream could not be opened or was gone), `send_failed` (the socket refused it),
 * `foreign_source` (client: an answer from another address than the local service).
 */
export const DATAGRAM_DROP_REASONS = [
  "oversized",
  "empty",
  "queue_full",
  "no_flow",
  "send_failed",
  "foreign_source",
] as const;
/** Why a datagram was not carried. */
export type DatagramDropReason = typeof DATAGRAM_DROP_REASONS[number];

/** Live counters of one `udp` proxy. */
export class DatagramStats {
  /** Flows open now. */
  flowsOpen = 0;
  /** Flows opened since the proxy started. */
  flowsTotal = 0;
  /** Flows closed because `max_udp_flows` was reached (the one idle longest goes). */
  flowsEvicted = 0;
  /** Flows closed after `udp_idle_timeout_secs` without a datagram either way. */
  flowsIdleClosed = 0;
  /** Datagrams from outside peers towards the local service (carried). */
  datagramsIn = 0;
  /** Datagrams from the local service towards outside peers (carried). */
  datagramsOut = 0;
  /** Datagrams not carried, by reason. */
  readonly dropped: Record<DatagramDropReason, number> = {
    oversized: 0,
    empty: 0,
    queue_full: 0,
    no_flow: 0,
    send_failed: 0,
    foreign_source: 0,
  };

  /** Counts one datagram dropped for `reason`. */
  drop(reason: DatagramDropReason): void {
    this.dropped[reason]++;
  }

  /** The counters in the stats endpoint's form. */
  toSnapshot(): UdpSnapshot {
    return {
      flows_open: this.flowsOpen,
      flows_total: this.flowsTotal,
      flows_evicted: this.flowsEvicted,
      flows_idle_closed: this.flowsIdleClosed,
      datagrams_in: this.datagramsIn,
      datagrams_out: this.datagramsOut,
      dropped: { ...this.dropped },
    };
  }
}

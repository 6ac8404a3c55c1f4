import type { ProxyStatus } from "../protocol/proxy_status.ts";
import type { ProxySnapshot } from "./snapshot.ts";
import type { DatagramStats } from "./datagram_stats.ts";

/**
 * Live counters of one proxy, updated on the hot path and read by the stats endpoint and logs.
 *
 * @module
 */

/** Health of a published proxy, as reported to the client and in stats (the list is the protocol's). */
export type { ProxyStatus } from "../protocol/proxy_status.ts";

/** Counters of one proxy. Bytes are counted per chunk as they move, not only when a connection ends. */
export class ProxyStats {
  /** Outside connections open now. */
  activeConnections = 0;
  /** Outside connections accepted since the proxy was published. */
  totalConnections = 0;
  /** Connections refused or failed before carrying data (local service down, stream open failed). */
  failedConnections = 0;
  /** Failed bind attempts of the published port that were retried (server side). */
  bindRetries = 0;
  /** Bytes from outside peers towards the local service. */
  bytesIn = 0;
  /** Bytes from the local service towards outside peers. */
  bytesOut = 0;
  /** Current status. */
  status: ProxyStatus = "pending";
  /** Last error seen, for people. */
  lastError: string | null = null;
  /** When the status last changed (ms since epoch). */
  statusSinceMs = Date.now();
  /** Flow and datagram counters of a `udp` proxy; null for the other kinds. */
  datagrams: DatagramStats | null = null;

  /** Changes the status; returns whether it changed. */
  setStatus(status: ProxyStatus, error: string | null = null): boolean {
    if (error !== null) this.lastError = error;
    if (status === this.status) return false;
    this.status = status;
    this.statusSinceMs = Date.now();
    return true;
  }

  /** The counters and status in the stats endpoint's form. */
  toSnapshotFields(): Pick<
    ProxySnapshot,
    | "status"
    | "last_error"
    | "active_connections"
    | "total_connections"
    | "failed_connections"
    | "bind_retries"
    | "bytes_in"
    | "bytes_out"
    | "udp"
  > {
    return {
      status: this.status,
      last_error: this.lastError,
      active_connections: this.activeConnections,
      total_connections: this.totalConnections,
      failed_connections: this.failedConnections,
      bind_retries: this.bindRetries,
      bytes_in: this.bytesIn,
      bytes_out: this.bytesOut,
      ...(this.datagrams ? { udp: this.datagrams.toSnapshot() } : {}),
    };
  }
}

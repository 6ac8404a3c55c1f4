/**
 * What differs by proxy kind on the client: how a stream the server opened for an outside connection
 * reaches the local service (one attempt to one backend, then carrying the bytes). Reading the stream
 * header, picking and retrying backends (`local_backends`, `lb_policy`, `local_connect_retries`),
 * reporting failures to the server and the stats are the client's, the same for every kind.
 *
 * @module
 */

import type { ProxyConfig } from "../../config/types.ts";
import type { DuplexConn } from "../../net/conn.ts";
import type { DatagramStats } from "../../stats/datagram_stats.ts";
import type { StreamHeader } from "../../protocol/stream_header.ts";
import { UnknownNameError } from "../../registry.ts";
import type { Backend } from "../load_balancer.ts";

/** A stream the server opened for one outside connection, its header already read. */
export interface CarriedStream extends DuplexConn {
  /** Ends the stream abortively: the outside peer reads a reset. */
  reset(): void;
}

/** Byte counters of a proxy, added to as chunks are written. */
export interface CarryCounters {
  /** Bytes from the server (the outside peer) to the local service. */
  bytesIn: number;
  /** Bytes from the local service to the server. */
  bytesOut: number;
  /** Flow and datagram counters (a datagram kind creates them on first use). */
  datagrams?: DatagramStats | null;
}

/**
 * What a kind's {@linkcode ClientProxyKind.dial} returns and its `carry` uses to reach the local service:
 * a connection for the stream kinds, a socket of its own for a datagram kind (`udp`). `carry` closes it.
 */
export interface LocalEndpoint {
  /** Releases it. Safe to call more than once. */
  close(): void;
}

/** A kind of any local endpoint, as the registry and the stream carrier hold them. */
export type AnyClientProxyKind = ClientProxyKind<LocalEndpoint>;

/**
 * One proxy kind, client side. `Local` is what {@linkcode dial} returns: a connection, unless the kind
 * says otherwise (a datagram kind).
 */
export interface ClientProxyKind<Local extends LocalEndpoint = DuplexConn> {
  /** The kind's name: the proxy's `proxy_type` in the config and on the wire. */
  readonly name: string;
  /**
   * One attempt to reach one local backend; rejects when it cannot be reached (the backend pool then
   * tries the next one, or again after `local_retry_delay_ms`). Must not block the event loop: a host
   * name is looked up asynchronously.
   */
  dial(backend: Backend): Promise<Local>;
  /**
   * Carries `stream` to `local` (what {@linkcode dial} returned) until both directions end, counting
   * bytes into `counters`; closes both. A cut transfer ends both abortively, never with a clean end.
   */
  carry(
    stream: CarriedStream,
    local: Local,
    header: StreamHeader,
    counters: CarryCounters,
    proxy: ProxyConfig,
  ): Promise<void>;
}

/** No client proxy kind is registered under the name asked for; the message lists the known ones. */
export class UnknownProxyKindError extends UnknownNameError {
  override name = "UnknownProxyKindError";
  constructor(requested: string, known: readonly string[]) {
    super("proxy kind", requested, known);
  }
}

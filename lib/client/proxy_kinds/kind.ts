/**
 * What differs by proxy kind on the client: how a stream the server opened for an outside connection
 * reaches the local service (one attempt to one backend, then carrying the bytes). Reading the stream
 * header, picking and retrying backends (`local_backends`, `lb_policy`, `local_connect_retries`),
 * reporting failures to the server and the stats are the client's, the same for every kind.
 *
 * @module
 */

import type { DuplexConn } from "../../net/conn.ts";
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
}

/** One proxy kind, client side. */
export interface ClientProxyKind {
  /** The kind's name: the proxy's `proxy_type` in the config and on the wire. */
  readonly name: string;
  /**
   * One attempt to reach one local backend; rejects when it cannot be reached (the backend pool then
   * tries the next one, or again after `local_retry_delay_ms`). Must not block the event loop: a host
   * name is looked up asynchronously.
   */
  dial(backend: Backend): Promise<DuplexConn>;
  /**
   * Carries `stream` to `local` (what {@linkcode dial} returned) until both directions end, counting
   * bytes into `counters`; closes both. A cut transfer ends both abortively, never with a clean end.
   */
  carry(
    stream: CarriedStream,
    local: DuplexConn,
    header: StreamHeader,
    counters: CarryCounters,
  ): Promise<void>;
}

/** No client proxy kind is registered under the name asked for; the message lists the known ones. */
export class UnknownProxyKindError extends UnknownNameError {
  override name = "UnknownProxyKindError";
  constructor(requested: string, known: readonly string[]) {
    super("proxy kind", requested, known);
  }
}

/**
 * What differs by proxy kind on the server: how a proxy is published (a listener on its port that
 * yields outside connections) and what the stream to the client starts with. Everything else (port
 * planning, bind retry, limits, stats, the copy loop, tearing down) is the registrar's and the published
 * proxy's, the same for every kind.
 *
 * @module
 */

import type { DuplexConn } from "../../net/conn.ts";
import type { ProxySpec } from "../../protocol/control.ts";
import type { DatagramStats } from "../../stats/datagram_stats.ts";
import type { ProxyStats } from "../../stats/proxy_stats.ts";
import { UnknownNameError } from "../../registry.ts";

/**
 * An outside connection a {@linkcode PublishedListener} accepted, carried as it is over a stream to the
 * client. It is ended abortively by `abortQuietly` (`transport/pipe.ts`) when its transfer is cut or the
 * proxy stops: through its `reset()` if it has one, else as a TCP connection (a `Deno.TcpConn` itself,
 * unwrapped, gets a real TCP reset), else closed.
 */
export interface OutsideConn extends DuplexConn {
  /** Where the connection comes from: goes into the stream header and the logs. */
  readonly remoteAddr: Deno.Addr;
  /** Ends the connection abortively, if the kind has a way to (a TCP connection needs none). */
  reset?(): void;
}

/**
 * A bound publication of one proxy: the published proxy runs the accept loop (`net/accept.ts`) and owns
 * it. `accept()` yields each outside connection ready to carry (TCP_NODELAY set); it rejects with
 * `Deno.errors.BadResource` once {@linkcode close} was called, which ends the loop; other rejections are
 * transient (out of descriptors) and retried after a pause.
 */
export interface PublishedListener {
  /** The bound address; its port is the proxy's published port. */
  readonly addr: Deno.NetAddr;
  /** The next outside connection. */
  accept(): Promise<OutsideConn>;
  /** Stops accepting and frees the port. Safe to call more than once. */
  close(): void;
}

/**
 * What a {@linkcode DatagramPublication} needs from the published proxy that owns it: the proxy, its
 * counters, whether new flows are refused, and streams to the client.
 */
export interface DatagramHost {
  /** The proxy as the client registered it. */
  readonly spec: ProxySpec;
  /** The proxy's counters: connections count flows, bytes count datagram payloads. */
  readonly stats: ProxyStats;
  /** The proxy's datagram counters. */
  readonly datagrams: DatagramStats;
  /** Whether new flows are refused now (the client reported its local service down). */
  refusing(): boolean;
  /**
   * Opens a stream to the client for a new flow from `peer` ("host:port"), its stream header written;
   * rejects when it cannot (the session is gone).
   */
  openFlow(peer: string): Promise<DuplexConn & { reset?(): void }>;
}

/**
 * A bound publication that is not connection-shaped (a UDP port): it runs its own receive loop, handed
 * the {@linkcode DatagramHost}, instead of the published proxy's accept loop.
 */
export interface DatagramPublication {
  /** The bound address; its port is the proxy's published port. */
  readonly addr: Deno.NetAddr;
  /** Carries the port's datagrams until {@linkcode close}; resolves once everything it held is freed. */
  serve(host: DatagramHost): Promise<void>;
  /** Frees the port and ends every flow. Safe to call more than once. */
  close(): void;
}

/** What binding a proxy yields: a listener of outside connections, or a datagram publication. */
export type Publication = PublishedListener | DatagramPublication;

/** Whether `publication` carries datagrams (it has `serve`) rather than yielding connections. */
export function isDatagramPublication(publication: Publication): publication is DatagramPublication {
  return typeof (publication as Partial<DatagramPublication>).serve === "function";
}

/**
 * One proxy kind, server side. `P` is what its {@linkcode bind} yields (a connection-shaped kind
 * narrows it to {@linkcode PublishedListener}).
 */
export interface ServerProxyKind<P extends Publication = Publication> {
  /** The kind's name: the proxy's `proxy_type` in the config and on the wire. */
  readonly name: string;
  /**
   * Set for kinds that bind no port of their own: their proxies are routes on the server's shared
   * virtual-host port of that protocol (`vhost_http_port`, `vhost_https_port`), and {@linkcode bind} is
   * never called for them.
   */
  readonly vhost?: "http" | "https";
  /**
   * Publishes a proxy on `hostname:port` (port 0 = any free port), in one attempt; the registrar plans
   * the ports and retries. Synchronous, so a registration's checks and its bind run in one turn.
   *
   * @throws {BindError} classified (`net/tcp.ts`): the registrar answers and retries by its kind
   */
  bind(hostname: string, port: number): P;
  /**
   * The bytes the stream to the client starts with for the outside connection `connId` from `peer`
   * ("host:port"): what the client's side of this kind needs to reach the local service.
   */
  streamHeader(proxy: ProxySpec, peer: string, connId: number): Uint8Array;
}

/** No server proxy kind is registered under the name asked for; the message lists the known ones. */
export class UnknownProxyKindError extends UnknownNameError {
  override name = "UnknownProxyKindError";
  constructor(requested: string, known: readonly string[]) {
    super("proxy kind", requested, known);
  }
}

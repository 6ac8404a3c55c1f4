/**
 * What a vhost route leads to ({@linkcode VhostProxyTarget}), and the publication that ties a
 * registered `http`/`https` proxy to the shared port ({@linkcode VhostPublication}): it is the proxy's
 * "listener" (`PublishedProxy.attach`), so the proxy's usual life cycle applies: closing it (the proxy
 * stops, the client leaves or disconnects) removes the proxy's routes at once. For `https`, the
 * connections the SNI router hands it are accepted and carried by the proxy like a `tcp` proxy's.
 *
 * @module
 */

import type { DuplexConn } from "../../net/conn.ts";
import type { ProxySpec } from "../../protocol/control.ts";
import type { ProxyStats } from "../../stats/proxy_stats.ts";
import { closeQuietly } from "../../transport/pipe.ts";
import { HandedConnections } from "../handed_connections.ts";
import type { OutsideConn, PublishedListener } from "../proxy_kinds/kind.ts";
import type { VhostTarget } from "./router.ts";

/** What the vhost servers need of a routed proxy. */
export interface VhostProxyTarget extends VhostTarget {
  /** The proxy as registered. */
  readonly spec: ProxySpec;
  /** The proxy's counters. */
  readonly stats: ProxyStats;
  /** True when new requests are refused: the client reported its local service down, or it is stopping. */
  readonly unavailable: boolean;
  /** Opens a stream to the client for one exchange (http), counted as a connection until `done()`. */
  openRoutedStream(peer: string): Promise<{ stream: DuplexConn & { reset?(): void }; done: () => void }>;
  /** Hands an https connection (its ClientHello put back in front) to the proxy; false when refused. */
  deliver(conn: OutsideConn): boolean;
}

/** The parts of a `PublishedProxy` a publication uses. */
export interface RoutedProxy {
  readonly spec: ProxySpec;
  readonly stats: ProxyStats;
  readonly stopped: boolean;
  refuseConnections: boolean;
  openRoutedStream(peer: string): Promise<{ stream: DuplexConn & { reset?(): void }; done: () => void }>;
}

/** An `http`/`https` proxy's presence on a shared vhost port. */
export class VhostPublication implements PublishedListener, VhostProxyTarget {
  /** Connections routed to this https proxy, for its accept loop. */
  readonly #handed = new HandedConnections();

  constructor(
    readonly proxy: RoutedProxy,
    readonly clientId: string,
    readonly clientName: string,
    /** The shared port's address: the proxy's published address as answered to the client. */
    readonly addr: Deno.NetAddr,
    /** Removes the proxy's routes. */
    readonly onClose: (publication: VhostPublication) => void,
  ) {}

  get proxyName(): string {
    return this.proxy.spec.name;
  }

  get spec(): ProxySpec {
    return this.proxy.spec;
  }

  get stats(): ProxyStats {
    return this.proxy.stats;
  }

  get unavailable(): boolean {
    return this.#handed.closed || this.proxy.stopped || this.proxy.refuseConnections;
  }

  openRoutedStream(peer: string): Promise<{ stream: DuplexConn & { reset?(): void }; done: () => void }> {
    return this.proxy.openRoutedStream(peer);
  }

  deliver(conn: OutsideConn): boolean {
    return this.#handed.deliver(conn);
  }

  /** The next routed connection (https); an http proxy's never come, its requests are streamed per exchange. */
  accept(): Promise<OutsideConn> {
    return this.#handed.accept(() =>
      Promise.reject(new Deno.errors.BadResource("the vhost publication is closed"))
    );
  }

  close(): void {
    if (this.#handed.closed) return;
    const { queued, rejectWaiting } = this.#handed.close();
    this.onClose(this);
    rejectWaiting?.(new Deno.errors.BadResource("the vhost publication is closed"));
    for (const conn of queued) closeQuietly(conn);
  }
}

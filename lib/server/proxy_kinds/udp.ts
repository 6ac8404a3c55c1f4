/**
 * The `udp` proxy kind, server side: a UDP port per proxy. Each outside peer address is a **flow**: the
 * first datagram from a new peer opens a stream to the client (the usual stream header: proxy, peer,
 * flow id), and from then on its datagrams go down that stream as frames (`protocol/datagram.ts`) and
 * the frames coming back are sent to that peer. Flows idle for `udp_idle_timeout_secs` are closed; at
 * `max_udp_flows` the flow idle longest is closed to make room. UDP sockets need Deno's
 * `--unstable-net`; without it the proxy is refused at bind time with a message saying so.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { DEFAULTS } from "../../config/defaults.ts";
import { formatAddr } from "../../net/address.ts";
import type { DuplexConn } from "../../net/conn.ts";
import { BindError, classifyBindError, requireIpLiteral } from "../../net/tcp.ts";
import { hasUnstableNet, UnstableNetRequiredError } from "../../net/unstable.ts";
import {
  DatagramFrameError,
  DatagramReader,
  DatagramWriter,
  MAX_DATAGRAM_BYTES,
  PipelinedSender,
} from "../../protocol/datagram.ts";
import type { ProxySpec } from "../../protocol/control.ts";
import { encodeStreamHeader } from "../../protocol/stream_header.ts";
import { errorMessage } from "../../text.ts";
import type { DatagramHost, DatagramPublication, ServerProxyKind } from "./kind.ts";

const logger = getLogger(["tls-tunnel", "server", "udp"]);

/** Receive buffer: larger than any UDP payload (65,527 over IPv6), so nothing is cut unnoticed. */
const RECEIVE_BUFFER_BYTES = 65_536;
/** Pause after a failed receive that is not the socket closing, so an error cannot spin the loop. */
const RECEIVE_ERROR_PAUSE_MS = 50;

/** How a flow ends: which decides between a clean end (FIN) and a reset of its stream. */
type FlowEnd = "idle" | "evicted" | "ended" | "failed" | "stopped";

/** The flow timing of a proxy, from its registration (the client's config) or the defaults. */
export function udpFlowLimits(spec: Pick<ProxySpec, "udp_idle_timeout_secs" | "max_udp_flows">): {
  idleTimeoutMs: number;
  maxFlows: number;
} {
  return {
    idleTimeoutMs: (spec.udp_idle_timeout_secs ?? DEFAULTS.proxy.udp_idle_timeout_secs) * 1000,
    maxFlows: spec.max_udp_flows ?? DEFAULTS.proxy.max_udp_flows,
  };
}

/** One outside peer's flow: its queue towards the client and the relay of the client's answers. */
class ServerFlow {
  lastActiveMs = performance.now();
  #closed = false;
  #stream: (DuplexConn & { reset?(): void }) | null = null;
  readonly writer: DatagramWriter;

  constructor(
    readonly key: string,
    readonly peer: Deno.NetAddr,
    readonly publication: UdpPublication,
    readonly host: DatagramHost,
  ) {
    const opened = host.openFlow(key).then((stream) => {
      if (this.#closed) {
        stream.close();
        throw new Error("flow closed while its stream opened");
      }
      this.#stream = stream;
      this.#relayAnswers(stream);
      return stream;
    });
    // Handled by the writer's first write (always started right after); this only keeps a failure that
    // comes after the flow closed from being reported as unhandled.
    opened.catch(() => {});
    // Datagrams that arrive while the stream opens wait in the (bounded) queue; the first write waits.
    this.writer = new DatagramWriter(
      { write: async (data) => await (await opened).write(data) },
      undefined,
      (error, lost) => {
        host.datagrams.dropped.no_flow += lost;
        if (!this.#closed) {
          logger.debug("Flow {peer} on {proxy} lost its stream: {error}", {
            peer: key,
            proxy: host.spec.name,
            error: errorMessage(error),
          });
          host.stats.failedConnections++;
        }
        this.close("failed");
      },
    );
  }

  /** Relays the client's answers (frames on the stream) to the peer until the stream ends. */
  async #relayAnswers(stream: DuplexConn & { reset?(): void }): Promise<void> {
    const reader = new DatagramReader(stream);
    const sender = new PipelinedSender(
      (datagram) => this.publication.send(datagram, this.peer),
      (sent, bytes) => {
        if (!sent) return this.host.datagrams.drop("send_failed");
        this.host.datagrams.datagramsOut++;
        this.host.stats.bytesOut += bytes;
      },
    );
    let end: FlowEnd = "ended";
    try {
      for (let datagram = await reader.next(); datagram !== null; datagram = await reader.next()) {
        if (this.#closed) break;
        this.publication.touch(this);
        await sender.send(datagram);
      }
    } catch (error) {
      end = "failed";
      if (error instanceof DatagramFrameError) {
        logger.warn("Flow {peer} on {proxy}: the client sent a bad datagram frame ({error}); resetting it", {
          peer: this.key,
          proxy: this.host.spec.name,
          error: error.message,
        });
      }
    }
    await sender.drained();
    this.close(end);
  }

  /** Ends the flow; `idle` and `ended` close its stream cleanly, the others reset it. */
  close(end: FlowEnd): void {
    if (this.#closed) return;
    this.#closed = true;
    this.writer.close();
    this.publication.forget(this);
    const stream = this.#stream;
    if (stream) {
      if (end === "idle" || end === "ended") stream.close();
      else if (stream.reset) stream.reset();
      else stream.close();
    }
  }
}

/** A published UDP port and its flows. */
class UdpPublication implements DatagramPublication {
  /** Flows by peer ("host:port"), the one idle longest first (a datagram moves its flow to the end). */
  readonly #flows = new Map<string, ServerFlow>();
  #closed = false;
  #host: DatagramHost | null = null;

  constructor(readonly socket: Deno.DatagramConn) {}

  get addr(): Deno.NetAddr {
    return this.socket.addr as Deno.NetAddr;
  }

  /** Sends an answer to `peer`. */
  send(datagram: Uint8Array, peer: Deno.NetAddr): Promise<number> {
    return this.socket.send(datagram, peer);
  }

  /** Marks `flow` active now: it becomes the last to be evicted. */
  touch(flow: ServerFlow): void {
    flow.lastActiveMs = performance.now();
    if (this.#flows.get(flow.key) === flow) {
      this.#flows.delete(flow.key);
      this.#flows.set(flow.key, flow);
    }
  }

  /** Drops a closed flow from the table and the counters. */
  forget(flow: ServerFlow): void {
    if (this.#flows.get(flow.key) !== flow) return;
    this.#flows.delete(flow.key);
    if (this.#host) {
      this.#host.datagrams.flowsOpen--;
      this.#host.stats.activeConnections--;
    }
  }

  async serve(host: DatagramHost): Promise<void> {
    this.#host = host;
    const { idleTimeoutMs, maxFlows } = udpFlowLimits(host.spec);
    const sweepMs = Math.min(1000, Math.max(100, idleTimeoutMs / 4));
    const sweep = setInterval(() => this.#sweep(idleTimeoutMs), sweepMs);
    const buffer = new Uint8Array(RECEIVE_BUFFER_BYTES);
    try {
      while (!this.#closed) {
        let received: [Uint8Array, Deno.Addr];
        try {
          received = await this.socket.receive(buffer);
        } catch (error) {
          if (this.#closed || error instanceof Deno.errors.BadResource) break;
          logger.warn("Receive on {proxy} failed: {error}", {
            proxy: host.spec.name,
            error: errorMessage(error),
          });
          await new Promise((resolve) => setTimeout(resolve, RECEIVE_ERROR_PAUSE_MS));
          continue;
        }
        this.#accept(host, received[0], received[1] as Deno.NetAddr, maxFlows);
      }
    } finally {
      clearInterval(sweep);
      for (const flow of [...this.#flows.values()]) flow.close("stopped");
    }
  }

  /** One datagram from outside: to its peer's flow, opened (and another evicted) if needed. */
  #accept(host: DatagramHost, data: Uint8Array, peer: Deno.NetAddr, maxFlows: number): void {
    if (data.length > MAX_DATAGRAM_BYTES) return host.datagrams.drop("oversized");
    if (data.length === 0) return host.datagrams.drop("empty");
    const key = formatAddr(peer);
    let flow = this.#flows.get(key);
    if (flow === undefined) {
      if (host.refusing()) return host.datagrams.drop("no_flow");
      while (this.#flows.size >= maxFlows) {
        const oldest = this.#flows.values().next().value;
        if (oldest === undefined) break;
        host.datagrams.flowsEvicted++;
        oldest.close("evicted");
      }
      flow = new ServerFlow(key, { transport: "udp", hostname: peer.hostname, port: peer.port }, this, host);
      this.#flows.set(key, flow);
      host.datagrams.flowsOpen++;
      host.datagrams.flowsTotal++;
      host.stats.activeConnections++;
      host.stats.totalConnections++;
    } else {
      this.touch(flow);
    }
    // Copied: the receive buffer is reused for the next datagram.
    if (!flow.writer.push(data.slice())) return host.datagrams.drop("queue_full");
    host.datagrams.datagramsIn++;
    host.stats.bytesIn += data.length;
  }

  /** Closes the flows idle for `idleTimeoutMs`; they are first in the table. */
  #sweep(idleTimeoutMs: number): void {
    const now = performance.now();
    for (const flow of this.#flows.values()) {
      if (now - flow.lastActiveMs < idleTimeoutMs) break;
      if (this.#host) this.#host.datagrams.flowsIdleClosed++;
      flow.close("idle");
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.socket.close();
    } catch {
      // Closed already.
    }
  }
}

/**
 * Binds a UDP port, throwing a classified {@linkcode BindError}: `unsupported` (never retried) when the
 * process runs without `--unstable-net`.
 */
function bindUdp(hostname: string, port: number): UdpPublication {
  requireIpLiteral(hostname, port);
  if (!hasUnstableNet()) {
    const needed = new UnstableNetRequiredError('proxy_type = "udp"');
    throw new BindError(
      "unsupported",
      hostname,
      port,
      `This server cannot publish UDP proxies: it runs without --unstable-net. ${needed.message}`,
      { cause: needed },
    );
  }
  try {
    return new UdpPublication(Deno.listenDatagram({ transport: "udp", hostname, port }));
  } catch (error) {
    throw classifyBindError(error, hostname, port);
  }
}

/** The `udp` proxy kind, server side. */
export const udpServerKind: ServerProxyKind<DatagramPublication> = {
  name: "udp",
  bind: bindUdp,
  streamHeader: (proxy, peer, flowId) =>
    encodeStreamHeader({ proxy: proxy.name, peer_addr: peer, conn_id: flowId }),
};

/**
 * The `udp` proxy kind, client side. Each stream the server opens is one flow (one outside peer): the
 * client sends its datagrams to the local service from a UDP socket of the flow's own, so the service's
 * answers come back to that socket and go up that stream to that peer. A flow ends when the server ends
 * its stream, or after `udp_idle_timeout_secs` without a datagram either way (the client then ends the
 * stream, and the server drops the flow). Needs Deno's `--unstable-net`.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { DEFAULTS } from "../../config/defaults.ts";
import { isIpAddress } from "../../net/address.ts";
import { requireUnstableNet } from "../../net/unstable.ts";
import {
  DatagramFrameError,
  DatagramReader,
  DatagramWriter,
  MAX_DATAGRAM_BYTES,
  PipelinedSender,
} from "../../protocol/datagram.ts";
import { DatagramStats } from "../../stats/datagram_stats.ts";
import { errorMessage } from "../../text.ts";
import type { Backend } from "../load_balancer.ts";
import type { ClientProxyKind, LocalEndpoint } from "./kind.ts";

const logger = getLogger(["tls-tunnel", "client", "udp"]);

/** Receive buffer: larger than any UDP payload, so nothing is cut unnoticed. */
const RECEIVE_BUFFER_BYTES = 65_536;
/** How long a local service's host name may take to resolve. */
const RESOLVE_TIMEOUT_MS = 5_000;

/** The local side of one flow: its own socket, and the local service's address. */
export class UdpLocal implements LocalEndpoint {
  #closed = false;

  constructor(
    /** The flow's socket (an ephemeral port on the local service's side). */
    readonly socket: Deno.DatagramConn,
    /** The local service, as an IP address. */
    readonly target: Deno.NetAddr,
  ) {}

  /** Whether a datagram from `addr` is the local service's (anything else is not relayed). */
  isFromTarget(addr: Deno.Addr): boolean {
    const from = addr as Deno.NetAddr;
    return from.port === this.target.port && normalizeIp(from.hostname) === normalizeIp(this.target.hostname);
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

/** Lower-case, without brackets: the form in which addresses are compared. */
function normalizeIp(hostname: string): string {
  return hostname.replace(/^\[|\]$/g, "").toLowerCase();
}

/** The local service's IP address: as written, or looked up without blocking (A, then AAAA). */
async function resolveBackend(host: string): Promise<string> {
  const bare = normalizeIp(host);
  if (isIpAddress(bare)) return bare;
  if (bare === "localhost") return "127.0.0.1";
  for (const type of ["A", "AAAA"] as const) {
    const signal = AbortSignal.timeout(RESOLVE_TIMEOUT_MS);
    try {
      const found = await Deno.resolveDns(bare, type, { signal });
      if (found[0] !== undefined) return found[0];
    } catch {
      // Try the next record type; the error below names the host.
    }
  }
  throw new Error(`Cannot resolve the local service's host ${JSON.stringify(host)} (A or AAAA)`);
}

/** Where a flow's socket binds: loopback for a loopback service, else any address of its family. */
function localBindAddress(ip: string): string {
  const v6 = ip.includes(":");
  if (ip === "::1" || ip.startsWith("127.")) return v6 ? "::1" : "127.0.0.1";
  return v6 ? "::" : "0.0.0.0";
}

/** Opens a flow's socket towards `backend`. */
async function dialUdp(backend: Backend): Promise<UdpLocal> {
  requireUnstableNet('proxy_type = "udp"');
  const ip = await resolveBackend(backend.host);
  const socket = Deno.listenDatagram({ transport: "udp", hostname: localBindAddress(ip), port: 0 });
  return new UdpLocal(socket, { transport: "udp", hostname: ip, port: backend.port });
}

/** A flow being carried, as its proxy's table sees it. */
interface ClientFlow {
  /** When a datagram last went either way (performance.now() ms). */
  readonly lastActiveMs: number;
  /** Ends the flow now, resetting its stream. */
  evict(): void;
}

/**
 * The flows of each proxy, by its datagram counters (one object per proxy): a server that opens more
 * streams than `max_udp_flows` cannot make the client hold a socket for each.
 */
const flowTables = new WeakMap<DatagramStats, Set<ClientFlow>>();

/** Adds `flow` to its proxy's table, evicting the flow idle longest while the table is over `maxFlows`. */
function admit(datagrams: DatagramStats, flow: ClientFlow, maxFlows: number): Set<ClientFlow> {
  let table = flowTables.get(datagrams);
  if (!table) {
    table = new Set();
    flowTables.set(datagrams, table);
  }
  while (table.size >= maxFlows) {
    let oldest: ClientFlow | null = null;
    for (const candidate of table) {
      if (oldest === null || candidate.lastActiveMs < oldest.lastActiveMs) oldest = candidate;
    }
    if (oldest === null) break;
    table.delete(oldest);
    datagrams.flowsEvicted++;
    oldest.evict();
  }
  table.add(flow);
  return table;
}

/** The `udp` proxy kind, client side. */
export const udpClientKind: ClientProxyKind<UdpLocal> = {
  name: "udp",
  dial: dialUdp,
  async carry(stream, local, header, counters, proxy) {
    counters.datagrams ??= new DatagramStats();
    const datagrams = counters.datagrams;
    const idleTimeoutMs = (proxy.udpIdleTimeoutSecs ?? DEFAULTS.proxy.udp_idle_timeout_secs) * 1000;
    datagrams.flowsOpen++;
    datagrams.flowsTotal++;
    let lastActiveMs = performance.now();
    let ended = false;
    let idle = false;
    let failed = false;
    const end = () => {
      if (ended) return;
      ended = true;
      clearTimeout(idleTimer);
      writer.close();
      // Ends the receive loop (its pending receive is interrupted).
      local.close();
    };
    const writer = new DatagramWriter(stream, undefined, (_error, lost) => {
      datagrams.dropped.no_flow += lost;
      failed = true;
      end();
    });
    const flow: ClientFlow = {
      get lastActiveMs() {
        return lastActiveMs;
      },
      evict() {
        failed = true;
        end();
        stream.reset();
      },
    };
    const table = admit(datagrams, flow, proxy.maxUdpFlows ?? DEFAULTS.proxy.max_udp_flows);
    const checkIdle = () => {
      const quietMs = performance.now() - lastActiveMs;
      if (quietMs < idleTimeoutMs) {
        idleTimer = setTimeout(checkIdle, idleTimeoutMs - quietMs);
        return;
      }
      idle = true;
      datagrams.flowsIdleClosed++;
      end();
      // Ends the stream's read side too, so the relay to the service below finishes.
      stream.close();
    };
    let idleTimer = setTimeout(checkIdle, idleTimeoutMs);

    // Local service → outside peer: answers from the service only, up the stream as frames.
    const answers = (async () => {
      const buffer = new Uint8Array(RECEIVE_BUFFER_BYTES);
      while (!ended) {
        let received: [Uint8Array, Deno.Addr];
        try {
          received = await local.socket.receive(buffer);
        } catch {
          break;
        }
        const [data, from] = received;
        if (!local.isFromTarget(from)) {
          datagrams.drop("foreign_source");
          continue;
        }
        if (data.length > MAX_DATAGRAM_BYTES) {
          datagrams.drop("oversized");
          continue;
        }
        if (data.length === 0) {
          datagrams.drop("empty");
          continue;
        }
        lastActiveMs = performance.now();
        if (!writer.push(data.slice())) {
          datagrams.drop("queue_full");
          continue;
        }
        datagrams.datagramsOut++;
        counters.bytesOut += data.length;
      }
    })();

    // Outside peer → local service: each frame from the stream is one datagram sent to the service.
    const reader = new DatagramReader(stream);
    const sender = new PipelinedSender(
      (datagram) => local.socket.send(datagram, local.target),
      (sent, bytes) => {
        if (!sent) return datagrams.drop("send_failed");
        datagrams.datagramsIn++;
        counters.bytesIn += bytes;
      },
    );
    try {
      for (let datagram = await reader.next(); datagram !== null; datagram = await reader.next()) {
        lastActiveMs = performance.now();
        await sender.send(datagram);
      }
    } catch (error) {
      if (!idle && !ended) {
        failed = true;
        if (error instanceof DatagramFrameError) {
          logger.warn("Proxy {proxy}: flow {peer} carried a bad datagram frame ({error}); resetting it", {
            proxy: header.proxy,
            peer: header.peer_addr,
            error: error.message,
          });
        } else {
          logger.debug("Proxy {proxy}: flow {peer} ended: {error}", {
            proxy: header.proxy,
            peer: header.peer_addr,
            error: errorMessage(error),
          });
        }
      }
    } finally {
      table.delete(flow);
      await sender.drained();
      end();
      await answers;
      datagrams.flowsOpen--;
      if (failed) stream.reset();
      else stream.close();
    }
  },
};

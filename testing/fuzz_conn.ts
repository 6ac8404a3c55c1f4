/**
 * Connections for the fuzz and soak harnesses from a chosen loopback source address (127.x.y.z), so
 * hostile traffic comes from many addresses as it would from outside, and per-address limits (the
 * authentication throttle, pending-connection caps) meet it the way they would in production instead
 * of locking out the harness's own canary on 127.0.0.1. `Deno.connect` cannot pick a source address;
 * `node:net` can.
 *
 * @module
 */

import net from "node:net";
import tls from "node:tls";
import type { DuplexConn } from "../lib/net/conn.ts";
import { NodeSocketConn } from "../lib/net/node_socket_conn.ts";

/** A fuzz connection: a {@linkcode DuplexConn} that can also be torn down abruptly. */
export interface FuzzConn extends DuplexConn {
  /** Resets the connection (no TLS close_notify, no FIN handshake). */
  destroy(): void;
  /** Whether the remote end closed or the connection failed. */
  readonly ended: boolean;
}

/** The loopback source address with index `n` (spread over 127.1.0.0/16 … 127.250.0.0/16). */
export function sourceAddress(n: number): string {
  const index = Math.abs(Math.trunc(n)) % (250 * 250);
  return `127.${1 + Math.floor(index / 250)}.${1 + (index % 250)}.1`;
}

/**
 * A `node:net`/`node:tls` socket as a {@linkcode FuzzConn}: the library's adapter (reads, writes,
 * back-pressure), plus whether the socket ended and an abrupt reset.
 */
class SocketConn extends NodeSocketConn implements FuzzConn {
  #ended = false;

  constructor(readonly nodeSocket: net.Socket) {
    super(nodeSocket);
    const end = () => (this.#ended = true);
    nodeSocket.on("end", end);
    nodeSocket.on("close", end);
    nodeSocket.on("error", end);
  }

  get ended(): boolean {
    return this.#ended;
  }

  destroy(): void {
    this.nodeSocket.resetAndDestroy?.() ?? this.nodeSocket.destroy();
  }
}

/** Opens plain TCP from `localAddress` to 127.0.0.1:`port`; rejects after `timeoutMs`. */
export function dialTcp(port: number, localAddress: string, timeoutMs = 5000): Promise<FuzzConn> {
  return connectWith(
    () => net.connect({ host: "127.0.0.1", port, localAddress, noDelay: true }),
    "connect",
    timeoutMs,
  );
}

/**
 * Opens TLS from `localAddress` to 127.0.0.1:`port`, trusting `caPem` for the name `localhost`;
 * rejects after `timeoutMs`.
 */
export function dialTls(
  port: number,
  localAddress: string,
  caPem: string,
  timeoutMs = 5000,
): Promise<FuzzConn> {
  // node:tls passes localAddress on to node:net; its type declarations leave it out.
  const options: tls.ConnectionOptions & { localAddress: string } = {
    host: "127.0.0.1",
    port,
    localAddress,
    ca: [caPem],
    servername: "localhost",
  };
  return connectWith(
    () => tls.connect(options),
    "secureConnect",
    timeoutMs,
  );
}

function connectWith(open: () => net.Socket, readyEvent: string, timeoutMs: number): Promise<FuzzConn> {
  return new Promise((resolve, reject) => {
    const socket = open();
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`connection not ${readyEvent} within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once(readyEvent, () => {
      clearTimeout(timer);
      socket.setNoDelay(true);
      resolve(new SocketConn(socket));
    });
    socket.once("error", (error: Error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    });
  });
}

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
import type { DuplexConn } from "../lib/transport/conn.ts";

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

/** Adapts a `node:net`/`node:tls` socket to {@linkcode FuzzConn}. */
class SocketConn implements FuzzConn {
  #chunks: Uint8Array[] = [];
  #ended = false;
  #error: Error | null = null;
  #wake: (() => void) | null = null;

  constructor(readonly socket: net.Socket) {
    socket.on("data", (chunk: Uint8Array) => {
      this.#chunks.push(chunk);
      // The harness reads everything; a slow reader pauses so a flood of answers cannot pile up.
      if (this.#chunks.length > 256) socket.pause();
      this.#notify();
    });
    const end = () => {
      this.#ended = true;
      this.#notify();
    };
    socket.on("end", end);
    socket.on("close", end);
    socket.on("error", (error: Error) => {
      this.#error = error;
      end();
    });
  }

  get ended(): boolean {
    return this.#ended;
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#error) throw this.#error;
      if (this.#ended) return null;
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
    const chunk = this.#chunks[0] as Uint8Array;
    const count = Math.min(chunk.length, buffer.length);
    buffer.set(chunk.subarray(0, count));
    if (count === chunk.length) this.#chunks.shift();
    else this.#chunks[0] = chunk.subarray(count);
    if (this.#chunks.length < 64 && this.socket.isPaused()) this.socket.resume();
    return count;
  }

  write(data: Uint8Array): Promise<number> {
    if (this.#ended || this.socket.destroyed) {
      return Promise.reject(this.#error ?? new Deno.errors.BrokenPipe("fuzz connection closed"));
    }
    return new Promise((resolve, reject) => {
      // node copies nothing: the caller must not reuse `data`, which the harness never does.
      this.socket.write(data, (error?: Error | null) => (error ? reject(error) : resolve(data.length)));
    });
  }

  closeWrite(): Promise<void> {
    return new Promise((resolve) => this.socket.end(() => resolve()));
  }

  close(): void {
    this.socket.destroy();
  }

  destroy(): void {
    this.socket.resetAndDestroy?.() ?? this.socket.destroy();
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

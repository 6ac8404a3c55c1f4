/**
 * A `node:net` or `node:tls` socket seen as a {@linkcode DuplexConn}: the tunnel's server end (TLS over
 * a socket that can be closed in any state) and the client's `skip_verify` dialer use it.
 *
 * @module
 */

import type { Socket } from "node:net";
import type { DuplexConn } from "../net/conn.ts";

/** The part of a `node:net` socket this adapter uses (a `TLSSocket` is one too). */
export type NodeDuplexSocket = Pick<
  Socket,
  "on" | "once" | "write" | "end" | "destroy" | "pause" | "resume" | "isPaused" | "destroyed"
>;

/**
 * Adapts a `node:net`/`node:tls` socket to {@linkcode DuplexConn}. Received chunks wait in a list
 * until read; past {@linkcode NodeSocketConn.highWaterBytes} the socket is paused, so a reader that
 * falls behind applies TCP back-pressure instead of growing the list.
 */
export class NodeSocketConn implements DuplexConn {
  /** Unread bytes at which the socket is paused. */
  static readonly highWaterBytes = 1024 * 1024;
  #chunks: Uint8Array[] = [];
  #buffered = 0;
  #ended = false;
  #error: Error | null = null;
  #wake: (() => void) | null = null;

  /** Wraps `socket`; it must not be read by anyone else. */
  constructor(readonly socket: NodeDuplexSocket) {
    socket.on("data", (chunk: Uint8Array) => {
      this.#chunks.push(chunk);
      this.#buffered += chunk.length;
      if (this.#buffered >= NodeSocketConn.highWaterBytes) socket.pause();
      this.#notify();
    });
    socket.on("end", () => {
      this.#ended = true;
      this.#notify();
    });
    socket.on("close", () => {
      this.#ended = true;
      this.#notify();
    });
    socket.on("error", (error: Error) => {
      this.#error = error;
      this.#notify();
    });
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  /** Reads buffered bytes into `buffer`; `null` at end of stream. */
  async read(buffer: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#error) throw this.#error;
      if (this.#ended) return null;
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
    let copied = 0;
    while (copied < buffer.length && this.#chunks.length > 0) {
      const head = this.#chunks[0] as Uint8Array;
      const take = Math.min(head.length, buffer.length - copied);
      buffer.set(head.subarray(0, take), copied);
      copied += take;
      if (take === head.length) this.#chunks.shift();
      else this.#chunks[0] = head.subarray(take);
    }
    this.#buffered -= copied;
    if (this.#buffered < NodeSocketConn.highWaterBytes && this.socket.isPaused()) this.socket.resume();
    return copied;
  }

  /**
   * Writes all of `data`; resolves once the socket has taken it (written, or encrypted and written), so
   * `data` is not copied: like every {@linkcode DuplexConn}, the caller keeps it unchanged until then.
   */
  write(data: Uint8Array): Promise<number> {
    if (this.#error) return Promise.reject(this.#error);
    if (this.socket.destroyed) return Promise.reject(new Deno.errors.BrokenPipe("The connection is closed"));
    return new Promise((resolve, reject) => {
      this.socket.write(data, (error?: Error | null) => (error ? reject(error) : resolve(data.length)));
    });
  }

  /** Ends the write side (TLS sends close_notify first). */
  closeWrite(): Promise<void> {
    return new Promise((resolve) => this.socket.end(() => resolve()));
  }

  /** Destroys the socket in whatever state it is, freeing its file descriptor. */
  close(): void {
    this.socket.destroy();
  }
}

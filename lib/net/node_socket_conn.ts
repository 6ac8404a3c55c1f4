/**
 * A `node:net` or `node:tls` socket seen as a {@linkcode DuplexConn}: the tunnel's server end (TLS over
 * a socket that can be closed in any state), the client's `skip_verify` dialer, and the outbound proxy's
 * handshake (which then {@linkcode NodeSocketConn.detach}es it for `node:tls`) use it.
 *
 * @module
 */

import type { Socket } from "node:net";
import type { DuplexConn } from "./conn.ts";

/** The part of a `node:net` socket this adapter uses (a `TLSSocket` is one too). */
export type NodeDuplexSocket = Pick<
  Socket,
  "on" | "once" | "off" | "write" | "end" | "destroy" | "pause" | "resume" | "isPaused" | "destroyed"
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
  readonly #onData = (chunk: Uint8Array) => {
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    if (this.#buffered >= NodeSocketConn.highWaterBytes) this.socket.pause();
    this.#notify();
  };
  readonly #onEnd = () => {
    this.#ended = true;
    this.#notify();
  };
  readonly #onError = (error: Error) => {
    this.#error = error;
    this.#notify();
  };

  /** Wraps `socket`; it must not be read by anyone else. */
  constructor(readonly socket: NodeDuplexSocket) {
    socket.on("data", this.#onData);
    socket.on("end", this.#onEnd);
    socket.on("close", this.#onEnd);
    socket.on("error", this.#onError);
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

  /**
   * Stops reading the socket and leaves it paused with no listener of ours, as it was before (for
   * `node:tls` to take over); returns how many received bytes were not read (they are dropped). Reads
   * then return `null`.
   */
  detach(): number {
    this.socket.pause();
    this.socket.off("data", this.#onData);
    this.socket.off("end", this.#onEnd);
    this.socket.off("close", this.#onEnd);
    this.socket.off("error", this.#onError);
    this.#ended = true;
    this.#notify();
    const unread = this.#buffered;
    this.#chunks = [];
    this.#buffered = 0;
    return unread;
  }

  /** Destroys the socket in whatever state it is, freeing its file descriptor. */
  close(): void {
    this.socket.destroy();
  }
}

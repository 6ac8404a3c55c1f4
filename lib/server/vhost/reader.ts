/**
 * A reader over a connection that can hold back bytes read past a message head, and hand them out
 * first: an HTTP exchange reads a head, then streams the body (and, on keep-alive, the next head) from
 * the same bytes. Nothing is buffered beyond one read and one head.
 *
 * @module
 */

import type { DuplexConn } from "../../net/conn.ts";
import { findHeadEnd, HttpHeadError } from "./http_head.ts";

/** Size of one read from the connection. */
const READ_BYTES = 16 * 1024;

/** A connection ended inside a message head. */
export class TruncatedHeadError extends Error {
  override name = "TruncatedHeadError";
}

/** Reads heads and body bytes from one connection, keeping what was read ahead. */
export class BufferedReader {
  #held: Uint8Array | null = null;
  #buffer: Uint8Array | null = null;

  constructor(readonly conn: DuplexConn) {}

  /** Whether bytes read ahead are waiting. */
  get hasHeld(): boolean {
    return this.#held !== null && this.#held.length > 0;
  }

  /** Takes the bytes read ahead (for a connection that becomes a tunnel). */
  takeHeld(): Uint8Array | null {
    const held = this.#held;
    this.#held = null;
    return held;
  }

  /** Puts `bytes` back in front: the next read returns them first. */
  unread(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    if (!this.#held || this.#held.length === 0) {
      this.#held = bytes;
      return;
    }
    const joined = new Uint8Array(bytes.length + this.#held.length);
    joined.set(bytes);
    joined.set(this.#held, bytes.length);
    this.#held = joined;
  }

  /** The next bytes, at most `maxBytes` (the held ones first); null at end of stream. */
  async next(maxBytes = READ_BYTES): Promise<Uint8Array | null> {
    const held = this.#held;
    if (held && held.length > 0) {
      if (held.length <= maxBytes) {
        this.#held = null;
        return held;
      }
      this.#held = held.subarray(maxBytes);
      return held.subarray(0, maxBytes);
    }
    // One read buffer per reader; what was read is copied out at its size (a request head is a few hundred
    // bytes: a fresh buffer per read cost more than the copy). 16 KiB: each open connection holds one.
    this.#buffer ??= new Uint8Array(READ_BYTES);
    const count = await this.conn.read(this.#buffer.subarray(0, Math.min(maxBytes, READ_BYTES)));
    return count === null ? null : this.#buffer.slice(0, count);
  }

  /**
   * Reads one message head (through its blank line); what follows stays held. Null when the stream
   * ends before a byte of it.
   *
   * @throws {HttpHeadError} 431 when no head end is found within `maxBytes`
   * @throws {TruncatedHeadError} when the stream ends inside the head
   */
  async readHead(maxBytes: number): Promise<Uint8Array | null> {
    let buffer = new Uint8Array(0);
    while (true) {
      const chunk = await this.next();
      if (chunk === null) {
        if (buffer.length === 0) return null;
        throw new TruncatedHeadError(`the connection ended after ${buffer.length} bytes of a head`);
      }
      // Skip the empty lines a client may send between requests (RFC 9112 §2.2).
      let start = 0;
      if (buffer.length === 0) {
        while (start < chunk.length && (chunk[start] === 0x0d || chunk[start] === 0x0a)) start++;
        if (start === chunk.length) continue;
      }
      const joined = new Uint8Array(buffer.length + chunk.length - start);
      joined.set(buffer);
      joined.set(chunk.subarray(start), buffer.length);
      const end = findHeadEnd(joined, Math.max(0, buffer.length - 3));
      if (end !== -1) {
        if (end > maxBytes) throw new HttpHeadError(431, `a head of more than ${maxBytes} bytes`);
        this.unread(joined.subarray(end));
        return joined.subarray(0, end);
      }
      if (joined.length > maxBytes) throw new HttpHeadError(431, `a head of more than ${maxBytes} bytes`);
      buffer = joined;
    }
  }
}

/**
 * The byte-stream contract shared by every layer: the part of `Deno.Conn` the multiplexer, the RPC
 * framing and the copy loops need. `Deno.Conn`, `Deno.TlsConn`, a yamux `Stream` and the in-memory
 * pair in `memory_pair.ts` all satisfy it.
 *
 * @module
 */

/** A bidirectional byte stream with half-close, read and written through the fast `read`/`write` path. */
export interface DuplexConn {
  /** Reads up to `buffer.length` bytes into `buffer`; resolves to the count, or `null` at end of stream. */
  read(buffer: Uint8Array): Promise<number | null>;
  /** Writes some of `data`; resolves to the number of bytes written (callers loop until all is written). */
  write(data: Uint8Array): Promise<number>;
  /** Half-closes: the peer reads end of stream once it has read everything written before. */
  closeWrite(): Promise<void>;
  /** Closes both directions and releases the resource. Safe to call more than once. */
  close(): void;
}

/** Writes all of `data` to `conn`, looping over short writes. */
export async function writeAll(conn: Pick<DuplexConn, "write">, data: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < data.length) {
    offset += await conn.write(offset === 0 ? data : data.subarray(offset));
  }
}

/**
 * A {@linkcode DuplexConn} that can also lend its own buffered bytes instead of copying them into the
 * caller's buffer (a yamux `Stream`): a copy loop writes the lent view and releases it once written.
 */
export interface LendingConn extends DuplexConn {
  /**
   * Resolves with a view of at most `maxBytes` received bytes, or `null` at end of stream. The view is
   * valid and unchanged until `releaseLent()`; no other read may start before that.
   */
  readLent(maxBytes: number): Promise<Uint8Array | null>;
  /** Consumes the bytes the last `readLent()` lent. */
  releaseLent(): void;
}

/** Whether `conn` can lend its buffered bytes ({@linkcode LendingConn}). */
export function isLendingConn(conn: DuplexConn): conn is LendingConn {
  return typeof (conn as Partial<LendingConn>).readLent === "function";
}

/**
 * `conn` with `prefix` read first: bytes already taken from it (a peeked ClientHello or preface) handed
 * out again before the rest of the stream. Writes, half-close and close go to `conn`.
 */
export class PrefixedConn<C extends DuplexConn = DuplexConn> implements DuplexConn {
  #prefix: Uint8Array;

  constructor(/** The connection the prefix was read from. */ readonly conn: C, prefix: Uint8Array) {
    this.#prefix = prefix;
  }

  /** Reads the prefix's bytes first, then `conn`'s. */
  read(buffer: Uint8Array): Promise<number | null> {
    if (this.#prefix.length === 0) return this.conn.read(buffer);
    const count = Math.min(buffer.length, this.#prefix.length);
    buffer.set(this.#prefix.subarray(0, count));
    this.#prefix = this.#prefix.subarray(count);
    return Promise.resolve(count);
  }

  /** Writes to `conn`. */
  write(data: Uint8Array): Promise<number> {
    return this.conn.write(data);
  }

  /** Half-closes `conn`. */
  closeWrite(): Promise<void> {
    return this.conn.closeWrite();
  }

  /** Closes `conn`. */
  close(): void {
    this.conn.close();
  }
}

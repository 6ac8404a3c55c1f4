/**
 * Copying between two connections: the loop that carries every outside connection through the tunnel.
 *
 * Buffers adapt to the traffic. An idle or chatty direction reads into one small buffer, one read and
 * one write at a time, so an idle connection costs little memory. A direction whose reads fill that
 * buffer is bulk traffic: it pipelines, reading the next chunk while the previous one is written, with
 * buffers borrowed from shared pools for one chunk each. A read that filled its buffer is followed by a
 * large one; a read that did not (the source is slower than us, or its burst ended) by a medium one, so a
 * connection that goes quiet after a burst waits with a medium buffer, not a large one. A chunk's buffer
 * goes back to its pool as soon as it is written. When reads become small again the loop goes back to
 * the small buffer.
 *
 * A source that lends its own buffer (a yamux stream, {@linkcode LendingConn}) needs no buffer of ours:
 * the loop writes the view it lends and releases it once written, so bytes go from the tunnel connection
 * to the outside socket without JavaScript copying them, and an idle direction holds no buffer at all.
 * The stream keeps receiving into its free space while a view is written, which pipelines the two.
 *
 * @module
 */

import { type DuplexConn, isLendingConn, type LendingConn, writeAll } from "./conn.ts";
import { resetTcpConn } from "./tcp_reset.ts";

/** Size of the buffer an idle or low-traffic direction reads into. */
export const SMALL_BUFFER_BYTES = 1024;
/** Size of the buffers a bulk direction reads into while its reads fill them. */
export const LARGE_BUFFER_BYTES = 256 * 1024;
/** Size of the buffer a bulk direction reads into after a read that did not fill its buffer. */
export const MEDIUM_BUFFER_BYTES = 16 * 1024;
/** Most bytes written from one lent view (a view never spans the end of the lender's ring anyway). */
const LENT_WRITE_MAX_BYTES = 256 * 1024;
/** Buffers kept for reuse when no direction holds them (16 MiB of large ones, 4 MiB of medium ones). */
const LARGE_BUFFER_POOL_LIMIT = 64;
const MEDIUM_BUFFER_POOL_LIMIT = 256;

const largeBufferPool: Uint8Array[] = [];
const mediumBufferPool: Uint8Array[] = [];

function borrowBuffer(size: number): Uint8Array {
  const pool = size === LARGE_BUFFER_BYTES ? largeBufferPool : mediumBufferPool;
  return pool.pop() ?? new Uint8Array(size);
}

function returnBuffer(buffer: Uint8Array): void {
  if (buffer.length === LARGE_BUFFER_BYTES) {
    if (largeBufferPool.length < LARGE_BUFFER_POOL_LIMIT) largeBufferPool.push(buffer);
  } else if (buffer.length === MEDIUM_BUFFER_BYTES && mediumBufferPool.length < MEDIUM_BUFFER_POOL_LIMIT) {
    mediumBufferPool.push(buffer);
  }
}

/** Chunks written by every copy loop of this process so far. */
let chunksCopied = 0;

/**
 * How many chunks every copy loop of this process has written so far: a cheap sign of activity (the CLI
 * collects garbage once it stops changing).
 */
export function copiedChunks(): number {
  return chunksCopied;
}

/** Options of {@linkcode pipeBoth}. */
export interface PipeOptions {
  /** Called after each chunk is written, with its size (for live byte counters). */
  onBytes?: (direction: "aToB" | "bToA", bytes: number) => void;
  /**
   * Counters to add each chunk's size to as it is written: `aToB` bytes to `bytesIn`, `bToA` bytes to
   * `bytesOut` (a proxy's live stats). Cheaper than `onBytes` for thousands of connections: no closure.
   */
  counters?: { bytesIn: number; bytesOut: number };
}

/** Bytes moved each way by {@linkcode pipeBoth}. */
export interface PipeResult {
  /** Bytes read from `a` and written to `b`. */
  aToBBytes: number;
  /** Bytes read from `b` and written to `a`. */
  bToABytes: number;
  /** The first error that ended the copy early, if any (a reset, a broken pipe). */
  error?: unknown;
}

/** Where a copy loop reports its chunks and its end (no closures per connection). */
interface CopySink {
  /** `bytes` of direction `aToB` (or the other) were written. */
  chunk(aToB: boolean, bytes: number): void;
  /** The direction ended: cleanly (`error` null, after half-closing `to`) or with `error`. */
  end(aToB: boolean, error: unknown, total: number): void;
}

/** Keeps a read that may be abandoned (its direction failed on a write) from being an unhandled rejection. */
function ignoreRejection(): void {}

/**
 * Copies `from` to `to` until `from` ends, then half-closes `to`. Resolves to the byte count; rejects
 * with the read or write error that stopped it. `onChunk` is called after each chunk is written.
 */
export function copyOneWay(
  from: DuplexConn,
  to: DuplexConn,
  onChunk?: (bytes: number) => void,
): Promise<number> {
  return new Promise((resolve, reject) => {
    void copyLoop(from, to, true, {
      chunk: (_aToB, bytes) => {
        chunksCopied++;
        onChunk?.(bytes);
      },
      end: (_aToB, error, total) => error === null ? resolve(total) : reject(error),
    });
  });
}

/**
 * The copy loop behind {@linkcode copyOneWay} and {@linkcode pipeBoth}: reports to `sink` and never
 * rejects. Idle and chatty traffic goes through one small buffer; bulk traffic through
 * {@linkcode copyBulk}.
 */
async function copyLoop(from: DuplexConn, to: DuplexConn, aToB: boolean, sink: CopySink): Promise<void> {
  if (isLendingConn(from)) return copyLentLoop(from, to, aToB, sink);
  let small: Uint8Array | null = null;
  let total = 0;
  try {
    while (true) {
      small ??= new Uint8Array(SMALL_BUFFER_BYTES);
      const count = await from.read(small);
      if (count === null) break;
      if (count === 0) continue;
      if (count < small.length) {
        // Small reads: one buffer, one operation at a time.
        const written = await to.write(small.subarray(0, count));
        if (written < count) await writeAll(to, small.subarray(written, count));
        total += count;
        sink.chunk(aToB, count);
        continue;
      }
      // The read filled the small buffer: bulk traffic. Pipeline with two large buffers until reads get
      // small again (or the source ends).
      const first = small;
      small = null;
      const bulk = await copyBulk(from, to, first, count, aToB, sink);
      total += bulk.bytes;
      if (bulk.ended) break;
    }
    await to.closeWrite();
  } catch (error) {
    sink.end(aToB, error, total);
    return;
  }
  sink.end(aToB, null, total);
}

/** The copy loop for a source that lends its buffer: write each lent view, then release it. */
async function copyLentLoop(from: LendingConn, to: DuplexConn, aToB: boolean, sink: CopySink): Promise<void> {
  let total = 0;
  try {
    while (true) {
      const view = await from.readLent(LENT_WRITE_MAX_BYTES);
      if (view === null) break;
      const count = view.length;
      const written = await to.write(view);
      if (written < count) await writeAll(to, view.subarray(written));
      from.releaseLent();
      total += count;
      sink.chunk(aToB, count);
    }
    await to.closeWrite();
  } catch (error) {
    sink.end(aToB, error, total);
    return;
  }
  sink.end(aToB, null, total);
}

/**
 * The bulk phase of the copy loop: writes `count` bytes of `pending` (the full small buffer) and,
 * meanwhile, reads the next chunk into a borrowed buffer; repeats until a read returns fewer than
 * {@linkcode SMALL_BUFFER_BYTES} bytes (that chunk is written too) or the source ends.
 */
async function copyBulk(
  from: DuplexConn,
  to: DuplexConn,
  pending: Uint8Array,
  count: number,
  aToB: boolean,
  sink: CopySink,
): Promise<{ bytes: number; ended: boolean }> {
  let bytes = 0;
  let chunk = pending;
  let chunkBytes = count;
  let nextSize = LARGE_BUFFER_BYTES;
  while (true) {
    const target = borrowBuffer(nextSize);
    const writing = to.write(chunkBytes === chunk.length ? chunk : chunk.subarray(0, chunkBytes));
    const reading = from.read(target);
    // After a failure the read may still be filling `target`: it is left to the garbage collector.
    reading.catch(ignoreRejection);
    const written = await writing;
    if (written < chunkBytes) await writeAll(to, chunk.subarray(written, chunkBytes));
    // Written: its buffer is free before we wait for the read, which may take as long as the source is idle.
    if (chunk !== pending) returnBuffer(chunk);
    bytes += chunkBytes;
    sink.chunk(aToB, chunkBytes);
    const nextBytes = await reading;
    if (nextBytes === null) {
      returnBuffer(target);
      return { bytes, ended: true };
    }
    if (nextBytes < SMALL_BUFFER_BYTES) {
      // Traffic slowed down: write this last chunk, then go back to the small buffer.
      if (nextBytes > 0) {
        await writeAll(to, target.subarray(0, nextBytes));
        bytes += nextBytes;
        sink.chunk(aToB, nextBytes);
      }
      returnBuffer(target);
      return { bytes, ended: false };
    }
    chunk = target;
    chunkBytes = nextBytes;
    nextSize = nextBytes === target.length ? LARGE_BUFFER_BYTES : MEDIUM_BUFFER_BYTES;
  }
}

/** Both directions of {@linkcode pipeBoth}: one object per connection, so no closures per connection. */
class BothWays implements CopySink {
  readonly result: PipeResult = { aToBBytes: 0, bToABytes: 0 };
  readonly done: Promise<PipeResult>;
  #resolve: (result: PipeResult) => void = () => {};
  /** Directions still copying. */
  #running = 2;

  constructor(readonly a: DuplexConn, readonly b: DuplexConn, readonly options: PipeOptions) {
    this.done = new Promise((resolve) => (this.#resolve = resolve));
    void copyLoop(a, b, true, this);
    void copyLoop(b, a, false, this);
  }

  chunk(aToB: boolean, bytes: number): void {
    chunksCopied++;
    const { counters, onBytes } = this.options;
    if (aToB) {
      this.result.aToBBytes += bytes;
      if (counters !== undefined) counters.bytesIn += bytes;
    } else {
      this.result.bToABytes += bytes;
      if (counters !== undefined) counters.bytesOut += bytes;
    }
    onBytes?.(aToB ? "aToB" : "bToA", bytes);
  }

  end(_aToB: boolean, error: unknown, _total: number): void {
    if (error !== null) {
      // One direction failed (a reset, a lost session, a broken pipe): the transfer is cut, so both ends
      // are reset, not closed: a FIN would tell each peer that everything arrived. It also ends the other
      // direction.
      this.result.error ??= error;
      abortQuietly(this.a);
      abortQuietly(this.b);
    }
    if (--this.#running > 0) return;
    closeQuietly(this.a);
    closeQuietly(this.b);
    this.#resolve(this.result);
  }
}

/**
 * Copies both ways between `a` and `b` with half-close propagated each way, until both directions
 * end; then closes both. When one direction fails (reset, lost session, broken pipe), both are aborted
 * with {@linkcode abortQuietly}, so a peer of a cut transfer reads a reset, never a clean end. Never
 * rejects: the error, if any, is in the result.
 */
export function pipeBoth(a: DuplexConn, b: DuplexConn, options: PipeOptions = {}): Promise<PipeResult> {
  return new BothWays(a, b, options).done;
}

/**
 * Ends `conn` abortively, ignoring errors: a yamux stream (anything with `reset()`) is reset, a TCP
 * connection gets a TCP reset where this process can send one ({@linkcode resetTcpConn}), anything else is
 * closed.
 */
export function abortQuietly(conn: { close(): void; reset?: () => void }): void {
  try {
    if (typeof conn.reset === "function") conn.reset();
    else resetTcpConn(conn);
  } catch {
    // Already closed or never fully opened: nothing left to abort.
  }
}

/** Closes `conn`, ignoring "already closed" and similar errors. */
export function closeQuietly(conn: { close(): void }): void {
  try {
    conn.close();
  } catch {
    // Already closed or never fully opened: nothing left to release.
  }
}

/**
 * Copying between two connections: the loop that carries every outside connection through the tunnel.
 *
 * Memory per connection must not depend on the traffic's shape, and an idle socket's pending read holds
 * its buffer for as long as the socket is quiet (Deno pins the buffer of a pending read; freed buffers
 * mostly stay in the process's RSS too, so what matters is what is ever allocated). So every read that may
 * wait for a quiet source uses the direction's own small buffer (1 KiB), and larger buffers are borrowed
 * only while there is evidence of more data queued, from pools whose total is capped.
 *
 * A direction reads into its small buffer, one read and one write at a time. After
 * {@linkcode FULL_SMALL_READS_BEFORE_BULK} full small reads in a row it is bulk traffic: it pipelines,
 * reading the next chunk while the previous one is written, into buffers borrowed for one chunk each (the
 * first medium, then large while reads fill them, medium after a read that did not fill its buffer but
 * brought at least a medium buffer's worth: a stream slower than us). A read that brings less means the
 * source is drained and sends little: that chunk is written and the direction waits with its small buffer
 * again. One full read is not enough evidence: a message of exactly 1 KiB fills the small buffer and is
 * then often followed by silence (measured before this rule: 10,000 connections that echoed 1,024 bytes and stayed
 * open each kept a 256 KiB buffer pinned, ≈ 145 KiB of RSS per connection on each side).
 *
 * Borrowed buffers exist at most {@linkcode LARGE_BUFFER_LIMIT} large and {@linkcode MEDIUM_BUFFER_LIMIT}
 * medium at a time in the process (lent out or kept for reuse): a sender that times its bytes so that a
 * borrowed read is left waiting pins at most those, whatever the number of connections. When none is left
 * a direction copies through its small buffer (slower, never unbounded).
 *
 * A source that lends its own buffer (a yamux stream, {@linkcode LendingConn}) needs no buffer of ours:
 * the loop writes the view it lends and releases it once written, so bytes go from the tunnel connection
 * to the outside socket without JavaScript copying them, and an idle direction holds no buffer at all.
 * The stream keeps receiving into its free space while a view is written, which pipelines the two.
 *
 * @module
 */

import { type DuplexConn, isLendingConn, type LendingConn, writeAll } from "../net/conn.ts";
import { resetTcpConn } from "../net/tcp_reset.ts";

/** Size of the buffer each direction owns: idle and chatty traffic, and every read after a drained one. */
export const SMALL_BUFFER_BYTES = 1024;
/** Size of the first buffer a bulk phase borrows. */
export const MEDIUM_BUFFER_BYTES = 16 * 1024;
/** Size of the buffers a bulk direction borrows while its reads fill them. */
export const LARGE_BUFFER_BYTES = 256 * 1024;
/**
 * Full small reads in a row after which a direction counts as bulk traffic and borrows buffers. Two, not
 * one: a single full read is what a 1 KiB message makes.
 */
export const FULL_SMALL_READS_BEFORE_BULK = 2;
/** Most large buffers in the process at once, lent out or kept (16 MiB). */
export const LARGE_BUFFER_LIMIT = 64;
/** Most medium buffers in the process at once, lent out or kept (8 MiB). */
export const MEDIUM_BUFFER_LIMIT = 512;
/** Most bytes written from one lent view (a view never spans the end of the lender's ring anyway). */
const LENT_WRITE_MAX_BYTES = 256 * 1024;

/**
 * Buffers of one size, lent for one chunk each, with a cap on how many exist at once. Buffers given back
 * are kept for the next borrower: freeing them would not lower RSS (the allocator keeps the memory), and
 * reusing them means the cap bounds what the copy loops ever allocate.
 */
class CappedBufferPool {
  readonly #kept: Uint8Array[] = [];
  /** Buffers that exist: lent out plus kept. */
  #existing = 0;

  constructor(readonly bufferBytes: number, readonly maxBuffers: number) {}

  /** A buffer for one chunk, or null when {@linkcode maxBuffers} are lent out already. */
  borrow(): Uint8Array | null {
    const kept = this.#kept.pop();
    if (kept !== undefined) return kept;
    if (this.#existing >= this.maxBuffers) return null;
    this.#existing++;
    return new Uint8Array(this.bufferBytes);
  }

  /** `buffer` (from {@linkcode borrow}) is no longer read or written by anyone. */
  giveBack(buffer: Uint8Array): void {
    this.#kept.push(buffer);
  }

  /** `buffer` (from {@linkcode borrow}) may still be in use by a failed operation: leave it to the GC. */
  forget(_buffer: Uint8Array): void {
    this.#existing--;
  }

  /** Buffers lent out now. */
  get lent(): number {
    return this.#existing - this.#kept.length;
  }

  /** Buffers that exist (lent out or kept). */
  get existing(): number {
    return this.#existing;
  }
}

const largeBuffers = new CappedBufferPool(LARGE_BUFFER_BYTES, LARGE_BUFFER_LIMIT);
const mediumBuffers = new CappedBufferPool(MEDIUM_BUFFER_BYTES, MEDIUM_BUFFER_LIMIT);

function poolOf(buffer: Uint8Array): CappedBufferPool {
  return buffer.length === LARGE_BUFFER_BYTES ? largeBuffers : mediumBuffers;
}

/** Borrowed copy buffers of this process: how many exist and how many are lent out now, by size. */
export interface CopyBufferCounts {
  /** Large buffers that exist (lent out or kept); at most {@linkcode LARGE_BUFFER_LIMIT}. */
  largeExisting: number;
  /** Large buffers lent to a read or a write now. */
  largeLent: number;
  /** Medium buffers that exist (lent out or kept); at most {@linkcode MEDIUM_BUFFER_LIMIT}. */
  mediumExisting: number;
  /** Medium buffers lent to a read or a write now. */
  mediumLent: number;
}

/** How many borrowed copy buffers exist and are lent out now (for tests and diagnostics). */
export function copyBufferCounts(): CopyBufferCounts {
  return {
    largeExisting: largeBuffers.existing,
    largeLent: largeBuffers.lent,
    mediumExisting: mediumBuffers.existing,
    mediumLent: mediumBuffers.lent,
  };
}

/** Chunks written by every copy loop of this process so far, plus the pipes that ended. */
let chunksCopied = 0;

/**
 * How many chunks every copy loop of this process has written so far, plus how many {@linkcode pipeBoth}
 * pipes ended: a cheap sign of activity (the CLI collects garbage once it stops changing). Ends count too:
 * 10,000 connections that closed after a quiet spell leave their memory to a collection that would
 * otherwise not run, since closing copies nothing.
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

/** Keeps a read that may be abandoned (its direction failed on a write) from being an unhandled rejection. */
function ignoreRejection(): void {}

/**
 * The copy loop behind {@linkcode copyOneWay} and {@linkcode pipeBoth}: reports to `sink` and never
 * rejects. Idle and chatty traffic goes through the direction's small buffer; bulk traffic through
 * {@linkcode copyBulk}.
 */
async function copyLoop(from: DuplexConn, to: DuplexConn, aToB: boolean, sink: CopySink): Promise<void> {
  if (isLendingConn(from)) return copyLentLoop(from, to, aToB, sink);
  const small = new Uint8Array(SMALL_BUFFER_BYTES);
  let fullReads = 0;
  let total = 0;
  try {
    while (true) {
      const count = await from.read(small);
      if (count === null) break;
      if (count === 0) continue;
      fullReads = count === small.length ? fullReads + 1 : 0;
      if (fullReads >= FULL_SMALL_READS_BEFORE_BULK) {
        // More is queued than the small buffer takes: pipeline through borrowed buffers until the source
        // is drained (or no buffer is left to borrow).
        fullReads = 0;
        const bulk = await copyBulk(from, to, small, count, aToB, sink);
        total += bulk.bytes;
        if (bulk.ended) break;
        continue;
      }
      // One operation at a time; the next read waits with this small buffer.
      await writeAll(to, small.subarray(0, count));
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
 * The bulk phase of the copy loop: writes `count` bytes of `small` (the direction's own buffer, just
 * filled) and, meanwhile, reads the next chunk into a borrowed buffer (medium first, large after a full
 * read, medium after a partial one); repeats until a read brings less than a medium buffer's worth (that
 * chunk is written too), the source ends, or no buffer is left to borrow. Every borrowed buffer is back in
 * its pool when this returns, so the read that waits through a quiet period afterwards holds only the
 * small buffer.
 */
async function copyBulk(
  from: DuplexConn,
  to: DuplexConn,
  small: Uint8Array,
  count: number,
  aToB: boolean,
  sink: CopySink,
): Promise<{ bytes: number; ended: boolean }> {
  let bytes = 0;
  let chunk = small;
  let chunkBytes = count;
  let pool = mediumBuffers;
  while (true) {
    const target = pool.borrow() ?? (pool === largeBuffers ? mediumBuffers.borrow() : null);
    if (target === null) {
      // Every buffer is lent: write this chunk and go on through the small buffer.
      await writeChunk(to, chunk, chunkBytes, small);
      bytes += chunkBytes;
      sink.chunk(aToB, chunkBytes);
      return { bytes, ended: false };
    }
    const reading = from.read(target);
    // It may fail while the write is awaited: handled below, never an unhandled rejection meanwhile.
    reading.catch(ignoreRejection);
    try {
      const written = await to.write(chunkBytes === chunk.length ? chunk : chunk.subarray(0, chunkBytes));
      if (written < chunkBytes) await writeAll(to, chunk.subarray(written, chunkBytes));
    } catch (error) {
      // The read may still be filling `target` (until the caller closes `from`): both buffers are left to
      // the garbage collector.
      poolOf(target).forget(target);
      if (chunk !== small) poolOf(chunk).forget(chunk);
      throw error;
    }
    // Written: its buffer is free before we wait for the read, which may take as long as the source is idle.
    if (chunk !== small) poolOf(chunk).giveBack(chunk);
    bytes += chunkBytes;
    sink.chunk(aToB, chunkBytes);
    let nextBytes: number | null;
    try {
      nextBytes = await reading;
    } catch (error) {
      poolOf(target).giveBack(target);
      throw error;
    }
    if (nextBytes === null) {
      poolOf(target).giveBack(target);
      return { bytes, ended: true };
    }
    if (nextBytes < MEDIUM_BUFFER_BYTES) {
      // The source is drained and sends little: write this last chunk; the next read waits with the small
      // buffer.
      await writeChunk(to, target, nextBytes, small);
      bytes += nextBytes;
      if (nextBytes > 0) sink.chunk(aToB, nextBytes);
      return { bytes, ended: false };
    }
    // A full read: more is queued, read large. A partial one of at least a medium buffer: a stream slower
    // than us (or the end of a burst), read medium; if the source then goes quiet, that read waits with a
    // medium buffer, of which the process has at most MEDIUM_BUFFER_LIMIT.
    chunk = target;
    chunkBytes = nextBytes;
    pool = nextBytes === target.length ? largeBuffers : mediumBuffers;
  }
}

/**
 * Writes `count` bytes of `chunk`, then gives `chunk` back to its pool unless it is the direction's
 * `small` buffer; after a failed write a borrowed `chunk` is left to the garbage collector.
 */
async function writeChunk(
  to: DuplexConn,
  chunk: Uint8Array,
  count: number,
  small: Uint8Array,
): Promise<void> {
  try {
    if (count > 0) await writeAll(to, chunk.subarray(0, count));
  } catch (error) {
    if (chunk !== small) poolOf(chunk).forget(chunk);
    throw error;
  }
  if (chunk !== small) poolOf(chunk).giveBack(chunk);
}

/**
 * Both directions of {@linkcode pipeBoth}: the sink of their copy loops, one object per connection (no
 * closures per connection).
 */
class BothWays implements CopySink {
  readonly result: PipeResult = { aToBBytes: 0, bToABytes: 0 };

  constructor(readonly a: DuplexConn, readonly b: DuplexConn, readonly options: PipeOptions) {}

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
    if (error === null) return;
    // One direction failed (a reset, a lost session, a broken pipe): the transfer is cut, so both ends
    // are reset, not closed: a FIN would tell each peer that everything arrived. It also ends the other
    // direction.
    this.result.error ??= error;
    abortQuietly(this.a);
    abortQuietly(this.b);
  }
}

/**
 * Copies both ways between `a` and `b` with half-close propagated each way, until both directions
 * end; then closes both. When one direction fails (reset, lost session, broken pipe), both are aborted
 * with {@linkcode abortQuietly}, so a peer of a cut transfer reads a reset, never a clean end. Never
 * rejects: the error, if any, is in the result.
 */
export async function pipeBoth(a: DuplexConn, b: DuplexConn, options: PipeOptions = {}): Promise<PipeResult> {
  const both = new BothWays(a, b, options);
  // Awaited here rather than settled through a resolver kept on the sink: with that pattern about 6 % of
  // the bytes a short connection allocates survived each scavenge (the connection's stream and promises,
  // promoted and freed only by a full collection), against 0.9 % this way (scratch measurement, issue 10
  // item 5): scavenges copy less and pause for less. copyLoop never rejects.
  await Promise.all([copyLoop(a, b, true, both), copyLoop(b, a, false, both)]);
  closeQuietly(a);
  closeQuietly(b);
  chunksCopied++; // an ended pipe is activity too: what it held is garbage now
  return both.result;
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

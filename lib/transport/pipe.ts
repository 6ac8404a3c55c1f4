/**
 * Copying between two connections: the loop that carries every outside connection through the tunnel.
 *
 * Buffers adapt to the traffic: an idle or chatty connection reads into a small buffer, and a connection
 * whose reads fill that buffer switches to a large one borrowed from a shared pool, which it returns
 * when traffic slows down again. This keeps an idle connection's cost at a few KiB while a bulk transfer
 * still moves large chunks per system call.
 *
 * @module
 */

import { type DuplexConn, writeAll } from "./conn.ts";

/** Size of the buffer an idle or low-traffic direction reads into. */
export const SMALL_BUFFER_BYTES = 2 * 1024;
/** Size of the buffer a bulk direction reads into. */
export const LARGE_BUFFER_BYTES = 256 * 1024;
/** Large buffers kept for reuse when no direction holds them. */
const LARGE_BUFFER_POOL_LIMIT = 64;

const largeBufferPool: Uint8Array[] = [];

function borrowLargeBuffer(): Uint8Array {
  return largeBufferPool.pop() ?? new Uint8Array(LARGE_BUFFER_BYTES);
}

function returnLargeBuffer(buffer: Uint8Array): void {
  if (largeBufferPool.length < LARGE_BUFFER_POOL_LIMIT) largeBufferPool.push(buffer);
}

/** Options of {@linkcode copyOneWay} and {@linkcode pipeBoth}. */
export interface PipeOptions {
  /** Called after each chunk is written, with its size (for live byte counters). */
  onBytes?: (direction: "aToB" | "bToA", bytes: number) => void;
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

/**
 * Copies `from` to `to` until `from` ends, then half-closes `to`. Resolves to the byte count; rejects
 * with the read or write error that stopped it.
 */
export async function copyOneWay(
  from: DuplexConn,
  to: DuplexConn,
  onChunk?: (bytes: number) => void,
): Promise<number> {
  let small: Uint8Array | null = new Uint8Array(SMALL_BUFFER_BYTES);
  let large: Uint8Array | null = null;
  let total = 0;
  try {
    while (true) {
      const buffer: Uint8Array = large ?? small ?? (small = new Uint8Array(SMALL_BUFFER_BYTES));
      const count = await from.read(buffer);
      if (count === null) break;
      if (count === 0) continue;
      await writeAll(to, buffer.subarray(0, count));
      total += count;
      onChunk?.(count);
      if (large === null && count === buffer.length) {
        large = borrowLargeBuffer();
        small = null;
      } else if (large !== null && count < SMALL_BUFFER_BYTES) {
        returnLargeBuffer(large);
        large = null;
      }
    }
  } finally {
    if (large !== null) returnLargeBuffer(large);
  }
  await to.closeWrite();
  return total;
}

/**
 * Copies both ways between `a` and `b` with half-close propagated each way, until both directions
 * end; then closes both. When one direction fails (reset, broken pipe), both connections are closed so
 * the other direction ends too. Never rejects: the error, if any, is in the result.
 */
export async function pipeBoth(a: DuplexConn, b: DuplexConn, options: PipeOptions = {}): Promise<PipeResult> {
  const result: PipeResult = { aToBBytes: 0, bToABytes: 0 };
  const onBytes = options.onBytes;
  const fail = (error: unknown) => {
    result.error ??= error;
    closeQuietly(a);
    closeQuietly(b);
  };
  await Promise.all([
    copyOneWay(a, b, (bytes) => {
      result.aToBBytes += bytes;
      onBytes?.("aToB", bytes);
    }).catch(fail),
    copyOneWay(b, a, (bytes) => {
      result.bToABytes += bytes;
      onBytes?.("bToA", bytes);
    }).catch(fail),
  ]);
  closeQuietly(a);
  closeQuietly(b);
  return result;
}

/** Closes `conn`, ignoring "already closed" and similar errors. */
export function closeQuietly(conn: { close(): void }): void {
  try {
    conn.close();
  } catch {
    // Already closed or never fully opened: nothing left to release.
  }
}

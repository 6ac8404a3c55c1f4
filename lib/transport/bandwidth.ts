/**
 * `bandwidth_limit`: a token bucket per proxy, shared by all its connections and both directions, and a
 * wrapper that makes a {@linkcode DuplexConn} pay for the bytes it moves. The copy loop
 * (`pipe.ts`) is unchanged: a proxy with a limit has its local connection wrapped, one without keeps the
 * bare connection, so unlimited proxies pay nothing per chunk.
 *
 * The bucket is refilled lazily from the clock; a chunk that finds it short takes its bytes on credit
 * (the level goes negative) and waits one timer for the debt to be paid: no polling, no busy-waiting, and
 * a large chunk costs one wait, not many small ones. The burst (what an idle proxy may send at once) is a
 * tenth of a second's worth, at least 16 KiB, so a transfer's rate is the limit from its first second.
 *
 * @example A connection limited to 1 MB/s
 * ```ts
 * import { limitConn, TokenBucket } from "./bandwidth.ts";
 * import { memoryPair } from "../net/memory_pair.ts";
 *
 * const [a, _b] = memoryPair();
 * const limited = limitConn(a, new TokenBucket(1024 * 1024));
 * limited.close();
 * ```
 *
 * @module
 */

import { sleep } from "../_async.ts";
import type { DuplexConn } from "../net/conn.ts";
import { abortQuietly } from "./pipe.ts";

/** Smallest burst, bytes: one medium copy buffer, so a slow limit still moves whole chunks. */
export const MIN_BURST_BYTES = 16 * 1024;

/** Bytes per second, refilled continuously, spent by every connection of one proxy. */
export class TokenBucket {
  /** Bytes that may be spent now; negative while a chunk taken on credit is being paid for. */
  #level: number;
  #updatedMs: number;
  /** Most bytes saved up while idle. */
  readonly burstBytes: number;

  /**
   * @param bytesPerSecond the limit (> 0)
   * @param burstBytes most bytes saved up while idle (default a tenth of a second's worth, ≥ 16 KiB)
   * @param nowMs the clock (tests pass a fake one)
   * @throws {RangeError} when `bytesPerSecond` is not a positive number
   */
  constructor(
    readonly bytesPerSecond: number,
    burstBytes?: number,
    readonly nowMs: () => number = () => performance.now(),
  ) {
    if (!(bytesPerSecond > 0) || !Number.isFinite(bytesPerSecond)) {
      throw new RangeError(`A token bucket needs a positive rate, not ${bytesPerSecond}`);
    }
    this.burstBytes = burstBytes ?? Math.max(MIN_BURST_BYTES, Math.floor(bytesPerSecond / 10));
    this.#level = this.burstBytes;
    this.#updatedMs = nowMs();
  }

  #refill(): void {
    const now = this.nowMs();
    const elapsedMs = now - this.#updatedMs;
    this.#updatedMs = now;
    if (elapsedMs > 0) {
      this.#level = Math.min(this.burstBytes, this.#level + elapsedMs * this.bytesPerSecond / 1000);
    }
  }

  /**
   * Spends `bytes`; returns how long (ms) the caller must wait before moving them on (0: at once).
   * Everyone sharing the bucket queues behind the debt, so the rate holds across connections.
   */
  take(bytes: number): number {
    this.#refill();
    this.#level -= bytes;
    return this.#level >= 0 ? 0 : (-this.#level * 1000) / this.bytesPerSecond;
  }

  /** Spends `bytes`, resolving once they are paid for; rejects when `signal` aborts. */
  async spend(bytes: number, signal?: AbortSignal): Promise<void> {
    const waitMs = this.take(bytes);
    if (waitMs > 0) await sleep(Math.ceil(waitMs), signal);
  }
}

/** A connection whose reads and writes are paced by a {@linkcode TokenBucket}. */
class LimitedConn implements DuplexConn {
  /** Aborted on close: a wait in progress ends at once instead of holding a timer. */
  readonly #closing = new AbortController();

  constructor(readonly inner: DuplexConn & { reset?(): void }, readonly bucket: TokenBucket) {}

  async read(buffer: Uint8Array): Promise<number | null> {
    const count = await this.inner.read(buffer);
    if (count !== null && count > 0) await this.bucket.spend(count, this.#closing.signal);
    return count;
  }

  async write(data: Uint8Array): Promise<number> {
    await this.bucket.spend(data.length, this.#closing.signal);
    return await this.inner.write(data);
  }

  closeWrite(): Promise<void> {
    return this.inner.closeWrite();
  }

  close(): void {
    this.#closing.abort(new Deno.errors.BadResource("the connection is closed"));
    this.inner.close();
  }

  /** Ends the connection abortively, as the inner one would be (a TCP reset for a TCP connection). */
  reset(): void {
    this.#closing.abort(new Deno.errors.BadResource("the connection is reset"));
    abortQuietly(this.inner);
  }
}

/** `conn` paced by `bucket`: every byte read from it or written to it is spent from the bucket first. */
export function limitConn(
  conn: DuplexConn & { reset?(): void },
  bucket: TokenBucket,
): DuplexConn & { reset(): void } {
  return new LimitedConn(conn, bucket);
}

/**
 * A growable ring buffer of bytes: a stream's unread inbound data. Copy in, copy out, no allocation in
 * steady state (the receive window bounds how much it ever holds).
 *
 * @module
 */

const EMPTY = new Uint8Array(0);

/** Smallest storage allocated once data has to be buffered. */
const MIN_CAPACITY_BYTES = 1024;

/**
 * Storage of at most this size is released as soon as the ring is drained. A stream that buffered a few
 * bytes once (typically its first data, which arrives before its reader) would otherwise keep the storage
 * for as long as it lives, idle or not; with thousands of idle streams that is most of their memory.
 * Larger storage belongs to a bulk transfer whose reader lags and is kept, so it is not reallocated.
 */
const RELEASE_WHEN_DRAINED_BYTES = 64 * 1024;

/** FIFO byte queue over one circular buffer that doubles when full and is released when drained (if small). */
export class ByteRing {
  /** Circular storage (empty until the first push). */
  #storage: Uint8Array = EMPTY;
  /** Index of the oldest byte. */
  #start = 0;
  /** Bytes held. */
  #length = 0;

  /** Bytes held. */
  get length(): number {
    return this.#length;
  }

  /** Bytes of storage allocated. */
  get capacity(): number {
    return this.#storage.length;
  }

  /** Appends a copy of `bytes`, growing the storage to the next power of two if needed. */
  push(bytes: Uint8Array): void {
    const count = bytes.length;
    if (count === 0) return;
    if (this.#length + count > this.#storage.length) this.#grow(this.#length + count);
    const storage = this.#storage;
    const capacity = storage.length;
    let end = this.#start + this.#length;
    if (end >= capacity) end -= capacity;
    const firstPart = Math.min(count, capacity - end);
    storage.set(firstPart === count ? bytes : bytes.subarray(0, firstPart), end);
    if (firstPart < count) storage.set(bytes.subarray(firstPart), 0);
    this.#length += count;
  }

  /** Moves up to `target.length` of the oldest bytes into `target`; returns the count. */
  shiftInto(target: Uint8Array): number {
    const count = Math.min(target.length, this.#length);
    if (count === 0) return 0;
    const storage = this.#storage;
    const capacity = storage.length;
    const firstPart = Math.min(count, capacity - this.#start);
    target.set(storage.subarray(this.#start, this.#start + firstPart));
    if (firstPart < count) target.set(storage.subarray(0, count - firstPart), firstPart);
    this.#length -= count;
    this.#start = this.#length === 0 ? 0 : (this.#start + count) % capacity;
    if (this.#length === 0 && capacity <= RELEASE_WHEN_DRAINED_BYTES) this.#storage = EMPTY;
    return count;
  }

  /** Drops everything and releases the storage. */
  clear(): void {
    this.#storage = EMPTY;
    this.#start = 0;
    this.#length = 0;
  }

  #grow(needed: number): void {
    let capacity = Math.max(this.#storage.length, MIN_CAPACITY_BYTES);
    while (capacity < needed) capacity *= 2;
    const grown = new Uint8Array(capacity);
    this.#copyOut(grown);
    this.#storage = grown;
    this.#start = 0;
  }

  /** Copies the held bytes, oldest first, to the start of `target` without consuming them. */
  #copyOut(target: Uint8Array): void {
    const storage = this.#storage;
    const firstPart = Math.min(this.#length, storage.length - this.#start);
    target.set(storage.subarray(this.#start, this.#start + firstPart));
    if (firstPart < this.#length) target.set(storage.subarray(0, this.#length - firstPart), firstPart);
  }
}

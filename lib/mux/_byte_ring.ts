/**
 * A growable ring buffer of bytes: a stream's unread inbound data. No allocation in steady state (the
 * receive window bounds how much it ever holds). Bytes can come in by copy (`push`) or be read straight
 * into its free space (`reserve` + `commit`), and go out by copy (`shiftInto`) or be lent as a view
 * (`peek` + `consume`), so a bulk transfer can pass through without being copied by JavaScript at all.
 *
 * @module
 */

const EMPTY = new Uint8Array(0);

/** Smallest storage allocated once data has to be buffered. */
const MIN_CAPACITY_BYTES = 1024;

/**
 * Storage of at most this size goes back to the pool as soon as the ring is drained. A stream that buffered
 * a few bytes once (typically its first data, which arrives before its reader) would otherwise keep the
 * storage for as long as it lives, idle or not; with thousands of idle streams that is most of their
 * memory. Larger storage belongs to a bulk transfer that drains and refills it all the time: giving it
 * back at every drain made the next fill grow a new ring step by step, copying what it held at each step
 * (measured: 3.7 GB copied for 8 GiB received, and a quarter more CPU on the receiving side). It stays
 * until {@linkcode ByteRing.releaseStorageIfDrained}: the session calls that for streams that received
 * nothing for a while.
 */
const RELEASE_WHEN_DRAINED_BYTES = 64 * 1024;

/**
 * Storage of drained rings, by size, shared by every ring, so that a chatty stream, which drains its ring
 * after every message, does not allocate (and zero) new storage for the next one. Storage goes back only
 * when nothing can still read or write it (no reservation open, no lent view unreleased).
 */
const storagePool = new Map<number, Uint8Array[]>();
/** Bytes of storage in {@linkcode storagePool}. */
let pooledBytes = 0;
/** Most bytes {@linkcode storagePool} keeps; storage beyond it is left to the garbage collector. */
const STORAGE_POOL_LIMIT_BYTES = 16 * 1024 * 1024;

/** Storage counts of every ring in the process (for tests and diagnostics). */
export interface RingStorageCounts {
  /** Storage allocated since the process started (pool misses), in bytes. */
  allocatedBytes: number;
  /** Storage kept in the pool now, in bytes. */
  pooledBytes: number;
}

/** Bytes of storage allocated so far (pool misses). */
let allocatedBytes = 0;

/** How much ring storage was ever allocated and how much the pool keeps now. */
export function ringStorageCounts(): RingStorageCounts {
  return { allocatedBytes, pooledBytes };
}

/** Drops every storage the pool keeps (to the garbage collector); returns how many bytes it kept. */
export function emptyRingStoragePool(): number {
  const dropped = pooledBytes;
  storagePool.clear();
  pooledBytes = 0;
  return dropped;
}

/**
 * Storage of `capacity` bytes (a power of two): pooled if the pool has that size, else new. Every miss
 * allocates, and freed storage mostly stays in the process's RSS, so reuse is what keeps a burst of short
 * streams from raising it.
 */
function takeStorage(capacity: number): Uint8Array {
  const storage = storagePool.get(capacity)?.pop();
  if (storage !== undefined) {
    pooledBytes -= capacity;
    return storage;
  }
  allocatedBytes += capacity;
  return new Uint8Array(capacity);
}

function giveStorage(storage: Uint8Array): void {
  const capacity = storage.length;
  if (capacity === 0 || pooledBytes + capacity > STORAGE_POOL_LIMIT_BYTES) return;
  const sameSize = storagePool.get(capacity);
  if (sameSize === undefined) storagePool.set(capacity, [storage]);
  else sameSize.push(storage);
  pooledBytes += capacity;
}

/** FIFO byte queue over one circular buffer that doubles when full and is released when drained (if small). */
export class ByteRing {
  /** Circular storage (empty until the first push). */
  #storage: Uint8Array = EMPTY;
  /** Index of the oldest byte. */
  #start = 0;
  /** Bytes held. */
  #length = 0;
  /**
   * Storage handed out by `reserve()` and not yet committed: while set, the storage is neither replaced
   * nor released and the free space after the newest byte stays where it is, because a read may be
   * writing into it.
   */
  #reservedIn: Uint8Array | null = null;
  /**
   * Bytes at the front lent by `peek()` and not yet consumed: while set, the storage may be being read
   * (written to a socket), so it is never given to another ring, only left behind.
   */
  #lentBytes = 0;
  /** The owner is done with the ring: storage of any size goes back as soon as it is drained. */
  #retired = false;

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
    if (this.#reservedIn !== null) throw new Error("ByteRing.push() while a reservation is open");
    if (this.#length + count > this.#storage.length) this.#grow(this.#length + count);
    const storage = this.#storage;
    const capacity = storage.length;
    const end = this.#end();
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
    const firstPart = Math.min(count, storage.length - this.#start);
    target.set(storage.subarray(this.#start, this.#start + firstPart));
    if (firstPart < count) target.set(storage.subarray(0, count - firstPart), firstPart);
    this.consume(count);
    return count;
  }

  /**
   * A view of the oldest bytes, at most `maxBytes`, without consuming them (fewer than held when they
   * wrap around the end of the storage: the rest comes with the next call). The view stays valid and
   * unchanged until `consume()`, even if the ring grows meanwhile.
   */
  peek(maxBytes: number): Uint8Array {
    const count = Math.min(maxBytes, this.#length, this.#storage.length - this.#start);
    this.#lentBytes = count;
    return this.#storage.subarray(this.#start, this.#start + count);
  }

  /** Drops the `count` oldest bytes (those a `peek()` lent, or fewer); returns how many were dropped. */
  consume(count: number): number {
    const dropped = Math.min(count, this.#length);
    if (dropped === 0) return 0;
    const capacity = this.#storage.length;
    this.#lentBytes = Math.max(0, this.#lentBytes - dropped);
    this.#length -= dropped;
    this.#start = (this.#start + dropped) % capacity;
    if (this.#length === 0 && this.#reservedIn === null) this.#rewind();
    return dropped;
  }

  /**
   * Free space right after the newest byte for a read to fill, then `commit()`: at least `minBytes`
   * (growing the storage if it must) and at most `maxBytes`. Returns null, leaving the bytes to `push()`,
   * when the contiguous free space is short only because it wraps around the end of the storage.
   * Nothing else may be added until `commit()` (with 0 when the read failed).
   */
  reserve(minBytes: number, maxBytes: number): Uint8Array | null {
    if (this.#reservedIn !== null) throw new Error("ByteRing.reserve() while a reservation is open");
    if (this.#length + minBytes > this.#storage.length) this.#grow(this.#length + maxBytes);
    const storage = this.#storage;
    const capacity = storage.length;
    const end = this.#end();
    const contiguousFree = end >= this.#start && this.#length < capacity ? capacity - end : this.#start - end;
    if (contiguousFree < minBytes) return null;
    this.#reservedIn = storage;
    return storage.subarray(end, end + Math.min(contiguousFree, maxBytes));
  }

  /** The read into the reserved space placed `count` bytes at its start: they are now held. */
  commit(count: number): void {
    const storage = this.#reservedIn;
    this.#reservedIn = null;
    // Cleared while the read was in flight: the bytes went into storage the ring no longer holds.
    if (storage !== this.#storage) return;
    this.#length += count;
    if (this.#length === 0) this.#rewind();
  }

  /**
   * Gives large storage back too when the ring is drained (so no lent view is out) and nothing is
   * reserved; returns whether it did. For streams that have received nothing for a while.
   */
  releaseStorageIfDrained(): boolean {
    if (this.#length !== 0 || this.#reservedIn !== null || this.#storage.length === 0) return false;
    this.#giveBack();
    return true;
  }

  /**
   * The owner (a finished stream) will not receive any more: storage of any size goes back now if the
   * ring is drained, else as soon as the last bytes are consumed, instead of waiting for a sweep that
   * no longer sees the stream.
   */
  retire(): void {
    this.#retired = true;
    this.releaseStorageIfDrained();
  }

  /**
   * Drops everything and releases the storage (a reservation still open adds nothing when committed).
   * The storage goes back to the pool unless a lent view or an open reservation may still use it.
   */
  clear(): void {
    const reusable = this.#reservedIn === null && this.#lentBytes === 0;
    if (reusable) giveStorage(this.#storage);
    this.#storage = EMPTY;
    this.#start = 0;
    this.#length = 0;
    this.#reservedIn = null;
    this.#lentBytes = 0;
  }

  /** Index just after the newest byte (where the next byte goes). */
  #end(): number {
    const end = this.#start + this.#length;
    return end >= this.#storage.length ? end - this.#storage.length : end;
  }

  /** Empty, nothing lent, not reserved: give the storage back to the pool and start over. */
  #rewind(): void {
    this.#start = 0;
    if (this.#storage.length <= RELEASE_WHEN_DRAINED_BYTES || this.#retired) this.#giveBack();
  }

  /** Empty and not reserved: the storage goes to the pool. */
  #giveBack(): void {
    giveStorage(this.#storage);
    this.#storage = EMPTY;
    this.#start = 0;
  }

  #grow(needed: number): void {
    let capacity = Math.max(this.#storage.length, MIN_CAPACITY_BYTES);
    while (capacity < needed) capacity *= 2;
    const old = this.#storage;
    const grown = takeStorage(capacity);
    this.#copyOut(grown);
    this.#storage = grown;
    this.#start = 0;
    // The old storage goes to the pool unless a view lent from it may still be being written somewhere.
    if (this.#lentBytes === 0) giveStorage(old);
  }

  /** Copies the held bytes, oldest first, to the start of `target` without consuming them. */
  #copyOut(target: Uint8Array): void {
    const storage = this.#storage;
    const firstPart = Math.min(this.#length, storage.length - this.#start);
    target.set(storage.subarray(this.#start, this.#start + firstPart));
    if (firstPart < this.#length) target.set(storage.subarray(0, this.#length - firstPart), firstPart);
  }
}

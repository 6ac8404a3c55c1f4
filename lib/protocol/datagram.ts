/**
 * The datagram framing of a `udp` proxy's flow streams (spec: lib/protocol/README.md §5c). After the
 * stream header, each direction of a flow's stream is a sequence of frames, one per datagram:
 *
 * ```
 * +------------------------+---------------------------------+
 * | length: u16 big-endian | payload: `length` bytes          |
 * | 1 ≤ length ≤ 65,507    | one UDP datagram, unchanged      |
 * +------------------------+---------------------------------+
 * ```
 *
 * Length 0 is reserved (an empty datagram is not carried) and a length above 65,507 (the largest UDP
 * payload over IPv4) is a protocol error, as is a stream that ends inside a frame: the receiver resets
 * the stream. No sockets here: {@linkcode DatagramReader} reads frames from any {@linkcode DuplexConn},
 * {@linkcode DatagramWriter} queues datagrams for one (bounded: a slow stream drops datagrams, as UDP
 * would, instead of buffering without limit).
 *
 * @example Framing and reading back
 * ```ts
 * import { decodeDatagramFrames, encodeDatagramFrames } from "./datagram.ts";
 *
 * const bytes = encodeDatagramFrames([new Uint8Array([1, 2]), new Uint8Array([3])]);
 * console.log(bytes.length); // 7
 * console.log(decodeDatagramFrames(bytes).map((datagram) => datagram.length)); // [2, 1]
 * ```
 *
 * @module
 */

import { type DuplexConn, writeAll } from "../net/conn.ts";

/** Largest datagram carried: the largest UDP payload over IPv4 (65,535 − 20 IP − 8 UDP header bytes). */
export const MAX_DATAGRAM_BYTES = 65_507;
/** Bytes of a frame's length prefix. */
export const DATAGRAM_PREFIX_BYTES = 2;

/** Bytes on a flow stream are not a valid datagram frame (the receiver resets the stream). */
export class DatagramFrameError extends Error {
  override name = "DatagramFrameError";
}

/** Writes the frame of `payload` (1–{@linkcode MAX_DATAGRAM_BYTES} bytes) into `target` at `offset`. */
function putFrame(target: Uint8Array, offset: number, payload: Uint8Array): number {
  if (payload.length === 0 || payload.length > MAX_DATAGRAM_BYTES) {
    throw new DatagramFrameError(
      `A datagram of ${payload.length} bytes cannot be framed: the frame length must be 1-${MAX_DATAGRAM_BYTES}`,
    );
  }
  target[offset] = payload.length >>> 8;
  target[offset + 1] = payload.length & 0xff;
  target.set(payload, offset + DATAGRAM_PREFIX_BYTES);
  return offset + DATAGRAM_PREFIX_BYTES + payload.length;
}

/**
 * The frames of `datagrams`, concatenated into one buffer (one stream write for a batch).
 *
 * @throws {DatagramFrameError} when a datagram is empty or longer than {@linkcode MAX_DATAGRAM_BYTES}
 */
export function encodeDatagramFrames(datagrams: readonly Uint8Array[]): Uint8Array {
  let total = 0;
  for (const datagram of datagrams) total += DATAGRAM_PREFIX_BYTES + datagram.length;
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const datagram of datagrams) offset = putFrame(bytes, offset, datagram);
  return bytes;
}

/** The length a frame's prefix declares, checked. */
function frameLength(high: number, low: number): number {
  const length = (high << 8) | low;
  if (length === 0) {
    throw new DatagramFrameError("Datagram frame of length 0 (reserved): the stream is corrupt");
  }
  if (length > MAX_DATAGRAM_BYTES) {
    throw new DatagramFrameError(
      `Datagram frame of ${length} bytes exceeds the largest UDP datagram (${MAX_DATAGRAM_BYTES})`,
    );
  }
  return length;
}

/**
 * Splits `bytes`, which must hold whole frames only, into the datagrams they carry (views of `bytes`).
 *
 * @throws {DatagramFrameError} on a length of 0 or above the maximum, or a frame cut short
 */
export function decodeDatagramFrames(bytes: Uint8Array): Uint8Array[] {
  const datagrams: Uint8Array[] = [];
  let offset = 0;
  while (offset < bytes.length) {
    if (bytes.length - offset < DATAGRAM_PREFIX_BYTES) {
      throw new DatagramFrameError(`Datagram frame cut short: ${bytes.length - offset} of 2 length bytes`);
    }
    const length = frameLength(bytes[offset] ?? 0, bytes[offset + 1] ?? 0);
    const start = offset + DATAGRAM_PREFIX_BYTES;
    if (bytes.length - start < length) {
      throw new DatagramFrameError(`Datagram frame cut short: ${bytes.length - start} of ${length} bytes`);
    }
    datagrams.push(bytes.subarray(start, start + length));
    offset = start + length;
  }
  return datagrams;
}

/** The largest read buffer: room for two whole frames (a read may end inside the second). */
const READ_BUFFER_MAX_BYTES = 2 * (DATAGRAM_PREFIX_BYTES + MAX_DATAGRAM_BYTES);
/** A reader's first buffer: DNS-sized flows never need more. */
const READ_BUFFER_INITIAL_BYTES = 4096;

/**
 * Reads datagram frames from a stream. Memory is one buffer per reader: 4 KiB, grown (at most to 128 KiB,
 * whatever the peer sends) only when a frame does not fit, so thousands of small flows stay small.
 */
export class DatagramReader {
  #buffer = new Uint8Array(READ_BUFFER_INITIAL_BYTES);
  #start = 0;
  #end = 0;

  /** @param conn the stream, positioned after its stream header */
  constructor(readonly conn: Pick<DuplexConn, "read">) {}

  /**
   * The next datagram, or null at a clean end of stream (between frames). The view is valid until the
   * next call.
   *
   * @throws {DatagramFrameError} on a bad length, or when the stream ends inside a frame
   */
  async next(): Promise<Uint8Array | null> {
    if (!await this.#fill(DATAGRAM_PREFIX_BYTES)) return null;
    const length = frameLength(this.#buffer[this.#start] ?? 0, this.#buffer[this.#start + 1] ?? 0);
    if (!await this.#fill(DATAGRAM_PREFIX_BYTES + length)) {
      throw new DatagramFrameError(
        `Stream ended inside a datagram frame: ${
          this.#end - this.#start - DATAGRAM_PREFIX_BYTES
        } of ${length} bytes`,
      );
    }
    const payloadStart = this.#start + DATAGRAM_PREFIX_BYTES;
    this.#start = payloadStart + length;
    return this.#buffer.subarray(payloadStart, payloadStart + length);
  }

  /**
   * Reads until `count` bytes are buffered; false at end of stream with nothing buffered.
   *
   * @throws {DatagramFrameError} when the stream ends with part of a frame buffered
   */
  async #fill(count: number): Promise<boolean> {
    if (this.#end - this.#start >= count) return true;
    if (this.#start + count > this.#buffer.length) {
      if (count > this.#buffer.length) {
        // A frame larger than the buffer: grow it (count is at most one whole frame).
        const grown = new Uint8Array(
          Math.min(READ_BUFFER_MAX_BYTES, Math.max(count, 2 * this.#buffer.length)),
        );
        grown.set(this.#buffer.subarray(this.#start, this.#end));
        this.#buffer = grown;
      } else {
        // Move what is left to the front: the frame fits then.
        this.#buffer.copyWithin(0, this.#start, this.#end);
      }
      this.#end -= this.#start;
      this.#start = 0;
    }
    while (this.#end - this.#start < count) {
      const read = await this.conn.read(this.#buffer.subarray(this.#end));
      if (read === null) {
        if (this.#end === this.#start) return false;
        throw new DatagramFrameError(
          `Stream ended inside a datagram frame (${this.#end - this.#start} bytes of it buffered)`,
        );
      }
      this.#end += read;
    }
    return true;
  }
}

/** Bounds of a {@linkcode DatagramWriter}'s queue. */
export interface DatagramQueueLimits {
  /** Datagrams waiting at most. */
  maxDatagrams: number;
  /** Payload bytes waiting at most (at least {@linkcode MAX_DATAGRAM_BYTES}). */
  maxBytes: number;
}

/**
 * Default queue of one flow: 128 datagrams or 128 KiB, whichever fills first. It only fills when the
 * stream (its yamux window) does not keep up; then datagrams are dropped, as a full socket buffer would.
 */
export const DEFAULT_DATAGRAM_QUEUE: Readonly<DatagramQueueLimits> = {
  maxDatagrams: 128,
  maxBytes: 128 * 1024,
};

/** Largest batch of queued frames written in one stream write. */
const MAX_BATCH_BYTES = 256 * 1024;

/**
 * Writes datagrams to a stream as frames, in order, through a bounded queue: {@linkcode push} never
 * waits; it refuses a datagram (the caller counts the drop) while the queue is full. Queued datagrams
 * are written in batches, one stream write per batch.
 */
export class DatagramWriter {
  readonly #queue: Uint8Array[] = [];
  #queuedBytes = 0;
  #writing = false;
  #closed = false;
  #idle: Promise<void> = Promise.resolve();

  /**
   * @param conn the stream, positioned after its stream header
   * @param limits the queue's bounds
   * @param onError called once when a write fails (the stream is gone), with the number of datagrams
   *   that were waiting and are dropped; the writer is closed then
   */
  constructor(
    readonly conn: Pick<DuplexConn, "write">,
    readonly limits: Readonly<DatagramQueueLimits> = DEFAULT_DATAGRAM_QUEUE,
    readonly onError: (error: unknown, lost: number) => void = () => {},
  ) {}

  /** Datagrams waiting to be written. */
  get queued(): number {
    return this.#queue.length;
  }

  /**
   * Queues `datagram` (1–{@linkcode MAX_DATAGRAM_BYTES} bytes; kept, not copied, until written).
   * Returns false, queuing nothing, when the queue is full or the writer closed.
   */
  push(datagram: Uint8Array): boolean {
    if (this.#closed) return false;
    if (datagram.length === 0 || datagram.length > MAX_DATAGRAM_BYTES) {
      throw new DatagramFrameError(`A datagram of ${datagram.length} bytes cannot be framed`);
    }
    if (
      this.#queue.length >= this.limits.maxDatagrams ||
      this.#queuedBytes + datagram.length > this.limits.maxBytes
    ) {
      return false;
    }
    this.#queue.push(datagram);
    this.#queuedBytes += datagram.length;
    if (!this.#writing) this.#idle = this.#drain();
    return true;
  }

  /** Resolves once everything queued so far is written (or dropped by a failure or close). */
  flushed(): Promise<void> {
    return this.#idle;
  }

  /** Drops what is queued and refuses more; a write in progress finishes. */
  close(): void {
    this.#closed = true;
    this.#queue.length = 0;
    this.#queuedBytes = 0;
  }

  async #drain(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#queue.length > 0 && !this.#closed) {
        const batch: Uint8Array[] = [];
        let bytes = 0;
        while (this.#queue.length > 0 && (batch.length === 0 || bytes < MAX_BATCH_BYTES)) {
          const datagram = this.#queue.shift();
          if (datagram === undefined) break;
          batch.push(datagram);
          bytes += datagram.length;
        }
        this.#queuedBytes -= bytes;
        await writeAll(this.conn, encodeDatagramFrames(batch));
      }
    } catch (error) {
      const lost = this.#queue.length;
      this.close();
      this.onError(error, lost);
    } finally {
      this.#writing = false;
    }
  }
}

/**
 * Sends datagrams through an asynchronous `send` (a UDP socket's) with up to `maxInFlight` sends
 * pending, instead of waiting for each: a send is an operation of its own in Deno, and waiting for each
 * one before reading the next frame halves a flow's rate. {@linkcode send} copies the datagram (the
 * caller's buffer is reused for the next one) and waits only while the limit is reached.
 */
export class PipelinedSender {
  #inFlight = 0;
  readonly #waiters: Array<() => void> = [];

  /**
   * @param sendOne sends one datagram (its promise settles when the socket took it or refused it)
   * @param onResult called once per datagram: whether it was sent, and its length
   * @param maxInFlight sends pending at most
   */
  constructor(
    readonly sendOne: (datagram: Uint8Array) => Promise<unknown>,
    readonly onResult: (sent: boolean, bytes: number) => void,
    readonly maxInFlight = 32,
  ) {}

  /** Starts sending a copy of `datagram`; resolves once it is started (at once unless the limit is reached). */
  async send(datagram: Uint8Array): Promise<void> {
    while (this.#inFlight >= this.maxInFlight) {
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
    this.#inFlight++;
    const copy = datagram.slice();
    this.sendOne(copy).then(
      () => this.onResult(true, copy.length),
      () => this.onResult(false, copy.length),
    ).finally(() => {
      this.#inFlight--;
      this.#waiters.shift()?.();
    });
  }

  /** Resolves once every send started so far has settled. */
  async drained(): Promise<void> {
    while (this.#inFlight > 0) await new Promise<void>((resolve) => this.#waiters.push(resolve));
  }
}

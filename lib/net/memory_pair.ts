/**
 * An in-memory connected pair of {@linkcode DuplexConn}s with bounded buffering, for tests and benches
 * that need a connection without sockets.
 *
 * @module
 */

import type { DuplexConn } from "./conn.ts";

/** Raised when writing to a pipe whose reader is gone or whose writer was closed. */
export class PipeClosedError extends Error {
  override name = "PipeClosedError";
}

/** One direction of the pair: chunks written by one end and read by the other. */
class Pipe {
  /** Chunks waiting to be read; the first may be partly consumed (see `headOffset`). */
  #chunks: Uint8Array[] = [];
  /** Bytes of `#chunks[0]` already read. */
  #headOffset = 0;
  /** Unread bytes across `#chunks`. */
  #bufferedBytes = 0;
  /** Writer half-closed: the reader sees end of stream once drained. */
  #writeClosed = false;
  /** Reader closed: further writes fail. */
  #readClosed = false;
  #readerWaiting: (() => void) | null = null;
  #writerWaiting: (() => void) | null = null;

  /** @param capacityBytes writes wait while this many bytes are unread (backpressure). */
  constructor(readonly capacityBytes: number) {}

  async write(data: Uint8Array): Promise<number> {
    while (!this.#readClosed && !this.#writeClosed && this.#bufferedBytes >= this.capacityBytes) {
      await new Promise<void>((resolve) => (this.#writerWaiting = resolve));
    }
    if (this.#readClosed) throw new PipeClosedError("write on an in-memory pipe whose reader is closed");
    if (this.#writeClosed) throw new PipeClosedError("write on an in-memory pipe after closeWrite()");
    const count = Math.min(data.length, Math.max(this.capacityBytes - this.#bufferedBytes, 1));
    if (count === 0) return 0;
    // Copy: the caller may reuse its buffer as soon as write resolves, as with a socket.
    this.#chunks.push(data.slice(0, count));
    this.#bufferedBytes += count;
    this.#wakeReader();
    return count;
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    while (this.#bufferedBytes === 0) {
      if (this.#writeClosed || this.#readClosed) return null;
      await new Promise<void>((resolve) => (this.#readerWaiting = resolve));
    }
    let copied = 0;
    while (copied < buffer.length && this.#chunks.length > 0) {
      const head = this.#chunks[0] as Uint8Array;
      const available = head.length - this.#headOffset;
      const take = Math.min(available, buffer.length - copied);
      buffer.set(head.subarray(this.#headOffset, this.#headOffset + take), copied);
      copied += take;
      this.#headOffset += take;
      if (this.#headOffset === head.length) {
        this.#chunks.shift();
        this.#headOffset = 0;
      }
    }
    this.#bufferedBytes -= copied;
    this.#wakeWriter();
    return copied;
  }

  closeWrite(): void {
    this.#writeClosed = true;
    this.#wakeReader();
    this.#wakeWriter();
  }

  closeRead(): void {
    this.#readClosed = true;
    this.#chunks = [];
    this.#bufferedBytes = 0;
    this.#wakeReader();
    this.#wakeWriter();
  }

  #wakeReader(): void {
    const wake = this.#readerWaiting;
    this.#readerWaiting = null;
    wake?.();
  }

  #wakeWriter(): void {
    const wake = this.#writerWaiting;
    this.#writerWaiting = null;
    wake?.();
  }
}

/** One end of an in-memory pair. */
export class MemoryConn implements DuplexConn {
  #closed = false;
  constructor(readonly incoming: Pipe, readonly outgoing: Pipe) {}

  /** Reads what the other end wrote. */
  read(buffer: Uint8Array): Promise<number | null> {
    return this.incoming.read(buffer);
  }

  /** Writes to the other end; waits while the other end has `capacityBytes` unread. */
  write(data: Uint8Array): Promise<number> {
    return this.outgoing.write(data);
  }

  /** Half-close: the other end reads end of stream after what was written. */
  closeWrite(): Promise<void> {
    this.outgoing.closeWrite();
    return Promise.resolve();
  }

  /** Closes both directions; the other end reads end of stream and its writes fail. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.outgoing.closeWrite();
    this.incoming.closeRead();
  }
}

/** Options of {@linkcode memoryPair}. */
export interface MemoryPairOptions {
  /** Unread bytes per direction before writes wait. Default 1 MiB. */
  capacityBytes?: number;
}

/** Creates two connected in-memory ends: what one writes, the other reads. */
export function memoryPair(options: MemoryPairOptions = {}): [MemoryConn, MemoryConn] {
  const capacityBytes = options.capacityBytes ?? 1024 * 1024;
  const aToB = new Pipe(capacityBytes);
  const bToA = new Pipe(capacityBytes);
  return [new MemoryConn(bToA, aToB), new MemoryConn(aToB, bToA)];
}

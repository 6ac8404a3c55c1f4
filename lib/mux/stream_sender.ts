/**
 * A stream's send side: the peer's send window for it and the one write in progress, which the session's
 * writer takes frame by frame (this is the writer's {@linkcode SendSource}).
 *
 * @module
 */

import { INITIAL_STREAM_WINDOW_BYTES } from "./constants.ts";
import type { SendSource } from "./writer.ts";

/** A write whose bytes are being moved into the session's outbound batch, frame by frame. */
interface PendingWrite {
  data: Uint8Array;
  /** Bytes of `data` already queued. */
  offset: number;
  /** Zero-copy pieces of `data` queued but not yet written to the connection. */
  unwritten: number;
  resolve: (count: number) => void;
  reject: (error: Error) => void;
}

/** The send window and the pending write of one stream. */
export class StreamSender implements SendSource {
  /** The stream id the data frames carry. */
  readonly id: number;
  /** Called right after a write resolves (the stream may owe a FIN). */
  readonly #onWriteDone: () => void;
  /** How many bytes the peer currently allows us to send. */
  #windowBytes = INITIAL_STREAM_WINDOW_BYTES;
  /** The write whose bytes are being queued, if any. */
  #pending: PendingWrite | null = null;

  constructor(id: number, onWriteDone: () => void) {
    this.id = id;
    this.#onWriteDone = onWriteDone;
  }

  /** Bytes the peer currently lets us send. */
  get windowBytes(): number {
    return this.#windowBytes;
  }

  /** True while a write is pending. */
  get busy(): boolean {
    return this.#pending !== null;
  }

  /**
   * Starts a write of `data` (not empty; no other write pending): resolves with `data.length` once every
   * byte is queued (copied) or written (zero-copy), rejects on {@linkcode fail}.
   */
  start(data: Uint8Array): Promise<number> {
    return new Promise((
      resolve,
      reject,
    ) => (this.#pending = { data, offset: 0, unwritten: 0, resolve, reject }));
  }

  /** The peer granted `deltaBytes` more window; true when a pending write was blocked on it until now. */
  grant(deltaBytes: number): boolean {
    const wasBlocked = this.#windowBytes === 0;
    this.#windowBytes += deltaBytes;
    return wasBlocked && this.#pending !== null;
  }

  /** Rejects the pending write, if any, with `error`. */
  fail(error: Error): void {
    const pending = this.#pending;
    this.#pending = null;
    pending?.reject(error);
  }

  sendableBytes(): number {
    const pending = this.#pending;
    if (pending === null) return 0;
    return Math.min(pending.data.length - pending.offset, this.#windowBytes);
  }

  takeSendBytes(count: number): Uint8Array {
    const pending = this.#pending as PendingWrite;
    const start = pending.offset;
    pending.offset += count;
    this.#windowBytes -= count;
    this.#completeIfDone(pending);
    return pending.data.subarray(start, start + count);
  }

  takeSendBytesZeroCopy(count: number): { bytes: Uint8Array; written: () => void } {
    const pending = this.#pending as PendingWrite;
    const start = pending.offset;
    pending.offset += count;
    pending.unwritten++;
    this.#windowBytes -= count;
    return {
      bytes: pending.data.subarray(start, start + count),
      written: () => {
        pending.unwritten--;
        this.#completeIfDone(pending);
      },
    };
  }

  /** Resolves `pending` once all its bytes are queued (copied) or written (zero-copy); not after `fail`. */
  #completeIfDone(pending: PendingWrite): void {
    if (pending.offset !== pending.data.length || pending.unwritten !== 0 || this.#pending !== pending) {
      return;
    }
    this.#pending = null;
    pending.resolve(pending.data.length);
    this.#onWriteDone();
  }
}

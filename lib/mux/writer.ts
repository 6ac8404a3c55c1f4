/**
 * The session's single writer: it batches frames into few large `conn.write` calls (double buffered: one
 * batch is written while the other fills), writes large payloads straight from the caller's buffer
 * (zero-copy), and takes data from the streams that want to send round robin, one frame per turn.
 *
 * @module
 */

import type { DuplexConn } from "../net/conn.ts";
import { FrameType, GoAwayCode, HEADER_SIZE_BYTES } from "./constants.ts";
import { ProtocolError, SessionClosedError } from "./errors.ts";
import { writeHeader } from "./frame.ts";
import { errorText, type SessionEnd } from "./_internal.ts";
import type { FrameTrace } from "./_trace.ts";

/** Don't cut a data frame smaller than this just to fill the batch; wait for the next batch instead. */
const MIN_DATA_FRAGMENT_BYTES = 16 * 1024;

/** Extra batch room kept for control frames (window updates, pings) beyond the data bound. */
const CONTROL_RESERVE_BYTES = 64 * 1024;

/**
 * Longest a lazy control frame ({@linkcode FrameWriter.queueLazyControl}) waits for another frame to
 * ride with before it is written alone.
 */
export const LAZY_CONTROL_DELAY_MS = 2;

/** Control frames may grow the batch by at most this much before we conclude the peer stopped reading. */
export const MAX_CONTROL_BACKLOG_BYTES = 4 * 1024 * 1024;

/** What the writer takes data frames from: a stream with a pending write (a `StreamPort` in practice). */
export interface SendSource {
  /** The stream id the data frames carry. */
  readonly id: number;
  /** Bytes of the pending write that may go out now (0 if none or no send window). */
  sendableBytes(): number;
  /** Takes the next `count` bytes of the pending write; the writer copies them right away. */
  takeSendBytes(count: number): Uint8Array;
  /**
   * Takes the next `count` bytes of the pending write to be written straight from the caller's buffer;
   * the writer calls `written()` once they are on the connection.
   */
  takeSendBytesZeroCopy(count: number): { bytes: Uint8Array; written: () => void };
}

/** Sizes the writer works with (the session's resolved options). */
export interface FrameWriterOptions {
  /** Stream data may fill a batch up to this many bytes (control frames may use a reserve above it). */
  readonly writeBatchBytes: number;
  /** Largest data frame payload. */
  readonly maxDataFrameBytes: number;
  /** Payloads at least this large are written from the caller's buffer (0: never). */
  readonly zeroCopyMinBytes: number;
}

/** A header-only frame (window update, ping, GoAway). */
export interface ControlFrame {
  readonly type: number;
  readonly flags: number;
  readonly streamId: number;
  readonly length: number;
}

/** Called once when the writer gives up: the session ends so. */
export type WriterFailure = (end: SessionEnd) => void;

/** A payload written straight from a stream's write buffer, placed after `offset` bytes of its batch. */
interface ZeroCopyPayload {
  /** Position in the batch where the payload belongs (right after its header). */
  offset: number;
  bytes: Uint8Array;
  /** Tells the stream these bytes are on the connection. */
  written: () => void;
}

/**
 * Batches frames for one connection and writes them from one loop. Never throws to its callers: a failed
 * connection write or a control backlog the peer never reads is reported once through `onFailure`.
 */
export class FrameWriter {
  readonly #conn: Pick<DuplexConn, "write">;
  readonly #options: FrameWriterOptions;
  readonly #onFailure: WriterFailure;
  readonly #trace: FrameTrace | null;
  /** The batch being filled: frames queued for the next `conn.write`. */
  #batch: Uint8Array;
  /** Bytes used in `#batch`. */
  #batchLength = 0;
  /** The other batch: being written while `#batch` fills (double buffering). */
  #spareBatch: Uint8Array;
  /** Zero-copy payloads of `#batch`, in order. */
  #zeroCopy: ZeroCopyPayload[] = [];
  /** The spare list for the batch being written. */
  #spareZeroCopy: ZeroCopyPayload[] = [];
  /** Bytes of `#zeroCopy` payloads (they count against the data bound like copied bytes). */
  #zeroCopyBytes = 0;
  /** The writer loop is running. */
  #writing = false;
  /** A microtask will start the writer loop (so frames queued in one tick share one write). */
  #flushScheduled = false;
  /** The writer loop's current run. */
  #loopDone: Promise<void> = Promise.resolve();
  /** Sources with pending data and send window, served round robin one frame per turn. */
  #sendQueue: SendSource[] = [];
  /** The members of `#sendQueue`. */
  readonly #queued = new Set<SendSource>();
  /** Waiting for the writer to become idle. */
  #idleWaiters: Array<() => void> = [];
  /** `stop()` was called: new frames are dropped. */
  #stopped = false;
  /** Writes the batch if lazy frames waited {@linkcode LAZY_CONTROL_DELAY_MS} with nothing else to send. */
  #lazyTimer: ReturnType<typeof setTimeout> | null = null;

  /**
   * @param trace records each frame queued (`-vv`); null when tracing is off
   */
  constructor(
    conn: Pick<DuplexConn, "write">,
    options: FrameWriterOptions,
    onFailure: WriterFailure,
    trace: FrameTrace | null = null,
  ) {
    this.#conn = conn;
    this.#options = options;
    this.#onFailure = onFailure;
    this.#trace = trace;
    this.#batch = new Uint8Array(options.writeBatchBytes + CONTROL_RESERVE_BYTES);
    this.#spareBatch = new Uint8Array(options.writeBatchBytes + CONTROL_RESERVE_BYTES);
  }

  /** True when nothing is being written and nothing waits to be. */
  get idle(): boolean {
    return !this.#writing && this.#batchLength === 0;
  }

  /** The writer loop's current run; never rejects. */
  get done(): Promise<void> {
    return this.#loopDone;
  }

  /** Queues a header-only frame; never waits (control frames may use the batch's reserve). */
  queueControl(type: number, flags: number, streamId: number, length: number): void {
    if (!this.#stopped && this.#queueHeader(type, flags, streamId, length)) this.#scheduleFlush();
  }

  /**
   * Queues a header-only frame that need not go out at once (a stream's ACK): it rides with the next
   * frames written, or goes alone after {@linkcode LAZY_CONTROL_DELAY_MS}. An accepted stream's ACK
   * written at once costs a connection write (a TLS record, a system call that wakes the peer) just
   * when the stream's first work starts; deferred, it goes with the stream's first answer.
   */
  queueLazyControl(type: number, flags: number, streamId: number, length: number): void {
    if (this.#stopped || !this.#queueHeader(type, flags, streamId, length)) return;
    if (this.#writing || this.#flushScheduled || this.#lazyTimer !== null) return;
    this.#lazyTimer = setTimeout(() => {
      this.#lazyTimer = null;
      this.#scheduleFlush();
    }, LAZY_CONTROL_DELAY_MS);
  }

  /** `source` has write data and send window: schedule it in the round-robin send queue. */
  wantsToSend(source: SendSource): void {
    if (this.#queued.has(source) || this.#stopped) return;
    this.#queued.add(source);
    this.#sendQueue.push(source);
    this.#fillFromSources();
  }

  /**
   * Stops taking frames: the send queue is dropped and later frames are ignored, except `lastFrame`
   * (a GoAway), queued here. What is already batched is still written.
   */
  stop(lastFrame?: ControlFrame): void {
    this.#stopped = true;
    this.#sendQueue = [];
    this.#queued.clear();
    if (lastFrame !== undefined) {
      this.#queueHeader(lastFrame.type, lastFrame.flags, lastFrame.streamId, lastFrame.length);
    }
    // Lazy frames waiting in the batch go now, with the last frame.
    if (this.#lazyTimer !== null) {
      clearTimeout(this.#lazyTimer);
      this.#lazyTimer = null;
    }
    if (this.#batchLength > 0) this.#scheduleFlush();
  }

  /** Resolves once every queued frame is written, the writer failed, or `timeoutMs` passed. */
  waitIdle(timeoutMs: number): Promise<void> {
    if (this.idle) return Promise.resolve();
    return new Promise((resolve) => {
      let timer: ReturnType<typeof setTimeout> | null = null;
      const done = () => {
        if (timer !== null) clearTimeout(timer);
        resolve();
      };
      const wait = () => {
        if (this.idle) done();
        else this.#idleWaiters.push(wait);
      };
      if (Number.isFinite(timeoutMs)) {
        timer = setTimeout(() => {
          timer = null;
          const index = this.#idleWaiters.indexOf(wait);
          if (index >= 0) this.#idleWaiters.splice(index, 1);
          resolve();
        }, timeoutMs);
      }
      this.#idleWaiters.push(wait);
    });
  }

  /** Puts a header-only frame in the filling batch; false when it could not (the session failed). */
  #queueHeader(type: number, flags: number, streamId: number, length: number): boolean {
    if (this.#batchLength + HEADER_SIZE_BYTES > this.#batch.length && !this.#growBatch()) return false;
    writeHeader(this.#batch, this.#batchLength, type, flags, streamId, length);
    if (this.#trace !== null) this.#trace("sent", type, flags, streamId, length);
    this.#batchLength += HEADER_SIZE_BYTES;
    return true;
  }

  /** Doubles the filling batch for control frames; fails the session if the peer stopped reading. */
  #growBatch(): boolean {
    const size = this.#batch.length * 2;
    if (size > this.#options.writeBatchBytes + MAX_CONTROL_BACKLOG_BYTES) {
      const message = `more than ${MAX_CONTROL_BACKLOG_BYTES} bytes of yamux control frames are waiting ` +
        `to be written; the peer keeps sending but stopped reading`;
      this.#onFailure({
        reason: "protocol-error",
        error: new ProtocolError(message, GoAwayCode.InternalError),
      });
      return false;
    }
    const grown = new Uint8Array(size);
    grown.set(this.#batch.subarray(0, this.#batchLength));
    this.#batch = grown;
    return true;
  }

  /**
   * Moves source data into the filling batch, one frame per source per turn (round robin), until the
   * batch reaches its data bound.
   */
  #fillFromSources(): void {
    const queue = this.#sendQueue;
    const { maxDataFrameBytes, zeroCopyMinBytes, writeBatchBytes } = this.#options;
    while (queue.length > 0) {
      const source = queue[0] as SendSource;
      const sendable = source.sendableBytes();
      if (sendable === 0) {
        queue.shift();
        this.#queued.delete(source);
        continue;
      }
      const free = writeBatchBytes - this.#batchLength - this.#zeroCopyBytes - HEADER_SIZE_BYTES;
      const count = Math.min(sendable, maxDataFrameBytes, free);
      if (count <= 0 || count < Math.min(sendable, MIN_DATA_FRAGMENT_BYTES)) break;
      queue.shift();
      const batch = this.#batch;
      const offset = this.#batchLength;
      writeHeader(batch, offset, FrameType.Data, 0, source.id, count);
      if (this.#trace !== null) this.#trace("sent", FrameType.Data, 0, source.id, count);
      if (zeroCopyMinBytes > 0 && count >= zeroCopyMinBytes) {
        const { bytes, written } = source.takeSendBytesZeroCopy(count);
        this.#zeroCopy.push({ offset: offset + HEADER_SIZE_BYTES, bytes, written });
        this.#zeroCopyBytes += count;
        this.#batchLength = offset + HEADER_SIZE_BYTES;
      } else {
        batch.set(source.takeSendBytes(count), offset + HEADER_SIZE_BYTES);
        this.#batchLength = offset + HEADER_SIZE_BYTES + count;
      }
      if (source.sendableBytes() > 0) queue.push(source);
      else this.#queued.delete(source);
    }
    if (this.#batchLength > 0) this.#scheduleFlush();
  }

  #scheduleFlush(): void {
    if (this.#writing || this.#flushScheduled) return;
    if (this.#lazyTimer !== null) {
      // Lazy frames in the batch go with this flush.
      clearTimeout(this.#lazyTimer);
      this.#lazyTimer = null;
    }
    this.#flushScheduled = true;
    queueMicrotask(() => {
      this.#flushScheduled = false;
      if (!this.#writing && this.#batchLength > 0) this.#loopDone = this.#writeLoop();
    });
  }

  /** Writes batches until none is pending; the other batch fills meanwhile. Never rejects. */
  async #writeLoop(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#batchLength > 0) {
        const out = this.#batch;
        const length = this.#batchLength;
        const zeroCopy = this.#zeroCopy;
        this.#batch = this.#spareBatch;
        this.#spareBatch = out;
        this.#zeroCopy = this.#spareZeroCopy;
        this.#spareZeroCopy = zeroCopy;
        this.#batchLength = 0;
        this.#zeroCopyBytes = 0;
        if (this.#sendQueue.length > 0) this.#fillFromSources();
        let position = 0;
        for (const payload of zeroCopy) {
          if (payload.offset > position) await this.#writeFully(out.subarray(position, payload.offset));
          await this.#writeFully(payload.bytes);
          payload.written();
          position = payload.offset;
        }
        zeroCopy.length = 0;
        if (length > position) await this.#writeFully(out.subarray(position, length));
      }
    } catch (error) {
      this.#batchLength = 0;
      this.#zeroCopy.length = 0;
      this.#spareZeroCopy.length = 0;
      const message = `writing the yamux connection failed: ${errorText(error)}`;
      this.#onFailure({
        reason: "conn-error",
        error: new SessionClosedError("conn-error", message, { cause: error }),
      });
    } finally {
      this.#writing = false;
      for (const wake of this.#idleWaiters.splice(0)) wake();
    }
  }

  async #writeFully(bytes: Uint8Array): Promise<void> {
    let written = 0;
    while (written < bytes.length) {
      written += await this.#conn.write(written === 0 ? bytes : bytes.subarray(written));
    }
  }
}

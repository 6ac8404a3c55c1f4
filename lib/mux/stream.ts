/**
 * One multiplexed yamux stream: a {@linkcode DuplexConn} with its own flow-control windows.
 *
 * @module
 */

import type { LendingConn } from "../net/conn.ts";
import { Flag, INITIAL_STREAM_WINDOW_BYTES } from "./constants.ts";
import { MuxError, ProtocolError, StreamClosedError, StreamResetError } from "./errors.ts";
import { ByteRing } from "./_byte_ring.ts";
import {
  DIRECT_READ_MIN_BYTES,
  kAwaitingAck,
  kDirectReadDone,
  kDirectReadTarget,
  kOnData,
  kOnDataFrame,
  kOnRemoteFin,
  kOnRemoteReset,
  kOnSessionEnd,
  kOnWindowUpdate,
  kQueued,
  kReaderMayReturn,
  kReleaseIdleBuffers,
  kSendableBytes,
  kTakeSendBytes,
  kTakeSendBytesZeroCopy,
  type StreamOwner,
} from "./_internal.ts";

/** A read waiting for data: resolved by the session's reader loop, which copies straight into `buffer`. */
interface PendingRead {
  buffer: Uint8Array;
  /** Bytes already placed in `buffer` (a read may be filled by a copy and then a direct read). */
  filled: number;
  resolve: (count: number | null) => void;
  reject: (error: Error) => void;
}

/** A `readLent()` waiting for data: resolved with a view of the ring once bytes arrive. */
interface PendingLend {
  maxBytes: number;
  resolve: (view: Uint8Array | null) => void;
  reject: (error: Error) => void;
}

/**
 * Smallest read the session makes straight into the ring's free space (when no reader's buffer is
 * waiting): one TLS record's worth, so a record is never split across a direct read and a copy.
 */
const RING_READ_MIN_BYTES = 16 * 1024;

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

/** Buffer size the `readable` wrapper reads with. */
const READABLE_CHUNK_BYTES = 64 * 1024;

/** How many consecutive window updates must come faster than this many RTTs to double the window. */
const WINDOW_GROWTH_RTT_FACTOR = 4;

/** RTT floor (ms) for window auto-tuning, so a sub-millisecond loopback RTT still lets windows grow. */
const WINDOW_GROWTH_MIN_RTT_MS = 1;

/**
 * A yamux stream. `read`/`write`/`closeWrite`/`close` follow the {@linkcode DuplexConn} contract:
 *
 * - `write(data)` resolves with `data.length` once every byte is queued in the session's bounded
 *   outbound buffer. It waits while the peer's window for this stream is exhausted (backpressure), so
 *   one call may take several frames and several window updates. One write at a time.
 * - `read(buffer)` resolves with the byte count, or `null` after the peer's FIN once buffered data is
 *   read. One read at a time. Window updates are granted as data is read, never merely on arrival.
 * - `closeWrite()` sends FIN after queued data; reading goes on.
 * - `close()` sends FIN if not yet sent, discards unread and later inbound data (still granting window
 *   so the peer never stalls on it) and releases the stream once the peer's FIN arrives.
 * - `reset()` aborts both directions with RST; pending and later reads/writes reject with
 *   {@linkcode StreamResetError}.
 */
export class Stream implements LendingConn {
  /** The stream id (odd: opened by the client role, even: by the server role). */
  readonly id: number;
  /** The session this stream belongs to. */
  readonly #owner: StreamOwner;

  // --- receive side -----------------------------------------------------------------------------
  /** Received bytes not yet read by the application (bounded by the receive window). */
  readonly #received = new ByteRing();
  /** The read currently waiting for data, if any. */
  #pendingRead: PendingRead | null = null;
  /** The session is reading from the connection straight into the pending read's buffer. */
  #directReadInFlight = false;
  /** The `readLent()` currently waiting for data, if any. */
  #pendingLend: PendingLend | null = null;
  /** Bytes at the front of the ring lent by `readLent()` and not yet released. */
  #lentBytes = 0;
  /** The session is reading from the connection straight into the ring's free space. */
  #ringReadInFlight = false;
  /** Data arrived since the session's last {@linkcode kReleaseIdleBuffers} call. */
  #receivedSinceSweep = false;
  /** The peer sent FIN: after the buffered bytes, reads return null. */
  #remoteFinished = false;
  /** `close()` was called: inbound data is discarded (and its window granted back). */
  #readClosed = false;
  /** Current receive window: how much unread + in-flight data we allow; grows by auto-tuning. */
  #receiveWindowBytes: number;
  /** How many more bytes the peer may send before exceeding our window. */
  #receiveCreditBytes = INITIAL_STREAM_WINDOW_BYTES;
  /** When the last window update was sent (or the stream created), from `performance.now()`. */
  #lastWindowUpdateMs: number;

  // --- send side --------------------------------------------------------------------------------
  /** How many bytes the peer currently allows us to send. */
  #sendWindowBytes = INITIAL_STREAM_WINDOW_BYTES;
  /** The write whose bytes are being queued, if any. */
  #pendingWrite: PendingWrite | null = null;
  /** FIN was queued: no more writes. */
  #localFinished = false;
  /** `closeWrite()`/`close()` came during a pending write: send FIN once it is queued. */
  #finAfterWrite = false;
  /** Set by the session: the stream is in the session's round-robin send queue. */
  [kQueued] = false;
  /** Set by the session: we opened this stream and its ACK has not arrived. */
  [kAwaitingAck] = false;

  // --- lifecycle --------------------------------------------------------------------------------
  /** Why reads/writes fail: reset, or the session's end. Null while healthy. */
  #error: Error | null = null;
  /** The stream was reset (locally or by the peer): buffered data is gone, reads reject at once. */
  #reset = false;
  /** Finished (both FINs, reset or session end); the session has forgotten it. */
  #done = false;
  #resolveClosed!: () => void;
  /** Resolves when the stream is finished in both directions, reset, or its session ended. Never rejects. */
  readonly closed: Promise<void>;
  #readable: ReadableStream<Uint8Array> | null = null;
  #writable: WritableStream<Uint8Array> | null = null;

  /**
   * Created by the session only (`Session.open()` / `accept()`).
   *
   * @param id stream id
   * @param owner the session's side of the plumbing
   * @param receiveWindowBytes our initial receive window (≥ the spec's 256 KiB; the excess is
   *   advertised by the session on the SYN/ACK frame)
   */
  constructor(id: number, owner: StreamOwner, receiveWindowBytes: number) {
    this.id = id;
    this.#owner = owner;
    this.#receiveWindowBytes = receiveWindowBytes;
    this.#receiveCreditBytes = receiveWindowBytes;
    this.#lastWindowUpdateMs = performance.now();
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve));
  }

  /** Received bytes waiting to be read. */
  get bufferedBytes(): number {
    return this.#received.length;
  }

  /** Bytes of storage the stream holds for received data (buffered or not). */
  get bufferedStorageBytes(): number {
    return this.#received.capacity;
  }

  /** Current receive window in bytes (starts at the initial window, grows up to the session maximum). */
  get receiveWindowBytes(): number {
    return this.#receiveWindowBytes;
  }

  /** Bytes the peer currently lets us send on this stream. */
  get sendWindowBytes(): number {
    return this.#sendWindowBytes;
  }

  /** True once the stream is finished in both directions, reset, or its session ended. */
  get isClosed(): boolean {
    return this.#done;
  }

  /**
   * Reads up to `buffer.length` bytes. Resolves to the count, or null once the peer's FIN was reached
   * (or after `close()`).
   *
   * @throws {StreamResetError} the stream was reset
   * @throws {SessionClosedError} the session ended before the peer's FIN
   */
  read(buffer: Uint8Array): Promise<number | null> {
    const refusal = this.#readRefusal("read()");
    if (refusal !== null) return Promise.reject(refusal);
    if (this.#received.length > 0) return Promise.resolve(this.#readBuffered(buffer));
    const end = this.#readEnd();
    if (end !== null) return end;
    if (buffer.length === 0) return Promise.resolve(0);
    return new Promise((resolve, reject) => (this.#pendingRead = { buffer, filled: 0, resolve, reject }));
  }

  /**
   * Lends the next received bytes without copying them: resolves with a view of at most `maxBytes` of
   * the stream's own buffer, or null once the peer's FIN was reached (or after `close()`). The view
   * stays valid and unchanged until {@linkcode releaseLent}, which consumes it and grants the window
   * back, so a copy loop can write the view to a socket and release it once written. One read or lend
   * at a time.
   *
   * @throws {StreamResetError} the stream was reset
   * @throws {SessionClosedError} the session ended before the peer's FIN
   */
  readLent(maxBytes: number): Promise<Uint8Array | null> {
    const refusal = this.#readRefusal("readLent()");
    if (refusal !== null) return Promise.reject(refusal);
    if (this.#received.length > 0) return Promise.resolve(this.#lend(maxBytes));
    const end = this.#readEnd();
    if (end !== null) return end;
    return new Promise((resolve, reject) => (this.#pendingLend = { maxBytes, resolve, reject }));
  }

  /** Consumes the bytes the last `readLent()` lent (they may be overwritten from now on). */
  releaseLent(): void {
    const lent = this.#lentBytes;
    if (lent === 0) return;
    this.#lentBytes = 0;
    this.#received.consume(lent);
    this.#grantWindow();
  }

  /**
   * Queues all of `data` (split into frames as the peer's window allows) and resolves with
   * `data.length`. Do not modify `data` until the promise settles.
   *
   * @throws {StreamClosedError} after `closeWrite()`/`close()`
   * @throws {StreamResetError} the stream was reset
   * @throws {SessionClosedError} the session ended
   */
  write(data: Uint8Array): Promise<number> {
    const problem = this.#writeProblem();
    if (problem !== null) return Promise.reject(problem);
    if (this.#pendingWrite !== null) {
      return Promise.reject(
        new MuxError(`concurrent write() on yamux stream ${this.id}; wait for the previous write to finish`),
      );
    }
    if (data.length === 0) return Promise.resolve(0);
    return new Promise((resolve, reject) => {
      this.#pendingWrite = { data, offset: 0, unwritten: 0, resolve, reject };
      if (this.#sendWindowBytes > 0) this.#owner.wantsToSend(this);
    });
  }

  /**
   * Half-closes: queues FIN after everything written so far (after a pending write completes). The peer
   * reads end of stream; we can still read.
   */
  closeWrite(): Promise<void> {
    if (this.#localFinished || this.#finAfterWrite) return Promise.resolve();
    if (this.#error !== null) return Promise.reject(this.#error);
    if (this.#pendingWrite !== null) this.#finAfterWrite = true;
    else this.#sendFin();
    return Promise.resolve();
  }

  /**
   * Closes both directions: FIN if not yet sent, unread inbound data discarded, a pending read resolves
   * null. The stream is released once the peer's FIN arrives. Safe to call more than once.
   */
  close(): void {
    if (this.#readClosed || this.#done) {
      this.#readClosed = true;
      return;
    }
    this.#readClosed = true;
    const discarded = this.#received.length;
    this.#dropReceived();
    this.#settleReadAfterEnd();
    if (!this.#localFinished && !this.#finAfterWrite) {
      if (this.#pendingWrite !== null) this.#finAfterWrite = true;
      else this.#sendFin();
    }
    if (discarded > 0 && !this.#done) this.#grantWindow();
  }

  /** Aborts the stream in both directions with RST. Safe to call more than once. */
  reset(): void {
    if (this.#done) return;
    this.#owner.sendWindowUpdate(this.id, Flag.RST, 0);
    this.#fail(new StreamResetError(this.id, false), true);
    this.#owner.streamDone(this);
  }

  /** The stream as a Web `ReadableStream` (created once; reads in 64 KiB chunks; cancel closes). */
  get readable(): ReadableStream<Uint8Array> {
    this.#readable ??= new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        const buffer = new Uint8Array(READABLE_CHUNK_BYTES);
        const count = await this.read(buffer);
        if (count === null) controller.close();
        else controller.enqueue(buffer.subarray(0, count));
      },
      cancel: () => this.close(),
    });
    return this.#readable;
  }

  /** The stream as a Web `WritableStream` (created once; close half-closes, abort resets). */
  get writable(): WritableStream<Uint8Array> {
    this.#writable ??= new WritableStream<Uint8Array>({
      write: async (chunk) => {
        await this.write(chunk);
      },
      close: () => this.closeWrite(),
      abort: () => this.reset(),
    });
    return this.#writable;
  }

  // --- session-facing ---------------------------------------------------------------------------

  /**
   * A data frame of `length` bytes starts: it must fit in the window we granted.
   *
   * @throws {ProtocolError} the peer exceeded our window or sent data after its FIN
   */
  [kOnDataFrame](length: number): void {
    if (this.#remoteFinished) {
      throw new ProtocolError(
        `yamux stream ${this.id} received ${length} bytes of data after the peer's FIN`,
      );
    }
    if (length > this.#receiveCreditBytes) {
      throw new ProtocolError(
        `yamux stream ${this.id} received a ${length}-byte data frame but its receive window allowed only ` +
          `${this.#receiveCreditBytes} more bytes (window ${this.#receiveWindowBytes} bytes)`,
      );
    }
    this.#receiveCreditBytes -= length;
  }

  /**
   * Payload bytes of the current data frame (already counted by {@linkcode kOnDataFrame}). They are a
   * view of the session's reusable read buffer: a waiting reader gets them copied straight into its
   * buffer, the rest is copied into the stream's ring buffer. `hold`: more of this frame follows and
   * the session will read it straight into the same buffer, so do not resolve the read yet.
   */
  [kOnData](payload: Uint8Array, hold: boolean): void {
    if (this.#done && this.#reset) return;
    this.#receivedSinceSweep = true;
    if (this.#pendingLend !== null && !this.#readClosed) {
      // A lending reader waits: keep the bytes in the ring and lend them (after the rest of the frame,
      // when it follows straight into the ring).
      this.#received.push(payload);
      if (!hold) this.#deliverBuffered();
      return;
    }
    const length = payload.length;
    if (this.#readClosed) {
      // Discarded after close(): count it as read so the peer is never stuck on our window.
      this.#grantWindow();
      return;
    }
    let delivered = 0;
    const pending = this.#pendingRead;
    if (pending !== null) {
      // A reader is waiting (so nothing is buffered): copy straight into its buffer.
      delivered = Math.min(length, pending.buffer.length - pending.filled);
      pending.buffer.set(delivered === length ? payload : payload.subarray(0, delivered), pending.filled);
      pending.filled += delivered;
      if (!hold || pending.filled === pending.buffer.length) {
        this.#pendingRead = null;
        pending.resolve(pending.filled);
      }
    }
    if (delivered < length) this.#received.push(delivered === 0 ? payload : payload.subarray(delivered));
    if (delivered > 0) this.#grantWindow();
  }

  /**
   * Offers the unfilled part of the waiting reader's buffer for a direct read of the current frame's
   * remaining `remainingFrameBytes`, or returns null (and releases a read held by `kOnData`) when a
   * direct read is not worth it.
   */
  [kDirectReadTarget](remainingFrameBytes: number): Uint8Array | null {
    if (this.#done || this.#readClosed) return null;
    const pending = this.#pendingRead;
    if (pending !== null && this.#received.length === 0) {
      const space = pending.buffer.length - pending.filled;
      if (space >= DIRECT_READ_MIN_BYTES && remainingFrameBytes >= DIRECT_READ_MIN_BYTES) {
        this.#directReadInFlight = true;
        const end = pending.filled + Math.min(space, remainingFrameBytes);
        return pending.buffer.subarray(pending.filled, end);
      }
      if (pending.filled > 0) {
        this.#pendingRead = null;
        pending.resolve(pending.filled);
      }
    }
    // No reader's buffer to fill (the reader is busy, lends, or reads small): read into the ring's free
    // space instead of the session's buffer, which saves copying the bytes into the ring afterwards.
    if (remainingFrameBytes >= RING_READ_MIN_BYTES) {
      const target = this.#received.reserve(RING_READ_MIN_BYTES, remainingFrameBytes);
      if (target !== null) {
        this.#ringReadInFlight = true;
        return target;
      }
    }
    this.#deliverBuffered(); // a lend held for the rest of this frame gets what has arrived
    return null;
  }

  /** The session's direct read into the target ended with `count` bytes (0 when the connection failed). */
  [kDirectReadDone](count: number): void {
    if (this.#ringReadInFlight) {
      this.#ringReadInFlight = false;
      this.#receivedSinceSweep = true;
      this.#received.commit(count); // adds nothing if close() or a reset cleared the ring meanwhile
      if (this.#reset) return;
      if (this.#readClosed) {
        if (count > 0) this.#grantWindow(); // discarded after close(): still granted back
        return;
      }
      this.#deliverBuffered();
      return;
    }
    this.#directReadInFlight = false;
    const pending = this.#pendingRead;
    if (pending === null) return;
    if (this.#reset || this.#readClosed) {
      if (!this.#reset && count > 0) this.#grantWindow(); // discarded after close(): still granted back
      this.#settleReadAfterEnd();
      return;
    }
    pending.filled += count;
    if (pending.filled > 0) {
      this.#pendingRead = null;
      pending.resolve(pending.filled);
      this.#grantWindow();
    } else if (this.#done) {
      this.#settleReadAfterEnd();
    }
  }

  /** True when no read waits and nothing is buffered: the reader is probably about to read again. */
  [kReaderMayReturn](): boolean {
    return this.#pendingRead === null && this.#pendingLend === null && this.#received.length === 0 &&
      !this.#done && !this.#readClosed;
  }

  /** Gives the ring's drained storage back when nothing arrived since the previous call. */
  [kReleaseIdleBuffers](): void {
    if (this.#receivedSinceSweep) {
      this.#receivedSinceSweep = false;
      return;
    }
    this.#received.releaseStorageIfDrained(); // not while a direct read fills it: the ring knows
  }

  /** The peer granted `deltaBytes` more send window. */
  [kOnWindowUpdate](deltaBytes: number): void {
    const wasBlocked = this.#sendWindowBytes === 0;
    this.#sendWindowBytes += deltaBytes;
    if (wasBlocked && this.#pendingWrite !== null && !this[kQueued]) this.#owner.wantsToSend(this);
  }

  /**
   * The peer sent FIN.
   *
   * @throws {ProtocolError} on a second FIN
   */
  [kOnRemoteFin](): void {
    if (this.#remoteFinished) throw new ProtocolError(`yamux stream ${this.id} received a second FIN`);
    this.#remoteFinished = true;
    this.#settleReadAfterEnd();
    if (this.#localFinished) this.#finish();
  }

  /** The peer sent RST. */
  [kOnRemoteReset](): void {
    this.#fail(new StreamResetError(this.id, true), true);
  }

  /** The session ended with `error`: buffered data stays readable; everything else fails with it. */
  [kOnSessionEnd](error: Error): void {
    this.#fail(error, false);
  }

  /** Bytes of the pending write the session may send now (0 if none or no window). */
  [kSendableBytes](): number {
    const pending = this.#pendingWrite;
    if (pending === null || this.#error !== null) return 0;
    return Math.min(pending.data.length - pending.offset, this.#sendWindowBytes);
  }

  /** Takes the next `count` bytes of the pending write (the session copies them right away). */
  [kTakeSendBytes](count: number): Uint8Array {
    const pending = this.#pendingWrite as PendingWrite;
    const start = pending.offset;
    pending.offset += count;
    this.#sendWindowBytes -= count;
    this.#completeWriteIfDone(pending);
    return pending.data.subarray(start, start + count);
  }

  /**
   * Takes the next `count` bytes of the pending write for a zero-copy write; the session calls
   * `written()` once they are on the connection, and the write resolves after its last piece is.
   */
  [kTakeSendBytesZeroCopy](count: number): { bytes: Uint8Array; written: () => void } {
    const pending = this.#pendingWrite as PendingWrite;
    const start = pending.offset;
    pending.offset += count;
    pending.unwritten++;
    this.#sendWindowBytes -= count;
    return {
      bytes: pending.data.subarray(start, start + count),
      written: () => {
        pending.unwritten--;
        this.#completeWriteIfDone(pending);
      },
    };
  }

  // --- internals --------------------------------------------------------------------------------

  /** Resolves `pending` once all its bytes are queued (copied) or written (zero-copy). */
  #completeWriteIfDone(pending: PendingWrite): void {
    if (pending.offset !== pending.data.length || pending.unwritten !== 0 || this.#pendingWrite !== pending) {
      return;
    }
    this.#pendingWrite = null;
    pending.resolve(pending.data.length);
    // A FIN must follow bytes the session is copying right now, so queue it after this synchronous step.
    if (this.#finAfterWrite) queueMicrotask(() => this.#sendFin());
  }

  /**
   * Settles the pending read once no more data can come for it (FIN, close(), reset, session end):
   * bytes already placed in its buffer are delivered, then null or the error. Deferred while a direct
   * read is writing into its buffer, so the caller never gets its buffer back while it is in use.
   */
  #settleReadAfterEnd(): void {
    const lend = this.#pendingLend;
    if (lend !== null && this.#received.length === 0) {
      this.#pendingLend = null;
      if (this.#reset) lend.reject(this.#error as Error);
      else if (this.#readClosed || this.#remoteFinished || this.#error === null) lend.resolve(null);
      else lend.reject(this.#error);
    }
    const pending = this.#pendingRead;
    if (pending === null || this.#directReadInFlight) return;
    this.#pendingRead = null;
    if (this.#reset) pending.reject(this.#error as Error);
    else if (this.#readClosed) pending.resolve(null);
    else if (pending.filled > 0) pending.resolve(pending.filled);
    else if (this.#remoteFinished || this.#error === null) pending.resolve(null);
    else pending.reject(this.#error);
  }

  /** Hands buffered bytes to the waiting read (by copy) or lend (as a view), if either waits. */
  #deliverBuffered(): void {
    if (this.#received.length === 0) return;
    const pending = this.#pendingRead;
    if (pending !== null) {
      this.#pendingRead = null;
      pending.filled += this.#readBuffered(pending.buffer.subarray(pending.filled));
      pending.resolve(pending.filled);
      return;
    }
    const lend = this.#pendingLend;
    if (lend !== null) {
      this.#pendingLend = null;
      lend.resolve(this.#lend(lend.maxBytes));
    }
  }

  /** Lends a view of the oldest buffered bytes (at least one is buffered). */
  #lend(maxBytes: number): Uint8Array {
    const view = this.#received.peek(maxBytes);
    this.#lentBytes = view.length;
    return view;
  }

  /** Why a `read()` or `readLent()` (`call`) fails at once: the stream was reset, or another read is on. */
  #readRefusal(call: string): Error | null {
    if (this.#reset) return this.#error;
    if (this.#pendingRead === null && this.#pendingLend === null && this.#lentBytes === 0) return null;
    return new MuxError(
      `concurrent ${call} on yamux stream ${this.id}; wait for the previous read to finish and release what ` +
        "readLent() lent",
    );
  }

  /** With nothing buffered: the end of stream (null) or the session's error, or null to wait for data. */
  #readEnd(): Promise<null> | null {
    if (this.#remoteFinished || this.#readClosed) return Promise.resolve(null);
    if (this.#error !== null) return Promise.reject(this.#error);
    return null;
  }

  /** Drops unread data (a lent view stays intact for its writer; the ring no longer counts it). */
  #dropReceived(): void {
    this.#received.clear();
    this.#lentBytes = 0;
  }

  /** Copies buffered data into `buffer`; returns the count. */
  #readBuffered(buffer: Uint8Array): number {
    const copied = this.#received.shiftInto(buffer);
    this.#grantWindow();
    return copied;
  }

  /**
   * Sends a window update once the bytes read but not yet granted reach half the window (hashicorp's
   * rule). Auto-tuning: if the previous update was less than 4 RTTs ago (RTT floored at 1 ms), the
   * peer is draining the window faster than it can be refilled, so the window doubles (up to
   * `maxStreamWindowBytes`) and the growth is granted in the same update.
   */
  #grantWindow(): void {
    if (this.#remoteFinished || this.#error !== null) return;
    const buffered = this.#received.length;
    let delta = this.#receiveWindowBytes - buffered - this.#receiveCreditBytes;
    if (delta < this.#receiveWindowBytes / 2) return;
    const nowMs = performance.now();
    const maxWindow = this.#owner.maxStreamWindowBytes;
    if (this.#receiveWindowBytes < maxWindow && !this.#readClosed) {
      const rttMs = Math.max(this.#owner.rttMs(), WINDOW_GROWTH_MIN_RTT_MS);
      if (nowMs - this.#lastWindowUpdateMs < WINDOW_GROWTH_RTT_FACTOR * rttMs) {
        this.#receiveWindowBytes = Math.min(this.#receiveWindowBytes * 2, maxWindow);
        delta = this.#receiveWindowBytes - buffered - this.#receiveCreditBytes;
      }
    }
    this.#lastWindowUpdateMs = nowMs;
    this.#receiveCreditBytes += delta;
    this.#owner.sendWindowUpdate(this.id, 0, delta);
  }

  /** Queues FIN (on a window update frame, hashicorp's way). */
  #sendFin(): void {
    this.#finAfterWrite = false;
    if (this.#localFinished || this.#error !== null) return;
    this.#localFinished = true;
    this.#owner.sendWindowUpdate(this.id, Flag.FIN, 0);
    if (this.#remoteFinished) this.#finish();
  }

  /** Why a write cannot start now, or null. */
  #writeProblem(): Error | null {
    if (this.#error !== null) return this.#error;
    if (this.#localFinished || this.#finAfterWrite) {
      return new StreamClosedError(
        this.id,
        `write on yamux stream ${this.id} after closeWrite() or close(); open a new stream to send more`,
      );
    }
    return null;
  }

  /** Both directions finished: release the stream. */
  #finish(): void {
    if (this.#done) return;
    this.#done = true;
    this.#received.retire(); // the session's sweep no longer sees this stream
    this.#owner.streamDone(this);
    this.#resolveClosed();
  }

  /** Fails the stream with `error`; `discard`: drop buffered data too (reset). */
  #fail(error: Error, discard: boolean): void {
    if (this.#done) return;
    this.#done = true;
    this.#error = error;
    if (discard) {
      this.#reset = true;
      this.#dropReceived();
    }
    this.#received.retire(); // the session's sweep no longer sees this stream
    this.#settleReadAfterEnd();
    const pendingWrite = this.#pendingWrite;
    this.#pendingWrite = null;
    this.#finAfterWrite = false;
    pendingWrite?.reject(error);
    this.#resolveClosed();
  }
}

/**
 * One multiplexed yamux stream: a {@linkcode DuplexConn} with its own flow-control windows. Its
 * session-facing half is a {@linkcode StreamPort}, which only the session gets (from `createStream`).
 *
 * @module
 */

import type { LendingConn } from "../net/conn.ts";
import { Flag } from "./constants.ts";
import { MuxError, ProtocolError, StreamClosedError, StreamResetError } from "./errors.ts";
import { ByteRing } from "./_byte_ring.ts";
import { ReceiveWindow } from "./receive_window.ts";
import { StreamSender } from "./stream_sender.ts";
import { DIRECT_READ_MIN_BYTES, type StreamHost, type StreamPort } from "./_internal.ts";
import {
  afterFin,
  localFinished,
  remoteFinished,
  StreamState,
  type StreamStateValue,
} from "./stream_state.ts";

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

/** How a stream ended before finishing normally: reset (by either side) or the session's end. */
interface StreamEnd {
  /** What reads and writes fail with. */
  error: Error;
  /** Reset: buffered data is gone and reads reject at once (after a session end it stays readable). */
  reset: boolean;
}

/** Into what the session is reading the connection directly, if anything. */
type DirectReadInto = "reader" | "ring" | null;

/** Buffer size the `readable` wrapper reads with. */
const READABLE_CHUNK_BYTES = 64 * 1024;

/** A stream's port: set by `Stream`'s static block, the only code that sees its private fields. */
let portOf: (stream: Stream) => StreamPort;

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
  readonly #host: StreamHost;
  /** What the session holds of this stream. */
  readonly #port: StreamPort;

  // --- receive side -----------------------------------------------------------------------------
  /** Received bytes not yet read by the application (bounded by the receive window). */
  readonly #received = new ByteRing();
  /** The read currently waiting for data, if any. */
  #pendingRead: PendingRead | null = null;
  /**
   * The session is reading from the connection straight into the pending read's buffer (`reader`) or
   * the ring's free space (`ring`).
   */
  #directReadInto: DirectReadInto = null;
  /** The `readLent()` currently waiting for data, if any. */
  #pendingLend: PendingLend | null = null;
  /** Bytes at the front of the ring lent by `readLent()` and not yet released. */
  #lentBytes = 0;
  /** Data arrived since the session's last `releaseIdleBuffers()` sweep (not a state: sweep bookkeeping). */
  #receivedSinceSweep = false;
  /**
   * `close()` was called: inbound data is discarded (and its window granted back). Not part of the FIN
   * exchange: it says what the application stopped, whatever the peer does.
   */
  #readClosed = false;
  /** Our receive window and the peer's credit in it. */
  readonly #window: ReceiveWindow;

  // --- send side --------------------------------------------------------------------------------
  /** The send window and the pending write (what the session's writer takes frames from). */
  readonly #sender: StreamSender;
  /**
   * `closeWrite()`/`close()` came during a pending write: send FIN once it is queued. Not a state: no
   * FIN is on the wire yet, yet writes are refused already (and stay refused until the FIN goes out).
   */
  #finAfterWrite = false;

  // --- lifecycle --------------------------------------------------------------------------------
  /** Where the stream is in the FIN exchange (see stream_state.ts). */
  #state: StreamStateValue = StreamState.Open;
  /** How the stream ended abnormally (reset or session end), or null. */
  #end: StreamEnd | null = null;
  #resolveClosed!: () => void;
  /** Resolves when the stream is finished in both directions, reset, or its session ended. Never rejects. */
  readonly closed: Promise<void>;
  #readable: ReadableStream<Uint8Array> | null = null;
  #writable: WritableStream<Uint8Array> | null = null;

  /**
   * Created by the session only (`Session.open()` / `accept()`).
   *
   * @param id stream id
   * @param host what the stream may ask of its session
   * @param receiveWindowBytes our initial receive window (≥ the spec's 256 KiB; the excess is
   *   advertised by the session on the SYN/ACK frame)
   */
  constructor(id: number, host: StreamHost, receiveWindowBytes: number) {
    this.id = id;
    this.#host = host;
    this.#window = new ReceiveWindow(receiveWindowBytes);
    // A FIN must follow bytes the session is copying right now, so queue it after this synchronous step.
    this.#sender = new StreamSender(id, () => {
      if (this.#finAfterWrite) queueMicrotask(() => this.#sendFin());
    });
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve));
    this.#port = {
      stream: this,
      id,
      onDataFrame: (length) => this.#onDataFrame(length),
      onData: (payload, hold) => this.#onData(payload, hold),
      directReadTarget: (remainingFrameBytes) => this.#directReadTarget(remainingFrameBytes),
      directReadDone: (count) => this.#directReadDone(count),
      readerMayReturn: () => this.#readerMayReturn(),
      releaseIdleBuffers: () => this.#releaseIdleBuffers(),
      onWindowUpdate: (deltaBytes) => this.#onWindowUpdate(deltaBytes),
      onRemoteFin: () => this.#onRemoteFin(),
      onRemoteReset: () => this.#fail({ error: new StreamResetError(this.id, true), reset: true }),
      onSessionEnd: (error) => this.#fail({ error, reset: false }),
    };
  }

  static {
    portOf = (stream) => stream.#port;
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
    return this.#window.windowBytes;
  }

  /** Bytes the peer currently lets us send on this stream. */
  get sendWindowBytes(): number {
    return this.#sender.windowBytes;
  }

  /** True once the stream is finished in both directions, reset, or its session ended. */
  get isClosed(): boolean {
    return this.#done;
  }

  /** Finished: both FINs, reset, or the session's end (the session has forgotten it). */
  get #done(): boolean {
    return this.#state === StreamState.Closed || this.#end !== null;
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
    if (this.#sender.busy) {
      return Promise.reject(
        new MuxError(`concurrent write() on yamux stream ${this.id}; wait for the previous write to finish`),
      );
    }
    if (data.length === 0) return Promise.resolve(0);
    const written = this.#sender.start(data);
    if (this.#sender.windowBytes > 0) this.#host.wantsToSend(this.#sender);
    return written;
  }

  /**
   * Half-closes: queues FIN after everything written so far (after a pending write completes). The peer
   * reads end of stream; we can still read.
   */
  closeWrite(): Promise<void> {
    if (localFinished(this.#state) || this.#finAfterWrite) return Promise.resolve();
    if (this.#end !== null) return Promise.reject(this.#end.error);
    if (this.#sender.busy) this.#finAfterWrite = true;
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
    if (!localFinished(this.#state) && !this.#finAfterWrite) {
      if (this.#sender.busy) this.#finAfterWrite = true;
      else this.#sendFin();
    }
    if (discarded > 0 && !this.#done) this.#grantWindow();
  }

  /** Aborts the stream in both directions with RST. Safe to call more than once. */
  reset(): void {
    if (this.#done) return;
    this.#host.sendWindowUpdate(this.id, Flag.RST, 0);
    this.#fail({ error: new StreamResetError(this.id, false), reset: true });
    this.#host.streamDone(this.#port);
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

  // --- session-facing (the StreamPort; documented there) -----------------------------------------

  #onDataFrame(length: number): void {
    if (remoteFinished(this.#state)) {
      throw new ProtocolError(
        `yamux stream ${this.id} received ${length} bytes of data after the peer's FIN`,
      );
    }
    if (!this.#window.take(length)) {
      throw new ProtocolError(
        `yamux stream ${this.id} received a ${length}-byte data frame but its receive window allowed only ` +
          `${this.#window.creditBytes} more bytes (window ${this.#window.windowBytes} bytes)`,
      );
    }
  }

  /** A waiting reader gets the payload copied straight into its buffer, the rest goes to the ring. */
  #onData(payload: Uint8Array, hold: boolean): void {
    if (this.#end?.reset === true) return;
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

  /** Without a direct read, a read held by `onData` is released. */
  #directReadTarget(remainingFrameBytes: number): Uint8Array | null {
    if (this.#done || this.#readClosed) return null;
    const pending = this.#pendingRead;
    if (pending !== null && this.#received.length === 0) {
      const space = pending.buffer.length - pending.filled;
      if (space >= DIRECT_READ_MIN_BYTES && remainingFrameBytes >= DIRECT_READ_MIN_BYTES) {
        this.#directReadInto = "reader";
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
        this.#directReadInto = "ring";
        return target;
      }
    }
    this.#deliverBuffered(); // a lend held for the rest of this frame gets what has arrived
    return null;
  }

  #directReadDone(count: number): void {
    const reset = this.#end?.reset === true;
    if (this.#directReadInto === "ring") {
      this.#directReadInto = null;
      this.#receivedSinceSweep = true;
      this.#received.commit(count); // adds nothing if close() or a reset cleared the ring meanwhile
      if (reset) return;
      if (this.#readClosed) {
        if (count > 0) this.#grantWindow(); // discarded after close(): still granted back
        return;
      }
      this.#deliverBuffered();
      return;
    }
    this.#directReadInto = null;
    const pending = this.#pendingRead;
    if (pending === null) return;
    if (reset || this.#readClosed) {
      if (!reset && count > 0) this.#grantWindow(); // discarded after close(): still granted back
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

  #readerMayReturn(): boolean {
    return this.#pendingRead === null && this.#pendingLend === null && this.#received.length === 0 &&
      !this.#done && !this.#readClosed;
  }

  #releaseIdleBuffers(): void {
    if (this.#receivedSinceSweep) {
      this.#receivedSinceSweep = false;
      return;
    }
    this.#received.releaseStorageIfDrained(); // not while a direct read fills it: the ring knows
  }

  #onWindowUpdate(deltaBytes: number): void {
    if (this.#sender.grant(deltaBytes)) this.#host.wantsToSend(this.#sender); // a no-op if queued already
  }

  #onRemoteFin(): void {
    const next = afterFin(this.#state, "remote");
    if (next === null) throw new ProtocolError(`yamux stream ${this.id} received a second FIN`);
    this.#state = next;
    this.#settleReadAfterEnd();
    if (next === StreamState.Closed) this.#finish();
  }

  /**
   * Settles the pending read once no more data can come for it (FIN, close(), reset, session end):
   * bytes already placed in its buffer are delivered, then null or the error. Deferred while a direct
   * read is writing into its buffer, so the caller never gets its buffer back while it is in use.
   */
  #settleReadAfterEnd(): void {
    const end = this.#end;
    const lend = this.#pendingLend;
    if (lend !== null && this.#received.length === 0) {
      this.#pendingLend = null;
      if (end?.reset === true) lend.reject(end.error);
      else if (this.#readClosed || remoteFinished(this.#state) || end === null) lend.resolve(null);
      else lend.reject(end.error);
    }
    const pending = this.#pendingRead;
    if (pending === null || this.#directReadInto === "reader") return;
    this.#pendingRead = null;
    if (end?.reset === true) pending.reject(end.error);
    else if (this.#readClosed) pending.resolve(null);
    else if (pending.filled > 0) pending.resolve(pending.filled);
    else if (remoteFinished(this.#state) || end === null) pending.resolve(null);
    else pending.reject(end.error);
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
    if (this.#end?.reset === true) return this.#end.error;
    if (this.#pendingRead === null && this.#pendingLend === null && this.#lentBytes === 0) return null;
    return new MuxError(
      `concurrent ${call} on yamux stream ${this.id}; wait for the previous read to finish and release what ` +
        "readLent() lent",
    );
  }

  /** With nothing buffered: the end of stream (null) or the session's error, or null to wait for data. */
  #readEnd(): Promise<null> | null {
    if (remoteFinished(this.#state) || this.#readClosed) return Promise.resolve(null);
    if (this.#end !== null) return Promise.reject(this.#end.error);
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

  /** Sends a window update when one is due (see `ReceiveWindow.grant`); the window grows unless closed. */
  #grantWindow(): void {
    if (remoteFinished(this.#state) || this.#end !== null) return;
    const delta = this.#window.grant(this.#received.length, !this.#readClosed, this.#host);
    if (delta > 0) this.#host.sendWindowUpdate(this.id, 0, delta);
  }

  /** Queues FIN (on a window update frame, hashicorp's way). */
  #sendFin(): void {
    this.#finAfterWrite = false;
    const next = afterFin(this.#state, "local");
    if (next === null || this.#end !== null) return;
    this.#state = next;
    this.#host.sendWindowUpdate(this.id, Flag.FIN, 0);
    if (next === StreamState.Closed) this.#finish();
  }

  /** Why a write cannot start now, or null. */
  #writeProblem(): Error | null {
    if (this.#end !== null) return this.#end.error;
    if (localFinished(this.#state) || this.#finAfterWrite) {
      return new StreamClosedError(
        this.id,
        `write on yamux stream ${this.id} after closeWrite() or close(); open a new stream to send more`,
      );
    }
    return null;
  }

  /** Both directions finished (just now entered `Closed`): release the stream. */
  #finish(): void {
    if (this.#end !== null) return; // ended before: released then
    this.#received.retire(); // the session's sweep no longer sees this stream
    this.#host.streamDone(this.#port);
    this.#resolveClosed();
  }

  /** Ends the stream abnormally (a reset also drops buffered data); the FIN state stays as it was. */
  #fail(end: StreamEnd): void {
    if (this.#done) return;
    this.#end = end;
    if (end.reset) this.#dropReceived();
    this.#received.retire(); // the session's sweep no longer sees this stream
    this.#settleReadAfterEnd();
    this.#finAfterWrite = false;
    this.#sender.fail(end.error);
    this.#resolveClosed();
  }
}

/**
 * Creates a stream for the session and returns its session-facing port (`port.stream` is the public
 * stream). The session's only way to a stream's internals.
 */
export function createStream(id: number, host: StreamHost, receiveWindowBytes: number): StreamPort {
  return portOf(new Stream(id, host, receiveWindowBytes));
}

/**
 * A yamux session over one {@linkcode DuplexConn}: opens and accepts streams, runs the single reader
 * loop and the single (batching) writer loop, keepalive and GoAway.
 *
 * @module
 */

import type { DuplexConn } from "../net/conn.ts";
import {
  FIRST_CLIENT_STREAM_ID,
  FIRST_SERVER_STREAM_ID,
  Flag,
  FrameType,
  GoAwayCode,
  type GoAwayCodeValue,
  HEADER_SIZE_BYTES,
  INITIAL_STREAM_WINDOW_BYTES,
  MAX_U32,
  SESSION_STREAM_ID,
} from "./constants.ts";
import { FrameDecoder } from "./decoder.ts";
import {
  describeGoAwayCode,
  KeepaliveTimeoutError,
  type MuxError,
  ProtocolError,
  RemoteGoAwayError,
  SessionClosedError,
  type SessionCloseReason,
  StreamLimitError,
} from "./errors.ts";
import { type FrameHeader, writeHeader } from "./frame.ts";
import type { FrameSegment } from "./decoder.ts";
import { type ResolvedSessionOptions, resolveSessionOptions, type SessionOptions } from "./options.ts";
import { Stream } from "./stream.ts";
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

/** Don't cut a data frame smaller than this just to fill the batch; wait for the next batch instead. */
const MIN_DATA_FRAGMENT_BYTES = 16 * 1024;

/** A payload written straight from a stream's write buffer, placed after `offset` bytes of its batch. */
interface ZeroCopyPayload {
  /** Position in the batch where the payload belongs (right after its header). */
  offset: number;
  bytes: Uint8Array;
  /** Tells the stream these bytes are on the connection. */
  written: () => void;
}

/** Read size right after a large data frame: the next header plus a little payload. */
const SMALL_READ_BYTES = 16 * 1024;

/** A data frame at least this large is likely followed by another (bulk transfer). */
const LARGE_FRAME_BYTES = 64 * 1024;

/** Extra batch room kept for control frames (window updates, pings) beyond the data bound. */
const CONTROL_RESERVE_BYTES = 64 * 1024;

/** Control frames may grow the batch by at most this much before we conclude the peer stopped reading. */
const MAX_CONTROL_BACKLOG_BYTES = 4 * 1024 * 1024;

/** Weight of a new RTT sample in the smoothed RTT (as TCP's SRTT). */
const RTT_SMOOTHING = 0.125;

/** A ping waiting for its answer. */
interface PendingPing {
  startMs: number;
  resolve: (rttMs: number) => void;
  reject: (error: Error) => void;
}

/** An `open()` waiting for an acknowledgement slot. */
interface OpenWaiter {
  resolve: () => void;
  reject: (error: Error) => void;
}

/**
 * A yamux session. Construct one per connection with the role of this end; it starts reading at once.
 *
 * ```ts
 * import { Session } from "./mod.ts";
 *
 * const conn = await Deno.connect({ hostname: "127.0.0.1", port: 7000 });
 * const session = new Session(conn, { role: "client" });
 * const stream = await session.open();
 * await stream.write(new TextEncoder().encode("hello"));
 * await stream.closeWrite();
 * ```
 */
export class Session {
  /** This end's role (decides the parity of the stream ids we open). */
  readonly role: "client" | "server";
  /** Options with defaults filled in. */
  readonly options: Readonly<ResolvedSessionOptions>;
  /** The underlying connection. */
  readonly #conn: DuplexConn;
  /** What streams may ask of us. */
  readonly #owner: StreamOwner;

  // --- streams ----------------------------------------------------------------------------------
  /** Live streams by id (removed once finished in both directions or reset). */
  readonly #streams = new Map<number, Stream>();
  /** The id our next `open()` uses. */
  #nextStreamId: number;
  /** Highest stream id the peer has opened; higher peer-parity ids without SYN were never used. */
  #highestPeerStreamId = 0;
  /** Inbound streams not yet taken by `accept()` (bounded by `acceptBacklog`). */
  #acceptQueue: Stream[] = [];
  /** `accept()` calls waiting for an inbound stream. */
  #acceptWaiters: Array<(stream: Stream | null) => void> = [];
  /** Our opened streams whose ACK has not arrived. */
  #unackedOpens = 0;
  /** `open()` calls waiting because `#unackedOpens` reached `maxUnackedOpens`. */
  #openWaiters: OpenWaiter[] = [];
  /** We sent GoAway: inbound SYNs are refused with RST. */
  #localGoAway = false;
  /** Code of the GoAway the peer sent, or null: once set, `open()` rejects. */
  #remoteGoAwayCode: GoAwayCodeValue | null = null;

  // --- writer -----------------------------------------------------------------------------------
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
  /** Stream data may fill a batch up to this many bytes (control frames may use the reserve above). */
  readonly #dataLimitBytes: number;
  /** The writer loop is running. */
  #writing = false;
  /** A microtask will start the writer loop (so frames queued in one tick share one write). */
  #flushScheduled = false;
  /** The writer loop's current run (awaited on shutdown). */
  #writeLoopDone: Promise<void> = Promise.resolve();
  /** Streams with pending write data and send window, served round-robin one frame per turn. */
  #sendQueue: Stream[] = [];
  /** Waiting for the writer to become idle (flush on close). */
  #idleWaiters: Array<() => void> = [];

  // --- reader -----------------------------------------------------------------------------------
  readonly #decoder: FrameDecoder;
  /** Stream receiving the data frame in progress (null: none, or its payload is being dropped). */
  #dataFrameStream: Stream | null = null;
  /** The reader loop (never rejects). */
  readonly #readLoopDone: Promise<void>;

  // --- ping / keepalive -------------------------------------------------------------------------
  /** Pings waiting for their ACK, by opaque value. */
  readonly #pings = new Map<number, PendingPing>();
  /** Opaque value of the next ping (u32, skipping 0). */
  #nextPingId = 1;
  /** Smoothed RTT in ms, 0 until the first ping returns. */
  #smoothedRttMs = 0;
  /** Timer of the next keepalive ping. */
  #keepaliveTimer: ReturnType<typeof setTimeout> | null = null;
  /** Timer of the idle receive storage sweep. */
  readonly #sweepTimer: ReturnType<typeof setInterval>;
  /** Timer that ends the session if the outstanding keepalive ping stays unanswered. */
  #keepaliveDeadline: ReturnType<typeof setTimeout> | null = null;

  // --- lifecycle --------------------------------------------------------------------------------
  /** Why the session ended, or null while it runs. */
  #closeReason: SessionCloseReason | null = null;
  /** The error that ended the session abnormally (null while running, after close() or clean EOF). */
  #error: MuxError | null = null;
  /** What pending and later operations fail with once the session is over. */
  #closedError: SessionClosedError | null = null;
  #resolveClosed!: () => void;
  /** Resolves once the session is over and the connection closed. Never rejects. */
  readonly closed: Promise<void>;
  readonly #remoteGoAway = Promise.withResolvers<GoAwayCodeValue>();
  /**
   * Resolves with the code of the first GoAway the peer sends (its streams in flight go on with a normal
   * code); stays pending if none comes. Never rejects.
   */
  readonly remoteGoAway: Promise<GoAwayCodeValue> = this.#remoteGoAway.promise;

  /**
   * Starts a session over `conn` (reading begins immediately, keepalive pings too).
   *
   * @throws {RangeError | TypeError} on invalid options
   */
  constructor(conn: DuplexConn, options: SessionOptions) {
    this.options = resolveSessionOptions(options);
    this.role = this.options.role;
    this.#conn = conn;
    this.#nextStreamId = this.role === "client" ? FIRST_CLIENT_STREAM_ID : FIRST_SERVER_STREAM_ID;
    this.#dataLimitBytes = this.options.writeBatchBytes;
    this.#batch = new Uint8Array(this.#dataLimitBytes + CONTROL_RESERVE_BYTES);
    this.#spareBatch = new Uint8Array(this.#dataLimitBytes + CONTROL_RESERVE_BYTES);
    this.#decoder = new FrameDecoder({ maxFramePayloadBytes: this.options.maxFramePayloadBytes });
    this.#owner = {
      maxStreamWindowBytes: this.options.maxStreamWindowBytes,
      rttMs: () => this.#smoothedRttMs,
      sendWindowUpdate: (streamId, flags, deltaBytes) =>
        this.#queueControl(FrameType.WindowUpdate, flags, streamId, deltaBytes),
      wantsToSend: (stream) => this.#wantsToSend(stream),
      streamDone: (stream) => this.#forget(stream),
    };
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve));
    this.#readLoopDone = this.#readLoop();
    this.#startKeepalive();
    this.#sweepTimer = setInterval(() => {
      for (const stream of this.#streams.values()) stream[kReleaseIdleBuffers]();
    }, this.options.idleBufferSweepMs);
    Deno.unrefTimer(this.#sweepTimer);
  }

  /** Number of live streams (opened or accepted, not yet finished). */
  get numStreams(): number {
    return this.#streams.size;
  }

  /** True once the session is over (or ending). */
  get isClosed(): boolean {
    return this.#closeReason !== null;
  }

  /** Why the session ended, or null while it runs. */
  get closeReason(): SessionCloseReason | null {
    return this.#closeReason;
  }

  /**
   * The error that ended the session: a `ProtocolError`, `KeepaliveTimeoutError`, `RemoteGoAwayError` or
   * `SessionClosedError` (connection failure). Null while running and after a normal end (`close()`, or
   * the peer closing the connection at a frame boundary).
   */
  get error(): MuxError | null {
    return this.#error;
  }

  /** Smoothed round-trip time in ms measured by pings (0 until the first answer). */
  get rttMs(): number {
    return this.#smoothedRttMs;
  }

  /** The code of the GoAway the peer sent, or null. */
  get remoteGoAwayCode(): GoAwayCodeValue | null {
    return this.#remoteGoAwayCode;
  }

  /**
   * Opens a stream: queues its SYN (on a window update frame) and resolves without waiting for the
   * peer's ACK. At most `maxUnackedOpens` opens may await their ACK; beyond that this waits.
   *
   * @throws {RemoteGoAwayError} the peer sent GoAway
   * @throws {StreamLimitError} `maxStreams` live streams, or stream ids exhausted
   * @throws {SessionClosedError} the session is over
   */
  async open(): Promise<Stream> {
    for (;;) {
      this.#throwIfCannotOpen();
      if (this.#unackedOpens < this.options.maxUnackedOpens) break;
      await new Promise<void>((resolve, reject) => this.#openWaiters.push({ resolve, reject }));
    }
    if (this.#streams.size >= this.options.maxStreams) {
      throw new StreamLimitError(
        this.options.maxStreams,
        `cannot open a yamux stream: ${this.#streams.size} streams are live and maxStreams is ` +
          `${this.options.maxStreams}; close streams or raise maxStreams`,
      );
    }
    const id = this.#nextStreamId;
    if (id > MAX_U32) {
      throw new StreamLimitError(
        MAX_U32,
        `cannot open a yamux stream: all ${this.role} stream ids are used; start a new session`,
      );
    }
    this.#nextStreamId = id + 2;
    const stream = new Stream(id, this.#owner, this.options.initialStreamWindowBytes);
    stream[kAwaitingAck] = true;
    this.#unackedOpens++;
    this.#streams.set(id, stream);
    this.#queueControl(FrameType.WindowUpdate, Flag.SYN, id, this.#extraInitialWindow());
    return stream;
  }

  /**
   * Waits for the next stream the peer opens and acknowledges it (ACK). Resolves null once the session
   * is over.
   */
  accept(): Promise<Stream | null> {
    while (this.#acceptQueue.length > 0) {
      const stream = this.#acceptQueue.shift() as Stream;
      if (stream.isClosed) continue;
      this.#queueControl(FrameType.WindowUpdate, Flag.ACK, stream.id, this.#extraInitialWindow());
      return Promise.resolve(stream);
    }
    if (this.#closeReason !== null) return Promise.resolve(null);
    return new Promise((resolve) => this.#acceptWaiters.push(resolve));
  }

  /** Yields accepted streams until the session is over. */
  async *[Symbol.asyncIterator](): AsyncGenerator<Stream, void, undefined> {
    for (;;) {
      const stream = await this.accept();
      if (stream === null) return;
      yield stream;
    }
  }

  /**
   * Sends a ping and resolves with the round-trip time in ms.
   *
   * @throws {SessionClosedError} the session ended before the answer
   */
  ping(): Promise<number> {
    if (this.#closedError !== null) return Promise.reject(this.#closedError);
    const id = this.#nextPingId;
    this.#nextPingId = id >= MAX_U32 ? 1 : id + 1;
    return new Promise((resolve, reject) => {
      this.#pings.set(id, { startMs: performance.now(), resolve, reject });
      this.#queueControl(FrameType.Ping, Flag.SYN, SESSION_STREAM_ID, id);
    });
  }

  /**
   * Tells the peer not to open new streams (GoAway with `code`); inbound SYNs are refused from now on.
   * Existing streams continue. Resolves once the frame is written (or the session ended).
   */
  async goAway(code: GoAwayCodeValue = GoAwayCode.Normal): Promise<void> {
    if (!Number.isInteger(code) || code < 0 || code > MAX_U32) {
      throw new RangeError(`yamux GoAway code must be a u32, got ${code}`);
    }
    if (this.#closeReason !== null) return;
    this.#localGoAway = true;
    this.#queueControl(FrameType.GoAway, 0, SESSION_STREAM_ID, code);
    await this.#waitIdle(Number.POSITIVE_INFINITY);
  }

  /**
   * Ends the session: sends GoAway(normal) unless {@linkcode goAway} did, flushes queued frames (for at
   * most `closeFlushTimeoutMs`), half-closes the connection (a TLS connection sends close_notify, so the
   * peer sees a clean end, not an unexpected EOF) and closes it. Streams not finished fail with `SessionClosedError`. Safe to call more than
   * once; resolves when {@linkcode closed} does.
   */
  async close(): Promise<void> {
    // After goAway() the peer knows already: a second GoAway frame would say nothing new.
    this.#terminate("local-close", null, this.#localGoAway ? null : GoAwayCode.Normal, true);
    await this.closed;
  }

  // --- reader -----------------------------------------------------------------------------------

  async #readLoop(): Promise<void> {
    const buffer = new Uint8Array(this.options.readBufferBytes);
    const decoder = this.#decoder;
    /** Bytes to ask for in the next read into `buffer` (less during a run of large data frames). */
    let readBytes = buffer.length;
    while (this.#closeReason === null) {
      // The rest of a large data frame goes straight into the waiting reader's buffer when possible.
      const remaining = decoder.pendingPayloadBytes;
      const stream = this.#dataFrameStream;
      if (remaining > 0 && stream !== null) {
        if (stream[kReaderMayReturn]()) {
          await undefined; // let a reader that just got data come back first (see below)
          if (this.#closeReason !== null) return;
        }
        const target = stream[kDirectReadTarget](remaining);
        if (target !== null) {
          let count: number | null = 0;
          try {
            count = await this.#conn.read(target);
          } catch (error) {
            stream[kDirectReadDone](0);
            this.#failRead(error);
            return;
          }
          stream[kDirectReadDone](count ?? 0);
          if (count === null) {
            this.#endOfInput();
            return;
          }
          if (this.#closeReason !== null) return;
          try {
            const segment = decoder.skipPayload(count);
            if (segment.last) {
              this.#dataFrameStream = null;
              this.#applyFinalFlags(stream, segment.header.flags);
              readBytes = SMALL_READ_BYTES;
            } else {
              // Let the reader come back with its next read() before deciding how to read the rest.
              await undefined;
            }
          } catch (error) {
            this.#failOnFrameError(error);
            return;
          }
          continue;
        }
      }
      let count: number | null;
      try {
        count = await this.#conn.read(readBytes < buffer.length ? buffer.subarray(0, readBytes) : buffer);
      } catch (error) {
        this.#failRead(error);
        return;
      }
      if (this.#closeReason !== null) return;
      if (count === null) {
        this.#endOfInput();
        return;
      }
      decoder.push(count === buffer.length ? buffer : buffer.subarray(0, count));
      let lastFrameLength = 0;
      try {
        for (let segment = decoder.nextSegment(); segment !== null; segment = decoder.nextSegment()) {
          if (
            segment.payload.length > 0 && segment.header.type === FrameType.Data
          ) {
            // A reader that just got data is usually one microtask away from its next read(): let it
            // come back, so this payload goes straight into its buffer instead of the stream's ring.
            const target = segment.first ? this.#streams.get(segment.header.streamId) : this.#dataFrameStream;
            if (target !== undefined && target !== null && target[kReaderMayReturn]()) {
              await undefined;
              if (this.#closeReason !== null) return;
            }
          }
          this.#handleSegment(segment);
          if (this.#closeReason !== null) return;
          lastFrameLength = segment.header.type === FrameType.Data ? segment.header.length : 0;
        }
      } catch (error) {
        this.#failOnFrameError(error);
        return;
      }
      // In a run of large data frames, read only up to the next header and a little payload, so that the
      // rest of the next frame can go straight into its reader's buffer instead of through ours.
      readBytes = lastFrameLength >= LARGE_FRAME_BYTES
        ? Math.min(decoder.pendingPayloadBytes + SMALL_READ_BYTES, buffer.length)
        : buffer.length;
    }
  }

  #failRead(error: unknown): void {
    this.#terminate(
      "conn-error",
      new SessionClosedError("conn-error", `reading the yamux connection failed: ${errorText(error)}`, {
        cause: error,
      }),
      null,
      false,
    );
  }

  #endOfInput(): void {
    if (this.#decoder.atFrameBoundary) {
      this.#terminate("remote-closed", null, null, false);
      return;
    }
    this.#terminate(
      "conn-error",
      new SessionClosedError(
        "conn-error",
        `the yamux connection ended inside a frame (${this.#decoder.bufferedBytes} bytes of it received)`,
      ),
      null,
      false,
    );
  }

  #failOnFrameError(error: unknown): void {
    if (error instanceof ProtocolError) {
      this.#terminate("protocol-error", error, error.goAwayCode, true);
      return;
    }
    const internal = new ProtocolError(
      `internal error while handling a yamux frame: ${errorText(error)}`,
      GoAwayCode.InternalError,
      { cause: error },
    );
    this.#terminate("protocol-error", internal, GoAwayCode.InternalError, true);
  }

  /** Acts on one decoded segment; data payloads are delivered piece by piece as they arrive. */
  #handleSegment(segment: FrameSegment): void {
    const header = segment.header;
    switch (header.type) {
      case FrameType.Data: {
        if (segment.first) {
          const stream = this.#streamForFrame(header);
          if (stream !== null && header.length > 0) stream[kOnDataFrame](header.length);
          this.#dataFrameStream = stream;
        }
        const stream = this.#dataFrameStream;
        if (stream === null) return; // Refused or late frame: its payload is dropped.
        if (segment.payload.length > 0) {
          // Hold a partly filled read when the rest of this frame can be read straight into it.
          stream[kOnData](
            segment.payload,
            !segment.last && this.#decoder.pendingPayloadBytes >= DIRECT_READ_MIN_BYTES,
          );
        }
        if (segment.last) {
          this.#dataFrameStream = null;
          this.#applyFinalFlags(stream, header.flags);
        }
        return;
      }
      case FrameType.WindowUpdate: {
        const stream = this.#streamForFrame(header);
        if (stream === null) return;
        if (header.length > 0) stream[kOnWindowUpdate](header.length);
        this.#applyFinalFlags(stream, header.flags);
        return;
      }
      case FrameType.Ping:
        if (header.flags === Flag.SYN) {
          this.#queueControl(FrameType.Ping, Flag.ACK, SESSION_STREAM_ID, header.length);
        } else this.#onPong(header.length);
        return;
      case FrameType.GoAway:
        this.#onGoAway(header.length);
        return;
    }
  }

  /**
   * Finds (or, on SYN, creates) the stream a data or window update frame is for. Returns null when the
   * frame is to be ignored: a refused SYN, a late frame for a finished stream, or RST (applied here).
   *
   * @throws {ProtocolError} SYN for an open id or with the wrong parity; a frame for a never-opened id
   */
  #streamForFrame(header: FrameHeader): Stream | null {
    const id = header.streamId;
    const flags = header.flags;
    let stream = this.#streams.get(id);
    if ((flags & Flag.SYN) !== 0) {
      if (stream !== undefined) {
        throw new ProtocolError(`the yamux peer sent SYN for stream ${id}, which is already open`);
      }
      if (!this.#isPeerStreamId(id)) {
        const peerRole = this.role === "client" ? "server" : "client";
        throw new ProtocolError(
          `the yamux peer opened stream ${id}, but as the ${peerRole} it must use ${
            peerRole === "client" ? "odd" : "even"
          } stream ids`,
        );
      }
      if (id > this.#highestPeerStreamId) this.#highestPeerStreamId = id;
      stream = this.#admitInbound(id);
      if (stream === undefined) return null;
    } else if (stream === undefined) {
      if (this.#neverOpened(id)) {
        throw new ProtocolError(
          `the yamux peer sent a ${
            header.type === FrameType.Data ? "data" : "window update"
          } frame (flags 0x${
            flags.toString(16)
          }, length ${header.length}) for stream ${id}, which was never opened`,
        );
      }
      return null; // A late frame for a stream that is already finished or reset: ignore it (hashicorp does).
    }
    if ((flags & Flag.RST) !== 0) {
      stream[kOnRemoteReset]();
      this.#forget(stream);
      return null;
    }
    return stream;
  }

  /** ACK and FIN take effect once the frame's payload (if any) is delivered. */
  #applyFinalFlags(stream: Stream, flags: number): void {
    if ((flags & Flag.ACK) !== 0) this.#releaseUnacked(stream);
    if ((flags & Flag.FIN) !== 0) stream[kOnRemoteFin]();
  }

  /** Registers an inbound stream, or refuses it with RST (GoAway sent, limits). */
  #admitInbound(id: number): Stream | undefined {
    if (
      this.#localGoAway || this.#streams.size >= this.options.maxStreams ||
      this.#acceptQueue.length >= this.options.acceptBacklog
    ) {
      this.#queueControl(FrameType.WindowUpdate, Flag.RST, id, 0);
      return undefined;
    }
    const stream = new Stream(id, this.#owner, this.options.initialStreamWindowBytes);
    this.#streams.set(id, stream);
    const waiter = this.#acceptWaiters.shift();
    if (waiter !== undefined) {
      this.#queueControl(FrameType.WindowUpdate, Flag.ACK, id, this.#extraInitialWindow());
      waiter(stream);
    } else {
      this.#acceptQueue.push(stream);
    }
    return stream;
  }

  #onPong(id: number): void {
    const ping = this.#pings.get(id);
    if (ping === undefined) return; // An answer to a ping we gave up on, or never sent: harmless.
    this.#pings.delete(id);
    const rttMs = performance.now() - ping.startMs;
    this.#smoothedRttMs = this.#smoothedRttMs === 0
      ? rttMs
      : this.#smoothedRttMs + RTT_SMOOTHING * (rttMs - this.#smoothedRttMs);
    ping.resolve(rttMs);
  }

  #onGoAway(code: GoAwayCodeValue): void {
    if (this.#remoteGoAwayCode === null) this.#remoteGoAway.resolve(code);
    this.#remoteGoAwayCode = code;
    const error = new RemoteGoAwayError(code);
    for (const waiter of this.#openWaiters.splice(0)) waiter.reject(error);
    if (code !== GoAwayCode.Normal) this.#terminate("remote-goaway", error, null, false);
  }

  #isPeerStreamId(id: number): boolean {
    return (id % 2 === 1) === (this.role === "server");
  }

  /** True when `id` was never used: a peer id above the highest it opened, or one of ours not yet issued. */
  #neverOpened(id: number): boolean {
    return this.#isPeerStreamId(id) ? id > this.#highestPeerStreamId : id >= this.#nextStreamId;
  }

  /** Window beyond the spec's initial one that we grant on SYN/ACK. */
  #extraInitialWindow(): number {
    return this.options.initialStreamWindowBytes - INITIAL_STREAM_WINDOW_BYTES;
  }

  #throwIfCannotOpen(): void {
    if (this.#closedError !== null) throw this.#closedError;
    if (this.#remoteGoAwayCode !== null) throw new RemoteGoAwayError(this.#remoteGoAwayCode);
  }

  #releaseUnacked(stream: Stream): void {
    if (!stream[kAwaitingAck]) return;
    stream[kAwaitingAck] = false;
    this.#unackedOpens--;
    this.#openWaiters.shift()?.resolve();
  }

  /** Drops a finished or reset stream. */
  #forget(stream: Stream): void {
    if (this.#streams.get(stream.id) === stream) this.#streams.delete(stream.id);
    this.#releaseUnacked(stream);
    const queued = this.#acceptQueue.indexOf(stream);
    if (queued >= 0) this.#acceptQueue.splice(queued, 1);
  }

  // --- writer -----------------------------------------------------------------------------------

  /** Queues a header-only frame; never waits (control frames may use the batch's reserve). */
  #queueControl(type: number, flags: number, streamId: number, length: number, force = false): void {
    if (this.#closeReason !== null && !force) return;
    if (this.#batchLength + HEADER_SIZE_BYTES > this.#batch.length && !this.#growBatch()) return;
    writeHeader(this.#batch, this.#batchLength, type, flags, streamId, length);
    this.#batchLength += HEADER_SIZE_BYTES;
    this.#scheduleFlush();
  }

  /** Doubles the filling batch for control frames; fails the session if the peer stopped reading. */
  #growBatch(): boolean {
    const size = this.#batch.length * 2;
    if (size > this.#dataLimitBytes + MAX_CONTROL_BACKLOG_BYTES) {
      this.#terminate(
        "protocol-error",
        new ProtocolError(
          `more than ${MAX_CONTROL_BACKLOG_BYTES} bytes of yamux control frames are waiting to be written; ` +
            `the peer keeps sending but stopped reading`,
          GoAwayCode.InternalError,
        ),
        null,
        false,
      );
      return false;
    }
    const grown = new Uint8Array(size);
    grown.set(this.#batch.subarray(0, this.#batchLength));
    this.#batch = grown;
    return true;
  }

  #wantsToSend(stream: Stream): void {
    if (stream[kQueued] || this.#closeReason !== null) return;
    stream[kQueued] = true;
    this.#sendQueue.push(stream);
    this.#fillFromStreams();
  }

  /**
   * Moves stream data into the filling batch, one frame per stream per turn (round-robin), until the
   * batch reaches its data bound.
   */
  #fillFromStreams(): void {
    const queue = this.#sendQueue;
    const maxFrame = this.options.maxDataFrameBytes;
    const zeroCopyMin = this.options.zeroCopyMinBytes;
    let batch = this.#batch;
    while (queue.length > 0) {
      const stream = queue[0] as Stream;
      const sendable = stream[kSendableBytes]();
      if (sendable === 0) {
        queue.shift();
        stream[kQueued] = false;
        continue;
      }
      const free = this.#dataLimitBytes - this.#batchLength - this.#zeroCopyBytes - HEADER_SIZE_BYTES;
      const count = Math.min(sendable, maxFrame, free);
      if (count <= 0 || count < Math.min(sendable, MIN_DATA_FRAGMENT_BYTES)) break;
      queue.shift();
      batch = this.#batch;
      const offset = this.#batchLength;
      writeHeader(batch, offset, FrameType.Data, 0, stream.id, count);
      if (zeroCopyMin > 0 && count >= zeroCopyMin) {
        const { bytes, written } = stream[kTakeSendBytesZeroCopy](count);
        this.#zeroCopy.push({ offset: offset + HEADER_SIZE_BYTES, bytes, written });
        this.#zeroCopyBytes += count;
        this.#batchLength = offset + HEADER_SIZE_BYTES;
      } else {
        batch.set(stream[kTakeSendBytes](count), offset + HEADER_SIZE_BYTES);
        this.#batchLength = offset + HEADER_SIZE_BYTES + count;
      }
      if (stream[kSendableBytes]() > 0) queue.push(stream);
      else stream[kQueued] = false;
    }
    if (this.#batchLength > 0) this.#scheduleFlush();
  }

  #scheduleFlush(): void {
    if (this.#writing || this.#flushScheduled) return;
    this.#flushScheduled = true;
    queueMicrotask(() => {
      this.#flushScheduled = false;
      if (!this.#writing && this.#batchLength > 0) this.#writeLoopDone = this.#writeLoop();
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
        if (this.#closeReason === null && this.#sendQueue.length > 0) this.#fillFromStreams();
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
      this.#terminate(
        "conn-error",
        new SessionClosedError("conn-error", `writing the yamux connection failed: ${errorText(error)}`, {
          cause: error,
        }),
        null,
        false,
      );
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

  /** Resolves once every queued frame is written, the writer failed, or `timeoutMs` passed. */
  #waitIdle(timeoutMs: number): Promise<void> {
    if (!this.#writing && this.#batchLength === 0) return Promise.resolve();
    return new Promise((resolve) => {
      let timer: ReturnType<typeof setTimeout> | null = null;
      const done = () => {
        if (timer !== null) clearTimeout(timer);
        resolve();
      };
      const wait = () => {
        if (!this.#writing && this.#batchLength === 0) done();
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

  // --- keepalive --------------------------------------------------------------------------------

  /** Sends a first ping at once (it also seeds the RTT used by window auto-tuning), then every interval. */
  #startKeepalive(): void {
    if (this.options.keepaliveIntervalMs === 0) {
      this.ping().catch(() => {}); // RTT sample only; a lost answer is harmless.
      return;
    }
    this.#sendKeepalive();
  }

  #sendKeepalive(): void {
    this.#keepaliveTimer = null;
    if (this.#closeReason !== null) return;
    const { keepaliveIntervalMs, keepaliveTimeoutMs } = this.options;
    const deadline = setTimeout(() => {
      this.#keepaliveDeadline = null;
      this.#terminate(
        "keepalive-timeout",
        new KeepaliveTimeoutError(keepaliveIntervalMs, keepaliveTimeoutMs),
        null,
        false,
      );
    }, keepaliveTimeoutMs);
    this.#keepaliveDeadline = deadline;
    this.ping().then(
      () => {
        clearTimeout(deadline);
        this.#keepaliveDeadline = null;
        if (this.#closeReason === null) {
          this.#keepaliveTimer = setTimeout(() => this.#sendKeepalive(), keepaliveIntervalMs);
        }
      },
      () => clearTimeout(deadline),
    );
  }

  // --- shutdown ---------------------------------------------------------------------------------

  /**
   * Ends the session once: records why, fails every stream and waiter, optionally queues GoAway(`code`)
   * and flushes, then closes the connection and resolves `closed`.
   */
  #terminate(
    reason: SessionCloseReason,
    error: MuxError | null,
    goAwayCode: number | null,
    flush: boolean,
  ): void {
    if (this.#closeReason !== null) return;
    this.#closeReason = reason;
    this.#error = error;
    if (this.#keepaliveTimer !== null) clearTimeout(this.#keepaliveTimer);
    if (this.#keepaliveDeadline !== null) clearTimeout(this.#keepaliveDeadline);
    clearInterval(this.#sweepTimer);
    this.#keepaliveTimer = null;
    this.#keepaliveDeadline = null;
    const closedError = new SessionClosedError(
      reason,
      describeEnd(reason, error),
      error === null ? undefined : { cause: error },
    );
    this.#closedError = closedError;
    const streams = [...this.#streams.values()];
    this.#streams.clear();
    for (const stream of streams) stream[kOnSessionEnd](closedError);
    this.#acceptQueue = [];
    for (const waiter of this.#acceptWaiters.splice(0)) waiter(null);
    for (const waiter of this.#openWaiters.splice(0)) waiter.reject(closedError);
    for (const ping of this.#pings.values()) ping.reject(closedError);
    this.#pings.clear();
    for (const stream of this.#sendQueue) stream[kQueued] = false;
    this.#sendQueue = [];
    if (goAwayCode !== null) this.#queueControl(FrameType.GoAway, 0, SESSION_STREAM_ID, goAwayCode, true);
    void this.#shutdown(flush);
  }

  async #shutdown(flush: boolean): Promise<void> {
    if (flush) {
      const startedMs = performance.now();
      await this.#waitIdle(this.options.closeFlushTimeoutMs);
      const leftMs = this.options.closeFlushTimeoutMs - (performance.now() - startedMs);
      if (!this.#writing && this.#batchLength === 0 && leftMs > 0) await this.#closeWrite(leftMs);
    }
    try {
      this.#conn.close();
    } catch {
      // Already closed by the other side or by the owner: nothing left to release.
    }
    await this.#readLoopDone;
    await this.#writeLoopDone;
    this.#resolveClosed();
  }

  /**
   * Half-closes the connection after the last frame, waiting at most `timeoutMs`: over TLS this sends
   * close_notify, which tells the peer the end is intended.
   */
  async #closeWrite(timeoutMs: number): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        this.#conn.closeWrite(),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs))),
      ]);
    } catch {
      // The connection is already broken or closed: close() below releases it.
    } finally {
      clearTimeout(timer);
    }
  }
}

function errorText(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

function describeEnd(reason: SessionCloseReason, error: MuxError | null): string {
  const base = {
    "local-close": "the yamux session was closed locally",
    "remote-closed": "the yamux peer closed the connection",
    "conn-error": "the yamux connection failed",
    "protocol-error": "the yamux session ended on a protocol error",
    "remote-goaway": "the yamux peer ended the session with GoAway",
    "keepalive-timeout": "the yamux peer stopped answering keepalive pings",
  }[reason];
  if (error instanceof RemoteGoAwayError) {
    return `${base} (code ${error.code}, ${describeGoAwayCode(error.code)})`;
  }
  return error === null ? base : `${base}: ${error.message}`;
}

/**
 * A yamux session over one {@linkcode DuplexConn}: the stream table, opening and accepting streams, what
 * each frame means, GoAway and the session's end. Its parts live in their own modules: the reader loop
 * (reader.ts), the writer loop (writer.ts), pings and keepalive (keepalive.ts), and the streams
 * (stream.ts), which session and stream reach only through the seam in _internal.ts.
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
  INITIAL_STREAM_WINDOW_BYTES,
  MAX_U32,
  SESSION_STREAM_ID,
} from "./constants.ts";
import {
  describeGoAwayCode,
  type MuxError,
  ProtocolError,
  RemoteGoAwayError,
  SessionClosedError,
  type SessionCloseReason,
  StreamLimitError,
} from "./errors.ts";
import type { FrameHeader } from "./frame.ts";
import { type ResolvedSessionOptions, resolveSessionOptions, type SessionOptions } from "./options.ts";
import { createStream, type Stream } from "./stream.ts";
import { Pinger } from "./keepalive.ts";
import { FrameWriter } from "./writer.ts";
import { FrameReader } from "./reader.ts";
import type { SessionEnd, StreamHost, StreamPort } from "./_internal.ts";
import { frameTracer, traceReceived } from "./_trace.ts";

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
  readonly #host: StreamHost;
  /** Batches and writes our frames. */
  readonly #writer: FrameWriter;
  /** Pings, the RTT and keepalive. */
  readonly #pinger: Pinger;

  // --- streams ----------------------------------------------------------------------------------
  /** Live streams by id (removed once finished in both directions or reset). */
  readonly #streams = new Map<number, StreamPort>();
  /** The id our next `open()` uses. */
  #nextStreamId: number;
  /** Highest stream id the peer has opened; higher peer-parity ids without SYN were never used. */
  #highestPeerStreamId = 0;
  /** Inbound streams not yet taken by `accept()` (bounded by `acceptBacklog`). */
  #acceptQueue: StreamPort[] = [];
  /** `accept()` calls waiting for an inbound stream. */
  #acceptWaiters: Array<(stream: Stream | null) => void> = [];
  /** Our opened streams whose ACK has not arrived. */
  readonly #unacked = new Set<StreamPort>();
  /** `open()` calls waiting because `#unacked` reached `maxUnackedOpens`. */
  #openWaiters: OpenWaiter[] = [];
  /** We sent GoAway: inbound SYNs are refused with RST. */
  #localGoAway = false;
  /** Code of the GoAway the peer sent, or null: once set, `open()` rejects. */
  #remoteGoAwayCode: GoAwayCodeValue | null = null;

  /** The reader loop's run (never rejects). */
  readonly #readLoopDone: Promise<void>;
  /** Timer of the idle receive storage sweep. */
  readonly #sweepTimer: ReturnType<typeof setInterval>;

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
    // Asked once per session: without -vv no frame builds a trace record.
    const trace = frameTracer(this.role);
    const writer = new FrameWriter(conn, this.options, (end) => this.#terminate(end), trace);
    this.#writer = writer;
    this.#pinger = new Pinger({
      sendPing: (opaque) => writer.queueControl(FrameType.Ping, Flag.SYN, SESSION_STREAM_ID, opaque),
      keepaliveTimedOut: (error) => this.#terminate({ reason: "keepalive-timeout", error }),
    }, this.options);
    this.#host = {
      maxStreamWindowBytes: this.options.maxStreamWindowBytes,
      rttMs: () => this.#pinger.rttMs,
      sendWindowUpdate: (streamId, flags, deltaBytes) =>
        writer.queueControl(FrameType.WindowUpdate, flags, streamId, deltaBytes),
      wantsToSend: (source) => writer.wantsToSend(source),
      streamDone: (port) => this.#forget(port),
    };
    this.closed = new Promise((resolve) => (this.#resolveClosed = resolve));
    this.#readLoopDone = new FrameReader(conn, this.options, {
      ended: () => this.#closeReason !== null,
      stream: (id) => this.#streams.get(id),
      streamForFrame: trace === null
        ? (header) => this.#streamForFrame(header)
        : (header) => (traceReceived(trace, header), this.#streamForFrame(header)),
      applyFinalFlags: (stream, flags) => this.#applyFinalFlags(stream, flags),
      onControlFrame: trace === null
        ? (header) => this.#onControlFrame(header)
        : (header) => (traceReceived(trace, header), this.#onControlFrame(header)),
      end: (end) => this.#terminate(end),
    }).run();
    this.#pinger.start();
    this.#sweepTimer = setInterval(() => {
      for (const port of this.#streams.values()) port.releaseIdleBuffers();
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
    return this.#pinger.rttMs;
  }

  /** The code of the GoAway the peer sent, or null. */
  get remoteGoAwayCode(): GoAwayCodeValue | null {
    return this.#remoteGoAwayCode;
  }

  /**
   * Opens a stream: queues its SYN (on a window update frame) and resolves without waiting for the
   * peer's ACK. At most `maxUnackedOpens` opens may await their ACK; beyond that this waits.
   *
   * `firstBytes`, when given, are written to the stream at once, so that they go out in the same batch
   * (one connection write, one TLS record) as the SYN: the peer reads them with the stream instead of one
   * wake-up later. The tunnel's stream header goes so.
   *
   * @throws {RemoteGoAwayError} the peer sent GoAway
   * @throws {StreamLimitError} `maxStreams` live streams, or stream ids exhausted
   * @throws {SessionClosedError} the session is over
   */
  async open(firstBytes?: Uint8Array): Promise<Stream> {
    for (;;) {
      this.#throwIfCannotOpen();
      if (this.#unacked.size < this.options.maxUnackedOpens) break;
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
    const port = createStream(id, this.#host, this.options.initialStreamWindowBytes);
    this.#unacked.add(port);
    this.#streams.set(id, port);
    this.#queueControl(FrameType.WindowUpdate, Flag.SYN, id, this.#extraInitialWindow());
    if (firstBytes !== undefined && firstBytes.length > 0) {
      try {
        await port.stream.write(firstBytes);
      } catch (error) {
        // Nobody else holds the stream: it must not stay open.
        port.stream.reset();
        throw error;
      }
    }
    return port.stream;
  }

  /**
   * Waits for the next stream the peer opens and acknowledges it (ACK). Resolves null once the session
   * is over.
   */
  accept(): Promise<Stream | null> {
    while (this.#acceptQueue.length > 0) {
      const port = this.#acceptQueue.shift() as StreamPort;
      if (port.stream.isClosed) continue;
      this.#writer.queueLazyControl(FrameType.WindowUpdate, Flag.ACK, port.id, this.#extraInitialWindow());
      return Promise.resolve(port.stream);
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
    return this.#pinger.ping();
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
    await this.#writer.waitIdle(Number.POSITIVE_INFINITY);
  }

  /**
   * Ends the session: sends GoAway(normal) unless {@linkcode goAway} did, flushes queued frames (for at
   * most `closeFlushTimeoutMs`), half-closes the connection (a TLS connection sends close_notify, so the
   * peer sees a clean end, not an unexpected EOF) and closes it. Streams not finished fail with
   * `SessionClosedError`. Safe to call more than once; resolves when {@linkcode closed} does.
   */
  async close(): Promise<void> {
    // After goAway() the peer knows already: a second GoAway frame would say nothing new.
    const goAwayCode = this.#localGoAway ? undefined : GoAwayCode.Normal;
    this.#terminate({ reason: "local-close", goAwayCode, flush: true });
    await this.closed;
  }

  // --- frames -----------------------------------------------------------------------------------

  /** Acts on a window update, ping or GoAway frame (data frames are the reader's). */
  #onControlFrame(header: FrameHeader): void {
    switch (header.type) {
      case FrameType.WindowUpdate: {
        const stream = this.#streamForFrame(header);
        if (stream === null) return;
        if (header.length > 0) stream.onWindowUpdate(header.length);
        this.#applyFinalFlags(stream, header.flags);
        return;
      }
      case FrameType.Ping:
        if (header.flags === Flag.SYN) {
          this.#queueControl(FrameType.Ping, Flag.ACK, SESSION_STREAM_ID, header.length);
        } else this.#pinger.onPong(header.length);
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
  #streamForFrame(header: FrameHeader): StreamPort | null {
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
      stream.onRemoteReset();
      this.#forget(stream);
      return null;
    }
    return stream;
  }

  /** ACK and FIN take effect once the frame's payload (if any) is delivered. */
  #applyFinalFlags(stream: StreamPort, flags: number): void {
    if ((flags & Flag.ACK) !== 0) this.#releaseUnacked(stream);
    if ((flags & Flag.FIN) !== 0) stream.onRemoteFin();
  }

  /** Registers an inbound stream, or refuses it with RST (GoAway sent, limits). */
  #admitInbound(id: number): StreamPort | undefined {
    if (
      this.#localGoAway || this.#streams.size >= this.options.maxStreams ||
      this.#acceptQueue.length >= this.options.acceptBacklog
    ) {
      this.#queueControl(FrameType.WindowUpdate, Flag.RST, id, 0);
      return undefined;
    }
    const port = createStream(id, this.#host, this.options.initialStreamWindowBytes);
    this.#streams.set(id, port);
    const waiter = this.#acceptWaiters.shift();
    if (waiter !== undefined) {
      this.#writer.queueLazyControl(FrameType.WindowUpdate, Flag.ACK, id, this.#extraInitialWindow());
      waiter(port.stream);
    } else {
      this.#acceptQueue.push(port);
    }
    return port;
  }

  #onGoAway(code: GoAwayCodeValue): void {
    if (this.#remoteGoAwayCode === null) this.#remoteGoAway.resolve(code);
    this.#remoteGoAwayCode = code;
    const error = new RemoteGoAwayError(code);
    for (const waiter of this.#openWaiters.splice(0)) waiter.reject(error);
    if (code !== GoAwayCode.Normal) this.#terminate({ reason: "remote-goaway", error });
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

  #releaseUnacked(stream: StreamPort): void {
    if (this.#unacked.delete(stream)) this.#openWaiters.shift()?.resolve();
  }

  /** Drops a finished or reset stream. */
  #forget(stream: StreamPort): void {
    if (this.#streams.get(stream.id) === stream) this.#streams.delete(stream.id);
    this.#releaseUnacked(stream);
    const queued = this.#acceptQueue.indexOf(stream);
    if (queued >= 0) this.#acceptQueue.splice(queued, 1);
  }

  /** Queues a header-only frame (dropped once the session ends). */
  #queueControl(type: number, flags: number, streamId: number, length: number): void {
    this.#writer.queueControl(type, flags, streamId, length);
  }

  // --- shutdown ---------------------------------------------------------------------------------

  /**
   * Ends the session once: records why, fails every stream and waiter, optionally queues GoAway and
   * flushes, then closes the connection and resolves `closed`.
   */
  #terminate({ reason, error, goAwayCode, flush = false }: SessionEnd): void {
    if (this.#closeReason !== null) return;
    this.#closeReason = reason;
    this.#error = error ?? null;
    clearInterval(this.#sweepTimer);
    const closedError = new SessionClosedError(
      reason,
      describeEnd(reason, this.#error),
      error === undefined ? undefined : { cause: error },
    );
    this.#closedError = closedError;
    const streams = [...this.#streams.values()];
    this.#streams.clear();
    for (const stream of streams) stream.onSessionEnd(closedError);
    this.#acceptQueue = [];
    for (const waiter of this.#acceptWaiters.splice(0)) waiter(null);
    for (const waiter of this.#openWaiters.splice(0)) waiter.reject(closedError);
    this.#pinger.stop(closedError);
    this.#writer.stop(
      goAwayCode === undefined
        ? undefined
        : { type: FrameType.GoAway, flags: 0, streamId: SESSION_STREAM_ID, length: goAwayCode },
    );
    void this.#shutdown(flush);
  }

  async #shutdown(flush: boolean): Promise<void> {
    if (flush) {
      const startedMs = performance.now();
      await this.#writer.waitIdle(this.options.closeFlushTimeoutMs);
      const leftMs = this.options.closeFlushTimeoutMs - (performance.now() - startedMs);
      if (this.#writer.idle && leftMs > 0) await this.#closeWrite(leftMs);
    }
    try {
      this.#conn.close();
    } catch {
      // Already closed by the other side or by the owner: nothing left to release.
    }
    await this.#readLoopDone;
    await this.#writer.done;
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

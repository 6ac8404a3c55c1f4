/**
 * The session's single reader: it reads the connection into one reused buffer, decodes frames, and
 * moves data payloads into their streams, reading the rest of a large data frame straight into the
 * waiting reader's buffer (or the stream's ring) when it can. What the frames mean is the session's.
 *
 * @module
 */

import type { DuplexConn } from "../net/conn.ts";
import { FrameType, GoAwayCode } from "./constants.ts";
import { FrameDecoder, type FrameSegment } from "./decoder.ts";
import { ProtocolError, SessionClosedError } from "./errors.ts";
import type { FrameHeader } from "./frame.ts";
import { DIRECT_READ_MIN_BYTES, errorText, type SessionEnd, type StreamPort } from "./_internal.ts";

/** Read size right after a large data frame: the next header plus a little payload. */
const SMALL_READ_BYTES = 16 * 1024;

/** A data frame at least this large is likely followed by another (bulk transfer). */
const LARGE_FRAME_BYTES = 64 * 1024;

/** Sizes the reader works with (the session's resolved options). */
export interface FrameReaderOptions {
  /** Size of the reused read buffer. */
  readonly readBufferBytes: number;
  /** Largest frame payload accepted (the decoder's bound). */
  readonly maxFramePayloadBytes: number;
}

/** What the reader hands frames to (the session). */
export interface FrameReceiver {
  /** True once the session is over: the reader stops. */
  ended(): boolean;
  /** The live stream with `id`, if any (to look ahead before a data frame is dispatched). */
  stream(id: number): StreamPort | undefined;
  /**
   * The stream a data frame is for (created on SYN), or null to drop its payload.
   *
   * @throws {ProtocolError} the frame breaks the protocol
   */
  streamForFrame(header: FrameHeader): StreamPort | null;
  /** A data frame's payload is delivered: its ACK and FIN flags take effect now. */
  applyFinalFlags(stream: StreamPort, flags: number): void;
  /**
   * A window update, ping or GoAway frame.
   *
   * @throws {ProtocolError} the frame breaks the protocol
   */
  onControlFrame(header: FrameHeader): void;
  /** Reading ended (connection closed or failed, or a protocol error): end the session so. */
  end(end: SessionEnd): void;
}

/** Reads and decodes one connection for one session. */
export class FrameReader {
  readonly #conn: Pick<DuplexConn, "read">;
  readonly #receiver: FrameReceiver;
  readonly #decoder: FrameDecoder;
  readonly #readBufferBytes: number;
  /** Stream receiving the data frame in progress (null: none, or its payload is being dropped). */
  #dataFrameStream: StreamPort | null = null;

  constructor(conn: Pick<DuplexConn, "read">, options: FrameReaderOptions, receiver: FrameReceiver) {
    this.#conn = conn;
    this.#receiver = receiver;
    this.#decoder = new FrameDecoder({ maxFramePayloadBytes: options.maxFramePayloadBytes });
    this.#readBufferBytes = options.readBufferBytes;
  }

  /** Reads until the session ends or the connection does (reported through `end`). Never rejects. */
  async run(): Promise<void> {
    const buffer = new Uint8Array(this.#readBufferBytes);
    const decoder = this.#decoder;
    const receiver = this.#receiver;
    /** Bytes to ask for in the next read into `buffer` (less during a run of large data frames). */
    let readBytes = buffer.length;
    while (!receiver.ended()) {
      // The rest of a large data frame goes straight into the waiting reader's buffer when possible.
      const remaining = decoder.pendingPayloadBytes;
      const stream = this.#dataFrameStream;
      if (remaining > 0 && stream !== null) {
        if (stream.readerMayReturn()) {
          await undefined; // let a reader that just got data come back first (see below)
          if (receiver.ended()) return;
        }
        const target = stream.directReadTarget(remaining);
        if (target !== null) {
          let count: number | null = 0;
          try {
            count = await this.#conn.read(target);
          } catch (error) {
            stream.directReadDone(0);
            this.#failRead(error);
            return;
          }
          stream.directReadDone(count ?? 0);
          if (count === null) {
            this.#endOfInput();
            return;
          }
          if (receiver.ended()) return;
          try {
            const segment = decoder.skipPayload(count);
            if (segment.last) {
              this.#dataFrameStream = null;
              receiver.applyFinalFlags(stream, segment.header.flags);
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
      if (receiver.ended()) return;
      if (count === null) {
        this.#endOfInput();
        return;
      }
      decoder.push(count === buffer.length ? buffer : buffer.subarray(0, count));
      let lastFrameLength = 0;
      try {
        for (let segment = decoder.nextSegment(); segment !== null; segment = decoder.nextSegment()) {
          if (segment.payload.length > 0 && segment.header.type === FrameType.Data) {
            // A reader that just got data is usually one microtask away from its next read(): let it
            // come back, so this payload goes straight into its buffer instead of the stream's ring.
            const target = segment.first ? receiver.stream(segment.header.streamId) : this.#dataFrameStream;
            if (target !== undefined && target !== null && target.readerMayReturn()) {
              await undefined;
              if (receiver.ended()) return;
            }
          }
          if (segment.header.type === FrameType.Data) this.#onDataSegment(segment);
          else receiver.onControlFrame(segment.header);
          if (receiver.ended()) return;
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

  /** Delivers a piece of a data frame as it arrives (a frame split across reads is never reassembled). */
  #onDataSegment(segment: FrameSegment): void {
    const header = segment.header;
    if (segment.first) {
      const stream = this.#receiver.streamForFrame(header);
      if (stream !== null && header.length > 0) stream.onDataFrame(header.length);
      this.#dataFrameStream = stream;
    }
    const stream = this.#dataFrameStream;
    if (stream === null) return; // Refused or late frame: its payload is dropped.
    if (segment.payload.length > 0) {
      // Hold a partly filled read when the rest of this frame can be read straight into it.
      stream.onData(
        segment.payload,
        !segment.last && this.#decoder.pendingPayloadBytes >= DIRECT_READ_MIN_BYTES,
      );
    }
    if (segment.last) {
      this.#dataFrameStream = null;
      this.#receiver.applyFinalFlags(stream, header.flags);
    }
  }

  #failRead(error: unknown): void {
    const message = `reading the yamux connection failed: ${errorText(error)}`;
    this.#receiver.end({
      reason: "conn-error",
      error: new SessionClosedError("conn-error", message, { cause: error }),
    });
  }

  #endOfInput(): void {
    if (this.#decoder.atFrameBoundary) {
      this.#receiver.end({ reason: "remote-closed" });
      return;
    }
    const message =
      `the yamux connection ended inside a frame (${this.#decoder.bufferedBytes} bytes of it received)`;
    this.#receiver.end({ reason: "conn-error", error: new SessionClosedError("conn-error", message) });
  }

  #failOnFrameError(error: unknown): void {
    const protocolError = error instanceof ProtocolError ? error : new ProtocolError(
      `internal error while handling a yamux frame: ${errorText(error)}`,
      GoAwayCode.InternalError,
      { cause: error },
    );
    this.#receiver.end({
      reason: "protocol-error",
      error: protocolError,
      goAwayCode: protocolError.goAwayCode,
      flush: true,
    });
  }
}

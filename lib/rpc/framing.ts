/**
 * Length-prefixed JSON frames on the control stream: a u32 big-endian byte length, then that many
 * bytes of UTF-8 JSON. {@linkcode FrameReader} reassembles frames across arbitrary read splits,
 * reading straight into one reusable buffer and decoding in place; {@linkcode FrameWriter} writes
 * whole frames one after another so that concurrent senders never interleave bytes.
 *
 * @module
 */

import { type DuplexConn, writeAll } from "../net/conn.ts";
import { errorMessage } from "../text.ts";

/** Bytes of the big-endian length prefix. */
export const FRAME_HEADER_BYTES = 4;
/** Default largest frame body accepted or sent: 1 MiB. */
export const DEFAULT_MAX_FRAME_BYTES = 1024 * 1024;
/**
 * Deepest nesting of arrays and objects a frame body may have. The protocol's messages nest five levels;
 * V8's JSON.parse takes 160-195 ms for a 400 KB body of 200,000 nested arrays (measured on the 2-core
 * VM), all of it on the event loop, so deeper bodies are refused before they are parsed.
 */
export const MAX_JSON_DEPTH = 64;
/** Largest body a u32 length prefix can declare. */
const U32_MAX = 0xffff_ffff;
/** Initial size of a reader's buffer; grows for larger frames and shrinks back when idle. */
const INITIAL_READ_BUFFER_BYTES = 16 * 1024;

/** A frame declares (or would need) a body larger than the limit. Fatal for the connection. */
export class FrameTooLargeError extends Error {
  override name = "FrameTooLargeError";

  /**
   * @param frameBytes the body length declared by the prefix (or of the message to send)
   * @param maxFrameBytes the limit in force
   * @param direction whether the frame was being received or sent
   */
  constructor(
    readonly frameBytes: number,
    readonly maxFrameBytes: number,
    readonly direction: "receive" | "send" = "receive",
  ) {
    super(
      direction === "receive"
        ? `Control frame of ${frameBytes} bytes exceeds the limit of ${maxFrameBytes} bytes; ` +
          `the peer is not speaking this protocol or sent an oversized message, so the connection is closed`
        : `Message of ${frameBytes} bytes exceeds the control frame limit of ${maxFrameBytes} bytes; ` +
          `send less data per message`,
    );
  }
}

/** The stream ended in the middle of a frame. Fatal for the connection. */
export class TruncatedFrameError extends Error {
  override name = "TruncatedFrameError";

  /**
   * @param receivedBytes bytes of the frame (prefix included) received before end of stream
   * @param expectedBytes bytes the frame needed (prefix included; 4 while the prefix was incomplete)
   */
  constructor(readonly receivedBytes: number, readonly expectedBytes: number) {
    super(
      `Control stream ended in the middle of a frame (${receivedBytes} of ${expectedBytes} bytes received); ` +
        `the peer closed the connection while sending`,
    );
  }
}

/**
 * A complete frame whose body is not UTF-8 JSON. Recoverable: the frame has been consumed, so the
 * next frame can be read (the peer answers -32700 and continues).
 */
export class MalformedJsonError extends Error {
  override name = "MalformedJsonError";

  /**
   * @param frameBytes length of the offending body
   * @param reason what the decoder or parser said
   */
  constructor(readonly frameBytes: number, readonly reason: string, options?: ErrorOptions) {
    super(`Control frame of ${frameBytes} bytes is not valid UTF-8 JSON: ${reason}`, options);
  }
}

/** Options of {@linkcode FrameReader} and {@linkcode FrameWriter}. */
export interface FrameOptions {
  /** Largest frame body accepted (reader) or sent (writer). Default {@linkcode DEFAULT_MAX_FRAME_BYTES}. */
  maxFrameBytes?: number;
}

/** Checks a frame limit given by a caller. */
function checkedMaxFrameBytes(maxFrameBytes: number | undefined): number {
  const value = maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  if (!Number.isInteger(value) || value < 1 || value > U32_MAX) {
    throw new RangeError(`maxFrameBytes must be an integer from 1 to ${U32_MAX}, got ${value}`);
  }
  return value;
}

const textEncoder = new TextEncoder();

/**
 * Encodes one message as a frame: 4-byte big-endian body length, then the UTF-8 JSON body.
 *
 * @throws {FrameTooLargeError} when the body exceeds `maxFrameBytes` (default 1 MiB)
 * @throws {TypeError} when the message cannot be serialized (cycles, BigInt, `undefined`)
 */
export function encodeFrame(message: unknown, maxFrameBytes: number = DEFAULT_MAX_FRAME_BYTES): Uint8Array {
  const json = JSON.stringify(message);
  if (typeof json !== "string") {
    throw new TypeError(`cannot encode ${typeof message} as a JSON-RPC frame; send a JSON value`);
  }
  // UTF-8 needs at most 3 bytes per UTF-16 unit: encoding into one allocation behind the prefix avoids
  // a second copy, and capping it at the limit bounds memory for oversized messages.
  const frame = new Uint8Array(FRAME_HEADER_BYTES + Math.min(json.length * 3, maxFrameBytes));
  const { read, written } = textEncoder.encodeInto(json, frame.subarray(FRAME_HEADER_BYTES));
  if (read < json.length) {
    throw new FrameTooLargeError(textEncoder.encode(json).length, maxFrameBytes, "send");
  }
  new DataView(frame.buffer).setUint32(0, written, false);
  return frame.subarray(0, FRAME_HEADER_BYTES + written);
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;

/**
 * Whether the JSON text in `bytes` (UTF-8) nests arrays and objects deeper than `maxDepth`: one linear
 * pass over the bytes, skipping strings (every byte of a multi-byte UTF-8 sequence is 0x80 or above, so it
 * is never taken for a bracket or a quote). Malformed text is not judged here; JSON.parse does that.
 */
export function nestingExceeds(bytes: Uint8Array, maxDepth: number): boolean {
  let depth = 0;
  let inString = false;
  for (let index = 0; index < bytes.length; index++) {
    const byte = bytes[index] as number;
    if (inString) {
      if (byte === BACKSLASH) index++;
      else if (byte === QUOTE) inString = false;
    } else if (byte === QUOTE) {
      inString = true;
    } else if (byte === OPEN_BRACKET || byte === OPEN_BRACE) {
      if (++depth > maxDepth) return true;
    } else if (byte === CLOSE_BRACKET || byte === CLOSE_BRACE) {
      depth--;
    }
  }
  return false;
}

/**
 * Reads frames from a {@linkcode DuplexConn}. One consumer at a time: `next()` must not be called
 * again before the previous call settles.
 */
export class FrameReader {
  /** The connection read from. */
  readonly #conn: Pick<DuplexConn, "read">;
  /** Largest body accepted. */
  readonly #maxFrameBytes: number;
  /** Holds received bytes in `[#start, #end)`; reads land directly at `#end`. */
  #buffer = new Uint8Array(INITIAL_READ_BUFFER_BYTES);
  /** Offset of the first unconsumed byte in `#buffer`. */
  #start = 0;
  /** Offset just past the last received byte in `#buffer`. */
  #end = 0;
  /** Set by a fatal error or end of stream: every later `next()` repeats it. */
  #terminal: { error: Error } | { eof: true } | null = null;
  /** Guards against concurrent `next()` calls, which would corrupt the buffer. */
  #reading = false;
  /** Decodes bodies; `fatal` turns invalid UTF-8 into an error instead of U+FFFD. */
  readonly #decoder = new TextDecoder("utf-8", { fatal: true });

  constructor(conn: Pick<DuplexConn, "read">, options: FrameOptions = {}) {
    this.#conn = conn;
    this.#maxFrameBytes = checkedMaxFrameBytes(options.maxFrameBytes);
  }

  /** Largest frame body this reader accepts. */
  get maxFrameBytes(): number {
    return this.#maxFrameBytes;
  }

  /**
   * Reads the next frame and returns its decoded JSON value, or `null` at a clean end of stream
   * (between frames).
   *
   * @throws {FrameTooLargeError} fatal: the prefix declares more than `maxFrameBytes`
   * @throws {TruncatedFrameError} fatal: end of stream inside a frame
   * @throws {MalformedJsonError} recoverable: the body is not UTF-8 JSON, nests deeper than
   *   {@linkcode MAX_JSON_DEPTH}, or is a bare `null` (which would be indistinguishable from end of
   *   stream); call `next()` again
   * Errors from the connection's `read` propagate unchanged and are fatal too.
   */
  async next(): Promise<unknown | null> {
    if (this.#terminal !== null) {
      if ("error" in this.#terminal) throw this.#terminal.error;
      return null;
    }
    if (this.#reading) throw new Error("FrameReader.next() called while a previous call is still pending");
    this.#reading = true;
    try {
      return await this.#readFrame();
    } catch (error) {
      if (!(error instanceof MalformedJsonError)) {
        this.#terminal = { error: error instanceof Error ? error : new Error(String(error)) };
        this.#release();
      }
      throw error;
    } finally {
      this.#reading = false;
    }
  }

  async #readFrame(): Promise<unknown | null> {
    if (!await this.#fill(FRAME_HEADER_BYTES)) {
      const received = this.#end - this.#start;
      if (received === 0) {
        this.#terminal = { eof: true };
        this.#release();
        return null;
      }
      throw new TruncatedFrameError(received, FRAME_HEADER_BYTES);
    }
    const view = new DataView(this.#buffer.buffer, this.#buffer.byteOffset + this.#start, FRAME_HEADER_BYTES);
    const bodyBytes = view.getUint32(0, false);
    if (bodyBytes > this.#maxFrameBytes) throw new FrameTooLargeError(bodyBytes, this.#maxFrameBytes);
    const frameBytes = FRAME_HEADER_BYTES + bodyBytes;
    if (!await this.#fill(frameBytes)) {
      throw new TruncatedFrameError(this.#end - this.#start, frameBytes);
    }
    const body = this.#buffer.subarray(this.#start + FRAME_HEADER_BYTES, this.#start + frameBytes);
    // Consume before decoding so that a malformed body leaves the reader at the next frame.
    this.#start += frameBytes;
    if (this.#start === this.#end) this.#start = this.#end = 0;
    if (nestingExceeds(body, MAX_JSON_DEPTH)) {
      throw new MalformedJsonError(
        bodyBytes,
        `arrays and objects nested deeper than ${MAX_JSON_DEPTH} levels`,
      );
    }
    let text: string;
    try {
      text = this.#decoder.decode(body);
    } catch (error) {
      throw new MalformedJsonError(bodyBytes, "invalid UTF-8", { cause: error });
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      const reason = errorMessage(error);
      throw new MalformedJsonError(bodyBytes, reason, { cause: error });
    }
    // `null` is how next() reports end of stream; no JSON-RPC message is a bare null anyway.
    if (value === null) throw new MalformedJsonError(bodyBytes, "a bare JSON null is not a message");
    this.#shrinkIfIdle();
    return value;
  }

  /** Reads until at least `wantedBytes` are buffered; `false` at end of stream before that. */
  async #fill(wantedBytes: number): Promise<boolean> {
    while (this.#end - this.#start < wantedBytes) {
      this.#makeRoom(wantedBytes);
      const count = await this.#conn.read(this.#buffer.subarray(this.#end));
      if (count === null) return false;
      this.#end += count;
    }
    return true;
  }

  /** Ensures `#buffer` can hold `wantedBytes` from `#start` and has free space at `#end`. */
  #makeRoom(wantedBytes: number): void {
    if (this.#buffer.length - this.#start >= wantedBytes && this.#end < this.#buffer.length) return;
    const buffered = this.#end - this.#start;
    if (this.#buffer.length >= wantedBytes && this.#buffer.length > buffered) {
      this.#buffer.copyWithin(0, this.#start, this.#end);
    } else {
      // Grow geometrically, but never beyond what the largest legal frame needs.
      const ceiling = FRAME_HEADER_BYTES + this.#maxFrameBytes;
      const size = Math.max(wantedBytes, Math.min(this.#buffer.length * 2, ceiling), buffered + 1);
      const grown = new Uint8Array(size);
      grown.set(this.#buffer.subarray(this.#start, this.#end));
      this.#buffer = grown;
    }
    this.#start = 0;
    this.#end = buffered;
  }

  /** Returns to a small buffer after a large frame so an idle connection does not pin memory. */
  #shrinkIfIdle(): void {
    if (this.#start === this.#end && this.#buffer.length > INITIAL_READ_BUFFER_BYTES * 4) {
      this.#buffer = new Uint8Array(INITIAL_READ_BUFFER_BYTES);
      this.#start = this.#end = 0;
    }
  }

  /** Drops the buffer once the stream has ended. */
  #release(): void {
    this.#buffer = new Uint8Array(0);
    this.#start = this.#end = 0;
  }
}

/**
 * Writes whole frames to a {@linkcode DuplexConn}, one after another: concurrent `write` calls are
 * queued so that one frame's bytes never interleave with another's.
 */
export class FrameWriter {
  /** The connection written to. */
  readonly #conn: Pick<DuplexConn, "write">;
  /** Largest body sent. */
  readonly #maxFrameBytes: number;
  /** Settles when every write queued so far has finished (successfully or not). */
  #tail: Promise<void> = Promise.resolve();
  /** Frames queued or being written. */
  #pendingFrames = 0;

  constructor(conn: Pick<DuplexConn, "write">, options: FrameOptions = {}) {
    this.#conn = conn;
    this.#maxFrameBytes = checkedMaxFrameBytes(options.maxFrameBytes);
  }

  /** Largest frame body this writer sends. */
  get maxFrameBytes(): number {
    return this.#maxFrameBytes;
  }

  /** Frames queued or being written: grows when the remote does not read. */
  get pendingFrames(): number {
    return this.#pendingFrames;
  }

  /** Resolves (never rejects) once every frame queued so far has been written or has failed. */
  drained(): Promise<void> {
    return this.#tail;
  }

  /**
   * Encodes `message` and writes it after every previously queued frame.
   *
   * @throws {FrameTooLargeError} synchronously-rejected when the message exceeds `maxFrameBytes`;
   *   nothing is written and the connection stays usable
   */
  write(message: unknown): Promise<void> {
    let frame: Uint8Array;
    try {
      frame = encodeFrame(message, this.#maxFrameBytes);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.writeEncoded(frame);
  }

  /** Writes an already encoded frame after every previously queued frame. */
  writeEncoded(frame: Uint8Array): Promise<void> {
    this.#pendingFrames++;
    const written = this.#tail.then(() => writeAll(this.#conn, frame)).finally(() => this.#pendingFrames--);
    this.#tail = written.catch(() => {});
    return written;
  }
}

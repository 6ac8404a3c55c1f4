/**
 * A pure, socket-free, incremental frame decoder: push chunks of any size (even one byte at a time) and
 * take complete, validated frames out. A frame whose bytes all lie in one pushed chunk gets a payload
 * that is a view of that chunk (no copy); a frame split across chunks is reassembled once into a fresh
 * buffer.
 *
 * @module
 */

import {
  Flag,
  FrameType,
  HEADER_SIZE_BYTES,
  KNOWN_FLAGS_MASK,
  PROTOCOL_VERSION,
  SESSION_STREAM_ID,
} from "./constants.ts";
import { ProtocolError } from "./errors.ts";
import type { Frame, FrameHeader } from "./frame.ts";
import { decodeHeader } from "./frame.ts";

/** Options of {@linkcode FrameDecoder}. */
export interface FrameDecoderOptions {
  /**
   * Largest data payload accepted in one frame; a larger `length` is a protocol error before any of the
   * payload is buffered. Default 16 MiB (the default maximum stream window: no valid frame is larger).
   */
  maxFramePayloadBytes?: number;
}

const EMPTY = new Uint8Array(0);

/** Default of {@linkcode FrameDecoderOptions.maxFramePayloadBytes}. */
export const DEFAULT_MAX_FRAME_PAYLOAD_BYTES = 16 * 1024 * 1024;

/**
 * A piece of a frame, as returned by {@linkcode FrameDecoder.nextSegment}: a data frame's payload may
 * arrive in several segments (`first` on the one carrying the header, `last` on the one completing the
 * payload); every other frame is a single segment with `first` and `last` both true.
 */
export interface FrameSegment {
  /** The frame's header (the same object for every segment of one frame). */
  header: FrameHeader;
  /** This segment's payload bytes: a view of a pushed chunk (possibly empty). */
  payload: Uint8Array;
  /** This segment carries the start of the frame (act on the header here). */
  first: boolean;
  /** This segment completes the frame (act on flags such as FIN here). */
  last: boolean;
}

/**
 * Incremental yamux frame decoder. Usage: `push(chunk)`, then call `next()` (whole frames) or
 * `nextSegment()` (zero-copy pieces) until it returns null, then push the next chunk. Use one of the two
 * styles per decoder, not both. A pushed chunk must not be modified while frames from it are in use.
 */
export class FrameDecoder {
  /** Largest data payload accepted (see {@linkcode FrameDecoderOptions}). */
  readonly maxFramePayloadBytes: number;
  /** Chunks pushed and not yet fully decoded; the first is read from `#offset`. */
  #chunks: Uint8Array[] = [];
  /** Read position in `#chunks[0]`. */
  #offset = 0;
  /** Header bytes collected so far when a header straddles chunks. */
  #headerBytes = new Uint8Array(HEADER_SIZE_BYTES);
  /** How many of `#headerBytes` are filled (0 when no header is pending). */
  #headerFill = 0;
  /** Header of the data frame whose payload is still arriving, or null. */
  #current: FrameHeader | null = null;
  /** Payload bytes of `#current` not yet returned. */
  #remaining = 0;
  /** The segment object `nextSegment()` returns (reused: valid until the next call). */
  #segment: FrameSegment = {
    header: { version: 0, type: 0, flags: 0, streamId: 0, length: 0 },
    payload: EMPTY,
    first: true,
    last: true,
  };
  /** `next()`'s reassembly buffer for a payload split across chunks. */
  #assembly: Uint8Array = EMPTY;
  /** Bytes of `#assembly` filled. */
  #assemblyFill = 0;
  /** The first protocol error seen; the decoder stays failed after it. */
  #error: ProtocolError | null = null;

  /** @param options see {@linkcode FrameDecoderOptions} */
  constructor(options: FrameDecoderOptions = {}) {
    this.maxFramePayloadBytes = options.maxFramePayloadBytes ?? DEFAULT_MAX_FRAME_PAYLOAD_BYTES;
  }

  /** Bytes pushed (or reassembled by `next()`) but not yet returned as frames or segments. */
  get bufferedBytes(): number {
    let total = this.#headerFill + this.#assemblyFill - this.#offset;
    for (const chunk of this.#chunks) total += chunk.length;
    return total;
  }

  /** True when no frame is partly received and every pushed byte was decoded (a clean frame boundary). */
  get atFrameBoundary(): boolean {
    return this.#chunks.length === 0 && this.#headerFill === 0 && this.#current === null;
  }

  /**
   * Payload bytes still to come for the data frame in progress, when every pushed byte is decoded (the
   * caller may then read them itself and report them with {@linkcode skipPayload}); otherwise 0.
   */
  get pendingPayloadBytes(): number {
    return this.#current !== null && this.#chunks.length === 0 ? this.#remaining : 0;
  }

  /**
   * Accounts for `count` payload bytes of the frame in progress that the caller read itself (straight
   * into their destination). Returns the segment they form, with an empty `payload`.
   *
   * @throws {RangeError} when no frame payload is pending or `count` exceeds it
   */
  skipPayload(count: number): FrameSegment {
    const header = this.#current;
    if (header === null || this.#chunks.length > 0 || count > this.#remaining || count < 0) {
      throw new RangeError(
        `skipPayload(${count}) needs a data frame in progress with at least that many bytes to come ` +
          `(pending: ${this.pendingPayloadBytes})`,
      );
    }
    this.#remaining -= count;
    const segment = this.#segment;
    segment.header = header;
    segment.payload = EMPTY;
    segment.first = false;
    segment.last = this.#remaining === 0;
    if (segment.last) this.#current = null;
    return segment;
  }

  /** Adds received bytes. Empty chunks are ignored. */
  push(chunk: Uint8Array): void {
    if (chunk.length > 0) this.#chunks.push(chunk);
  }

  /**
   * Returns the next complete frame, or null when more bytes are needed. The payload is a view of the
   * pushed chunk when the whole frame was in it, otherwise a fresh buffer reassembled once.
   *
   * @throws {ProtocolError} on an invalid header (bad version, unknown type or flags, wrong stream id for
   * the type, oversized payload); every later call throws the same error.
   */
  next(): Frame | null {
    for (;;) {
      const segment = this.nextSegment();
      if (segment === null) return null;
      const { header, payload } = segment;
      if (segment.first && segment.last) return { header, payload };
      if (segment.first) {
        this.#assembly = new Uint8Array(header.length);
        this.#assemblyFill = 0;
      }
      this.#assembly.set(payload, this.#assemblyFill);
      this.#assemblyFill += payload.length;
      if (segment.last) {
        const assembled = this.#assembly;
        this.#assembly = EMPTY;
        this.#assemblyFill = 0;
        return { header, payload: assembled };
      }
    }
  }

  /**
   * Returns the next segment (see {@linkcode FrameSegment}) without copying any payload, or null when
   * more bytes are needed. The returned object is reused by the next call.
   *
   * @throws {ProtocolError} as {@linkcode next}
   */
  nextSegment(): FrameSegment | null {
    if (this.#error !== null) throw this.#error;
    const segment = this.#segment;
    let chunk = this.#chunks[0];
    if (this.#current !== null) {
      if (chunk === undefined) return null;
      const take = Math.min(this.#remaining, chunk.length - this.#offset);
      segment.header = this.#current;
      segment.payload = chunk.subarray(this.#offset, this.#offset + take);
      segment.first = false;
      this.#offset += take;
      this.#remaining -= take;
      segment.last = this.#remaining === 0;
      if (segment.last) this.#current = null;
      this.#dropConsumedChunk();
      return segment;
    }
    if (chunk === undefined) return null;
    let header: FrameHeader;
    if (this.#headerFill === 0 && chunk.length - this.#offset >= HEADER_SIZE_BYTES) {
      // Fast path: the whole header is in the current chunk.
      header = decodeHeader(chunk, this.#offset);
      this.#offset += HEADER_SIZE_BYTES;
    } else {
      const assembled = this.#collectHeader();
      if (assembled === null) return null;
      header = assembled;
    }
    this.#validate(header);
    this.#dropConsumedChunk();
    segment.header = header;
    segment.first = true;
    if (header.type !== FrameType.Data || header.length === 0) {
      segment.payload = EMPTY;
      segment.last = true;
      return segment;
    }
    chunk = this.#chunks[0];
    const take = chunk === undefined ? 0 : Math.min(header.length, chunk.length - this.#offset);
    segment.payload = chunk === undefined ? EMPTY : chunk.subarray(this.#offset, this.#offset + take);
    this.#offset += take;
    segment.last = take === header.length;
    if (!segment.last) {
      this.#current = header;
      this.#remaining = header.length - take;
    }
    this.#dropConsumedChunk();
    return segment;
  }

  /** Pushes `chunk` and yields every frame that is complete. */
  *decode(chunk: Uint8Array): Generator<Frame, void, undefined> {
    this.push(chunk);
    for (let frame = this.next(); frame !== null; frame = this.next()) yield frame;
  }

  /** Copies header bytes across chunks; returns the header once all 12 bytes are in. */
  #collectHeader(): FrameHeader | null {
    while (this.#headerFill < HEADER_SIZE_BYTES) {
      const chunk = this.#chunks[0];
      if (chunk === undefined) return null;
      const take = Math.min(HEADER_SIZE_BYTES - this.#headerFill, chunk.length - this.#offset);
      this.#headerBytes.set(chunk.subarray(this.#offset, this.#offset + take), this.#headerFill);
      this.#headerFill += take;
      this.#offset += take;
      this.#dropConsumedChunk();
    }
    this.#headerFill = 0;
    return decodeHeader(this.#headerBytes, 0);
  }

  /** Moves to the next chunk when the current one is fully read. */
  #dropConsumedChunk(): void {
    const chunk = this.#chunks[0];
    if (chunk !== undefined && this.#offset >= chunk.length) {
      this.#chunks.shift();
      this.#offset = 0;
    }
  }

  /** Checks a header against the spec; records and throws a ProtocolError on a violation. */
  #validate(header: FrameHeader): void {
    const problem = headerProblem(header, this.maxFramePayloadBytes);
    if (problem !== null) {
      this.#error = new ProtocolError(problem);
      this.#chunks = [];
      this.#offset = 0;
      throw this.#error;
    }
  }
}

/**
 * Describes what is wrong with `header`, or returns null when it is valid. Stream-state rules (unknown
 * ids, windows) are the session's business; these are the rules that hold for any frame in isolation.
 */
export function headerProblem(header: FrameHeader, maxFramePayloadBytes: number): string | null {
  const { version, type, flags, streamId, length } = header;
  // The header is described only when it is bad: this runs for every frame, and building the text
  // up front made ~150 bytes of garbage per frame (about 0.9 KB per short-lived tunnel connection).
  if (version !== PROTOCOL_VERSION) {
    return `unsupported yamux version ${version} (only ${PROTOCOL_VERSION} exists) ${describeHeader(header)}`;
  }
  if (type > FrameType.GoAway) {
    return `unknown yamux frame type ${type} (known: 0 data, 1 window update, 2 ping, 3 go away) ${
      describeHeader(header)
    }`;
  }
  if ((flags & ~KNOWN_FLAGS_MASK) !== 0) {
    return `unknown yamux flag bits 0x${(flags & ~KNOWN_FLAGS_MASK).toString(16)} ` +
      `(known: SYN 1, ACK 2, FIN 4, RST 8) ${describeHeader(header)}`;
  }
  if (type === FrameType.Ping || type === FrameType.GoAway) {
    const typeName = type === FrameType.Ping ? "ping" : "go away";
    if (streamId !== SESSION_STREAM_ID) {
      return `yamux ${typeName} frame on stream ${streamId}; it must use stream 0 ${describeHeader(header)}`;
    }
    if (type === FrameType.Ping && flags !== Flag.SYN && flags !== Flag.ACK) {
      return `yamux ping with flags 0x${flags.toString(16)}; a ping carries exactly SYN (request) or ACK ` +
        `(response) ${describeHeader(header)}`;
    }
    if (type === FrameType.GoAway && flags !== 0) {
      return `yamux go away with flags 0x${flags.toString(16)}; it must carry none ${describeHeader(header)}`;
    }
    return null;
  }
  if (streamId === SESSION_STREAM_ID) {
    return `yamux ${type === FrameType.Data ? "data" : "window update"} frame on stream 0, which is ` +
      `reserved for the session ${describeHeader(header)}`;
  }
  if (type === FrameType.Data && length > maxFramePayloadBytes) {
    return `yamux data frame of ${length} bytes exceeds the limit of ${maxFramePayloadBytes} bytes ${
      describeHeader(header)
    }`;
  }
  return null;
}

function describeHeader({ type, flags, streamId, length }: FrameHeader): string {
  return `(type ${type}, flags 0x${flags.toString(16)}, stream ${streamId}, length ${length})`;
}

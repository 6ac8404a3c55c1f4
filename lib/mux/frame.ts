/**
 * The 12-byte yamux frame header: a plain record and pure big-endian encode/decode functions.
 *
 * @module
 */

import { HEADER_SIZE_BYTES } from "./constants.ts";

/** A decoded frame header. Values are not validated here (see `FrameDecoder`). */
export interface FrameHeader {
  /** Protocol version (always 0 on the wire we send). */
  version: number;
  /** Frame type, one of `FrameType`. */
  type: number;
  /** Bitmask of `Flag` values. */
  flags: number;
  /** Stream id; 0 is the session itself. */
  streamId: number;
  /** Data: payload bytes that follow; WindowUpdate: window delta; Ping: opaque value; GoAway: code. */
  length: number;
}

/** A complete frame: its header and, for data frames, the payload (empty for other types). */
export interface Frame {
  /** The frame's header. */
  header: FrameHeader;
  /** Payload bytes (`header.length` of them for data frames, otherwise empty). */
  payload: Uint8Array;
}

/**
 * Writes `header` big-endian into `target` at `offset` (12 bytes).
 *
 * @throws {RangeError} when the 12 bytes do not fit in `target`
 */
export function encodeHeader(target: Uint8Array, offset: number, header: FrameHeader): void {
  writeHeader(target, offset, header.type, header.flags, header.streamId, header.length, header.version);
}

/**
 * Writes a header from its fields, without building a {@linkcode FrameHeader} (the session's hot path).
 *
 * @throws {RangeError} when the 12 bytes do not fit in `target`
 */
export function writeHeader(
  target: Uint8Array,
  offset: number,
  type: number,
  flags: number,
  streamId: number,
  length: number,
  version = 0,
): void {
  if (offset < 0 || offset + HEADER_SIZE_BYTES > target.length) {
    throw new RangeError(
      `a yamux header needs ${HEADER_SIZE_BYTES} bytes at offset ${offset}, but the target holds ${target.length}`,
    );
  }
  target[offset] = version;
  target[offset + 1] = type;
  target[offset + 2] = flags >>> 8;
  target[offset + 3] = flags;
  target[offset + 4] = streamId >>> 24;
  target[offset + 5] = streamId >>> 16;
  target[offset + 6] = streamId >>> 8;
  target[offset + 7] = streamId;
  target[offset + 8] = length >>> 24;
  target[offset + 9] = length >>> 16;
  target[offset + 10] = length >>> 8;
  target[offset + 11] = length;
}

/**
 * Reads the header at `offset` of `bytes` (big-endian).
 *
 * @throws {RangeError} when fewer than 12 bytes are available at `offset`
 */
export function decodeHeader(bytes: Uint8Array, offset: number): FrameHeader {
  if (offset < 0 || offset + HEADER_SIZE_BYTES > bytes.length) {
    throw new RangeError(
      `a yamux header needs ${HEADER_SIZE_BYTES} bytes at offset ${offset}, but only ${
        Math.max(bytes.length - offset, 0)
      } are available`,
    );
  }
  return {
    version: bytes[offset] as number,
    type: bytes[offset + 1] as number,
    flags: ((bytes[offset + 2] as number) << 8) | (bytes[offset + 3] as number),
    streamId: readU32(bytes, offset + 4),
    length: readU32(bytes, offset + 8),
  };
}

/** Big-endian u32 at `offset` (caller checked the bounds). */
function readU32(bytes: Uint8Array, offset: number): number {
  return (
    (bytes[offset] as number) * 0x100_0000 +
    (((bytes[offset + 1] as number) << 16) | ((bytes[offset + 2] as number) << 8) |
      (bytes[offset + 3] as number))
  );
}

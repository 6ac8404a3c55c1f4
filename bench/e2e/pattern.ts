/**
 * The bytes bulk transfers carry: a period of bytes repeated, with a period that is no multiple of any
 * read or write size, so a reordered, lost or duplicated piece changes the sha256 of what arrives.
 *
 * Uploads (bench → agent) use random bytes made by the bench; downloads (agent → bench) use bytes both
 * processes derive from one seed ({@linkcode sourceBytes}), so the bench can check what the agent sent
 * without the agent telling it.
 *
 * @module
 */

import { createHash } from "node:crypto";

/** Size of each write of a bulk transfer (the tunnel's large copy buffer). */
export const BULK_WRITE_BYTES = 256 * 1024;
/** Period of the cyclic stream: 4 MiB + 13 B, no multiple of any buffer size. */
const PATTERN_PERIOD_BYTES = 4 * 1024 * 1024 + 13;

/** An endless stream of `period` bytes repeated, handed out as views of at most `BULK_WRITE_BYTES`. */
export class CyclicBytes {
  /** The period followed by its first `BULK_WRITE_BYTES` again, so every piece is one contiguous view. */
  readonly #bytes: Uint8Array;
  readonly #hashes = new Map<number, string>();

  /** `fill` writes the period's bytes into the array it is given. */
  constructor(fill: (period: Uint8Array) => void) {
    this.#bytes = new Uint8Array(PATTERN_PERIOD_BYTES + BULK_WRITE_BYTES);
    fill(this.#bytes.subarray(0, PATTERN_PERIOD_BYTES));
    this.#bytes.copyWithin(PATTERN_PERIOD_BYTES, 0, BULK_WRITE_BYTES);
  }

  /** The successive views of the first `totalBytes` bytes of the stream. */
  *pieces(totalBytes: number): Generator<Uint8Array> {
    let offset = 0;
    for (let sent = 0; sent < totalBytes;) {
      const size = Math.min(BULK_WRITE_BYTES, totalBytes - sent);
      yield this.#bytes.subarray(offset, offset + size);
      sent += size;
      offset = (offset + size) % PATTERN_PERIOD_BYTES;
    }
  }

  /** Hex SHA-256 of the first `totalBytes` bytes of the stream (cached per size). */
  sha256(totalBytes: number): string {
    let hex = this.#hashes.get(totalBytes);
    if (hex === undefined) {
      const hash = createHash("sha256");
      for (const piece of this.pieces(totalBytes)) hash.update(piece);
      hex = hash.digest("hex");
      this.#hashes.set(totalBytes, hex);
    }
    return hex;
  }
}

/** Fills `period` with random bytes (`getRandomValues` takes at most 64 KiB per call). */
export function randomFill(period: Uint8Array): void {
  for (let offset = 0; offset < period.length; offset += 65_536) {
    crypto.getRandomValues(period.subarray(offset, Math.min(offset + 65_536, period.length)));
  }
}

/** Seed of the download stream; any non-zero 32-bit value (xorshift32 never leaves zero). */
const SOURCE_SEED = 0x9e3779b9;

/** Fills `period` with xorshift32 output from `seed`: the same bytes in every process. */
function seededFill(seed: number): (period: Uint8Array) => void {
  return (period) => {
    let state = seed >>> 0;
    for (let index = 0; index < period.length; index++) {
      state ^= state << 13;
      state >>>= 0;
      state ^= state >>> 17;
      state ^= state << 5;
      state >>>= 0;
      period[index] = state & 0xff;
    }
  };
}

let upload: CyclicBytes | null = null;
/** The bytes uploads send (random, made once per process). */
export function uploadBytes(): CyclicBytes {
  upload ??= new CyclicBytes(randomFill);
  return upload;
}

let source: CyclicBytes | null = null;
/** The bytes the agent's source mode sends: the same in the agent and the bench (one seed). */
export function sourceBytes(): CyclicBytes {
  source ??= new CyclicBytes(seededFill(SOURCE_SEED));
  return source;
}

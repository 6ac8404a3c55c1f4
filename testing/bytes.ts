/**
 * Byte helpers shared by the test suites of every layer: joining chunks, reading a connection to its
 * end, deterministic test data and its digest.
 *
 * @module
 */

import type { DuplexConn } from "../lib/net/conn.ts";
import { hex } from "../lib/text.ts";

/** Joins `parts` into one array. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array<ArrayBuffer> {
  const joined = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    joined.set(part, offset);
    offset += part.length;
  }
  return joined;
}

/** Reads `conn` to end of stream and returns everything. */
export async function readAll(
  conn: Pick<DuplexConn, "read">,
  bufferBytes = 64 * 1024,
): Promise<Uint8Array<ArrayBuffer>> {
  const parts: Uint8Array[] = [];
  const buffer = new Uint8Array(bufferBytes);
  for (;;) {
    const count = await conn.read(buffer);
    if (count === null) break;
    parts.push(buffer.slice(0, count));
  }
  return concatBytes(parts);
}

/** Reads exactly `bytes` bytes from `conn`; throws if it ends first. */
export async function readExactly(
  conn: Pick<DuplexConn, "read">,
  bytes: number,
): Promise<Uint8Array<ArrayBuffer>> {
  const out = new Uint8Array(bytes);
  let filled = 0;
  while (filled < bytes) {
    const count = await conn.read(out.subarray(filled));
    if (count === null) throw new Error(`ended after ${filled} of ${bytes} bytes`);
    filled += count;
  }
  return out;
}

/** Deterministic pseudo-random bytes (xorshift), so failures reproduce. */
export function patternBytes(length: number, seed: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(length);
  let state = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    bytes[i] = state & 0xff;
  }
  return bytes;
}

/** Hex SHA-256 of `bytes`. */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  return hex(digest);
}

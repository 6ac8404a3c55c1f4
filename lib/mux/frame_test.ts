/**
 * Unit tests of the frame header codec (`frame.ts`).
 *
 * @module
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { decodeHeader, encodeHeader, type FrameHeader } from "./frame.ts";

const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
const headerArbitrary: fc.Arbitrary<FrameHeader> = fc.record({
  version: fc.integer({ min: 0, max: 255 }),
  type: fc.integer({ min: 0, max: 255 }),
  flags: fc.integer({ min: 0, max: 0xffff }),
  streamId: u32,
  length: u32,
});

Deno.test("header encodes big-endian in the spec's field order", () => {
  const bytes = new Uint8Array(12);
  encodeHeader(bytes, 0, { version: 0, type: 1, flags: 0x0102, streamId: 0x0a0b0c0d, length: 0xfffffffe });
  assert.deepEqual([...bytes], [0, 1, 1, 2, 0x0a, 0x0b, 0x0c, 0x0d, 0xff, 0xff, 0xff, 0xfe]);
});

Deno.test("header round-trips for every field value", () => {
  fc.assert(
    fc.property(headerArbitrary, fc.integer({ min: 0, max: 20 }), (header, offset) => {
      const bytes = new Uint8Array(offset + 12 + 3);
      encodeHeader(bytes, offset, header);
      assert.deepEqual(decodeHeader(bytes, offset), { ...header });
    }),
  );
});

Deno.test("header codec rejects buffers too small, naming the sizes", () => {
  const header = { version: 0, type: 0, flags: 0, streamId: 1, length: 0 };
  assert.throws(() => encodeHeader(new Uint8Array(11), 0, header), /needs 12 bytes at offset 0.*holds 11/);
  assert.throws(() => decodeHeader(new Uint8Array(20), 10), /only 10 are available/);
});

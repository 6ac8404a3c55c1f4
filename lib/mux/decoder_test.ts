/**
 * Unit tests of the incremental frame decoder (`decoder.ts`), including hostile headers.
 *
 * @module
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { Flag, FrameType, GoAwayCode } from "./constants.ts";
import { FrameDecoder } from "./decoder.ts";
import { ProtocolError } from "./errors.ts";
import type { Frame } from "./frame.ts";
import { concatBytes, frameBytes } from "../../testing/mux.ts";

/** Arbitrary valid frames (as bytes plus what they should decode to). */
const validFrame = fc.oneof(
  fc.record({
    type: fc.constant(FrameType.Data),
    flags: fc.integer({ min: 0, max: 15 }),
    streamId: fc.integer({ min: 1, max: 0xffff_ffff }),
    payload: fc.uint8Array({ maxLength: 300 }),
  }).map(({ type, flags, streamId, payload }) => ({
    type,
    flags,
    streamId,
    length: payload.length,
    payload,
  })),
  fc.record({
    type: fc.constant(FrameType.WindowUpdate),
    flags: fc.integer({ min: 0, max: 15 }),
    streamId: fc.integer({ min: 1, max: 0xffff_ffff }),
    length: fc.integer({ min: 0, max: 0xffff_ffff }),
  }).map((f) => ({ ...f, payload: new Uint8Array(0) })),
  fc.record({
    type: fc.constant(FrameType.Ping),
    flags: fc.constantFrom(Flag.SYN, Flag.ACK),
    streamId: fc.constant(0),
    length: fc.integer({ min: 0, max: 0xffff_ffff }),
  }).map((f) => ({ ...f, payload: new Uint8Array(0) })),
  fc.record({
    type: fc.constant(FrameType.GoAway),
    flags: fc.constant(0),
    streamId: fc.constant(0),
    length: fc.integer({ min: 0, max: 2 }),
  }).map((f) => ({ ...f, payload: new Uint8Array(0) })),
);

/** Splits `bytes` at the given cut points (sorted, deduplicated, in range). */
function split(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((cut) => cut % (bytes.length + 1)))].sort((a, b) => a - b);
  const chunks: Uint8Array[] = [];
  let start = 0;
  for (const point of [...points, bytes.length]) {
    chunks.push(bytes.slice(start, point));
    start = point;
  }
  return chunks;
}

function simplify(frame: Frame) {
  return { ...frame.header, payload: [...frame.payload] };
}

Deno.test("decoder reassembles any split of a frame sequence identically", () => {
  fc.assert(
    fc.property(
      fc.array(validFrame, { maxLength: 12 }),
      fc.array(fc.nat(), { maxLength: 30 }),
      (frames, cuts) => {
        const wire = concatBytes(
          frames.map((f) => frameBytes(f.type, f.flags, f.streamId, f.length, f.payload)),
        );
        const decoder = new FrameDecoder();
        const decoded: Frame[] = [];
        for (const chunk of split(wire, cuts)) decoded.push(...decoder.decode(chunk));
        assert.deepEqual(
          decoded.map(simplify),
          frames.map((f) => ({
            version: 0,
            type: f.type,
            flags: f.flags,
            streamId: f.streamId,
            length: f.length,
            payload: [...f.payload],
          })),
        );
        assert.ok(decoder.atFrameBoundary);
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("decoder accepts a frame one byte at a time", () => {
  const payload = new Uint8Array([1, 2, 3, 4, 5]);
  const decoder = new FrameDecoder();
  const wire = frameBytes(FrameType.Data, Flag.SYN, 3, payload.length, payload);
  const frames: Frame[] = [];
  for (const byte of wire) frames.push(...decoder.decode(new Uint8Array([byte])));
  assert.equal(frames.length, 1);
  assert.deepEqual([...(frames[0] as Frame).payload], [1, 2, 3, 4, 5]);
  assert.equal(decoder.bufferedBytes, 0);
});

Deno.test("decoder hands out a view of the chunk when the frame is whole, a copy when split", () => {
  const payload = new Uint8Array([9, 8, 7]);
  const wire = frameBytes(FrameType.Data, 0, 5, 3, payload);
  const whole = [...new FrameDecoder().decode(wire)][0] as Frame;
  assert.equal(whole.payload.buffer, wire.buffer);
  const decoder = new FrameDecoder();
  assert.deepEqual([...decoder.decode(wire.subarray(0, 13))], []);
  const tail = wire.slice(13);
  const split = [...decoder.decode(tail)][0] as Frame;
  assert.notEqual(split.payload.buffer, tail.buffer);
  assert.deepEqual([...split.payload], [9, 8, 7]);
});

Deno.test("decoder segments deliver payload pieces without copying", () => {
  const payload = new Uint8Array(100).map((_, i) => i);
  const wire = frameBytes(FrameType.Data, Flag.FIN, 7, 100, payload);
  const decoder = new FrameDecoder();
  const first = wire.slice(0, 40);
  const second = wire.slice(40);
  decoder.push(first);
  const a = decoder.nextSegment();
  assert.ok(a !== null && a.first && !a.last);
  assert.equal(a.payload.buffer, first.buffer);
  assert.equal(a.payload.length, 28);
  assert.equal(decoder.nextSegment(), null);
  decoder.push(second);
  const b = decoder.nextSegment();
  assert.ok(b !== null && !b.first && b.last);
  assert.equal(b.payload.buffer, second.buffer);
  assert.equal(b.payload.length, 72);
  assert.equal(b.header.flags, Flag.FIN);
  assert.ok(decoder.atFrameBoundary);
});

const malformed: Array<[string, Uint8Array, RegExp]> = [
  ["a bad version", frameBytes(FrameType.Data, 0, 1, 0, undefined, 1), /unsupported yamux version 1/],
  ["an unknown type", frameBytes(4, 0, 1, 0), /unknown yamux frame type 4/],
  ["unknown flag bits", frameBytes(FrameType.WindowUpdate, 0x10, 1, 0), /unknown yamux flag bits 0x10/],
  [
    "a ping on a stream",
    frameBytes(FrameType.Ping, Flag.SYN, 3, 0),
    /ping frame on stream 3; it must use stream 0/,
  ],
  ["a ping without SYN or ACK", frameBytes(FrameType.Ping, 0, 0, 1), /ping with flags 0x0/],
  ["a ping with SYN and ACK", frameBytes(FrameType.Ping, 3, 0, 1), /ping with flags 0x3/],
  ["a go away on a stream", frameBytes(FrameType.GoAway, 0, 2, 0), /go away frame on stream 2/],
  ["a go away with flags", frameBytes(FrameType.GoAway, Flag.FIN, 0, 0), /go away with flags 0x4/],
  ["data on stream 0", frameBytes(FrameType.Data, 0, 0, 0), /data frame on stream 0/],
  [
    "a window update on stream 0",
    frameBytes(FrameType.WindowUpdate, 0, 0, 5),
    /window update frame on stream 0/,
  ],
  ["an oversized data frame", frameBytes(FrameType.Data, 0, 1, 1025), /1025 bytes exceeds the limit of 1024/],
];

for (const [what, bytes, message] of malformed) {
  Deno.test(`decoder rejects ${what} with a ProtocolError`, () => {
    const decoder = new FrameDecoder({ maxFramePayloadBytes: 1024 });
    decoder.push(bytes);
    assert.throws(() => decoder.next(), (error: unknown) => {
      assert.ok(error instanceof ProtocolError);
      assert.equal(error.goAwayCode, GoAwayCode.ProtocolError);
      assert.match(error.message, message);
      return true;
    });
    // The decoder stays failed: later input cannot resynchronise on garbage.
    decoder.push(frameBytes(FrameType.Ping, Flag.SYN, 0, 1));
    assert.throws(() => decoder.next(), ProtocolError);
  });
}

Deno.test("decoder rejects an oversized frame from its header, before buffering the payload", () => {
  const decoder = new FrameDecoder({ maxFramePayloadBytes: 16 });
  decoder.push(frameBytes(FrameType.Data, 0, 1, 1_000_000).subarray(0, 12));
  assert.throws(() => decoder.next(), /1000000 bytes exceeds the limit of 16/);
});

Deno.test("decoder fuzz: arbitrary bytes either decode or raise ProtocolError", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), fc.array(fc.nat(), { maxLength: 10 }), (bytes, cuts) => {
      const decoder = new FrameDecoder({ maxFramePayloadBytes: 64 });
      try {
        for (const chunk of split(bytes, cuts)) [...decoder.decode(chunk)];
      } catch (error) {
        assert.ok(error instanceof ProtocolError, `unexpected ${error}`);
      }
    }),
    { numRuns: 500 },
  );
});

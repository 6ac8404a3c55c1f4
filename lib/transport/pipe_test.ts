import assert from "node:assert/strict";
import fc from "fast-check";
import type { DuplexConn } from "./conn.ts";
import { memoryPair } from "./memory_pair.ts";
import { copyOneWay, LARGE_BUFFER_BYTES, MEDIUM_BUFFER_BYTES, pipeBoth, SMALL_BUFFER_BYTES } from "./pipe.ts";
import { readAll } from "../_test_bytes.ts";

/** `length` pseudo-random bytes (xorshift) that differ per `seed`. */
function pattern(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  let state = (seed * 2654435761) >>> 0 || 1;
  for (let index = 0; index < length; index++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    bytes[index] = state & 0xff;
  }
  return bytes;
}

/** Writes `data` in pieces of the given sizes (cycled), then half-closes. */
async function writePieces(conn: DuplexConn, data: Uint8Array, sizes: readonly number[]): Promise<void> {
  let offset = 0;
  for (let index = 0; offset < data.length; index++) {
    const size = Math.max(1, sizes[index % sizes.length] ?? 1);
    const end = Math.min(data.length, offset + size);
    let written = offset;
    while (written < end) written += await conn.write(data.subarray(written, end));
    offset = end;
  }
  await conn.closeWrite();
}

Deno.test("copyOneWay delivers bulk traffic intact through the pipelined large buffers", async () => {
  // Small capacities force short writes and waits on both sides of the copy.
  const [source, sourcePeer] = memoryPair({ capacityBytes: 300_000 });
  const [sinkPeer, sink] = memoryPair({ capacityBytes: 200_000 });
  const data = pattern(3 * LARGE_BUFFER_BYTES + 12_345, 7);
  const counted: number[] = [];
  const [copied, received] = await Promise.all([
    copyOneWay(sourcePeer, sinkPeer, (bytes) => counted.push(bytes)),
    readAll(sink),
    writePieces(source, data, [LARGE_BUFFER_BYTES, 70_000, 3]),
  ]);
  assert.equal(copied, data.length);
  assert.equal(counted.reduce((sum, bytes) => sum + bytes, 0), data.length);
  assert.deepEqual(received, data);
});

Deno.test("copyOneWay keeps order when traffic switches between small and bulk reads", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.integer({ min: 1, max: 2 * LARGE_BUFFER_BYTES }), { minLength: 1, maxLength: 6 }),
      fc.integer({ min: 1, max: 600_000 }),
      fc.integer({ min: 1, max: 1000 }),
      async (sizes, length, seed) => {
        const [source, sourcePeer] = memoryPair({ capacityBytes: 64 * 1024 });
        const [sinkPeer, sink] = memoryPair({ capacityBytes: 48 * 1024 });
        const data = pattern(length, seed);
        const [copied, received] = await Promise.all([
          copyOneWay(sourcePeer, sinkPeer),
          readAll(sink),
          writePieces(source, data, [...sizes, SMALL_BUFFER_BYTES - 1, 1]),
        ]);
        assert.equal(copied, data.length);
        assert.deepEqual(received, data);
      },
    ),
    { numRuns: 25 },
  );
});

Deno.test("pipeBoth carries both directions with half-close and counts the bytes", async () => {
  const [outside, a] = memoryPair();
  const [b, inside] = memoryPair();
  const up = pattern(LARGE_BUFFER_BYTES + 999, 1);
  const down = pattern(5_000, 2);
  const [result, receivedInside, receivedOutside] = await Promise.all([
    pipeBoth(a, b),
    readAll(inside),
    readAll(outside),
    writePieces(outside, up, [100_000]),
    writePieces(inside, down, [700]),
  ]);
  assert.deepEqual(receivedInside, up);
  assert.deepEqual(receivedOutside, down);
  assert.equal(result.aToBBytes, up.length);
  assert.equal(result.bToABytes, down.length);
  assert.equal(result.error, undefined);
});

Deno.test("pipeBoth ends both directions when a write fails in the middle of a bulk transfer", async () => {
  const [outside, a] = memoryPair();
  const [b, inside] = memoryPair({ capacityBytes: 64 * 1024 });
  const writing = writePieces(outside, pattern(4 * LARGE_BUFFER_BYTES, 3), [LARGE_BUFFER_BYTES]).catch(
    (error) => error,
  );
  const piping = pipeBoth(a, b);
  // The inside reads a little, then goes away: the copy's next write fails.
  const first = new Uint8Array(1000);
  assert.ok((await inside.read(first)) !== null);
  inside.close();
  const result = await piping;
  assert.ok(result.error instanceof Error, "the write failure is reported");
  assert.ok(result.aToBBytes < 4 * LARGE_BUFFER_BYTES);
  // The outside's own writes end too (its peer was closed), rather than hanging.
  await writing;
  assert.equal(await outside.read(new Uint8Array(10)), null);
});

Deno.test("a direction that goes quiet after a burst waits with a medium buffer, not a large one", async () => {
  // A source that fills every read during a burst, then returns a partial read, then stays quiet.
  const readSizes: number[] = [];
  let chunksLeft = 4;
  let release: (() => void) | null = null;
  const quiet = new Promise<void>((resolve) => (release = resolve));
  let waiting: (() => void) | null = null;
  const waitingForQuietRead = new Promise<void>((resolve) => (waiting = resolve));
  const source: DuplexConn = {
    read: async (buffer) => {
      readSizes.push(buffer.length);
      if (chunksLeft > 0) {
        chunksLeft--;
        return buffer.length; // the burst: every read fills its buffer
      }
      if (chunksLeft === 0) {
        chunksLeft--;
        return Math.floor(buffer.length / 3); // the end of the burst: a partial read
      }
      waiting?.();
      await quiet;
      return null;
    },
    write: (data) => Promise.resolve(data.length),
    closeWrite: () => Promise.resolve(),
    close: () => {},
  };
  const sink: DuplexConn = {
    read: () => Promise.resolve(null),
    write: (data) => Promise.resolve(data.length),
    closeWrite: () => Promise.resolve(),
    close: () => {},
  };
  const copying = copyOneWay(source, sink);
  await waitingForQuietRead;
  assert.equal(readSizes[0], SMALL_BUFFER_BYTES, "the first read uses the small buffer");
  assert.ok(readSizes.slice(1, 5).every((size) => size === LARGE_BUFFER_BYTES), `burst reads: ${readSizes}`);
  assert.equal(readSizes.at(-1), MEDIUM_BUFFER_BYTES, "the read waiting through the quiet period is medium");
  (release as (() => void) | null)?.();
  const total = await copying;
  assert.equal(total, SMALL_BUFFER_BYTES + 3 * LARGE_BUFFER_BYTES + Math.floor(LARGE_BUFFER_BYTES / 3));
});

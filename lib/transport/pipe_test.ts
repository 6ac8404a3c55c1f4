import assert from "node:assert/strict";
import fc from "fast-check";
import type { DuplexConn } from "../net/conn.ts";
import { memoryPair } from "../net/memory_pair.ts";
import {
  copyBufferCounts,
  copyOneWay,
  LARGE_BUFFER_BYTES,
  LARGE_BUFFER_LIMIT,
  MEDIUM_BUFFER_BYTES,
  MEDIUM_BUFFER_LIMIT,
  pipeBoth,
  SMALL_BUFFER_BYTES,
} from "./pipe.ts";
import { readAll } from "../../testing/bytes.ts";

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

/** A source that returns `script` read by read (a number: that many bytes, "full": the buffer's size), then waits. */
function scriptedSource(script: readonly (number | "full")[]): {
  conn: DuplexConn;
  readSizes: number[];
  waiting: Promise<void>;
  end: () => void;
} {
  const readSizes: number[] = [];
  let next = 0;
  const quiet = Promise.withResolvers<void>();
  const waiting = Promise.withResolvers<void>();
  const conn: DuplexConn = {
    read: async (buffer) => {
      readSizes.push(buffer.length);
      const step = script[next++];
      if (step !== undefined) return step === "full" ? buffer.length : step;
      waiting.resolve();
      await quiet.promise;
      return null;
    },
    write: (data) => Promise.resolve(data.length),
    closeWrite: () => Promise.resolve(),
    close: () => {},
  };
  return { conn, readSizes, waiting: waiting.promise, end: () => quiet.resolve() };
}

/** A sink that takes everything. */
function nullSink(): DuplexConn {
  return {
    read: () => Promise.resolve(null),
    write: (data) => Promise.resolve(data.length),
    closeWrite: () => Promise.resolve(),
    close: () => {},
  };
}

Deno.test("a direction that goes quiet after a burst waits with its small buffer, not a borrowed one", async () => {
  // Every read fills its buffer during the burst, then a partial read of a medium buffer's worth or more
  // (a slower stream: the next read is medium), then one of less ends it, then the source is quiet.
  const tail = MEDIUM_BUFFER_BYTES - 1;
  const source = scriptedSource(["full", "full", "full", "full", "full", MEDIUM_BUFFER_BYTES, tail]);
  const copying = copyOneWay(source.conn, nullSink());
  await source.waiting;
  assert.deepEqual(
    source.readSizes,
    [
      SMALL_BUFFER_BYTES,
      SMALL_BUFFER_BYTES,
      MEDIUM_BUFFER_BYTES,
      LARGE_BUFFER_BYTES,
      LARGE_BUFFER_BYTES,
      LARGE_BUFFER_BYTES,
      MEDIUM_BUFFER_BYTES,
      SMALL_BUFFER_BYTES,
    ],
    "two full small reads start the bulk phase; large while full, medium after a partial one; the quiet read is small",
  );
  const counts = copyBufferCounts();
  assert.equal(
    counts.largeLent + counts.mediumLent,
    0,
    "no borrowed buffer is held through the quiet period",
  );
  source.end();
  const total = await copying;
  assert.equal(
    total,
    2 * SMALL_BUFFER_BYTES + MEDIUM_BUFFER_BYTES + 2 * LARGE_BUFFER_BYTES + MEDIUM_BUFFER_BYTES + tail,
  );
});

Deno.test("a 1 KiB message followed by silence leaves the read waiting with the small buffer", async () => {
  // 1,024 bytes fill the small buffer exactly; that alone is not bulk traffic.
  const source = scriptedSource([SMALL_BUFFER_BYTES]);
  const copying = copyOneWay(source.conn, nullSink());
  await source.waiting;
  assert.deepEqual(source.readSizes, [SMALL_BUFFER_BYTES, SMALL_BUFFER_BYTES]);
  const counts = copyBufferCounts();
  assert.equal(counts.largeLent + counts.mediumLent, 0);
  source.end();
  assert.equal(await copying, SMALL_BUFFER_BYTES);
});

Deno.test("borrowed buffers stay capped when many sources leave a bulk read waiting, and copies go on", async () => {
  // Each source fills two small reads and then goes quiet: its waiting read holds a borrowed buffer.
  const pinned = Array.from({ length: MEDIUM_BUFFER_LIMIT + 40 }, () => scriptedSource(["full", "full"]));
  const copies = pinned.map((source) => copyOneWay(source.conn, nullSink()));
  await Promise.all(pinned.map((source) => source.waiting));
  const counts = copyBufferCounts();
  assert.ok(counts.mediumExisting <= MEDIUM_BUFFER_LIMIT, `medium buffers: ${counts.mediumExisting}`);
  assert.ok(counts.largeExisting <= LARGE_BUFFER_LIMIT, `large buffers: ${counts.largeExisting}`);
  const overflow = pinned.slice(MEDIUM_BUFFER_LIMIT).map((source) => source.readSizes.at(-1));
  assert.ok(
    overflow.every((size) => size === SMALL_BUFFER_BYTES),
    "sources beyond the cap wait with the small buffer",
  );
  // With every medium buffer lent, bulk data still goes through intact.
  const [source, sourcePeer] = memoryPair({ capacityBytes: 64 * 1024 });
  const [sinkPeer, sink] = memoryPair({ capacityBytes: 48 * 1024 });
  const data = pattern(LARGE_BUFFER_BYTES + 4_321, 9);
  const [copied, received] = await Promise.all([
    copyOneWay(sourcePeer, sinkPeer),
    readAll(sink),
    writePieces(source, data, [30_000]),
  ]);
  assert.equal(copied, data.length);
  assert.deepEqual(received, data);
  for (const pinnedSource of pinned) pinnedSource.end();
  await Promise.all(copies);
  assert.equal(copyBufferCounts().mediumLent, 0, "every borrowed buffer is back once the sources end");
});

import assert from "node:assert/strict";
import { memoryPair } from "../net/memory_pair.ts";
import {
  DATAGRAM_PREFIX_BYTES,
  DatagramFrameError,
  DatagramReader,
  DatagramWriter,
  decodeDatagramFrames,
  encodeDatagramFrames,
  MAX_DATAGRAM_BYTES,
  PipelinedSender,
} from "./datagram.ts";

/** A reader over fixed bytes, handed out `chunk` bytes per read. */
function readerOf(bytes: Uint8Array, chunk = bytes.length): DatagramReader {
  let offset = 0;
  return new DatagramReader({
    read(buffer: Uint8Array): Promise<number | null> {
      if (offset >= bytes.length) return Promise.resolve(null);
      const count = Math.min(chunk, buffer.length, bytes.length - offset);
      buffer.set(bytes.subarray(offset, offset + count));
      offset += count;
      return Promise.resolve(count);
    },
  });
}

async function readAll(reader: DatagramReader): Promise<number[][]> {
  const datagrams: number[][] = [];
  for (let datagram = await reader.next(); datagram !== null; datagram = await reader.next()) {
    datagrams.push([...datagram]);
  }
  return datagrams;
}

Deno.test("datagram frames keep each datagram's boundary, also when the stream delivers a byte at a time", async () => {
  const datagrams = [new Uint8Array([1]), new Uint8Array([2, 3, 4]), new Uint8Array(300).fill(9)];
  const bytes = encodeDatagramFrames(datagrams);
  assert.deepEqual([...bytes.subarray(0, 3)], [0, 1, 1]);
  assert.equal(bytes.length, 3 * DATAGRAM_PREFIX_BYTES + 304);
  const expected = datagrams.map((datagram) => [...datagram]);
  assert.deepEqual(decodeDatagramFrames(bytes).map((datagram) => [...datagram]), expected);
  assert.deepEqual(await readAll(readerOf(bytes)), expected);
  assert.deepEqual(await readAll(readerOf(bytes, 1)), expected);
});

Deno.test("the largest UDP datagram is carried whole; back-to-back largest frames too", async () => {
  const big = new Uint8Array(MAX_DATAGRAM_BYTES).map((_, index) => index % 251);
  const bytes = encodeDatagramFrames([big, big, new Uint8Array([7]), big]);
  const read = await readAll(readerOf(bytes, 10_000));
  assert.deepEqual(read.map((datagram) => datagram.length), [
    MAX_DATAGRAM_BYTES,
    MAX_DATAGRAM_BYTES,
    1,
    MAX_DATAGRAM_BYTES,
  ]);
  assert.deepEqual(read[3], [...big]);
});

Deno.test("hostile frames: length 0, a length above 65,507 and a truncated frame are errors, not datagrams", async () => {
  const zero = new Uint8Array([0, 1, 5, 0, 0, 0, 1, 6]);
  assert.throws(() => decodeDatagramFrames(zero), DatagramFrameError);
  const reader = readerOf(zero);
  assert.deepEqual([...(await reader.next()) ?? []], [5]);
  await assert.rejects(reader.next(), /length 0/);

  const oversized = new Uint8Array([0xff, 0xff, 1, 2, 3]);
  assert.throws(() => decodeDatagramFrames(oversized), /65535 bytes exceeds/);
  await assert.rejects(readerOf(oversized).next(), /65535 bytes exceeds the largest UDP datagram \(65507\)/);
  const justOver = new Uint8Array([(MAX_DATAGRAM_BYTES + 1) >> 8, (MAX_DATAGRAM_BYTES + 1) & 0xff]);
  await assert.rejects(readerOf(justOver).next(), DatagramFrameError);

  const truncated = new Uint8Array([0, 10, 1, 2, 3]);
  assert.throws(() => decodeDatagramFrames(truncated), /cut short: 3 of 10/);
  await assert.rejects(readerOf(truncated, 2).next(), /ended inside a datagram frame/);
  const halfPrefix = new Uint8Array([0, 1, 42, 0]);
  const halfReader = readerOf(halfPrefix);
  assert.deepEqual([...(await halfReader.next()) ?? []], [42]);
  await assert.rejects(halfReader.next(), /ended inside a datagram frame/);
  assert.equal(await readerOf(new Uint8Array(0)).next(), null, "a clean end between frames");
});

Deno.test("an empty or oversized datagram is refused by the encoder and the writer", () => {
  assert.throws(() => encodeDatagramFrames([new Uint8Array(0)]), DatagramFrameError);
  assert.throws(() => encodeDatagramFrames([new Uint8Array(MAX_DATAGRAM_BYTES + 1)]), DatagramFrameError);
  const writer = new DatagramWriter({ write: (data) => Promise.resolve(data.length) });
  assert.throws(() => writer.push(new Uint8Array(0)), DatagramFrameError);
  assert.throws(() => writer.push(new Uint8Array(MAX_DATAGRAM_BYTES + 1)), DatagramFrameError);
});

Deno.test("a stream that does not keep up makes the writer drop datagrams beyond its bound, not buffer them", async () => {
  let release = () => {};
  const written: Uint8Array[] = [];
  const blocked = new Promise<void>((resolve) => release = resolve);
  const writer = new DatagramWriter({
    async write(data) {
      await blocked;
      written.push(data.slice());
      return data.length;
    },
  }, { maxDatagrams: 4, maxBytes: 100_000 });
  const accepted = Array.from({ length: 10 }, (_, index) => writer.push(new Uint8Array([index + 1])));
  // The first is being written (out of the queue), four wait, the other five are dropped.
  assert.deepEqual(accepted, [true, true, true, true, true, false, false, false, false, false]);
  release();
  await writer.flushed();
  const delivered = written.flatMap((bytes) => decodeDatagramFrames(bytes).map((datagram) => datagram[0]));
  assert.deepEqual(delivered, [1, 2, 3, 4, 5]);
  assert.equal(written.length, 2, "the four queued behind the first went out in one write");
});

Deno.test("a byte bound also holds the writer's queue; a failed write closes it and reports once", async () => {
  const errors: unknown[] = [];
  const writer = new DatagramWriter(
    { write: () => Promise.reject(new Error("stream reset")) },
    { maxDatagrams: 100, maxBytes: 1000 },
    (error) => errors.push(error),
  );
  assert.equal(writer.push(new Uint8Array(600)), true);
  assert.equal(writer.push(new Uint8Array(600)), true, "the first left the queue for its write");
  assert.equal(writer.push(new Uint8Array(600)), false, "600 + 600 queued would exceed 1000 bytes");
  await writer.flushed();
  assert.equal(errors.length, 1);
  assert.equal(writer.push(new Uint8Array(1)), false, "closed after the failure");
});

Deno.test("datagrams written to a stream are read back in order by the other end", async () => {
  const [a, b] = memoryPair();
  const writer = new DatagramWriter(a);
  const sent = Array.from({ length: 50 }, (_, index) => new Uint8Array(index * 37 + 1).fill(index));
  // 45,375 bytes in all: within the default queue, so none is dropped.
  for (const datagram of sent) assert.equal(writer.push(datagram), true);
  const reading = readAll(new DatagramReader(b));
  await writer.flushed();
  await a.closeWrite();
  assert.deepEqual(await reading, sent.map((datagram) => [...datagram]));
  a.close();
  b.close();
});

Deno.test("the pipelined sender keeps at most its limit of sends pending, copies each datagram and counts failures", async () => {
  const pending: Array<{ data: Uint8Array; settle: (ok: boolean) => void }> = [];
  const results: Array<[boolean, number]> = [];
  const sender = new PipelinedSender(
    (data) =>
      new Promise((resolve, reject) =>
        pending.push({ data, settle: (ok) => ok ? resolve(undefined) : reject(new Error("refused")) })
      ),
    (sent, bytes) => results.push([sent, bytes]),
    2,
  );
  const buffer = new Uint8Array([1, 1]);
  await sender.send(buffer);
  buffer.fill(2);
  await sender.send(buffer);
  buffer.fill(3);
  let third = false;
  const waiting = sender.send(buffer).then(() => third = true);
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal(third, false, "a third send waits while two are pending");
  assert.deepEqual(pending.map((entry) => [...entry.data]), [[1, 1], [2, 2]], "each send got its own copy");
  pending[0]?.settle(false);
  await waiting;
  assert.equal(pending.length, 3);
  pending[1]?.settle(true);
  pending[2]?.settle(true);
  await sender.drained();
  assert.deepEqual(results, [[false, 2], [true, 2], [true, 2]]);
});

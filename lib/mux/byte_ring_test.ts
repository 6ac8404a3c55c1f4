/**
 * Unit tests of the ring buffer that holds a stream's unread bytes (`_byte_ring.ts`).
 *
 * @module
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { ByteRing, emptyRingStoragePool, ringStorageCounts } from "./_byte_ring.ts";

Deno.test("byte ring returns bytes in order across wraps and growth", () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 40_000 })), { maxLength: 40 }),
      (operations) => {
        const ring = new ByteRing();
        let written = 0;
        let read = 0;
        for (const [isPush, size] of operations) {
          if (isPush) {
            const bytes = new Uint8Array(size);
            for (let i = 0; i < size; i++) bytes[i] = (written + i) & 0xff;
            ring.push(bytes);
            written += size;
          } else {
            const target = new Uint8Array(size);
            const count = ring.shiftInto(target);
            assert.equal(count, Math.min(size, written - read));
            for (let i = 0; i < count; i++) assert.equal(target[i], (read + i) & 0xff);
            read += count;
          }
          assert.equal(ring.length, written - read);
        }
      },
    ),
    { numRuns: 200 },
  );
});

Deno.test("byte ring clear drops data and storage", () => {
  const ring = new ByteRing();
  ring.push(new Uint8Array(100));
  ring.clear();
  assert.equal(ring.length, 0);
  assert.equal(ring.capacity, 0);
  assert.equal(ring.shiftInto(new Uint8Array(10)), 0);
});

Deno.test("byte ring gives small storage back once drained, and large storage when asked", () => {
  const ring = new ByteRing();
  ring.push(new Uint8Array(100));
  assert.ok(ring.capacity > 0 && ring.capacity < 16 * 1024, "a small push allocates a small ring");
  assert.equal(ring.shiftInto(new Uint8Array(60)), 60);
  assert.ok(ring.capacity > 0, "storage stays while bytes are held");
  assert.equal(ring.shiftInto(new Uint8Array(60)), 40);
  assert.equal(ring.capacity, 0, "a drained small ring holds no storage");
  ring.push(new Uint8Array(300_000));
  const view = ring.peek(300_000);
  assert.equal(ring.releaseStorageIfDrained(), false, "not while bytes are held (or lent)");
  assert.equal(ring.consume(view.length), 300_000);
  assert.ok(ring.capacity >= 300_000, "a drained large ring keeps its storage for the next burst");
  assert.equal(ring.releaseStorageIfDrained(), true);
  assert.equal(ring.capacity, 0, "an idle stream's ring gives it back when the session sweeps");
});

Deno.test("byte ring storage taken back from the pool never shows its old bytes", () => {
  const first = new ByteRing();
  first.push(new Uint8Array(4096).fill(0xaa));
  assert.equal(first.consume(4096), 4096); // storage goes back to the pool
  const second = new ByteRing();
  const target = second.reserve(1024, 4096);
  assert.ok(target !== null);
  target.set([1, 2, 3]);
  second.commit(3); // a read that returned only 3 bytes
  const out = new Uint8Array(4096);
  assert.equal(second.shiftInto(out), 3, "only what was read is held, whatever the storage held before");
  assert.deepEqual([...out.subarray(0, 3)], [1, 2, 3]);
});

Deno.test("byte ring keeps order when bytes come in by reservation and go out as lent views", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.tuple(fc.constantFrom("push", "reserve", "shift", "peek"), fc.integer({ min: 1, max: 40_000 })),
        { maxLength: 40 },
      ),
      (operations) => {
        const ring = new ByteRing();
        let written = 0;
        let read = 0;
        const fill = (target: Uint8Array, from: number) => {
          for (let i = 0; i < target.length; i++) target[i] = (from + i) & 0xff;
        };
        for (const [operation, size] of operations) {
          if (operation === "push") {
            const bytes = new Uint8Array(size);
            fill(bytes, written);
            ring.push(bytes);
            written += size;
          } else if (operation === "reserve") {
            const target = ring.reserve(Math.min(size, 16 * 1024), size);
            if (target === null) continue; // only when the free space wraps around the end
            assert.ok(target.length >= Math.min(size, 16 * 1024) && target.length <= size);
            const count = Math.ceil(target.length / 2); // a read that fills part of what it was offered
            fill(target.subarray(0, count), written);
            ring.commit(count);
            written += count;
          } else if (operation === "shift") {
            const target = new Uint8Array(size);
            const count = ring.shiftInto(target);
            assert.equal(count, Math.min(size, written - read));
            for (let i = 0; i < count; i++) assert.equal(target[i], (read + i) & 0xff);
            read += count;
          } else {
            const view = ring.peek(size);
            assert.ok(view.length <= size && view.length <= written - read);
            if (written > read) assert.ok(view.length > 0, "peek lends something while bytes are held");
            const copy = view.slice();
            // More bytes arriving (and the ring growing) must leave the lent view as it was.
            const extra = new Uint8Array(size);
            fill(extra, written);
            ring.push(extra);
            written += size;
            assert.deepEqual(view, copy);
            for (let i = 0; i < view.length; i++) assert.equal(view[i], (read + i) & 0xff);
            assert.equal(ring.consume(view.length), view.length);
            read += view.length;
          }
          assert.equal(ring.length, written - read);
        }
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("byte ring reservation survives a drain and adds nothing after clear()", () => {
  const ring = new ByteRing();
  ring.push(new Uint8Array([1, 2, 3]));
  const target = ring.reserve(100, 100);
  assert.ok(target !== null);
  // The reader drains the ring while the read into the reservation is in flight.
  assert.equal(ring.shiftInto(new Uint8Array(10)), 3);
  target.set([7, 8], 0);
  ring.commit(2);
  const out = new Uint8Array(10);
  assert.equal(ring.shiftInto(out), 2);
  assert.deepEqual([...out.subarray(0, 2)], [7, 8]);

  const again = ring.reserve(10, 10);
  assert.ok(again !== null);
  assert.throws(() => ring.push(new Uint8Array(1)), /reservation is open/);
  ring.clear();
  ring.commit(5);
  assert.equal(ring.length, 0, "bytes read into storage the ring dropped are not added");
  assert.equal(ring.capacity, 0);
});

/**
 * Pool bytes given back by `operation` on `ring`: the pool's change plus whatever the ring took from the
 * pool meanwhile (its new capacity, when nothing new was allocated).
 */
function givenBack(ring: ByteRing, operation: () => void): number {
  emptyRingStoragePool(); // room for what is given back, whatever earlier tests left in the pool
  const before = ringStorageCounts();
  const capacityBefore = ring.capacity;
  operation();
  const after = ringStorageCounts();
  const grew = ring.capacity !== capacityBefore && ring.capacity > 0;
  const takenFromPool = grew && after.allocatedBytes === before.allocatedBytes ? ring.capacity : 0;
  return after.pooledBytes - before.pooledBytes + takenFromPool;
}

Deno.test("byte ring storage left behind by growth goes to the pool unless a view lent from it is out", () => {
  const ring = new ByteRing();
  ring.push(new Uint8Array(1000));
  const small = ring.capacity;
  assert.equal(
    givenBack(ring, () => ring.push(new Uint8Array(3000))),
    small,
    "nothing lent: old storage pooled",
  );

  const lending = new ByteRing();
  lending.push(new Uint8Array(1000));
  const view = lending.peek(1000);
  assert.equal(givenBack(lending, () => lending.push(new Uint8Array(3000))), 0, "a lent view keeps it out");
  assert.equal(view.length, 1000);
  assert.equal(lending.consume(view.length), 1000);
});

Deno.test("byte ring of a finished stream gives large storage back once drained, and clear() gives it back", () => {
  const ring = new ByteRing();
  ring.push(new Uint8Array(200_000));
  const capacity = ring.capacity;
  ring.retire(); // bytes still held: nothing goes back yet
  assert.equal(ring.capacity, capacity);
  const view = ring.peek(200_000);
  assert.equal(givenBack(ring, () => ring.consume(view.length)), capacity, "drained after retire(): pooled");
  assert.equal(ring.capacity, 0);

  const cleared = new ByteRing();
  cleared.push(new Uint8Array(5000));
  const clearedCapacity = cleared.capacity;
  assert.equal(
    givenBack(cleared, () => cleared.clear()),
    clearedCapacity,
    "clear() with nothing lent: pooled",
  );

  const lentCleared = new ByteRing();
  lentCleared.push(new Uint8Array(5000));
  lentCleared.peek(5000);
  assert.equal(
    givenBack(lentCleared, () => lentCleared.clear()),
    0,
    "clear() while lent: left to its writer",
  );
});

import assert from "node:assert/strict";
import fc from "fast-check";
import { ByteRing } from "./_byte_ring.ts";

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

Deno.test("byte ring releases small storage once drained and keeps large storage", () => {
  const ring = new ByteRing();
  ring.push(new Uint8Array(100));
  assert.ok(ring.capacity > 0 && ring.capacity < 16 * 1024, "a small push allocates a small ring");
  assert.equal(ring.shiftInto(new Uint8Array(60)), 60);
  assert.ok(ring.capacity > 0, "storage stays while bytes are held");
  assert.equal(ring.shiftInto(new Uint8Array(60)), 40);
  assert.equal(ring.capacity, 0, "a drained small ring holds no storage");
  ring.push(new Uint8Array(300_000));
  assert.equal(ring.shiftInto(new Uint8Array(300_000)), 300_000);
  assert.ok(ring.capacity >= 300_000, "a drained large ring keeps its storage for the next burst");
});

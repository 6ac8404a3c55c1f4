import assert from "node:assert/strict";
import { limitConn, MIN_BURST_BYTES, TokenBucket } from "./bandwidth.ts";
import { memoryPair } from "../net/memory_pair.ts";
import { pipeBoth } from "./pipe.ts";

Deno.test("a token bucket lets a burst through, then makes each chunk wait for its bytes at the rate", () => {
  let now = 0;
  const bucket = new TokenBucket(1000, 500, () => now);
  assert.equal(bucket.take(500), 0);
  assert.equal(bucket.take(250), 250); // 250 bytes short at 1000 B/s
  now += 250;
  assert.equal(bucket.take(0), 0);
  now += 10_000; // idle: saves up to the burst, no more
  assert.equal(bucket.take(500), 0);
  assert.equal(bucket.take(1), 1);
});

Deno.test("a token bucket's default burst is a tenth of a second's worth, at least 16 KiB", () => {
  assert.equal(new TokenBucket(1024 * 1024).burstBytes, Math.floor(1024 * 1024 / 10));
  assert.equal(new TokenBucket(2048).burstBytes, MIN_BURST_BYTES);
  assert.throws(() => new TokenBucket(0), RangeError);
  assert.throws(() => new TokenBucket(Number.NaN), RangeError);
});

Deno.test("a limited connection carries 512 KiB at 1 MiB/s in about half a second, bytes intact", async () => {
  const [a, b] = memoryPair();
  const [c, d] = memoryPair();
  const limited = limitConn(b, new TokenBucket(1024 * 1024));
  const total = 512 * 1024;
  const payload = new Uint8Array(total).map((_, index) => index % 251);
  const startedMs = performance.now();
  const pipe = pipeBoth(limited, c);
  const sending = (async () => {
    for (let offset = 0; offset < total; offset += 16 * 1024) {
      await a.write(payload.subarray(offset, offset + 16 * 1024));
    }
    await a.closeWrite();
  })();
  const received: Uint8Array[] = [];
  const buffer = new Uint8Array(64 * 1024);
  let size = 0;
  for (;;) {
    const count = await d.read(buffer);
    if (count === null) break;
    received.push(buffer.slice(0, count));
    size += count;
  }
  const elapsedMs = performance.now() - startedMs;
  await sending;
  await d.closeWrite();
  await pipe;
  a.close();
  d.close();
  assert.equal(size, total);
  const joined = new Uint8Array(size);
  let offset = 0;
  for (const part of received) {
    joined.set(part, offset);
    offset += part.length;
  }
  assert.deepEqual(joined, payload);
  // (512 KiB - 100 KiB burst) at 1 MiB/s ≈ 400 ms; a loaded machine may add, never subtract.
  assert.ok(elapsedMs >= 330, `took ${elapsedMs.toFixed(0)} ms, faster than the limit allows`);
  assert.ok(elapsedMs < 5_000, `took ${elapsedMs.toFixed(0)} ms`);
});

Deno.test("closing a limited connection ends a wait in progress at once, leaving no timer", async () => {
  const [a, b] = memoryPair();
  const bucket = new TokenBucket(1024, 1024);
  const limited = limitConn(b, bucket);
  bucket.take(1024 * 100); // 100 s of debt
  const writing = limited.write(new Uint8Array(10));
  limited.close();
  await assert.rejects(writing);
  a.close();
});

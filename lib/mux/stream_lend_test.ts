/**
 * Tests of `Stream.readLent()` / `releaseLent()` (reading without a copy) and of giving idle receive
 * storage back.
 *
 * @module
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { INITIAL_STREAM_WINDOW_BYTES } from "./constants.ts";
import { MuxError, StreamResetError } from "./errors.ts";
import type { Stream } from "./stream.ts";
import { accepted, memorySessions, patternBytes, sha256Hex, tcpSessions, within } from "../../testing/mux.ts";

/** Reads `stream` to its end through readLent(), hashing each view before releasing it. */
async function drainLent(stream: Stream, slowEveryViews = 0): Promise<{ sha256: string; bytes: number }> {
  const parts: Uint8Array[] = [];
  let bytes = 0;
  let views = 0;
  while (true) {
    const view = await stream.readLent(256 * 1024);
    if (view === null) break;
    assert.ok(view.length > 0, "a lent view is never empty");
    parts.push(view.slice());
    bytes += view.length;
    // A reader that is sometimes slow lets data pile up in the ring (and be read straight into it).
    if (slowEveryViews > 0 && ++views % slowEveryViews === 0) await new Promise((r) => setTimeout(r, 2));
    stream.releaseLent();
  }
  const all = new Uint8Array(bytes);
  let offset = 0;
  for (const part of parts) {
    all.set(part, offset);
    offset += part.length;
  }
  return { sha256: await sha256Hex(all), bytes };
}

for (const [transport, makeSessions] of [["memory", memorySessions], ["tcp", tcpSessions]] as const) {
  Deno.test(`readLent carries 16 MiB intact over ${transport} whether the reader keeps up or lags`, async () => {
    const { client, server, close } = await makeSessions();
    try {
      for (const slowEveryViews of [0, 3]) {
        const data = patternBytes(16 * 1024 * 1024, slowEveryViews + 5);
        const opened = await client.open();
        const writing = (async () => {
          for (let offset = 0; offset < data.length; offset += 300_000) {
            await opened.write(data.subarray(offset, offset + 300_000));
          }
          await opened.closeWrite();
        })();
        const stream = await accepted(server);
        const [received] = await within(
          Promise.all([drainLent(stream, slowEveryViews), writing]),
          30_000,
          "16 MiB",
        );
        assert.equal(received.bytes, data.length);
        assert.equal(received.sha256, await sha256Hex(data));
        stream.close();
        opened.close();
      }
    } finally {
      await close();
    }
  });
}

Deno.test("a lent view stays valid until released, and the window is granted only then", async () => {
  const { client, server, close } = memorySessions();
  try {
    const opened = await client.open();
    await opened.write(patternBytes(1000, 1));
    const stream = await accepted(server);
    const view = await within(stream.readLent(1 << 20), 2000, "readLent()");
    assert.ok(view !== null);
    const copy = view.slice();
    // While the view is held, the sender can fill the rest of the window but not more.
    const more = patternBytes(INITIAL_STREAM_WINDOW_BYTES, 2);
    const blocked = opened.write(more);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.deepEqual(view, copy, "bytes arriving later leave the lent view unchanged");
    assert.equal(stream.bufferedBytes, INITIAL_STREAM_WINDOW_BYTES, "the sender stopped at the window");
    await assert.rejects(stream.read(new Uint8Array(10)), MuxError, "no read while a view is lent");
    await assert.rejects(stream.readLent(10), MuxError, "no second lend before release");
    stream.releaseLent();
    let received = view.length;
    while (received < 1000 + more.length) {
      const next = await within(stream.readLent(1 << 20), 2000, "readLent() after release");
      assert.ok(next !== null);
      received += next.length;
      stream.releaseLent();
    }
    await within(blocked, 2000, "the blocked write, once the window was granted back");
  } finally {
    await close();
  }
});

Deno.test("readLent resolves null after FIN and rejects after a reset", async () => {
  const { client, server, close } = memorySessions();
  try {
    const first = await client.open();
    await first.write(new Uint8Array([1, 2, 3]));
    await first.closeWrite();
    const stream = await accepted(server);
    const view = await stream.readLent(100);
    assert.deepEqual(view === null ? null : [...view], [1, 2, 3]);
    stream.releaseLent();
    assert.equal(await stream.readLent(100), null);

    const second = await client.open();
    await second.write(new Uint8Array([9]));
    const other = await accepted(server);
    assert.ok((await other.readLent(100)) !== null);
    other.releaseLent();
    const waiting = other.readLent(100);
    second.reset();
    await assert.rejects(within(waiting, 2000, "readLent() during a reset"), StreamResetError);
  } finally {
    await close();
  }
});

Deno.test("concurrent streams mixing read() and readLent() with random sizes and delays keep every byte (TCP)", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(
        fc.record({
          bytes: fc.integer({ min: 1, max: 1_500_000 }),
          lend: fc.boolean(),
          maxBytes: fc.integer({ min: 256, max: 300_000 }),
          // A reader that pauses after every this many 64 KiB (0: never) lets data pile up in the ring.
          pauseEvery64KiB: fc.integer({ min: 0, max: 6 }),
        }),
        { minLength: 1, maxLength: 6 },
      ),
      async (plans) => {
        const { client, server, close } = await tcpSessions();
        try {
          const payloads = plans.map((plan, index) => patternBytes(plan.bytes, index + 1));
          const opened = await Promise.all(plans.map(() => client.open()));
          const writing = Promise.all(opened.map(async (stream, index) => {
            const payload = payloads[index] as Uint8Array;
            for (let offset = 0; offset < payload.length; offset += 200_000) {
              await stream.write(payload.subarray(offset, offset + 200_000));
            }
            await stream.closeWrite();
          }));
          const accepted: Stream[] = [];
          for (let i = 0; i < plans.length; i++) {
            accepted.push(await within(server.accept(), 5000, "accept") as Stream);
          }
          const reading = Promise.all(accepted.map(async (stream) => {
            // Streams are accepted in the order they were opened, so index i is plan i.
            const plan = plans[accepted.indexOf(stream)] as (typeof plans)[number];
            const received = new Uint8Array(plan.bytes);
            let filled = 0;
            let nextPauseAt = plan.pauseEvery64KiB * 65_536;
            for (;;) {
              let count: number;
              if (plan.lend) {
                const view = await stream.readLent(plan.maxBytes);
                if (view === null) break;
                assert.ok(view.length > 0 && view.length <= plan.maxBytes);
                received.set(view, filled);
                count = view.length;
              } else {
                const buffer = new Uint8Array(plan.maxBytes);
                const read = await stream.read(buffer);
                if (read === null) break;
                received.set(buffer.subarray(0, read), filled);
                count = read;
              }
              if (plan.pauseEvery64KiB > 0 && filled + count >= nextPauseAt) {
                nextPauseAt += plan.pauseEvery64KiB * 65_536;
                await new Promise((resolve) => setTimeout(resolve, 1));
              }
              if (plan.lend) stream.releaseLent();
              filled += count;
            }
            return { filled, received };
          }));
          const [results] = await within(Promise.all([reading, writing]), 15_000, "all streams");
          for (const [index, { filled, received }] of results.entries()) {
            assert.equal(filled, plans[index]?.bytes);
            assert.equal(await sha256Hex(received), await sha256Hex(payloads[index] as Uint8Array));
          }
        } finally {
          await close();
        }
      },
    ),
    { numRuns: 20, endOnFailure: true },
  );
});

Deno.test("a stream that goes quiet after a burst gives its receive storage back at the next sweeps", async () => {
  const { client, server, close } = memorySessions({ idleBufferSweepMs: 20 }, { idleBufferSweepMs: 20 });
  try {
    const opened = await client.open();
    await opened.write(patternBytes(1000, 1));
    const stream = await accepted(server);
    // A lagging reader: 200 KiB pile up in the ring before it reads.
    await opened.write(patternBytes(200 * 1024, 2));
    await new Promise((resolve) => setTimeout(resolve, 10));
    let received = 0;
    while (received < 1000 + 200 * 1024) {
      const view = await within(stream.readLent(1 << 20), 2000, "readLent()");
      assert.ok(view !== null);
      received += view.length;
      stream.releaseLent();
    }
    assert.ok(stream.bufferedStorageBytes >= 200 * 1024, "a drained large ring is kept while data may flow");
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(stream.bufferedStorageBytes, 0, "given back once nothing arrived for a sweep");
  } finally {
    await close();
  }
});

/**
 * Unit tests of a stream's send side: window, pending write, zero-copy completion (`stream_sender.ts`).
 *
 * @module
 */

import assert from "node:assert/strict";
import { INITIAL_STREAM_WINDOW_BYTES } from "./constants.ts";
import { StreamSender } from "./stream_sender.ts";

Deno.test("a write is taken within the send window and resolves once all of it is taken", async () => {
  let writesDone = 0;
  const sender = new StreamSender(5, () => writesDone++);
  const data = new Uint8Array(INITIAL_STREAM_WINDOW_BYTES + 100).map((_, i) => i & 0xff);
  const written = sender.start(data);
  assert.ok(sender.busy);
  assert.equal(sender.sendableBytes(), INITIAL_STREAM_WINDOW_BYTES);
  assert.deepEqual(
    sender.takeSendBytes(INITIAL_STREAM_WINDOW_BYTES),
    data.subarray(0, INITIAL_STREAM_WINDOW_BYTES),
  );
  assert.equal(sender.sendableBytes(), 0, "the window is used up");
  assert.equal(sender.grant(1000), true, "a grant unblocks the waiting write");
  assert.equal(sender.sendableBytes(), 100);
  assert.deepEqual(sender.takeSendBytes(100), data.subarray(INITIAL_STREAM_WINDOW_BYTES));
  assert.equal(await written, data.length);
  assert.equal(writesDone, 1);
  assert.equal(sender.busy, false);
  assert.equal(sender.windowBytes, 900);
  assert.equal(sender.grant(10), false, "nothing was blocked");
});

Deno.test("a zero-copy write resolves only after its last piece is written", async () => {
  const sender = new StreamSender(1, () => {});
  let resolved = false;
  const written = sender.start(new Uint8Array(2000)).then((count) => (resolved = true, count));
  const first = sender.takeSendBytesZeroCopy(1000);
  const second = sender.takeSendBytesZeroCopy(1000);
  assert.equal(sender.sendableBytes(), 0);
  first.written();
  await Promise.resolve();
  assert.equal(resolved, false);
  second.written();
  assert.equal(await written, 2000);
});

Deno.test("fail() rejects the pending write, and late zero-copy completions change nothing", async () => {
  let writesDone = 0;
  const sender = new StreamSender(1, () => writesDone++);
  const written = sender.start(new Uint8Array(10));
  const piece = sender.takeSendBytesZeroCopy(10);
  sender.fail(new Error("reset"));
  await assert.rejects(written, /reset/);
  piece.written();
  assert.equal(writesDone, 0);
  assert.equal(sender.busy, false);
  assert.equal(sender.sendableBytes(), 0);
});

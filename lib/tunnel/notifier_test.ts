import assert from "node:assert/strict";
import { Notifier } from "./notifier.ts";

function recorder() {
  const sent: Array<{ method: string; params: Record<string, unknown> }> = [];
  return {
    sent,
    send: (
      method: string,
      params: Record<string, unknown>,
    ) => (sent.push({ method, params }), Promise.resolve()),
  };
}

Deno.test("notifier merges identical notifications within the window into one with a count", async () => {
  const { sent, send } = recorder();
  const notifier = new Notifier(send, { mergeWindowMs: 50 });
  for (let i = 0; i < 20; i++) {
    notifier.push("push_exception", { code: "PROXY_BIND_RETRY", data: { retry_count: i } }, "retry:web");
  }
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal(sent.length, 1);
  await new Promise((resolve) => setTimeout(resolve, 80));
  assert.equal(sent.length, 2);
  const mergedData = sent[1]?.params.data as Record<string, unknown>;
  assert.equal(mergedData.repeat_count, 19);
  assert.equal(mergedData.retry_count, 19, "the merged notification carries the latest data");
  assert.equal(notifier.merged, 18);
  notifier.close();
});

Deno.test("notifier never blocks the caller and drops beyond its bound", async () => {
  let release: () => void = () => {};
  const gate = new Promise<void>((resolve) => (release = resolve));
  let sends = 0;
  const notifier = new Notifier(async () => {
    sends++;
    await gate;
  }, { maxQueued: 4 });
  const started = performance.now();
  for (let i = 0; i < 100; i++) notifier.push("proxy_status", { n: i });
  assert.ok(performance.now() - started < 50);
  assert.equal(notifier.dropped, 100 - 1 - 4, "one in flight, four queued, the rest dropped");
  release();
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal(sends, 5);
  notifier.close();
});

Deno.test("notifier keeps unrelated notifications apart", async () => {
  const { sent, send } = recorder();
  const notifier = new Notifier(send, { mergeWindowMs: 1000 });
  notifier.push("push_exception", { code: "A" }, "a");
  notifier.push("push_exception", { code: "B" }, "b");
  notifier.push("proxy_status", { code: "C" });
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.deepEqual(sent.map((entry) => entry.params.code), ["A", "B", "C"]);
  notifier.close();
});

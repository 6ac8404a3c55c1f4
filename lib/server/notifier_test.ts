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
    notifier.push("push_exception", { code: "PROXY_BIND_RETRY", data: { retry_count: i } }, {
      mergeKey: "retry:web",
    });
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
  notifier.push("push_exception", { code: "A" }, { mergeKey: "a" });
  notifier.push("push_exception", { code: "B" }, { mergeKey: "b" });
  notifier.push("proxy_status", { code: "C" });
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.deepEqual(sent.map((entry) => entry.params.code), ["A", "B", "C"]);
  notifier.close();
});

Deno.test("notifier sends what is held for a proxy before its new state, so the last one received is current", async () => {
  const { sent, send } = recorder();
  const notifier = new Notifier(send, { mergeWindowMs: 5000 });
  const retry = (n: number) =>
    notifier.push("push_exception", { code: "RETRY", data: { retry_count: n } }, {
      mergeKey: "RETRY:web",
      scope: "web",
      state: "retrying",
    });
  const status = (value: string) =>
    notifier.push("proxy_status", { status: value }, {
      mergeKey: "status:web",
      scope: "web",
      state: value,
      count: false,
    });
  retry(1);
  status("unhealthy");
  retry(2);
  status("unhealthy");
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal(sent.length, 2, "the repeats are held");
  notifier.push("push_exception", { code: "RECOVERED", data: {} }, {
    mergeKey: "RECOVERED:web",
    scope: "web",
    state: "listening",
  });
  status("healthy");
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.deepEqual(
    sent.map((entry) => `${entry.params.code ?? entry.params.status}`),
    ["RETRY", "unhealthy", "RETRY", "unhealthy", "RECOVERED", "healthy"],
  );
  assert.equal((sent[2]?.params.data as Record<string, unknown>).repeat_count, 1);
  assert.equal(sent[3]?.params.repeat_count, undefined, "a coalesced proxy_status has no count");
  assert.equal(sent[3]?.params.data, undefined);
  notifier.close();
});

Deno.test("notifier never delays a proxy's change of state behind its merge window", async () => {
  const { sent, send } = recorder();
  const notifier = new Notifier(send, { mergeWindowMs: 5000 });
  for (const value of ["healthy", "unhealthy", "healthy", "unhealthy", "healthy"]) {
    notifier.push("proxy_status", { status: value }, {
      mergeKey: "status:web",
      scope: "web",
      state: value,
      count: false,
    });
  }
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.deepEqual(sent.map((entry) => entry.params.status), [
    "healthy",
    "unhealthy",
    "healthy",
    "unhealthy",
    "healthy",
  ]);
  notifier.close();
});

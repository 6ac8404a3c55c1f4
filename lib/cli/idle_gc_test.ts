import assert from "node:assert/strict";
import { ActivityWatcher, collectWhenIdle, loadAllocatorTrim, loadFullCollection } from "./_idle_gc.ts";

Deno.test("activity is reported stopped once per stretch of traffic, never while the counter moves", () => {
  let counter = 5;
  const watcher = new ActivityWatcher(() => counter);
  assert.equal(watcher.stoppedSinceLastLook(), false, "idle from the start: nothing to collect again");
  assert.equal(watcher.stoppedSinceLastLook(), false);
  counter++;
  assert.equal(watcher.stoppedSinceLastLook(), false, "traffic");
  counter += 10;
  assert.equal(watcher.stoppedSinceLastLook(), false, "still traffic");
  assert.equal(watcher.stoppedSinceLastLook(), true, "traffic stopped");
  assert.equal(watcher.stoppedSinceLastLook(), false, "an idle process is not collected again and again");
  counter++;
  assert.equal(watcher.stoppedSinceLastLook(), false);
  assert.equal(watcher.stoppedSinceLastLook(), true, "the next stretch of traffic ends");
});

Deno.test("the start-up collection waits for start-up to be over, and nothing runs after the signal", async () => {
  const controller = new AbortController();
  let collections = 0;
  let ready: () => void = () => {};
  collectWhenIdle({
    activity: () => 0,
    signal: controller.signal,
    collect: () => collections++,
    ready: new Promise<void>((resolve) => (ready = resolve)),
  });
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(collections, 0, "nothing before start-up is over");
  ready();
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.equal(collections, 1, "one collection once start-up is over");
  controller.abort(); // also clears the check timer, or the test's sanitizer would fail
});

Deno.test("the runtime's full collection is available and returns memory", async () => {
  const collect = await loadFullCollection();
  assert.ok(collect !== null, "node:v8 and node:vm should give a full collection in Deno");
  let garbage: Uint8Array[] | null = Array.from({ length: 64 }, () => new Uint8Array(256 * 1024).fill(1));
  const held = Deno.memoryUsage().external;
  garbage = null;
  collect();
  const after = Deno.memoryUsage().external;
  assert.equal(garbage, null);
  assert.ok(held - after >= 8 * 1024 * 1024, `external memory ${held} → ${after} bytes after a collection`);
});

Deno.test("the allocator trim is offered only where it can run, and runs", async () => {
  const trim = loadAllocatorTrim();
  const ffiGranted = Deno.permissions.querySync({ name: "ffi" }).state === "granted";
  if (Deno.build.os !== "linux" || !ffiGranted) {
    assert.equal(trim, null, "no trim without Linux and --allow-ffi");
    return;
  }
  assert.equal(typeof trim, "function");
  await trim?.(); // returns the allocator's free pages, off the event loop; must not throw
});

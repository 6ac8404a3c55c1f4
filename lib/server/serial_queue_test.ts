import assert from "node:assert/strict";
import { SerialQueue, SerialQueueFullError } from "./serial_queue.ts";

Deno.test("tasks of a serial queue never overlap and run in the order handed in", async () => {
  const queue = new SerialQueue(10);
  const log: string[] = [];
  let running = 0;
  const task = (label: string, delayMs: number) => async () => {
    running++;
    assert.equal(running, 1, "one task at a time");
    log.push(`start ${label}`);
    await new Promise((resolve) => setTimeout(resolve, delayMs));
    log.push(`end ${label}`);
    running--;
    return label;
  };
  const results = await Promise.all([
    queue.run(task("a", 20)),
    queue.run(task("b", 0)),
    queue.run(task("c", 5)),
  ]);
  assert.deepEqual(results, ["a", "b", "c"]);
  assert.deepEqual(log, ["start a", "end a", "start b", "end b", "start c", "end c"]);
  assert.equal(queue.pending, 0);
});

Deno.test("a failing task rejects its own call and the next task still runs", async () => {
  const queue = new SerialQueue(2);
  const failing = queue.run(() => Promise.reject(new Error("boom")));
  const next = queue.run(() => Promise.resolve(7));
  await assert.rejects(failing, /boom/);
  assert.equal(await next, 7);
  assert.equal(queue.pending, 0);
});

Deno.test("a full serial queue refuses at once without running the task, and takes more once drained", async () => {
  const queue = new SerialQueue(2);
  const gate = Promise.withResolvers<void>();
  let ran = 0;
  const first = queue.run(async () => {
    ran++;
    await gate.promise;
  });
  const second = queue.run(() => Promise.resolve(ran++));
  assert.throws(() => queue.run(() => Promise.resolve(ran++)), SerialQueueFullError);
  assert.equal(queue.pending, 2);
  gate.resolve();
  await Promise.all([first, second]);
  assert.equal(ran, 2, "the refused task never ran");
  assert.equal(await queue.run(() => Promise.resolve("again")), "again");
});

Deno.test("a serial queue's limit must be a positive integer", () => {
  assert.throws(() => new SerialQueue(0), RangeError);
  assert.throws(() => new SerialQueue(1.5), RangeError);
});

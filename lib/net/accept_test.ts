import assert from "node:assert/strict";
import { acceptEach } from "./accept.ts";

/** A listener whose accept() follows a script: an error, a connection, or the end (BadResource). */
function scriptedListener(script: Array<"fail" | "conn">) {
  const callsAtMs: number[] = [];
  let index = 0;
  return {
    callsAtMs,
    accept(): Promise<{ close(): void }> {
      callsAtMs.push(performance.now());
      const step = script[index++];
      if (step === "fail") return Promise.reject(new Error("Too many open files (os error 24)"));
      if (step === "conn") return Promise.resolve({ close() {} });
      return Promise.reject(new Deno.errors.BadResource("listener closed"));
    },
  };
}

Deno.test("acceptEach backs off exponentially while accept keeps failing and starts over after a success", async () => {
  const listener = scriptedListener(["fail", "fail", "fail", "fail", "conn", "fail", "fail"]);
  const errors: unknown[] = [];
  let accepted = 0;
  await acceptEach(listener, () => accepted++, { pauseMs: 20, onError: (error) => errors.push(error) });
  assert.equal(accepted, 1);
  assert.equal(errors.length, 6);
  const gaps = listener.callsAtMs.slice(1).map((at, index) => at - (listener.callsAtMs[index] ?? at));
  // Pauses after failures 1-4: 20, 40, 80, 160 ms; after the success the next failure pauses 20 ms again.
  const [first = 0, second = 0, third = 0, fourth = 0] = gaps;
  assert.ok(first >= 18 && second >= 38 && third >= 78 && fourth >= 158, `gaps ${gaps.map(Math.round)}`);
  assert.ok(second > first && third > second && fourth > third, `gaps grow: ${gaps.map(Math.round)}`);
  const afterSuccess = gaps[6] ?? 0;
  assert.ok(
    afterSuccess >= 18 && afterSuccess < 80,
    `pause after a success starts over: ${Math.round(afterSuccess)}`,
  );
});

Deno.test("acceptEach never pauses longer than 1 s between attempts", async () => {
  const listener = scriptedListener(Array.from({ length: 4 }, () => "fail" as const));
  await acceptEach(listener, () => {}, { pauseMs: 300 });
  const gaps = listener.callsAtMs.slice(1).map((at, index) => at - (listener.callsAtMs[index] ?? at));
  assert.ok(Math.max(...gaps) < 1200, `longest pause ${Math.round(Math.max(...gaps))} ms`);
  assert.ok((gaps[2] ?? 0) >= 990, `pauses reach the 1 s cap: ${gaps.map(Math.round)}`);
});

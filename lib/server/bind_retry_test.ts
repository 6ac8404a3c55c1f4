import assert from "node:assert/strict";
import { bindRetryDelaySecs, bindWithRetry, narrowPolicy } from "./bind_retry.ts";
import { BindError } from "../net/tcp.ts";

const policy = { maxRetries: 10, initialDelaySecs: 2, maxDelaySecs: 60 };

Deno.test("bind retry delays double from the initial delay and cap at the maximum", () => {
  const delays = Array.from({ length: 10 }, (_, index) => bindRetryDelaySecs(index + 1, policy));
  assert.deepEqual(delays, [2, 4, 8, 16, 32, 60, 60, 60, 60, 60]);
  // The seed document's worst case: 2+4+8+16+32+60×5 = 362 s of waiting before giving up.
  assert.equal(delays.reduce((sum, delay) => sum + delay, 0), 362);
});

Deno.test("a client may narrow the bind retry policy but never widen it", () => {
  assert.deepEqual(narrowPolicy(policy, { maxRetries: 3, maxDelaySecs: 120 }), {
    maxRetries: 3,
    initialDelaySecs: 2,
    maxDelaySecs: 60,
  });
  assert.deepEqual(narrowPolicy(policy), policy);
});

Deno.test("bindWithRetry retries address-in-use and reports each attempt", async () => {
  let attempts = 0;
  const reported: number[] = [];
  const result = await bindWithRetry({
    bind: () => {
      if (++attempts < 3) throw new BindError("address_in_use", "0.0.0.0", 8002, "Port 8002 in use");
      return "listener";
    },
    policy: { maxRetries: 5, initialDelaySecs: 0.001, maxDelaySecs: 0.002 },
    onRetry: (attempt) => reported.push(attempt.retryCount),
  });
  assert.deepEqual(result, { bound: "listener", retries: 2 });
  assert.deepEqual(reported, [1, 2]);
});

Deno.test("bindWithRetry fails at once on a permanent error", async () => {
  let attempts = 0;
  await assert.rejects(
    bindWithRetry({
      bind: () => {
        attempts++;
        throw new BindError("address_not_available", "10.9.9.9", 8000, "not an address of this host");
      },
      policy,
    }),
    (error: unknown) => error instanceof BindError && error.kind === "address_not_available",
  );
  assert.equal(attempts, 1);
});

Deno.test("bindWithRetry gives up after maxRetries with the last error", async () => {
  let attempts = 0;
  await assert.rejects(
    bindWithRetry({
      bind: () => {
        attempts++;
        throw new BindError("address_in_use", "0.0.0.0", 8002, "in use");
      },
      policy: { maxRetries: 2, initialDelaySecs: 0.001, maxDelaySecs: 0.001 },
    }),
    BindError,
  );
  assert.equal(attempts, 3);
});

Deno.test("bindWithRetry stops waiting when aborted", async () => {
  const controller = new AbortController();
  const pending = bindWithRetry({
    bind: () => {
      throw new BindError("address_in_use", "0.0.0.0", 8002, "in use");
    },
    policy: { maxRetries: 5, initialDelaySecs: 30, maxDelaySecs: 30 },
    signal: controller.signal,
    onRetry: () => controller.abort(new Error("client disconnected")),
  });
  await assert.rejects(pending, /client disconnected/);
});

Deno.test("bindWithRetry continues from a first attempt the caller already made", async () => {
  let attempts = 0;
  const reported: number[] = [];
  const result = await bindWithRetry({
    bind: () => (attempts++, "listener"),
    policy: { maxRetries: 3, initialDelaySecs: 0.001, maxDelaySecs: 0.001 },
    firstAttemptError: new BindError("address_in_use", "0.0.0.0", 8002, "in use"),
    onRetry: (attempt) => reported.push(attempt.retryCount),
  });
  assert.deepEqual(result, { bound: "listener", retries: 1 });
  assert.equal(attempts, 1);
  assert.deepEqual(reported, [1]);
});

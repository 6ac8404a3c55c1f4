import assert from "node:assert/strict";
import { Backoff } from "./backoff.ts";

const config = { initialDelaySecs: 5, maxDelaySecs: 60, multiplier: 2, jitter: 0, maxAttempts: 0 };

Deno.test("backoff retries quickly first, then doubles from the initial delay up to the cap", () => {
  const backoff = new Backoff(config, () => 1);
  const delays = Array.from({ length: 7 }, () => backoff.nextDelayMs());
  assert.deepEqual(delays, [500, 1000, 5000, 10000, 20000, 40000, 60000]);
});

Deno.test("backoff spreads delays by the jitter and starts over after reset", () => {
  const low = new Backoff({ ...config, jitter: 0.2 }, () => 0);
  const high = new Backoff({ ...config, jitter: 0.2 }, () => 0.999999);
  low.nextDelayMs();
  high.nextDelayMs();
  assert.equal(low.nextDelayMs(), 800, "the one-second retry is spread too");
  high.nextDelayMs();
  assert.equal(low.nextDelayMs(), 4000);
  assert.ok(Math.abs(high.nextDelayMs() - 6000) <= 1);
  low.reset();
  assert.equal(low.failures, 0);
  assert.equal(low.nextDelayMs(), 0, "quick first retry after a healthy session");
});

Deno.test("backoff reports exhaustion only when max_attempts is set", () => {
  const limited = new Backoff({ ...config, maxAttempts: 2 });
  limited.nextDelayMs();
  assert.equal(limited.exhausted, false);
  limited.nextDelayMs();
  assert.equal(limited.exhausted, true);
  const forever = new Backoff(config);
  for (let i = 0; i < 100; i++) forever.nextDelayMs();
  assert.equal(forever.exhausted, false);
});

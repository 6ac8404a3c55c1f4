import assert from "node:assert/strict";
import { KeyedRateLimiter, TokenBucket } from "./rate_limit.ts";

Deno.test("a token bucket allows burst_size at once, then requests_per_second", () => {
  const bucket = new TokenBucket({ requestsPerSecond: 10, burstSize: 3 }, 0);
  assert.deepEqual([bucket.take(0), bucket.take(0), bucket.take(0), bucket.take(0)], [
    true,
    true,
    true,
    false,
  ]);
  assert.equal(bucket.take(50), false, "half a token after 50 ms");
  assert.equal(bucket.take(100), true, "one token after 100 ms");
  assert.equal(bucket.take(100), false);
  assert.equal(bucket.tokens(10_000), 3, "never more than burst_size");
  assert.ok(bucket.full(10_000));
});

Deno.test("a clock that goes backwards never adds tokens", () => {
  const bucket = new TokenBucket({ requestsPerSecond: 1, burstSize: 1 }, 1000);
  assert.equal(bucket.take(1000), true);
  assert.equal(bucket.take(500), false);
  assert.equal(bucket.take(1500), false);
  assert.equal(bucket.take(2000), true);
});

Deno.test("each key has its own bucket: one flooding source does not refuse another", () => {
  let now = 0;
  const limiter = new KeyedRateLimiter({ requestsPerSecond: 1, burstSize: 2 }, "tests", { nowMs: () => now });
  const flood = Array.from({ length: 50 }, () => limiter.allow("198.51.100.7"));
  assert.equal(flood.filter(Boolean).length, 2);
  assert.equal(limiter.refusedTotal, 48);
  assert.equal(limiter.refusedFor("198.51.100.7"), 48);
  assert.equal(limiter.allow("203.0.113.9"), true);
  now = 1000;
  assert.equal(limiter.allow("198.51.100.7"), true, "refilled after a second");
});

Deno.test("the number of keys stays bounded: full buckets are forgotten first, then the oldest", () => {
  let now = 0;
  const limiter = new KeyedRateLimiter({ requestsPerSecond: 1, burstSize: 1 }, "tests", {
    nowMs: () => now,
    maxKeys: 100,
  });
  for (let index = 0; index < 1000; index++) limiter.allow(`10.0.${index >> 8}.${index & 0xff}`);
  assert.ok(limiter.size <= 100, `${limiter.size} keys`);
  assert.equal(limiter.allow("fresh"), true);
  assert.equal(limiter.allow("fresh"), false);
  now = 5000;
  for (let index = 0; index < 150; index++) limiter.allow(`k${index}`);
  assert.ok(limiter.size <= 100);
});

Deno.test("refusals are logged once per interval, the rest summed into the next line", async () => {
  const { configure, reset } = await import("@logtape/logtape");
  const lines: string[] = [];
  await configure({
    sinks: { memory: (record) => lines.push(record.message.map(String).join("")) },
    loggers: [
      { category: ["tls-tunnel"], sinks: ["memory"], lowestLevel: "debug" },
      { category: ["logtape", "meta"], sinks: [], lowestLevel: "error" },
    ],
  });
  try {
    let now = 0;
    const limiter = new KeyedRateLimiter({ requestsPerSecond: 1, burstSize: 1 }, "new tunnel connections", {
      nowMs: () => now,
      logIntervalMs: 10_000,
    });
    for (let index = 0; index < 101; index++) limiter.allow("192.0.2.1");
    assert.equal(lines.length, 1, lines.join("\n"));
    assert.match(lines[0] ?? "", /^Rate limit: refused 1 new tunnel connections from 192\.0\.2\.1 /);
    now = 10_000;
    limiter.allow("192.0.2.1");
    limiter.allow("192.0.2.1");
    assert.equal(lines.length, 2);
    assert.match(lines[1] ?? "", /^Rate limit: refused 100 new tunnel connections from 192\.0\.2\.1 /);
  } finally {
    await reset();
  }
});

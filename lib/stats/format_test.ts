import assert from "node:assert/strict";
import { formatBytes, formatClock, formatDuration, formatRate, formatRtt, statusLabel } from "./format.ts";

Deno.test("bytes and rates read as B, KiB, MiB… with three significant digits", () => {
  assert.equal(formatBytes(0), "0 B");
  assert.equal(formatBytes(1023.4), "1023 B");
  assert.equal(formatBytes(1024), "1.00 KiB");
  assert.equal(formatBytes(50 * 1024), "50.0 KiB");
  assert.equal(formatBytes(500 * 1024), "500 KiB");
  assert.equal(formatBytes(2 * 1024 ** 5), "2048 TiB");
  assert.equal(formatRate(null), "–");
  assert.equal(formatRate(0.49), "0 B/s");
  assert.equal(formatRate(0.5), "1 B/s");
  assert.equal(formatRate(2 * 1024 * 1024), "2.00 MiB/s");
});

Deno.test("durations: top's compact style and the dashboard's spaced one", () => {
  assert.equal(formatDuration(-5_000), "0s");
  assert.equal(formatDuration(65_000), "1m05s");
  assert.equal(formatDuration(65_000, "spaced"), "1m 05s");
  assert.equal(formatDuration(3_723_000, "spaced"), "1h 02m");
  assert.equal(formatDuration(90_061_000, "spaced"), "1d 1h");
  assert.equal(formatDuration(90_061_000), "1d01h");
});

Deno.test("round trips, clock times and statuses for people", () => {
  assert.equal(formatRtt(null), "–");
  assert.equal(formatRtt(undefined), "–");
  assert.equal(formatRtt(1.5), "1.50 ms");
  assert.equal(formatRtt(12.6), "13 ms");
  const local = new Date(2024, 0, 2, 3, 4, 5).getTime();
  assert.equal(formatClock(local), "03:04:05");
  assert.equal(statusLabel("bind_failed"), "bind failed");
  assert.equal(statusLabel("healthy"), "healthy");
});

import assert from "node:assert/strict";
import { sessionKeepalive } from "./keepalive.ts";
import { parseConfigText } from "./load.ts";

const KEY = "0123456789abcdef-key";

Deno.test("keepalive seconds become whole milliseconds, even where floating point is off by a hair", () => {
  assert.deepEqual(sessionKeepalive({ keepaliveIntervalSecs: 10, keepaliveTimeoutSecs: 30 }), {
    keepaliveIntervalMs: 10_000,
    keepaliveTimeoutMs: 30_000,
  });
  // 1.001 * 1000 is 1000.9999999999999, which a yamux session refuses (it wants an integer).
  assert.deepEqual(sessionKeepalive({ keepaliveIntervalSecs: 1.001, keepaliveTimeoutSecs: 45.5 }), {
    keepaliveIntervalMs: 1001,
    keepaliveTimeoutMs: 45_500,
  });
  // Below half a millisecond still pings (0 would turn keepalive off).
  assert.equal(
    sessionKeepalive({ keepaliveIntervalSecs: 0.0001, keepaliveTimeoutSecs: 1 }).keepaliveIntervalMs,
    1,
  );
});

Deno.test("every keepalive a config accepts converts to a valid yamux option", () => {
  for (let thousandths = 1; thousandths <= 5000; thousandths++) {
    const secs = thousandths / 1000;
    const parsed = parseConfigText(
      `[server]\nauth_key = "${KEY}"\nkeepalive_interval_secs = ${secs}\nkeepalive_timeout_secs = ${
        secs * 3
      }\n`,
      { env: {} },
    );
    assert.equal(parsed.kind, "server");
    if (parsed.kind !== "server") return;
    const { keepaliveIntervalMs, keepaliveTimeoutMs } = sessionKeepalive(parsed.config);
    assert.ok(Number.isInteger(keepaliveIntervalMs) && keepaliveIntervalMs === thousandths, `${secs}`);
    assert.ok(Number.isInteger(keepaliveTimeoutMs) && keepaliveTimeoutMs > keepaliveIntervalMs, `${secs}`);
  }
});

import assert from "node:assert/strict";
import { FailureThrottle, findGrant, secretsEqual } from "./auth.ts";
import type { ServerConfig } from "../config/types.ts";

Deno.test("secretsEqual matches only identical secrets, whatever their lengths", async () => {
  assert.equal(await secretsEqual("0123456789abcdef", "0123456789abcdef"), true);
  assert.equal(await secretsEqual("0123456789abcdeX", "0123456789abcdef"), false);
  assert.equal(await secretsEqual("short", "0123456789abcdef"), false);
  assert.equal(await secretsEqual("", ""), true);
});

Deno.test("findGrant maps a named client's key to its ports and the shared key to the server's", async () => {
  const config = {
    authKey: "shared-key-0123456789",
    allowPorts: [{ start: 1024, end: 65535 }],
    maxProxiesPerClient: 64,
    clients: [{
      name: "office",
      authKey: "office-key-0123456789",
      allowPorts: [{ start: 20000, end: 20010 }],
      maxProxies: 3,
    }],
  } as unknown as ServerConfig;
  assert.deepEqual(await findGrant(config, "office-key-0123456789"), {
    entryName: "office",
    allowPorts: [{ start: 20000, end: 20010 }],
    maxProxies: 3,
  });
  assert.deepEqual(await findGrant(config, "shared-key-0123456789"), {
    entryName: null,
    allowPorts: [{ start: 1024, end: 65535 }],
    maxProxies: 64,
  });
  assert.equal(await findGrant(config, "nobody-0123456789abc"), null);
});

Deno.test("failure throttle blocks an address after too many failures, for the window only", () => {
  let now = 0;
  const throttle = new FailureThrottle({ maxFailures: 3, windowMs: 1000, now: () => now });
  for (let i = 0; i < 3; i++) {
    assert.equal(throttle.retryAfterMs("1.2.3.4"), 0);
    throttle.recordFailure("1.2.3.4");
    now += 100;
  }
  assert.equal(throttle.retryAfterMs("1.2.3.4"), 700, "blocked until the first failure leaves the window");
  assert.equal(throttle.retryAfterMs("5.6.7.8"), 0, "other addresses are not affected");
  now += 700;
  assert.equal(throttle.retryAfterMs("1.2.3.4"), 0);
  throttle.recordFailure("1.2.3.4");
  throttle.recordSuccess("1.2.3.4");
  assert.equal(throttle.retryAfterMs("1.2.3.4"), 0);
});

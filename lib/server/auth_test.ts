import assert from "node:assert/strict";
import { type ChargedAttempt, FailureThrottle, findGrant } from "./auth.ts";
import type { ServerConfig } from "../config/types.ts";

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

/** Charges an attempt that the throttle must allow. */
async function allowed(throttle: FailureThrottle, address: string): Promise<ChargedAttempt> {
  const charge = await throttle.charge(address);
  assert.ok(typeof charge !== "number", `expected ${address} to be allowed, but it must wait ${charge} ms`);
  return charge;
}

Deno.test("failure throttle blocks an address after too many failures, for the window only", async () => {
  let now = 0;
  const throttle = new FailureThrottle({ maxFailures: 3, windowMs: 1000, now: () => now });
  for (let i = 0; i < 3; i++) {
    assert.equal(throttle.retryAfterMs("1.2.3.4"), 0);
    (await allowed(throttle, "1.2.3.4")).fail();
    now += 100;
  }
  assert.equal(throttle.retryAfterMs("1.2.3.4"), 700, "blocked until the first failure leaves the window");
  assert.equal(await throttle.charge("1.2.3.4"), 700, "a charge is refused with the same wait");
  assert.equal(throttle.retryAfterMs("5.6.7.8"), 0, "other addresses are not affected");
  now += 700;
  assert.equal(throttle.retryAfterMs("1.2.3.4"), 0);
  (await allowed(throttle, "1.2.3.4")).refund();
  assert.equal(throttle.retryAfterMs("1.2.3.4"), 0, "a success costs nothing");
});

Deno.test("failure throttle: concurrent attempts never get more keys checked than the failures left", async () => {
  const throttle = new FailureThrottle({ maxFailures: 3, windowMs: 60_000 });
  const charges = Array.from({ length: 20 }, () => throttle.charge("1.2.3.4"));
  // Three are charged at once; the others wait for those to settle.
  const first = await Promise.all(charges.slice(0, 3));
  let settledLater = 0;
  for (const charge of charges.slice(3)) charge.then(() => settledLater++);
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal(settledLater, 0, "the rest wait while three attempts are in flight");
  for (const charge of first) (charge as ChargedAttempt).fail();
  const rest = await Promise.all(charges.slice(3));
  assert.ok(rest.every((charge) => typeof charge === "number" && charge > 59_000), "then all are refused");
});

Deno.test("failure throttle: successes are refunded, so frequent reconnects never lock an address out", async () => {
  const throttle = new FailureThrottle({ maxFailures: 3, windowMs: 60_000 });
  (await allowed(throttle, "1.2.3.4")).fail();
  (await allowed(throttle, "1.2.3.4")).fail();
  for (let i = 0; i < 50; i++) (await allowed(throttle, "1.2.3.4")).refund();
  // Concurrent successes wait for each other instead of being refused.
  const burst = await Promise.all(Array.from({ length: 20 }, async () => {
    const charge = await allowed(throttle, "1.2.3.4");
    await new Promise((resolve) => setTimeout(resolve, 1));
    charge.refund();
    return true;
  }));
  assert.equal(burst.length, 20);
  assert.equal(throttle.retryAfterMs("1.2.3.4"), 0, "the two failures alone do not block");
});

Deno.test("failure throttle: a waiting attempt gives up when its signal aborts", async () => {
  const throttle = new FailureThrottle({ maxFailures: 1, windowMs: 60_000 });
  const held = await allowed(throttle, "1.2.3.4");
  const abort = new AbortController();
  const waiting = throttle.charge("1.2.3.4", abort.signal);
  abort.abort(new Error("session closed"));
  await assert.rejects(waiting, /session closed/);
  held.refund();
  (await allowed(throttle, "1.2.3.4")).refund();
});

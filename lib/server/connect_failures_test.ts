import assert from "node:assert/strict";
import { ProxyConnectResultParams } from "../protocol/control.ts";
import { ConnectFailures } from "./connect_failures.ts";

Deno.test("connect failures count one per stream opened, in a row, until a success", () => {
  const failures = new ConnectFailures();
  assert.equal(failures.take(1, false), "ignored", "no stream opened yet");
  failures.streamOpened(1);
  failures.streamOpened(2);
  assert.equal(failures.take(3, false), "ignored", "conn 3 was never issued");
  assert.equal(failures.take(1, false), "failure");
  assert.equal(failures.take(2, false), "failure");
  assert.equal(failures.take(2, false), "ignored", "more failures than streams opened");
  assert.equal(failures.consecutive, 2);
  assert.equal(failures.ignoredReports, 3);
  failures.streamOpened(3);
  assert.equal(failures.take(3, true), "recovered");
  assert.equal(failures.consecutive, 0);
  assert.equal(failures.take(3, true), "ignored", "a success after a success changes nothing");
});

Deno.test("a proxy_connect_result is bounded and its error made safe to print", () => {
  const base = { proxy_name: "web", conn_id: 1, ok: false, consecutive_failures: 1 };
  const parsed = ProxyConnectResultParams.parse({ ...base, error: "refused\x1b[2J" });
  assert.equal(parsed.error, "refused\\u001b[2J");
  assert.equal(ProxyConnectResultParams.safeParse({ ...base, error: "e".repeat(513) }).success, false);
  assert.equal(ProxyConnectResultParams.safeParse({ ...base, proxy_name: "web\x1b" }).success, false);
  assert.equal(ProxyConnectResultParams.safeParse({ ...base, conn_id: 0 }).success, false);
  assert.equal(ProxyConnectResultParams.safeParse({ ...base, conn_id: 1.5 }).success, false);
});

import assert from "node:assert/strict";
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

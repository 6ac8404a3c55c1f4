/**
 * Unit tests of a stream's receive window: credit, when updates are due, auto-tuning
 * (`receive_window.ts`).
 *
 * @module
 */

import assert from "node:assert/strict";
import { ReceiveWindow } from "./receive_window.ts";

const KIB = 1024;

Deno.test("the peer may send up to the window, and no byte more", () => {
  const window = new ReceiveWindow(256 * KIB);
  assert.equal(window.take(200 * KIB), true);
  assert.equal(window.take(57 * KIB), false);
  assert.equal(window.creditBytes, 56 * KIB, "a refused frame counts nothing");
  assert.equal(window.take(56 * KIB), true);
  assert.equal(window.creditBytes, 0);
});

Deno.test("no update is due until half the window is read", () => {
  const window = new ReceiveWindow(256 * KIB);
  window.take(256 * KIB);
  const slowSession = { maxStreamWindowBytes: 256 * KIB, rttMs: () => 0 };
  assert.equal(window.grant(129 * KIB, true, slowSession), 0, "127 KiB read: not yet");
  assert.equal(window.grant(128 * KIB, true, slowSession), 128 * KIB, "128 KiB read: granted");
  assert.equal(window.creditBytes, 128 * KIB);
});

Deno.test("the window doubles while the peer drains it within a few round trips, up to the maximum", () => {
  const window = new ReceiveWindow(256 * KIB);
  const session = { maxStreamWindowBytes: 1024 * KIB, rttMs: () => 10_000 };
  window.take(256 * KIB);
  assert.equal(window.grant(0, true, session), 256 * KIB + 256 * KIB, "read all, doubled at once");
  assert.equal(window.windowBytes, 512 * KIB);
  window.take(512 * KIB);
  assert.equal(window.grant(0, true, session), 512 * KIB + 512 * KIB);
  assert.equal(window.windowBytes, 1024 * KIB);
  window.take(1024 * KIB);
  assert.equal(window.grant(0, true, session), 1024 * KIB, "at the maximum: no more growth");
  assert.equal(window.windowBytes, 1024 * KIB);
});

Deno.test("a window that may not grow (closed stream) only refills", () => {
  const window = new ReceiveWindow(256 * KIB);
  window.take(256 * KIB);
  const session = { maxStreamWindowBytes: 1024 * KIB, rttMs: () => 10_000 };
  assert.equal(window.grant(0, false, session), 256 * KIB);
  assert.equal(window.windowBytes, 256 * KIB);
});

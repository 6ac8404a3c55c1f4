/**
 * Unit tests of the wire constants (`constants.ts`).
 *
 * @module
 */

import assert from "node:assert/strict";
import * as c from "./constants.ts";

Deno.test("protocol constants match the hashicorp/yamux spec", () => {
  assert.equal(c.PROTOCOL_VERSION, 0);
  assert.equal(c.HEADER_SIZE_BYTES, 12);
  assert.deepEqual(c.FrameType, { Data: 0, WindowUpdate: 1, Ping: 2, GoAway: 3 });
  assert.deepEqual(c.Flag, { SYN: 1, ACK: 2, FIN: 4, RST: 8 });
  assert.equal(c.KNOWN_FLAGS_MASK, 0b1111);
  assert.deepEqual(c.GoAwayCode, { Normal: 0, ProtocolError: 1, InternalError: 2 });
  assert.equal(c.SESSION_STREAM_ID, 0);
  assert.equal(c.FIRST_CLIENT_STREAM_ID, 1);
  assert.equal(c.FIRST_SERVER_STREAM_ID, 2);
  assert.equal(c.MAX_U32, 4294967295);
  assert.equal(c.INITIAL_STREAM_WINDOW_BYTES, 262144);
});

Deno.test("default limits are pinned", () => {
  assert.equal(c.DEFAULT_MAX_STREAM_WINDOW_BYTES, 16 * 1024 * 1024);
  assert.equal(c.DEFAULT_ACCEPT_BACKLOG, 256);
  assert.equal(c.DEFAULT_MAX_STREAMS, 65536);
  assert.equal(c.DEFAULT_MAX_UNACKED_OPENS, 256);
  assert.equal(c.DEFAULT_KEEPALIVE_INTERVAL_MS, 10000);
  assert.equal(c.DEFAULT_KEEPALIVE_TIMEOUT_MS, 30000);
  assert.equal(c.DEFAULT_MAX_DATA_FRAME_BYTES, 256 * 1024);
});

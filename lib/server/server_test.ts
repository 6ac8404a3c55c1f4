import assert from "node:assert/strict";
import { conciseReason } from "./server.ts";

Deno.test("disconnect reasons are cut to one line without documentation links", () => {
  assert.equal(
    conciseReason(
      "peer closed connection without sending TLS close_notify: https://docs.rs/rustls/latest/rustls/manual/_03_howto/index.html#unexpected-eof",
    ),
    "peer closed connection without sending TLS close_notify",
  );
  assert.equal(conciseReason("keepalive-timeout"), "keepalive-timeout");
  assert.equal(conciseReason("first line\nsecond line"), "first line");
  assert.equal(conciseReason(""), "connection closed");
});

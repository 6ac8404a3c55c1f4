import assert from "node:assert/strict";
import { BindError, listenTcp, requireIpLiteral } from "./tcp.ts";

function bindErrorOf(bind: () => unknown): BindError {
  try {
    bind();
  } catch (error) {
    assert.ok(error instanceof BindError, `expected a BindError, got ${error}`);
    return error;
  }
  assert.fail("the bind succeeded");
}

Deno.test("listenTcp refuses a host name before any lookup: no bind, no retry, a message that says what to use", () => {
  for (const hostname of ["slow.example", "127.0.0.:22943", "localhost", "", "bad\x1b]0;x\x07"]) {
    // "localhost" would bind (and look itself up): refusing it shows no name reaches Deno.listen.
    const error = bindErrorOf(() => listenTcp(hostname, 0));
    assert.equal(error.kind, "invalid_address");
    assert.equal(error.retryable, false);
    assert.match(error.message, /is not an IP address/);
    assert.match(error.message, /use an IP address such as 0\.0\.0\.0 or 127\.0\.0\.1/);
    assert.ok(!error.message.includes("\x1b"), "the refused value is quoted escaped");
  }
});

Deno.test("listenTcp binds IP literals as before", () => {
  const listener = listenTcp("127.0.0.1", 0);
  try {
    assert.equal(listener.addr.hostname, "127.0.0.1");
  } finally {
    listener.close();
  }
  assert.doesNotThrow(() => requireIpLiteral("0.0.0.0", 0));
  assert.doesNotThrow(() => requireIpLiteral("::", 0));
  assert.doesNotThrow(() => requireIpLiteral("::1", 8080));
});

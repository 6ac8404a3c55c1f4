import assert from "node:assert/strict";
import { DuplicateNameError, UnknownNameError } from "../registry.ts";
import {
  DEFAULT_TRANSPORT,
  registerTransport,
  TRANSPORT_NAMES,
  transportFor,
  transportNames,
  UnknownTransportError,
} from "./registry.ts";
import { tlsTransport } from "./tls.ts";
import type { Transport } from "./transport.ts";

const notUsed = () => Promise.reject(new Error("not used in this test"));

Deno.test("every built-in transport name resolves to its transport; tls is the default", () => {
  assert.deepEqual([...TRANSPORT_NAMES], ["tls", "wss", "http2", "quic"]);
  for (const name of TRANSPORT_NAMES) assert.equal(transportFor(name).name, name);
  assert.equal(transportFor(DEFAULT_TRANSPORT), tlsTransport);
});

Deno.test("an unknown transport name fails with a typed error naming the known transports", () => {
  assert.throws(() => transportFor("sctp"), (error: unknown) => {
    assert.ok(error instanceof UnknownTransportError);
    assert.ok(error instanceof UnknownNameError);
    assert.equal(error.requested, "sctp");
    assert.deepEqual(error.known, ["tls", "wss", "http2", "quic"]);
    assert.equal(
      error.message,
      'Unknown transport "sctp": the transports known are "tls", "wss", "http2", "quic"; use one of them',
    );
    return true;
  });
});

Deno.test("an unknown transport name from hostile input is echoed cut and quoted", () => {
  const hostile = "x".repeat(10_000) + "\n\u001b[31m";
  assert.throws(() => transportFor(hostile), (error: unknown) => {
    assert.ok(error instanceof UnknownTransportError);
    assert.ok(error.message.length < 200, `message of ${error.message.length} characters`);
    assert.ok(!error.message.includes("\n") && !error.message.includes("\u001b"));
    return true;
  });
});

Deno.test("a registered transport is found by name until it is removed; a taken name is refused", () => {
  const test: Transport = { name: "registry-test", listen: notUsed, dial: notUsed };
  const unregister = registerTransport(test);
  try {
    assert.equal(transportFor("registry-test"), test);
    assert.deepEqual(transportNames(), ["tls", "wss", "http2", "quic", "registry-test"]);
    assert.throws(() => registerTransport({ ...test }), DuplicateNameError);
    assert.throws(() => registerTransport({ ...tlsTransport }), DuplicateNameError);
  } finally {
    unregister();
  }
  assert.throws(() => transportFor("registry-test"), UnknownTransportError);
  assert.equal(transportFor("tls"), tlsTransport, "removing one leaves the others");
});

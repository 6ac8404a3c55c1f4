import assert from "node:assert/strict";
import { unsafeCharacter } from "../text.ts";
import { decodeStreamHeaderBody, encodeStreamHeader, StreamHeaderError } from "./stream_header.ts";

const encoder = new TextEncoder();

function body(header: Record<string, unknown>): Uint8Array {
  return encoder.encode(JSON.stringify(header));
}

Deno.test("a stream header round-trips its proxy name, peer address and connection id", () => {
  const header = { proxy: "web", peer_addr: "[2001:db8::1]:51234", conn_id: 7 };
  const bytes = encodeStreamHeader(header);
  assert.deepEqual(decodeStreamHeaderBody(bytes.subarray(3)), header);
});

Deno.test("a stream header with a hostile proxy name or peer address is refused, quoted escaped", () => {
  for (
    const header of [
      { proxy: "web\x1b]0;x\x07", peer_addr: "1.2.3.4:5", conn_id: 1 },
      { proxy: "w".repeat(65), peer_addr: "1.2.3.4:5", conn_id: 1 },
      { proxy: "web", peer_addr: "1.2.3.4:5\u202e", conn_id: 1 },
      { proxy: "web", peer_addr: "x".repeat(65), conn_id: 1 },
    ]
  ) {
    assert.throws(
      () => decodeStreamHeaderBody(body(header)),
      (error: unknown) => error instanceof StreamHeaderError && unsafeCharacter(error.message) === null,
    );
  }
});

Deno.test("a stream header with a missing or mistyped field is refused naming the field; extra fields are dropped", () => {
  const good = { proxy: "web", peer_addr: "203.0.113.7:51234", conn_id: 1 };
  assert.deepEqual(decodeStreamHeaderBody(body({ ...good, tls: true, path: "/x" })), good);
  const cases: Array<[unknown, RegExp]> = [
    [{ peer_addr: good.peer_addr, conn_id: 1 }, /proxy: missing/],
    [{ ...good, proxy: 7 }, /proxy: /],
    [{ ...good, peer_addr: "" }, /peer_addr: /],
    [{ ...good, peer_addr: ["1.2.3.4:5"] }, /peer_addr: /],
    [{ ...good, conn_id: "1" }, /conn_id: /],
    [{ ...good, conn_id: 0 }, /conn_id: /],
    [{ ...good, conn_id: 1.5 }, /conn_id: /],
    [{ ...good, conn_id: 2 ** 60 }, /conn_id: /],
    [null, /malformed: /],
    [[good], /malformed: /],
    ["web", /malformed: /],
  ];
  for (const [value, reason] of cases) {
    assert.throws(
      () => decodeStreamHeaderBody(encoder.encode(JSON.stringify(value))),
      (error: unknown) => error instanceof StreamHeaderError && reason.test(error.message),
      JSON.stringify(value),
    );
  }
});

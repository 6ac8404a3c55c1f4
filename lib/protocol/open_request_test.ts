import assert from "node:assert/strict";
import { memoryPair } from "../net/memory_pair.ts";
import { writeAll } from "../net/conn.ts";
import { unsafeCharacter } from "../text.ts";
import {
  decodeOpenReplyBody,
  decodeOpenRequestBody,
  encodeOpenReply,
  encodeOpenRequest,
  OPEN_REQUEST_MAX_BYTES,
  type OpenRequest,
  OpenRequestError,
  readOpenReply,
  readOpenRequest,
} from "./open_request.ts";

const encoder = new TextEncoder();

function frame(version: number, body: Uint8Array, declared = body.length): Uint8Array {
  const bytes = new Uint8Array(3 + body.length);
  bytes[0] = version;
  new DataView(bytes.buffer).setUint16(1, declared);
  bytes.set(body, 3);
  return bytes;
}

function json(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

/** Writes `bytes` then ends the writer's direction; reads with `read` from the other end. */
async function readFrom<T>(bytes: Uint8Array, read: (conn: ReturnType<typeof memoryPair>[1]) => Promise<T>) {
  const [a, b] = memoryPair();
  try {
    await writeAll(a, bytes);
    await a.closeWrite();
    return await read(b);
  } finally {
    a.close();
    b.close();
  }
}

const visit: OpenRequest = {
  kind: "visit",
  name: "ssh",
  publish_port: 2222,
  client: "office",
  secret_key: "s3cret with spaces",
};
const forward: OpenRequest = { kind: "forward", forwarder: "web-proxy", host: "example.com", port: 443 };

Deno.test("a visit and a forward request round-trip through the wire and leave what follows unread", async () => {
  for (const request of [visit, forward, { kind: "visit" as const, name: "db", publish_port: 0 }]) {
    const bytes = encodeOpenRequest(request);
    assert.equal(bytes[0], 2);
    const trailing = encoder.encode("payload");
    const both = new Uint8Array(bytes.length + trailing.length);
    both.set(bytes);
    both.set(trailing, bytes.length);
    await readFrom(both, async (conn) => {
      assert.deepEqual(await readOpenRequest(conn), request);
      const rest = new Uint8Array(16);
      const count = await conn.read(rest);
      assert.equal(new TextDecoder().decode(rest.subarray(0, count ?? 0)), "payload");
    });
  }
});

Deno.test("replies round-trip: ok, and a refusal with its code and reason", async () => {
  assert.deepEqual(await readFrom(encodeOpenReply({ ok: true }), readOpenReply), { ok: true });
  const refusal = { ok: false as const, code: "DENIED" as const, reason: "secret_key does not match" };
  assert.deepEqual(await readFrom(encodeOpenReply(refusal), readOpenReply), refusal);
});

Deno.test("a refusal's reason is cut to 512 characters and its control characters are escaped on reading", () => {
  const long = encodeOpenReply({ ok: false, code: "NOT_FOUND", reason: "x".repeat(2000) });
  const reply = decodeOpenReplyBody(long.subarray(3));
  assert.ok(!reply.ok && reply.reason.length === 513);
  const hostile = decodeOpenReplyBody(json({ ok: false, code: "DENIED", reason: "a\x1b]0;pwn\x07" }));
  assert.ok(!hostile.ok && unsafeCharacter(hostile.reason) === null && hostile.reason.includes("\\u001b"));
});

Deno.test("a truncated open request is refused saying how many bytes came", async () => {
  const bytes = encodeOpenRequest(visit);
  for (const cut of [0, 1, 2, 3, bytes.length - 1]) {
    await assert.rejects(
      readFrom(bytes.subarray(0, cut), readOpenRequest),
      (error: unknown) => error instanceof OpenRequestError && /Stream ended after/.test(error.message),
      `cut at ${cut}`,
    );
  }
});

Deno.test("an open request with a wrong version, a zero or oversized length is refused before its body is read", async () => {
  const body = json(visit);
  const cases: Array<[Uint8Array, RegExp]> = [
    [frame(1, body), /version 1 is not 2/],
    [frame(0x16, body), /version 22 is not 2/],
    [frame(2, new Uint8Array(0)), /length 0 is outside 1-4096/],
    [frame(2, new Uint8Array(0), OPEN_REQUEST_MAX_BYTES + 1), /length 4097 is outside/],
    [frame(2, new Uint8Array(0), 0xffff), /length 65535 is outside/],
  ];
  for (const [bytes, reason] of cases) {
    await assert.rejects(
      readFrom(bytes, readOpenRequest),
      (error: unknown) => error instanceof OpenRequestError && reason.test(error.message),
    );
  }
  // The schema's bounds keep every request it accepts within 4096 bytes; the encoder refuses the rest.
  assert.throws(() => encodeOpenRequest({ ...visit, secret_key: "k".repeat(1025) }), OpenRequestError);
});

Deno.test("an open request that is not UTF-8 JSON, or of an unknown kind, or missing fields is refused naming the field", () => {
  const cases: Array<[Uint8Array, RegExp]> = [
    [encoder.encode("{not json"), /not UTF-8 JSON/],
    [new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]), /not UTF-8 JSON/],
    [json({ kind: "socks", name: "x" }), /kind/],
    [json({ name: "ssh", publish_port: 22 }), /kind/],
    [json(null), /malformed/],
    [json([visit]), /malformed/],
    [json({ kind: "visit", publish_port: 22 }), /name: missing/],
    [json({ kind: "visit", name: "ssh" }), /publish_port: missing/],
    [json({ ...visit, publish_port: 70000 }), /publish_port/],
    [json({ ...visit, publish_port: "22" }), /publish_port/],
    [json({ ...visit, publish_port: 1.5 }), /publish_port/],
    [json({ ...visit, name: "s".repeat(65) }), /name/],
    [json({ ...visit, client: "" }), /client/],
    [json({ ...visit, secret_key: "" }), /secret_key/],
    [json({ ...visit, secret_key: "k".repeat(1025) }), /secret_key/],
    [json({ ...forward, port: 0 }), /port/],
    [json({ ...forward, host: "" }), /host/],
    [json({ ...forward, host: "a b" }), /host/],
    [json({ ...forward, host: "h".repeat(254) }), /host/],
    [json({ ...forward, forwarder: "" }), /forwarder/],
  ];
  for (const [body, reason] of cases) {
    assert.throws(
      () => decodeOpenRequestBody(body),
      (error: unknown) => error instanceof OpenRequestError && reason.test(error.message),
      new TextDecoder().decode(body),
    );
  }
});

Deno.test("control characters, bidi controls and lone surrogates in any string are refused, quoted escaped", () => {
  const cases = [
    { ...visit, name: "ssh\x1b[2J" },
    { ...visit, client: "off\u202eice" },
    { ...visit, secret_key: "key\x00" },
    { ...visit, secret_key: "key\ud800" },
    { ...forward, host: "evil\n.example" },
    { ...forward, forwarder: "fw\x07" },
  ];
  for (const value of cases) {
    assert.throws(
      () => decodeOpenRequestBody(json(value)),
      (error: unknown) => error instanceof OpenRequestError && unsafeCharacter(error.message) === null,
      JSON.stringify(value),
    );
  }
});

Deno.test("a reply that is not ok:true or a known refusal is refused", () => {
  for (
    const value of [
      { ok: "yes" },
      { ok: false, code: "TEAPOT", reason: "x" },
      { ok: false, code: "DENIED" },
      { ok: false, code: "DENIED", reason: 7 },
      {},
    ]
  ) {
    assert.throws(() => decodeOpenReplyBody(json(value)), OpenRequestError, JSON.stringify(value));
  }
});

Deno.test("extra fields are dropped (forward compatibility)", () => {
  assert.deepEqual(decodeOpenRequestBody(json({ ...forward, future: 1 })), forward);
  assert.deepEqual(decodeOpenReplyBody(json({ ok: true, note: "x" })), { ok: true });
});

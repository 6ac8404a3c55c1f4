import assert from "node:assert/strict";
import { connect } from "node:tls";
import { hostOfHostHeader, MAX_CLIENT_HELLO_BYTES, normalizeDomain, readClientHelloSni } from "./sni.ts";

/** A ClientHello handshake message (no record header) naming `serverName` (none when null). */
function clientHelloMessage(serverName: string | null, options: { paddingBytes?: number } = {}): Uint8Array {
  const u16 = (n: number) => [(n >> 8) & 0xff, n & 0xff];
  const extensions: number[] = [];
  if (serverName !== null) {
    const name = [...new TextEncoder().encode(serverName)];
    const entry = [0, ...u16(name.length), ...name];
    const list = [...u16(entry.length), ...entry];
    extensions.push(...u16(0), ...u16(list.length), ...list);
  }
  // supported_versions, as browsers send, then padding to make the message as big as asked.
  extensions.push(...u16(43), ...u16(3), 2, 3, 4);
  if (options.paddingBytes) {
    extensions.push(...u16(21), ...u16(options.paddingBytes), ...new Array(options.paddingBytes).fill(0));
  }
  const body = [
    3,
    3,
    ...new Array(32).fill(7),
    0, // session id
    ...u16(2),
    0x13,
    0x01, // one cipher suite
    1,
    0, // compression: null
    ...u16(extensions.length),
    ...extensions,
  ];
  return new Uint8Array([
    1,
    (body.length >> 16) & 0xff,
    (body.length >> 8) & 0xff,
    body.length & 0xff,
    ...body,
  ]);
}

/** `message` in TLS records of at most `recordBytes` payload each. */
function records(message: Uint8Array, recordBytes = 16384): Uint8Array {
  const parts: number[] = [];
  for (let at = 0; at < message.length; at += recordBytes) {
    const part = message.subarray(at, at + recordBytes);
    parts.push(0x16, 3, 1, part.length >> 8, part.length & 0xff, ...part);
  }
  return new Uint8Array(parts);
}

Deno.test("the SNI of a ClientHello is read, in lower case without a trailing dot", () => {
  assert.deepEqual(readClientHelloSni(records(clientHelloMessage("App.Example.COM."))), {
    status: "ok",
    serverName: "app.example.com",
  });
});

Deno.test("a ClientHello without SNI is read as such", () => {
  assert.deepEqual(readClientHelloSni(records(clientHelloMessage(null))), { status: "ok", serverName: null });
});

Deno.test("every truncation of a ClientHello is incomplete, never an error or a wrong name", () => {
  const bytes = records(clientHelloMessage("a.example.com"));
  for (let length = 0; length < bytes.length; length++) {
    assert.deepEqual(readClientHelloSni(bytes.subarray(0, length)), { status: "incomplete" }, `at ${length}`);
  }
});

Deno.test("a ClientHello split over many small records is reassembled", () => {
  const result = readClientHelloSni(records(clientHelloMessage("split.example.com"), 7));
  assert.deepEqual(result, { status: "ok", serverName: "split.example.com" });
});

Deno.test("a ClientHello larger than the bound is refused, not buffered", () => {
  const result = readClientHelloSni(records(clientHelloMessage("big.example.com", { paddingBytes: 40_000 })));
  assert.equal(result.status, "invalid");
  // Announced in the handshake header already: refused from the first record on.
  const head = records(clientHelloMessage("big.example.com", { paddingBytes: 40_000 })).subarray(0, 16);
  assert.equal(readClientHelloSni(head).status, "invalid");
  assert.ok(MAX_CLIENT_HELLO_BYTES < 40_000);
});

Deno.test("hostile ClientHellos are refused: wrong record type, HTTP, bad lengths, bad names", () => {
  const valid = records(clientHelloMessage("x.example.com"));
  const cases: Record<string, Uint8Array> = {
    "an HTTP request": new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
    "an alert record": new Uint8Array([0x15, 3, 1, 0, 2, 2, 40]),
    "SSLv2-style version": new Uint8Array([0x16, 2, 0, 0, 4, 1, 0, 0, 0]),
    "a zero-length record": new Uint8Array([0x16, 3, 1, 0, 0]),
    "a ServerHello": (() => {
      const copy = valid.slice();
      copy[5] = 2;
      return copy;
    })(),
    "a cipher suite length running past the end": (() => {
      const copy = valid.slice();
      copy[5 + 4 + 2 + 32 + 1] = 0xff;
      return copy;
    })(),
    "a name with a control character": records(clientHelloMessage("x\u0001.example.com")),
    "a name with a space": records(clientHelloMessage("x y.example.com")),
    "an IP address as name": records(clientHelloMessage("10.0.0.1")),
    "an empty name": records(clientHelloMessage("")),
  };
  for (const [what, bytes] of Object.entries(cases)) {
    assert.equal(readClientHelloSni(bytes).status, "invalid", what);
  }
});

Deno.test("random bytes never throw and never name a host", () => {
  const random = new Uint8Array(600);
  for (let round = 0; round < 2000; round++) {
    crypto.getRandomValues(random);
    if (round % 2 === 0) random.set([0x16, 3, 1]); // past the first checks half of the time
    const result = readClientHelloSni(random);
    assert.ok(
      result.status !== "ok" || result.serverName === null || /^[a-z0-9.-]+$/.test(result.serverName),
    );
  }
});

Deno.test("a real ClientHello from node:tls names the server asked for", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const socket = connect({ host: "127.0.0.1", port: listener.addr.port, servername: "real.example.org" });
  socket.on("error", () => {});
  const conn = await listener.accept();
  const buffer = new Uint8Array(MAX_CLIENT_HELLO_BYTES);
  let received = 0;
  let result = readClientHelloSni(buffer.subarray(0, 0));
  while (result.status === "incomplete") {
    const count = await conn.read(buffer.subarray(received));
    if (count === null) break;
    received += count;
    result = readClientHelloSni(buffer.subarray(0, received));
  }
  conn.close();
  listener.close();
  socket.destroy();
  assert.deepEqual(result, { status: "ok", serverName: "real.example.org" });
});

Deno.test("virtual host names are DNS names in lower case; Host headers lose their port", () => {
  assert.equal(normalizeDomain("App.Example.com"), "app.example.com");
  assert.equal(normalizeDomain("::1"), null);
  assert.equal(normalizeDomain("a..b"), null);
  assert.equal(normalizeDomain("-a.example.com"), null);
  assert.equal(hostOfHostHeader("App.example.com:8080"), "app.example.com");
  assert.equal(hostOfHostHeader("app.example.com"), "app.example.com");
  assert.equal(hostOfHostHeader("[::1]:80"), null);
  assert.equal(hostOfHostHeader("app.example.com:99999"), null);
  assert.equal(hostOfHostHeader("app.example.com:x"), null);
  assert.equal(hostOfHostHeader("<script>"), null);
});

import assert from "node:assert/strict";
import { writeAll } from "../net/conn.ts";
import { testCertificates } from "../../testing/helpers.ts";
import {
  type AdmittingListener,
  type AdmittingListenOptions,
  listenAdmitting,
} from "../../testing/transport.ts";
import { readExactly } from "../../testing/bytes.ts";
import { transportFor } from "./registry.ts";
import { TransportDialError } from "./transport.ts";
import { applyMask, MAX_MESSAGE_BYTES, WebSocketProtocolError } from "./websocket.ts";
import { forwardedAddresses, upgradeWebSocketClient, WebSocketUpgradeRefusedError } from "./wss.ts";

const wss = transportFor("wss");

function listen(options: AdmittingListenOptions = {}): Promise<AdmittingListener> {
  return listenAdmitting(wss, options);
}

Deno.test("wss transport: a dialed connection and the admitted one carry bytes both ways in binary messages", async () => {
  const certs = await testCertificates();
  const { listener, next } = await listen();
  const server = next();
  const dialed = await wss.dial({
    hostname: "127.0.0.1",
    port: listener.addr.port,
    serverName: "localhost",
    caCertPem: certs.caCertPem,
    timeoutMs: 5000,
  });
  const admitted = await server;
  await admitted.handshake();
  const payload = crypto.getRandomValues(new Uint8Array(65536)).map((_, i) => i);
  const big = new Uint8Array(3 * 1024 * 1024 + 17).map((_, i) => i * 7);
  await Promise.all([
    writeAll(dialed, big),
    readExactly(admitted, big.length).then((got) => assert.deepEqual(got, big)),
  ]);
  await writeAll(admitted, payload);
  assert.deepEqual(await readExactly(dialed, payload.length), payload);
  // Half-close: the server reads the end, and can still answer.
  await dialed.closeWrite();
  assert.equal(await admitted.read(new Uint8Array(10)), null);
  await writeAll(admitted, new Uint8Array([1, 2, 3]));
  assert.deepEqual(await readExactly(dialed, 3), new Uint8Array([1, 2, 3]));
  dialed.close();
  admitted.close();
  listener.close();
});

Deno.test("wss transport: a wrong path is answered 404 and the dial fails naming the status", async () => {
  const certs = await testCertificates();
  const { listener, next } = await listen({ path: "/secret" });
  const server = next();
  await assert.rejects(
    wss.dial({
      hostname: "127.0.0.1",
      port: listener.addr.port,
      serverName: "localhost",
      caCertPem: certs.caCertPem,
      timeoutMs: 5000,
      path: "/tunnel",
    }),
    (error: unknown) => error instanceof TransportDialError && /answered 404 Not Found/.test(error.message),
  );
  await assert.rejects((await server).handshake(), WebSocketUpgradeRefusedError);
  listener.close();
});

Deno.test("wss transport: behind_proxy serves plain-text ws; a plain GET gets an ordinary 404 page", async () => {
  const { listener, next } = await listen({ plainText: true });
  const server = next();
  const tcp = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  await writeAll(tcp, new TextEncoder().encode("GET / HTTP/1.1\r\nHost: example\r\n\r\n"));
  const answer = new TextDecoder().decode(await new Response(tcp.readable).arrayBuffer());
  assert.match(answer, /^HTTP\/1\.1 404 Not Found\r\n/);
  assert.match(answer, /<h1>Not Found<\/h1>/);
  await assert.rejects((await server).handshake(), WebSocketUpgradeRefusedError);

  const second = next();
  const plain = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  // A trailing slash names the same path (the Rust tool's clients write "/tunnel/").
  const ws = await upgradeWebSocketClient(plain, {
    host: "x",
    path: "/tunnel/",
    timeoutMs: 5000,
    where: "test",
  });
  const admitted = await second;
  await admitted.handshake();
  await writeAll(ws, new Uint8Array([9, 8, 7]));
  assert.deepEqual(await readExactly(admitted, 3), new Uint8Array([9, 8, 7]));
  ws.close();
  admitted.close();
  listener.close();
});

/** A raw frame as a client would send it (masked), with any opcode and declared length. */
function rawFrame(opcode: number, payload: Uint8Array, declaredLength = payload.length): Uint8Array {
  const extended = declaredLength < 126 ? 0 : declaredLength < 65536 ? 2 : 8;
  const frame = new Uint8Array(2 + extended + 4 + payload.length);
  frame[0] = 0x80 | opcode;
  frame[1] = 0x80 | (extended === 0 ? declaredLength : extended === 2 ? 126 : 127);
  const view = new DataView(frame.buffer);
  if (extended === 2) view.setUint16(2, declaredLength);
  if (extended === 8) view.setBigUint64(2, BigInt(declaredLength));
  const mask = new Uint8Array([1, 2, 3, 4]);
  frame.set(mask, 2 + extended);
  const body = payload.slice();
  applyMask(body, mask, 0);
  frame.set(body, 6 + extended);
  return frame;
}

for (
  const [what, frame, code] of [
    ["a text message", rawFrame(0x1, new TextEncoder().encode("hello")), 1003],
    ["a message over the size limit", rawFrame(0x2, new Uint8Array(0), MAX_MESSAGE_BYTES + 1), 1009],
    ["a frame header claiming 2^53 bytes", rawFrame(0x2, new Uint8Array(0), 2 ** 53), 1009],
    ["a reserved opcode", rawFrame(0x3, new Uint8Array(1)), 1002],
  ] as const
) {
  Deno.test(`wss transport: ${what} closes the connection with ${code}`, async () => {
    const { listener, next } = await listen({ plainText: true });
    const server = next();
    const plain = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
    const ws = await upgradeWebSocketClient(plain, {
      host: "x",
      path: "/tunnel",
      timeoutMs: 5000,
      where: "test",
    });
    const admitted = await server;
    await admitted.handshake();
    await writeAll(plain, frame);
    await assert.rejects(
      admitted.read(new Uint8Array(100)),
      (error: unknown) => error instanceof WebSocketProtocolError && error.closeCode === code,
    );
    // The client reads the close frame as the end of the stream.
    assert.equal(await ws.read(new Uint8Array(100)), null);
    ws.close();
    admitted.close();
    listener.close();
  });
}

Deno.test("wss transport: a flood of pings is answered without recursion and the data after it arrives", async () => {
  const { listener, next } = await listen({ plainText: true });
  const server = next();
  const plain = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const ws = await upgradeWebSocketClient(plain, {
    host: "x",
    path: "/tunnel",
    timeoutMs: 5000,
    where: "test",
  });
  const admitted = await server;
  await admitted.handshake();
  const ping = rawFrame(0x9, new Uint8Array([1, 2, 3, 4]));
  const flood = new Uint8Array(ping.length * 50_000);
  for (let offset = 0; offset < flood.length; offset += ping.length) flood.set(ping, offset);
  const writing = writeAll(plain, flood).then(() => writeAll(plain, rawFrame(0x2, new Uint8Array([42]))));
  assert.deepEqual(await readExactly(admitted, 1), new Uint8Array([42]));
  await writing;
  ws.close();
  admitted.close();
  listener.close();
});

Deno.test("wss transport: forwarded addresses are IP literals in header order, ports and quotes removed", () => {
  assert.deepEqual(
    forwardedAddresses(
      new Map([["x-forwarded-for", "203.0.113.9, unknown, 10.0.0.2:5555, [2001:db8::1]:80"]]),
    ),
    ["203.0.113.9", "10.0.0.2", "2001:db8::1"],
  );
  assert.deepEqual(
    forwardedAddresses(
      new Map([["forwarded", 'for=192.0.2.60;proto=https, For="[2001:db8:cafe::17]:4711"']]),
    ),
    ["192.0.2.60", "2001:db8:cafe::17"],
  );
  assert.deepEqual(forwardedAddresses(new Map()), []);
  const many = Array.from({ length: 100 }, (_, i) => `10.0.0.${i % 250}`).join(",");
  assert.equal(forwardedAddresses(new Map([["x-forwarded-for", many]])).length, 16);
});

Deno.test("websocket mask: every byte is XORed with the mask byte of its payload position, at any alignment", () => {
  const mask = new Uint8Array([0xde, 0xad, 0xbe, 0xef]);
  const data = new Uint8Array(1000).map((_, i) => i);
  for (let start = 0; start < 4; start++) {
    for (let position = 0; position < 6; position++) {
      const view = data.slice().subarray(start, 900);
      const original = view.slice();
      applyMask(view, mask, position);
      const expected = original.map((byte, i) => byte ^ (mask[(position + i) % 4] ?? 0));
      assert.deepEqual(view, expected, `start ${start}, position ${position}`);
      applyMask(view, mask, position);
      assert.deepEqual(view, original);
    }
  }
});

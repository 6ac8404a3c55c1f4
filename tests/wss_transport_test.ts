/**
 * The `"wss"` transport end to end (server and client roles in process, real TLS on loopback): a client
 * with `transport = "wss"` carries a tunnel, and hostile peers (oversized heads, slowloris upgrades, wrong
 * paths, text or oversized frames, a flood of half-open upgrades) are each answered or closed within
 * bounds while a real client keeps working.
 */

import assert from "node:assert/strict";
import { withTimeout } from "../lib/_async.ts";
import { writeAll } from "../lib/net/conn.ts";
import { TRANSPORT_KEYS } from "../lib/config/schema.ts";
import { closeQuietly } from "../lib/transport/pipe.ts";
import { TRANSPORT_NAMES } from "../lib/transport/registry.ts";
import { applyMask } from "../lib/transport/websocket.ts";
import { upgradeWebSocketClient } from "../lib/transport/wss.ts";
import { patternBytes, roundTrip, sha256Hex, testCertificates } from "../testing/helpers.ts";
import { acceptedPort, TunnelFixture } from "../testing/tunnel.ts";

const WSS = `transport = "wss"\n`;

/** A TLS connection to the fixture's server, as any HTTPS client would open it. */
async function tlsTo(port: number): Promise<Deno.TlsConn> {
  const certs = await testCertificates();
  const tcp = await Deno.connect({ hostname: "127.0.0.1", port });
  const conn = await Deno.startTls(tcp, { hostname: "localhost", caCerts: [certs.caCertPem] });
  await conn.handshake();
  return conn;
}

/** Everything the server sends until it ends (or resets) the connection, and how long that took. */
async function readToEnd(conn: Deno.Conn): Promise<{ text: string; ms: number }> {
  const startedMs = performance.now();
  const chunks: Uint8Array[] = [];
  const buffer = new Uint8Array(16 * 1024);
  try {
    for (;;) {
      const count = await conn.read(buffer);
      if (count === null) break;
      chunks.push(buffer.slice(0, count));
    }
  } catch {
    // A reset ends it too.
  }
  const bytes = new Uint8Array(chunks.reduce((sum, chunk) => sum + chunk.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  return { text: new TextDecoder("latin1").decode(bytes), ms: performance.now() - startedMs };
}

/** The fixture's server with a wss client publishing an echo service; resolves with the public port. */
async function wssTunnel(fixture: TunnelFixture): Promise<number> {
  const echo = fixture.echo();
  const client = await fixture.client([{ name: "echo", publishPort: 0, localPort: echo.port }], {
    extra: WSS,
  });
  return acceptedPort(await client.registered, "echo");
}

/** A masked client frame with any opcode and declared length. */
function clientFrame(opcode: number, payload: Uint8Array, declaredLength = payload.length): Uint8Array {
  const extended = declaredLength < 126 ? 0 : declaredLength < 65536 ? 2 : 8;
  const frame = new Uint8Array(2 + extended + 4 + payload.length);
  frame[0] = 0x80 | opcode;
  frame[1] = 0x80 | (extended === 0 ? declaredLength : extended === 2 ? 126 : 127);
  const view = new DataView(frame.buffer);
  if (extended === 2) view.setUint16(2, declaredLength);
  if (extended === 8) view.setBigUint64(2, BigInt(declaredLength));
  const mask = crypto.getRandomValues(new Uint8Array(4));
  frame.set(mask, 2 + extended);
  const body = payload.slice();
  applyMask(body, mask, 0);
  frame.set(body, 6 + extended);
  return frame;
}

Deno.test('wss: a client with transport = "wss" carries 8 MiB each way through the tunnel, sha256-checked', async () => {
  await using fixture = await TunnelFixture.start(WSS);
  const publicPort = await wssTunnel(fixture);
  const data = patternBytes(8 * 1024 * 1024, 13);
  const echoed = await roundTrip(publicPort, data, 30_000);
  assert.equal(await sha256Hex(echoed), await sha256Hex(data));
});

Deno.test("wss: a wrong path, a plain GET and a bad upgrade get an ordinary 404 and are closed", async () => {
  await using fixture = await TunnelFixture.start(WSS);
  const requests = [
    "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "GET /admin HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    "GET /tunnel HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "POST /tunnel HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n",
    "GET /tunnel HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
    "Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n",
  ];
  for (const request of requests) {
    const conn = await tlsTo(fixture.port);
    await writeAll(conn, new TextEncoder().encode(request));
    const { text } = await withTimeout(readToEnd(conn), 5000, "the 404");
    closeQuietly(conn);
    assert.match(text, /^HTTP\/1\.1 404 Not Found\r\n/, request);
    assert.match(text, /Content-Length: \d+\r\n/);
  }
});

Deno.test("wss: an oversized request head is answered 431 and closed; a slowloris upgrade is closed at handshake_timeout_secs", async () => {
  await using fixture = await TunnelFixture.start(`${WSS}handshake_timeout_secs = 1\n`);
  const big = await tlsTo(fixture.port);
  const head = "GET /tunnel HTTP/1.1\r\nHost: localhost\r\n" + `X-Padding: ${"a".repeat(20_000)}\r\n\r\n`;
  // The server may close before taking every byte; only its answer matters.
  void writeAll(big, new TextEncoder().encode(head)).catch(() => {});
  const answer = await withTimeout(readToEnd(big), 5000, "the 431");
  closeQuietly(big);
  assert.match(answer.text, /^HTTP\/1\.1 431 /);

  const slow = await tlsTo(fixture.port);
  const ended = readToEnd(slow);
  const dribble = (async () => {
    const bytes = new TextEncoder().encode("GET /tunnel HTTP/1.1\r\nHost: localhost\r\nX-Slow: ");
    for (const byte of bytes) {
      await slow.write(new Uint8Array([byte])).catch(() => {});
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    for (let i = 0; i < 30; i++) {
      if (await slow.write(new Uint8Array([0x61])).then(() => false, () => true)) return;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  })();
  const { ms } = await withTimeout(ended, 5000, "the slowloris close");
  await dribble;
  closeQuietly(slow);
  assert.ok(ms < 2500, `a slowloris upgrade stayed open ${ms.toFixed(0)} ms with handshake_timeout_secs = 1`);
});

for (
  const [what, frame] of [
    ["a text frame", clientFrame(0x1, new TextEncoder().encode('{"jsonrpc":"2.0"}'))],
    ["an oversized frame", clientFrame(0x2, new Uint8Array(0), 64 * 1024 * 1024)],
    ["an unmasked frame", new Uint8Array([0x82, 0x03, 1, 2, 3])],
  ] as const
) {
  Deno.test(`wss: ${what} after the upgrade ends the connection; a real client still works`, async () => {
    await using fixture = await TunnelFixture.start(WSS);
    const publicPort = await wssTunnel(fixture);
    const conn = await tlsTo(fixture.port);
    const ws = await upgradeWebSocketClient(conn, {
      host: "localhost",
      path: "/tunnel",
      timeoutMs: 5000,
      where: "test",
    });
    await writeAll(conn, frame);
    // The server's yamux may have sent a frame first; then the close frame ends the stream.
    const drained = (async () => {
      const buffer = new Uint8Array(1024);
      while (await ws.read(buffer).catch(() => null) !== null) {
        // Whatever yamux sent before the close.
      }
    })();
    await withTimeout(drained, 5000, "the server to end the connection");
    ws.close();
    const data = patternBytes(64 * 1024, 7);
    assert.equal(await sha256Hex(await roundTrip(publicPort, data)), await sha256Hex(data));
  });
}

Deno.test("wss: a flood of half-open upgrades is closed within bounds and a real client connects meanwhile", async () => {
  await using fixture = await TunnelFixture.start(
    `${WSS}handshake_timeout_secs = 2\nmax_pending_per_ip = 500\n`,
  );
  const flood: Deno.TlsConn[] = [];
  for (let i = 0; i < 100; i++) {
    const conn = await tlsTo(fixture.port);
    await writeAll(conn, new TextEncoder().encode("GET /tunnel HTTP/1.1\r\nHost: localhost\r\nUpgrade: web"));
    flood.push(conn);
  }
  assert.ok(fixture.server.pendingConnections.pending >= 100, "the half-open upgrades are pending");
  const publicPort = await wssTunnel(fixture);
  const data = patternBytes(256 * 1024, 5);
  assert.equal(await sha256Hex(await roundTrip(publicPort, data)), await sha256Hex(data));
  const closed = await withTimeout(
    Promise.all(flood.map((conn) => readToEnd(conn))),
    6000,
    "the flood closed",
  );
  for (const conn of flood) closeQuietly(conn);
  assert.ok(closed.every(({ text }) => text === ""), "a half-open upgrade got an answer instead of a close");
  assert.equal(fixture.server.pendingConnections.pending, 0);
  assert.equal(await sha256Hex(await roundTrip(publicPort, data)), await sha256Hex(data));
});

Deno.test("the config's transport values are exactly the built-in transports", () => {
  // config/ may not import transport/ (layering): the two lists are kept equal here.
  assert.deepEqual([...TRANSPORT_KEYS], [...TRANSPORT_NAMES]);
});

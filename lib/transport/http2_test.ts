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
import { TransportDialError, TransportHandshakeTimeoutError } from "./transport.ts";
import {
  Http1RequestRefusedError,
  HTTP2_MAX_OTHER_STREAMS,
  HTTP2_WINDOW_BYTES,
  openHttp2Tunnel,
} from "./http2.ts";
import { MAX_HTTP_HEAD_BYTES } from "./websocket.ts";

const http2 = transportFor("http2");

function listen(options: AdmittingListenOptions = {}): Promise<AdmittingListener> {
  return listenAdmitting(http2, options);
}

function randomBytes(length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let offset = 0; offset < length; offset += 65536) {
    crypto.getRandomValues(bytes.subarray(offset, offset + 65536));
  }
  return bytes;
}

async function dial(port: number, path?: string) {
  const certs = await testCertificates();
  return await http2.dial({
    hostname: "127.0.0.1",
    port,
    serverName: "localhost",
    caCertPem: certs.caCertPem,
    timeoutMs: 5000,
    ...(path !== undefined ? { path } : {}),
  });
}

Deno.test("http2 transport: a dialed connection and the admitted one carry bytes both ways, then half-close", async () => {
  const { listener, next } = await listen();
  const server = next();
  const dialed = await dial(listener.addr.port);
  const admitted = await server;
  await admitted.handshake();
  const up = randomBytes(300_000);
  const down = randomBytes(200_000);
  await Promise.all([writeAll(dialed, up), writeAll(admitted, down)]);
  assert.deepEqual(await readExactly(admitted, up.length), up);
  assert.deepEqual(await readExactly(dialed, down.length), down);
  await dialed.closeWrite();
  assert.equal(await admitted.read(new Uint8Array(16)), null, "the server reads the client's end");
  await writeAll(admitted, new Uint8Array([1, 2, 3]));
  assert.deepEqual(await readExactly(dialed, 3), new Uint8Array([1, 2, 3]), "the other way still flows");
  await admitted.closeWrite();
  assert.equal(await dialed.read(new Uint8Array(16)), null);
  dialed.close();
  admitted.close();
  listener.close();
});

Deno.test("http2 transport: a reader that stops makes the writer wait (flow control), not the heap grow", async () => {
  const { listener, next } = await listen();
  const server = next();
  const dialed = await dial(listener.addr.port);
  const admitted = await server;
  await admitted.handshake();
  let taken = 0;
  const chunk = new Uint8Array(64 * 1024);
  const writer = (async () => {
    try {
      for (let i = 0; i < 512; i++) taken += await dialed.write(chunk); // 32 MiB
    } catch {
      // closed at the end of the test
    }
  })();
  await new Promise((resolve) => setTimeout(resolve, 1500));
  const stalledAt = taken;
  await new Promise((resolve) => setTimeout(resolve, 500));
  assert.equal(taken, stalledAt, "the writer is stopped while nobody reads");
  // The stream's window, plus the read-ahead before the reader pauses, plus socket buffers.
  assert.ok(
    taken <= HTTP2_WINDOW_BYTES + 4 * 1024 * 1024,
    `the writer got ${taken} bytes through to a server that reads nothing`,
  );
  const takenBefore = taken;
  // Reading resumes the flow (a window update comes once half the window is consumed).
  await readExactly(admitted, taken);
  const readAtMs = performance.now();
  while (taken === takenBefore && performance.now() - readAtMs < 2000) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.ok(taken > takenBefore, "reading lets the writer go on");
  dialed.close();
  admitted.close();
  await writer;
  listener.close();
});

Deno.test("http2 transport: another path is answered 404 and fails the dial with the status", async () => {
  const { listener, next } = await listen();
  const server = next();
  await assert.rejects(
    () => dial(listener.addr.port, "/other"),
    (error: unknown) => error instanceof TransportDialError && /answered 404/.test(error.message),
  );
  const admitted = await server;
  admitted.close();
  await assert.rejects(() => admitted.handshake());
  listener.close();
});

Deno.test("http2 transport: a peer that never sends the preface is closed at the handshake timeout", async () => {
  const { listener, next } = await listen({ handshakeTimeoutMs: 300 });
  const server = next();
  const tcp = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const admitted = await server;
  const startedMs = performance.now();
  await assert.rejects(() => admitted.handshake(), TransportHandshakeTimeoutError);
  assert.ok(performance.now() - startedMs < 2000);
  // The server closed the socket: the peer reads the end (or a reset).
  const ended = await tcp.read(new Uint8Array(16)).catch(() => null);
  assert.equal(ended, null);
  tcp.close();
  listener.close();
});

Deno.test("http2 transport: behind_proxy serves h2c; a flood of non-tunnel streams closes the connection", async () => {
  const { listener, next } = await listen({ plainText: true });
  const server = next();
  const tcp = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const nodeHttp2 = await import("node:http2");
  const { duplexConnStream } = await import("./http2.ts");
  const duplex = await duplexConnStream(tcp);
  const session = nodeHttp2.connect("http://127.0.0.1", { createConnection: () => duplex });
  session.on("error", () => {});
  const statuses: number[] = [];
  let closed = false;
  session.once("close", () => (closed = true));
  for (let i = 0; i < HTTP2_MAX_OTHER_STREAMS + 8 && !closed; i++) {
    let stream;
    try {
      stream = session.request({ ":method": "GET", ":path": `/page${i}` });
    } catch {
      statuses.push(-1); // the server's GOAWAY arrived: no new stream
      break;
    }
    stream.on("error", () => {});
    const status = await new Promise<number>((resolve) => {
      stream.once("response", (headers) => resolve(Number(headers[":status"])));
      stream.once("close", () => resolve(0));
    });
    stream.resume();
    statuses.push(status);
  }
  assert.deepEqual(statuses.slice(0, HTTP2_MAX_OTHER_STREAMS), new Array(HTTP2_MAX_OTHER_STREAMS).fill(404));
  const after = statuses.slice(HTTP2_MAX_OTHER_STREAMS);
  assert.ok(
    after.length >= 1 && after.length <= 2 && after.every((status) => status <= 0),
    `statuses ${statuses}`,
  );
  const admitted = await server;
  await assert.rejects(() => admitted.handshake());
  session.destroy();
  listener.close();
});

Deno.test("http2 transport: behind_proxy h2c carries the tunnel; the path matches with a trailing slash", async () => {
  const { listener, next } = await listen({ plainText: true, path: "/t" });
  const server = next();
  const tcp = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const tunnel = await openHttp2Tunnel(tcp, {
    authority: "example.test",
    path: "/t/",
    scheme: "http",
    timeoutMs: 3000,
    where: "test",
  });
  const admitted = await server;
  await admitted.handshake();
  await writeAll(tunnel, new Uint8Array([7, 8]));
  assert.deepEqual(await readExactly(admitted, 2), new Uint8Array([7, 8]));
  tunnel.close();
  assert.equal(await admitted.read(new Uint8Array(4)).catch(() => null), null);
  admitted.close();
  listener.close();
});

for (const verify of ["ca_cert_path", "skip_verify"] as const) {
  Deno.test(`http2 transport: the client offers ALPN h2 (${verify}); a TLS server that never speaks HTTP/2 fails the dial in time`, async () => {
    const certs = await testCertificates();
    const [net, tls] = await Promise.all([import("node:net"), import("node:tls")]);
    const negotiated: (string | false | null)[] = [];
    const sockets: import("node:net").Socket[] = [];
    const server = net.createServer((socket) => {
      sockets.push(socket);
      const secure = new tls.TLSSocket(socket, {
        isServer: true,
        secureContext: tls.createSecureContext({ cert: certs.serverChainPem, key: certs.serverKeyPem }),
        ALPNProtocols: ["h2"],
      });
      secure.on("error", () => {});
      secure.once("secure", () => negotiated.push(secure.alpnProtocol ?? null));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
    const address = server.address();
    assert.ok(address !== null && typeof address !== "string");
    const startedMs = performance.now();
    await assert.rejects(
      () =>
        http2.dial({
          hostname: "127.0.0.1",
          port: address.port,
          serverName: "localhost",
          ...(verify === "skip_verify" ? { skipVerify: true } : { caCertPem: certs.caCertPem }),
          timeoutMs: 700,
        }),
      (error: unknown) => error instanceof TransportDialError && /HTTP\/2 tunnel request/.test(error.message),
    );
    assert.ok(performance.now() - startedMs < 3000);
    assert.deepEqual(negotiated, ["h2"]);
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
}

Deno.test("http2 transport: a PING flood from a peer that never reads its answers closes the connection", async () => {
  const { listener, next } = await listen({ plainText: true, handshakeTimeoutMs: 10_000 });
  const server = next();
  const tcp = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const admitted = await server;
  const ping = [0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
  const flood = new Uint8Array(ping.length * 20_000);
  for (let i = 0; i < 20_000; i++) flood.set(ping, i * ping.length);
  const startedMs = performance.now();
  // The preface, an empty SETTINGS, then 20 000 PINGs; their ACKs are never read.
  await writeAll(tcp, new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
  await writeAll(tcp, new Uint8Array([0, 0, 0, 4, 0, 0, 0, 0, 0]));
  void writeAll(tcp, flood).catch(() => {});
  await assert.rejects(() => admitted.handshake());
  assert.ok(performance.now() - startedMs < 5000, "closed long before the 10 s handshake timeout");
  tcp.close();
  listener.close();
});

Deno.test("http2 transport: streams opened and reset at once (rapid reset) count as non-tunnel streams and close the connection", async () => {
  const { listener, next } = await listen({ plainText: true, handshakeTimeoutMs: 10_000 });
  const server = next();
  const tcp = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const nodeHttp2 = await import("node:http2");
  const { duplexConnStream } = await import("./http2.ts");
  const duplex = await duplexConnStream(tcp);
  const session = nodeHttp2.connect("http://127.0.0.1", { createConnection: () => duplex });
  session.on("error", () => {});
  await new Promise((resolve) => session.once("connect", resolve));
  const admitted = await server;
  const startedMs = performance.now();
  let opened = 0;
  for (; opened < 2000; opened++) {
    try {
      const stream = session.request({ ":method": "POST", ":path": "/elsewhere" });
      stream.on("error", () => {});
      stream.close(nodeHttp2.constants.NGHTTP2_CANCEL);
    } catch {
      break; // the server's GOAWAY arrived
    }
    if (opened % 50 === 0) await new Promise((resolve) => setTimeout(resolve, 0));
  }
  await assert.rejects(() => admitted.handshake());
  assert.ok(performance.now() - startedMs < 5000, "closed long before the 10 s handshake timeout");
  session.destroy();
  listener.close();
});

Deno.test("http2 transport: aborting the dial while the HTTP/2 request waits rejects at once and leaves nothing open", async () => {
  const certs = await testCertificates();
  const [net, tls] = await Promise.all([import("node:net"), import("node:tls")]);
  const closed = Promise.withResolvers<void>();
  const server = net.createServer((socket) => {
    const secure = new tls.TLSSocket(socket, {
      isServer: true,
      secureContext: tls.createSecureContext({ cert: certs.serverChainPem, key: certs.serverKeyPem }),
    });
    secure.on("error", () => {});
    // Read (and drop) what the client sends, so its end is seen: the dial's abort must close it.
    secure.resume();
    secure.once("end", () => closed.resolve());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const address = server.address();
  assert.ok(address !== null && typeof address !== "string");
  const abort = new AbortController();
  setTimeout(() => abort.abort(new Error("stop")), 300);
  const startedMs = performance.now();
  await assert.rejects(
    () =>
      http2.dial({
        hostname: "127.0.0.1",
        port: address.port,
        serverName: "localhost",
        caCertPem: certs.caCertPem,
        timeoutMs: 10_000,
      }, abort.signal),
    (error: unknown) => error instanceof TransportDialError && /^Aborted while opening/.test(error.message),
  );
  assert.ok(performance.now() - startedMs < 2000, "the abort ended the dial, not the 10 s timeout");
  await closed.promise;
  await new Promise((resolve) => server.close(resolve));
});

/** `curl --http1.1` against `url`: the status and the body. */
async function curlHttp11(url: string): Promise<{ status: string; body: string }> {
  const output = await new Deno.Command("curl", {
    args: ["--silent", "--insecure", "--http1.1", "--max-time", "5", "--write-out", "\n%{http_code}", url],
    stdout: "piped",
    stderr: "null",
  }).output();
  const text = new TextDecoder().decode(output.stdout);
  const cut = text.lastIndexOf("\n");
  return { status: text.slice(cut + 1), body: text.slice(0, cut) };
}

for (const plainText of [false, true]) {
  const scheme = plainText ? "http" : "https";
  Deno.test(`http2 transport: curl --http1.1 over ${plainText ? "h2c (behind_proxy)" : "TLS"} gets an ordinary 404 page, not a TLS alert or HTTP/2 frames`, async () => {
    const { listener, next } = await listen(plainText ? { plainText: true } : {});
    const server = next();
    const answer = await curlHttp11(`${scheme}://127.0.0.1:${listener.addr.port}/anything`);
    assert.equal(answer.status, "404");
    assert.match(answer.body, /<h1>Not Found<\/h1>/);
    const admitted = await server;
    await assert.rejects(() => admitted.handshake(), Http1RequestRefusedError);
    listener.close();
  });
}

Deno.test("http2 transport: a raw HTTP/1.1 GET over TLS with ALPN http/1.1 negotiates http/1.1 and gets 404", async () => {
  const certs = await testCertificates();
  const { listener, next } = await listen();
  const server = next();
  const tls = await Deno.connectTls({
    hostname: "127.0.0.1",
    port: listener.addr.port,
    caCerts: [certs.caCertPem],
    alpnProtocols: ["http/1.1"],
  });
  const handshake = await tls.handshake();
  assert.equal(handshake.alpnProtocol, "http/1.1");
  // The tunnel's path too: over HTTP/1.1 it is not the tunnel.
  await writeAll(tls, new TextEncoder().encode("GET /tunnel HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  const answer = new TextDecoder().decode(await readAll(tls));
  assert.match(answer, /^HTTP\/1\.1 404 Not Found\r\n/);
  assert.match(answer, /Connection: close/);
  const admitted = await server;
  await assert.rejects(() => admitted.handshake(), Http1RequestRefusedError);
  tls.close();
  listener.close();
});

Deno.test("http2 transport: an oversized HTTP/1.1 head gets 431 and is closed; a slow one is closed at the handshake timeout", async () => {
  const { listener, next } = await listen({ plainText: true, handshakeTimeoutMs: 400 });
  // Oversized: more than MAX_HTTP_HEAD_BYTES of headers, never the empty line.
  let server = next();
  const big = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const header = `X-Filler: ${"a".repeat(1000)}\r\n`;
  await writeAll(
    big,
    new TextEncoder().encode(`GET / HTTP/1.1\r\n${header.repeat(MAX_HTTP_HEAD_BYTES / 1000 + 2)}`),
  );
  const bigAnswer = new TextDecoder().decode(await readAll(big));
  assert.match(bigAnswer, /^HTTP\/1\.1 431 /);
  await assert.rejects(async () => await (await server).handshake(), Http1RequestRefusedError);
  big.close();
  // Slow: a request line, then nothing.
  server = next();
  const slow = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  await writeAll(slow, new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n"));
  const startedMs = performance.now();
  const admitted = await server;
  await assert.rejects(() => admitted.handshake(), TransportHandshakeTimeoutError);
  const ended = await slow.read(new Uint8Array(16)).catch(() => null);
  assert.equal(ended, null);
  assert.ok(performance.now() - startedMs < 2000);
  slow.close();
  listener.close();
});

async function readAll(conn: { read(b: Uint8Array): Promise<number | null> }): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const buffer = new Uint8Array(16 * 1024);
  for (;;) {
    const count = await conn.read(buffer).catch(() => null);
    if (count === null) break;
    chunks.push(buffer.slice(0, count));
  }
  const out = new Uint8Array(chunks.reduce((sum, chunk) => sum + chunk.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

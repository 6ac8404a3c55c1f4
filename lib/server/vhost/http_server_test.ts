/**
 * The vhost servers in-process against hostile and unusual peers: slow and oversized heads, too many
 * headers, pipelined requests, a flood of half-sent heads, request smuggling, close-delimited and HEAD
 * responses; for HTTPS, slow, garbage and unknown ClientHellos and a routed one handed over intact.
 * The proxy behind a route is a fake whose streams are plain TCP connections to a local service.
 */

import assert from "node:assert/strict";
import { ProxyStats } from "../../stats/proxy_stats.ts";
import type { OutsideConn } from "../proxy_kinds/kind.ts";
import { VhostHttpServer } from "./http_server.ts";
import { VhostHttpsServer } from "./https_server.ts";
import { VhostRouter } from "./router.ts";
import { VhostStats } from "./stats.ts";
import type { VhostProxyTarget } from "./target.ts";
import type { ProxySpec } from "../../protocol/control.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A route target whose streams are TCP connections to `port` (no tunnel in between). */
function target(name: string, port: number, delivered: OutsideConn[] = []): VhostProxyTarget {
  const spec: ProxySpec = {
    name,
    proxy_type: "http",
    publish_addr: "127.0.0.1",
    publish_port: 0,
    local_addr: "127.0.0.1",
    local_port: port,
  };
  return {
    clientId: name,
    clientName: name,
    proxyName: name,
    spec,
    stats: new ProxyStats(),
    unavailable: false,
    async openRoutedStream() {
      const stream = await Deno.connect({ hostname: "127.0.0.1", port });
      return { stream, done: () => {} };
    },
    deliver(conn) {
      delivered.push(conn);
      return true;
    },
  };
}

/** A raw local service: answers each connection with `respond(requestText)` once a head arrived. */
function rawService(respond: (request: string) => string): { port: number; close(): Promise<void> } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const loop = (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      (async () => {
        let text = "";
        const buffer = new Uint8Array(4096);
        try {
          while (true) {
            const count = await conn.read(buffer);
            if (count === null) break;
            text += decoder.decode(buffer.subarray(0, count));
            while (text.includes("\r\n\r\n")) {
              const end = text.indexOf("\r\n\r\n") + 4;
              const answer = respond(text.slice(0, end));
              text = text.slice(end);
              await conn.write(encoder.encode(answer));
              if (answer.includes("Connection: close")) {
                conn.close();
                return;
              }
            }
          }
        } catch {
          // The vhost closed it.
        } finally {
          conns.delete(conn);
          try {
            conn.close();
          } catch {
            // Closed already.
          }
        }
      })();
    }
  })();
  return {
    port: listener.addr.port,
    async close() {
      listener.close();
      for (const conn of conns) conn.close();
      await loop;
    },
  };
}

/** Reads until the peer closes (or `limitMs` passes); returns the text and whether it closed. */
async function readAll(conn: Deno.Conn, limitMs = 3000): Promise<{ text: string; closed: boolean }> {
  let text = "";
  const buffer = new Uint8Array(65536);
  const timer = setTimeout(() => conn.close(), limitMs);
  try {
    while (true) {
      const count = await conn.read(buffer);
      if (count === null) return { text, closed: true };
      text += decoder.decode(buffer.subarray(0, count));
    }
  } catch {
    return { text, closed: false };
  } finally {
    clearTimeout(timer);
  }
}

async function withHttpVhost(
  respond: (request: string) => string,
  run: (port: number, stats: VhostStats) => Promise<void>,
): Promise<void> {
  const service = rawService(respond);
  const router = new VhostRouter<VhostProxyTarget>();
  router.add(target("web", service.port), ["app.example.com"], []);
  const stats = new VhostStats();
  const server = new VhostHttpServer({
    hostname: "127.0.0.1",
    port: 0,
    router,
    stats,
    requestTimeoutMs: 1000,
    headTimeoutMs: 300,
    idleTimeoutMs: 300,
  });
  const serving = server.serve();
  try {
    await run(server.addr.port, stats);
  } finally {
    await server.close();
    await serving;
    await service.close();
  }
}

const OK = (body: string) => `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`;

Deno.test("a head that never ends is closed at the head timeout, without an answer", async () => {
  await withHttpVhost(() => OK("x"), async (port) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(encoder.encode("GET / HTTP/1.1\r\nHost: app.exa"));
    const started = performance.now();
    const { text, closed } = await readAll(conn);
    assert.ok(closed, "closed by the server");
    assert.equal(text, "");
    assert.ok(performance.now() - started < 2000);
  });
});

Deno.test("an oversized head and too many header lines get 431 and the connection closes", async () => {
  await withHttpVhost(() => OK("x"), async (port) => {
    for (
      const request of [
        "GET / HTTP/1.1\r\nHost: app.example.com\r\nX: " + "a".repeat(20_000) + "\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: app.example.com\r\n" + "X-A: b\r\n".repeat(150) + "\r\n",
      ]
    ) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      await conn.write(encoder.encode(request)).catch(() => 0);
      const { text, closed } = await readAll(conn);
      assert.match(text, /^HTTP\/1\.1 431 /);
      assert.ok(closed);
    }
  });
});

Deno.test("pipelined requests are answered in order on one connection", async () => {
  let served = 0;
  await withHttpVhost((request) => OK(`${++served}:${request.split(" ")[1]}`), async (port) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(encoder.encode(
      "GET /one HTTP/1.1\r\nHost: app.example.com\r\n\r\n" +
        "GET /two HTTP/1.1\r\nHost: nope.example.com\r\n\r\n" +
        "GET /three HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n",
    ));
    const { text } = await readAll(conn);
    const bodies = text.split(/HTTP\/1\.1 /).slice(1).map((part) =>
      part.slice(0, 3) + part.slice(part.indexOf("\r\n\r\n") + 4)
    );
    assert.equal(bodies.length, 3, text);
    assert.equal(bodies[0], "2001:/one");
    assert.match(bodies[1] ?? "", /^503no tunnel is serving nope\.example\.com right now\n$/);
    assert.equal(bodies[2], "2002:/three");
  });
});

Deno.test("a flood of half-sent heads is closed at the head timeout; a normal request still goes through", async () => {
  await withHttpVhost(() => OK("fine"), async (port) => {
    const conns = await Promise.all(
      Array.from({ length: 50 }, () => Deno.connect({ hostname: "127.0.0.1", port })),
    );
    await Promise.all(conns.map((conn) => conn.write(encoder.encode("GET / HTTP/1.1\r\n"))));
    const healthy = await Deno.connect({ hostname: "127.0.0.1", port });
    await healthy.write(
      encoder.encode("GET / HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n"),
    );
    assert.match((await readAll(healthy)).text, /^HTTP\/1\.1 200 OK[\s\S]*fine$/);
    const results = await Promise.all(conns.map((conn) => readAll(conn)));
    assert.ok(results.every((result) => result.closed && result.text === ""));
  });
});

Deno.test("requests that could be read two ways, and HTTP/2 prefaces, are refused", async () => {
  await withHttpVhost(() => OK("x"), async (port) => {
    const cases: Array<[string, RegExp]> = [
      [
        "POST / HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        /^HTTP\/1\.1 400 /,
      ],
      ["GET / HTTP/1.1\r\nHost: a.example.com\r\nHost: app.example.com\r\n\r\n", /^HTTP\/1\.1 400 /],
      ["GET / HTTP/1.1\r\n\r\n", /^HTTP\/1\.1 400 /],
      ["PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", /^HTTP\/1\.1 505 /],
      ["CONNECT app.example.com:443 HTTP/1.1\r\nHost: app.example.com:443\r\n\r\n", /^HTTP\/1\.1 405 /],
      ["\u0016\u0003\u0001\u0000\u0005hello\r\n\r\n", /^HTTP\/1\.1 400 /],
    ];
    for (const [request, expected] of cases) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      await conn.write(encoder.encode(request));
      const { text, closed } = await readAll(conn);
      assert.match(text, expected, JSON.stringify(request));
      assert.ok(closed);
    }
  });
});

Deno.test("a close-delimited response ends the connection; a HEAD answer has no body", async () => {
  await withHttpVhost(
    (request) =>
      request.startsWith("HEAD")
        ? "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
        : "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close",
    async (port) => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      await conn.write(encoder.encode("HEAD / HTTP/1.1\r\nHost: app.example.com\r\n\r\n"));
      await conn.write(encoder.encode("GET / HTTP/1.1\r\nHost: app.example.com\r\n\r\n"));
      const { text, closed } = await readAll(conn);
      assert.ok(closed);
      assert.match(text, /^HTTP\/1\.1 200 OK\r\nContent-Length: 1000\r\n\r\nHTTP\/1\.1 200 OK\r\n/);
      assert.ok(text.endsWith("until close"));
    },
  );
});

Deno.test("an upload that stalls mid-body is cut at the idle timeout; a garbage answer gets 502", async () => {
  await withHttpVhost(
    // The service waits for the whole upload before answering (writes nothing on its head).
    (request) => request.startsWith("GET /garbage") ? "NOT HTTP AT ALL\r\n\r\n" : "",
    async (port) => {
      const stalled = await Deno.connect({ hostname: "127.0.0.1", port });
      await stalled.write(
        encoder.encode("POST / HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 1000\r\n\r\nonly this"),
      );
      const started = performance.now();
      const cut = await readAll(stalled);
      assert.ok(cut.closed, "closed by the server");
      const elapsedMs = performance.now() - started;
      assert.ok(
        elapsedMs >= 250 && elapsedMs < 2500,
        `at the idle timeout (300 ms), not at once: ${elapsedMs} ms`,
      );
      const garbage = await Deno.connect({ hostname: "127.0.0.1", port });
      await garbage.write(encoder.encode("GET /garbage HTTP/1.1\r\nHost: app.example.com\r\n\r\n"));
      const { text, closed } = await readAll(garbage);
      assert.match(text, /^HTTP\/1\.1 502 Bad Gateway\r\n[\s\S]*sent no valid answer/);
      assert.ok(closed);
    },
  );
});

Deno.test("https: slow, garbage and unknown-SNI ClientHellos are closed; a routed one arrives intact", async () => {
  const delivered: OutsideConn[] = [];
  const router = new VhostRouter<VhostProxyTarget>();
  router.add(target("secure", 1, delivered), ["secure.example.com"], []);
  const stats = new VhostStats();
  const server = new VhostHttpsServer({ hostname: "127.0.0.1", port: 0, router, stats, helloTimeoutMs: 300 });
  const serving = server.serve();
  const hello = (name: string) => {
    const u16 = (n: number) => [(n >> 8) & 0xff, n & 0xff];
    const host = [...encoder.encode(name)];
    const entry = [0, ...u16(host.length), ...host];
    const sni = [...u16(0), ...u16(entry.length + 2), ...u16(entry.length), ...entry];
    const body = [3, 3, ...new Array(32).fill(1), 0, 0, 2, 0x13, 1, 1, 0, ...u16(sni.length), ...sni];
    const message = [1, 0, ...u16(body.length), ...body];
    return new Uint8Array([0x16, 3, 1, ...u16(message.length), ...message]);
  };
  try {
    for (
      const first of [
        encoder.encode("\u0016\u0003"),
        encoder.encode("GET / HTTP/1.1\r\n\r\n"),
        hello("unknown.example.com"),
      ]
    ) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
      await conn.write(first);
      const { text, closed } = await readAll(conn);
      assert.ok(closed && text === "", "closed without a byte");
    }
    assert.equal(stats.httpsRefusedTotal, 3);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
    const bytes = hello("Secure.Example.com");
    // Split across writes: the router waits for the whole ClientHello.
    await conn.write(bytes.subarray(0, 7));
    await new Promise((resolve) => setTimeout(resolve, 50));
    await conn.write(bytes.subarray(7));
    await conn.write(encoder.encode("after"));
    const deadline = Date.now() + 2000;
    while (delivered.length === 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const routed = delivered[0];
    assert.ok(routed, "the connection was handed to the proxy");
    const received = new Uint8Array(bytes.length + 5);
    let at = 0;
    while (at < received.length) {
      const count = await routed.read(received.subarray(at));
      assert.ok(count !== null);
      at += count;
    }
    assert.deepEqual(received.subarray(0, bytes.length), bytes, "the ClientHello comes first, unchanged");
    assert.equal(decoder.decode(received.subarray(bytes.length)), "after");
    routed.close();
    conn.close();
  } finally {
    await server.close();
    await serving;
  }
});

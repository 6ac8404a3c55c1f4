import assert from "node:assert/strict";
import {
  ChunkedBodyError,
  ChunkedScanner,
  findHeadEnd,
  forwardedRequestHead,
  HttpHeadError,
  MAX_HEAD_BYTES,
  parseRequestHead,
  parseResponseHead,
  requestFraming,
  responseFraming,
} from "./http_head.ts";
import { BufferedReader } from "./reader.ts";
import { memoryPair } from "../../net/memory_pair.ts";
import { locationMatches, MAX_VHOST_ROUTES, VhostRouter } from "./router.ts";
import { escapeHtml, statusResponse } from "./pages.ts";

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (data: Uint8Array) => new TextDecoder().decode(data);

function status(fn: () => unknown): number {
  try {
    fn();
  } catch (error) {
    if (error instanceof HttpHeadError) return error.status;
    throw error;
  }
  return 0;
}

Deno.test("a request head is parsed: method, target, version, headers in order", () => {
  const head = parseRequestHead(bytes("POST /api?x=1 HTTP/1.1\r\nHost: app.example.com\r\nX-A:  b \r\n\r\n"));
  assert.equal(head.method, "POST");
  assert.equal(head.target, "/api?x=1");
  assert.equal(head.minorVersion, 1);
  assert.deepEqual(head.headers, [{ name: "Host", value: "app.example.com" }, { name: "X-A", value: "b" }]);
  assert.equal(findHeadEnd(bytes("GET / HTTP/1.1\nHost: a\n\nrest")), 24);
  assert.equal(findHeadEnd(bytes("GET / HTTP/1.1\r\nHost: a\r\n")), -1);
});

Deno.test("hostile request heads are refused with the right status", () => {
  assert.equal(status(() => parseRequestHead(bytes("GET /\r\n\r\n"))), 400);
  assert.equal(status(() => parseRequestHead(bytes("GET  / HTTP/1.1\r\n\r\n"))), 400);
  assert.equal(status(() => parseRequestHead(bytes("GET / HTTP/2.0\r\n\r\n"))), 505);
  assert.equal(status(() => parseRequestHead(bytes("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))), 505);
  assert.equal(status(() => parseRequestHead(bytes("GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n"))), 400);
  assert.equal(status(() => parseRequestHead(bytes("GET / HTTP/1.1\r\nX: a\u0000b\r\n\r\n"))), 400);
  assert.equal(status(() => parseRequestHead(bytes("GET / HTTP/1.1\r\nBad Name: a\r\n\r\n"))), 400);
  assert.equal(status(() => parseRequestHead(bytes("GET / HTTP/1.1\r\n: a\r\n\r\n"))), 400);
  const many = "GET / HTTP/1.1\r\n" + "X: y\r\n".repeat(101) + "\r\n";
  assert.equal(status(() => parseRequestHead(bytes(many))), 431);
  const big = "GET / HTTP/1.1\r\nX: " + "y".repeat(MAX_HEAD_BYTES) + "\r\n\r\n";
  assert.equal(status(() => parseRequestHead(bytes(big))), 431);
});

Deno.test("request framing refuses what could be read two ways (smuggling)", () => {
  const framing = (head: string) => requestFraming(parseRequestHead(bytes(head + "\r\n")));
  assert.deepEqual(framing("GET / HTTP/1.1\r\n"), { kind: "none" });
  assert.deepEqual(framing("POST / HTTP/1.1\r\nContent-Length: 5\r\n"), { kind: "length", bytes: 5 });
  assert.deepEqual(framing("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n"), { kind: "length", bytes: 5 });
  assert.deepEqual(framing("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n"), { kind: "chunked" });
  assert.equal(status(() => framing("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n")), 400);
  assert.equal(status(() => framing("POST / HTTP/1.1\r\nContent-Length: -1\r\n")), 400);
  assert.equal(status(() => framing("POST / HTTP/1.1\r\nContent-Length: 1e3\r\n")), 400);
  assert.equal(
    status(() => framing("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n")),
    400,
  );
  assert.equal(status(() => framing("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n")), 501);
  assert.equal(status(() => framing("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n")), 400);
});

Deno.test("response framing follows RFC 9112: HEAD, 1xx, 204, 304 have no body; no length reads to close", () => {
  const head = (text: string) => parseResponseHead(bytes(text + "\r\n"));
  assert.deepEqual(responseFraming("HEAD", head("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n")), {
    kind: "none",
  });
  assert.deepEqual(responseFraming("GET", head("HTTP/1.1 204 No Content\r\n")), { kind: "none" });
  assert.deepEqual(responseFraming("GET", head("HTTP/1.1 304 Not Modified\r\n")), { kind: "none" });
  assert.deepEqual(responseFraming("GET", head("HTTP/1.1 200 OK\r\n")), { kind: "close" });
  assert.deepEqual(responseFraming("GET", head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n")), {
    kind: "chunked",
  });
  assert.deepEqual(responseFraming("GET", head("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n")), {
    kind: "length",
    bytes: 3,
  });
  assert.equal(parseResponseHead(bytes("HTTP/1.1 404\r\n\r\n")).status, 404);
  assert.equal(status(() => parseResponseHead(bytes("HTTP/1.1 20 OK\r\n\r\n"))), 400);
});

Deno.test("the chunked scanner finds the end of a body split anywhere, trailers included", () => {
  const body = "4\r\nWiki\r\n5;ext=1\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nTrailer: x\r\n\r\n";
  const after = "GET /next HTTP/1.1\r\n";
  const all = bytes(body + after);
  for (let split = 0; split <= all.length; split++) {
    const scanner = new ChunkedScanner();
    const first = scanner.feed(all.subarray(0, split));
    const used = scanner.done ? first : first + scanner.feed(all.subarray(split));
    assert.ok(scanner.done, `split at ${split}`);
    assert.equal(used, body.length, `split at ${split}`);
  }
  const simple = new ChunkedScanner();
  assert.equal(simple.feed(bytes("0\r\n\r\nX")), 5);
});

Deno.test("the chunked scanner refuses malformed and unbounded bodies", () => {
  const cases = [
    "x\r\n",
    "\r\n",
    "4\r\nWikiXX",
    "1234567890abcdef0\r\n",
    "1;" + "e".repeat(5000),
    "0\r\n" + "T: y\r\n".repeat(1000),
    "4\rX",
  ];
  for (const body of cases) {
    assert.throws(
      () => new ChunkedScanner().feed(bytes(body)),
      ChunkedBodyError,
      JSON.stringify(body.slice(0, 20)),
    );
  }
});

Deno.test("the forwarded head replaces X-Forwarded-* and rewrites Host when asked", () => {
  const head = parseRequestHead(
    bytes("GET / HTTP/1.1\r\nHost: app.example.com\r\nX-Forwarded-For: 6.6.6.6\r\nAccept: */*\r\n\r\n"),
  );
  const out = text(
    forwardedRequestHead(head, { peerHost: "10.1.2.3", proto: "http", host: "app.example.com" }),
  );
  assert.equal(
    out,
    "GET / HTTP/1.1\r\nHost: app.example.com\r\nAccept: */*\r\nX-Forwarded-For: 10.1.2.3\r\n" +
      "X-Forwarded-Proto: http\r\nX-Forwarded-Host: app.example.com\r\n\r\n",
  );
  const rewritten = text(
    forwardedRequestHead(head, { peerHost: "::1", proto: "http", host: "a", hostRewrite: "localhost:8080" }),
  );
  assert.match(rewritten, /\r\nHost: localhost:8080\r\n/);
});

Deno.test("the buffered reader reads heads split across reads and keeps what follows", async () => {
  const [a, b] = memoryPair();
  const reader = new BufferedReader(b);
  const writes = (async () => {
    for (const part of ["\r\nGET / HT", "TP/1.1\r\nHost: a\r", "\n\r\nbody", "GET /2 HTTP/1.1\r\n\r\n"]) {
      await a.write(bytes(part));
    }
    await a.closeWrite();
  })();
  assert.equal(text((await reader.readHead(1024)) ?? new Uint8Array()), "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  assert.equal(text((await reader.next(4)) ?? new Uint8Array()), "body");
  assert.equal(text((await reader.readHead(1024)) ?? new Uint8Array()), "GET /2 HTTP/1.1\r\n\r\n");
  assert.equal(await reader.readHead(1024), null);
  await writes;
  a.close();
  b.close();
});

Deno.test("the buffered reader refuses a head longer than its bound with 431", async () => {
  const [a, b] = memoryPair();
  const reader = new BufferedReader(b);
  const writes = a.write(bytes("GET / HTTP/1.1\r\nX: " + "y".repeat(300))).catch(() => 0);
  await assert.rejects(
    reader.readHead(256),
    (error: unknown) => error instanceof HttpHeadError && error.status === 431,
  );
  a.close();
  b.close();
  await writes;
});

Deno.test("the router picks the longest location at a segment boundary, per host", () => {
  const target = (name: string) => ({ clientId: name, clientName: name, proxyName: name });
  const router = new VhostRouter<ReturnType<typeof target>>();
  const web = target("web");
  const api = target("api");
  const v2 = target("v2");
  assert.equal(router.add(web, ["app.example.com"], []), null);
  assert.equal(router.add(api, ["app.example.com"], ["/api"]), null);
  assert.equal(router.add(v2, ["app.example.com"], ["/api/v2/"]), null);
  assert.equal(router.match("app.example.com", "/")?.target, web);
  assert.equal(router.match("app.example.com", "/api")?.target, api);
  assert.equal(router.match("app.example.com", "/api?x")?.target, api);
  assert.equal(router.match("app.example.com", "/api/v1")?.target, api);
  assert.equal(router.match("app.example.com", "/apis")?.target, web);
  assert.equal(router.match("app.example.com", "/api/v2/x")?.target, v2);
  assert.equal(router.match("other.example.com", "/"), null);
  assert.deepEqual(router.add(target("intruder"), ["app.example.com", "new.example.com"], ["/api"]), {
    host: "app.example.com",
    location: "/api",
    clientName: "api",
    proxyName: "api",
  });
  assert.equal(router.serves("new.example.com"), false, "a refused registration adds no route at all");
  // The stats endpoint's list: by host, longest location first, cut at the bound asked for.
  const other = target("b");
  assert.equal(router.add(other, ["b.example.com"], []), null);
  assert.deepEqual(router.list(10).map((route) => `${route.host}${route.location}`), [
    "app.example.com/api/v2/",
    "app.example.com/api",
    "app.example.com/",
    "b.example.com/",
  ]);
  assert.equal(router.list(2).length, 2);
  router.remove(other);
  assert.equal(router.remove(api), 1);
  assert.equal(router.match("app.example.com", "/api")?.target, web);
  router.remove(web);
  router.remove(v2);
  assert.equal(router.size, 0);
  assert.deepEqual(router.hosts(), []);
  assert.ok(locationMatches("/", "/anything"));
  assert.ok(!locationMatches("/a", "/b"));
  assert.ok(MAX_VHOST_ROUTES >= 1024);
});

Deno.test("own answers escape the host name and say what happened", () => {
  const page = text(
    statusResponse(503, "no tunnel is serving <b>x</b> right now", { html: true, close: false }),
  );
  assert.match(page, /^HTTP\/1\.1 503 Service Unavailable\r\n/);
  assert.match(page, /no tunnel is serving &#60;b&#62;x&#60;\/b&#62; right now/);
  assert.doesNotMatch(page, /<b>/);
  const plain = text(statusResponse(504, "slow", { html: false, close: true }));
  assert.match(plain, /Content-Type: text\/plain; charset=utf-8\r\n/);
  assert.match(plain, /Connection: close\r\n\r\nslow\n$/);
  assert.equal(escapeHtml(`"'&`), "&#34;&#39;&#38;");
});

import assert from "node:assert/strict";
import { HeadError, HeadReader, MAX_HEAD_BYTES } from "./forwarder_head.ts";
import {
  httpFailureResponse,
  HttpProxyRefusal,
  parseAuthority,
  parseHttpProxyHead,
  readHttpProxyRequest,
} from "./http_proxy_server.ts";

/** A connection that yields `chunks` one read each, then waits forever (or ends with `end`). */
function scripted(chunks: Uint8Array[], end = true) {
  return {
    read(buffer: Uint8Array): Promise<number | null> {
      const chunk = chunks.shift();
      if (chunk === undefined) return end ? Promise.resolve(null) : new Promise(() => {});
      buffer.set(chunk.subarray(0, buffer.length));
      if (chunk.length > buffer.length) chunks.unshift(chunk.subarray(buffer.length));
      return Promise.resolve(Math.min(chunk.length, buffer.length));
    },
  };
}

const text = (value: string) => new TextEncoder().encode(value);

function refusalOf(head: string, credentials: { username: string; password: string } | null = null) {
  try {
    parseHttpProxyHead(head, credentials);
  } catch (error) {
    if (error instanceof HttpProxyRefusal) return error.failure;
    throw error;
  }
  assert.fail(`accepted: ${JSON.stringify(head)}`);
}

Deno.test("CONNECT names a host:port, [IPv6]:port or IPv4 destination", () => {
  assert.deepEqual(
    parseHttpProxyHead("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", null),
    {
      kind: "connect",
      host: "example.com",
      port: 443,
      head: null,
    },
  );
  assert.deepEqual(parseAuthority("[2001:db8::1]:8443"), { host: "2001:db8::1", port: 8443 });
  assert.deepEqual(parseAuthority("10.0.0.1:22"), { host: "10.0.0.1", port: 22 });
  for (
    const bad of [
      "example.com",
      "example.com:0",
      "example.com:65536",
      "[::1",
      "user@host:80",
      "a b:80",
      ":80",
    ]
  ) {
    assert.equal(parseAuthority(bad), null, bad);
  }
});

Deno.test("an absolute-URI request is rewritten to origin-form with Host and Connection: close", () => {
  const request = parseHttpProxyHead(
    "GET http://Example.com:8080/a/b?q=1#frag HTTP/1.1\r\nHost: wrong.example\r\nUser-Agent: curl/8\r\n" +
      "Proxy-Connection: Keep-Alive\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nAccept: */*\r\n\r\n",
    null,
  );
  assert.equal(request.kind, "forward");
  assert.equal(request.host, "Example.com");
  assert.equal(request.port, 8080);
  assert.equal(
    new TextDecoder().decode(request.head ?? new Uint8Array()),
    "GET /a/b?q=1 HTTP/1.1\r\nHost: Example.com:8080\r\nUser-Agent: curl/8\r\nAccept: */*\r\nConnection: close\r\n\r\n",
  );
  const bare = parseHttpProxyHead("GET http://example.com HTTP/1.0\r\n\r\n", null);
  assert.equal(bare.port, 80);
  assert.match(
    new TextDecoder().decode(bare.head ?? new Uint8Array()),
    /^GET \/ HTTP\/1\.0\r\nHost: example\.com\r\n/,
  );
  const query = parseHttpProxyHead("GET http://example.com?x HTTP/1.1\r\n\r\n", null);
  assert.match(new TextDecoder().decode(query.head ?? new Uint8Array()), /^GET \/\?x HTTP\/1\.1\r\n/);
});

Deno.test("malformed request heads are refused with 400 and a reason", () => {
  const cases: [string, RegExp][] = [
    ["GARBAGE\r\n\r\n", /request line/],
    ["GET / HTTP/1.1\r\n\r\n", /this is a proxy/],
    ["GET https://example.com/ HTTP/1.1\r\n\r\n", /must be reached with CONNECT/],
    ["GET ftp://example.com/ HTTP/1.1\r\n\r\n", /this is a proxy/],
    ["GET http://user:pw@example.com/ HTTP/1.1\r\n\r\n", /host/],
    ["GET http://exa mple.com/ HTTP/1.1\r\n\r\n", /request line/],
    ["GET http://example.com/ HTTP/2.0\r\n\r\n", /request line/],
    ["GET http://example.com/ HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", /obs-fold/],
    ["GET http://example.com/ HTTP/1.1\r\nBad Name: x\r\n\r\n", /malformed/],
    ["GET http://example.com/ HTTP/1.1\r\nX: a\x00b\r\n\r\n", /malformed/],
    ["GET http://example.com/ HTTP/1.1\r\nX: a\rb\r\n\r\n", /malformed/],
    [
      "POST http://example.com/ HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
      /together/,
    ],
    ["POST http://example.com/ HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", /given twice/],
    ["POST http://example.com/ HTTP/1.1\r\nContent-Length: -1\r\n\r\n", /malformed/],
    ["POST http://example.com/ HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", /end with chunked/],
    ["CONNECT example.com HTTP/1.1\r\n\r\n", /host:port/],
    [`GET http://example.com/ HTTP/1.1\r\n${"X: y\r\n".repeat(101)}\r\n`, /101 header fields/],
  ];
  for (const [head, reason] of cases) {
    const failure = refusalOf(head);
    assert.equal(failure.kind, "bad_request", JSON.stringify(head));
    assert.match(failure.reason, reason, JSON.stringify(head));
  }
});

Deno.test("with credentials, Proxy-Authorization Basic must carry them, else 407", () => {
  const credentials = { username: "alice", password: "s3cret:pw" };
  const basic = (pair: string) => `Proxy-Authorization: Basic ${btoa(pair)}\r\n`;
  const head = (auth: string) => `CONNECT example.com:443 HTTP/1.1\r\n${auth}\r\n`;
  assert.equal(parseHttpProxyHead(head(basic("alice:s3cret:pw")), credentials).kind, "connect");
  assert.match(refusalOf(head(""), credentials).reason, /needs a user name and password/);
  assert.equal(refusalOf(head(basic("alice:wrong")), credentials).kind, "auth_required");
  assert.equal(refusalOf(head(basic("bob:s3cret:pw")), credentials).kind, "auth_required");
  assert.equal(refusalOf(head("Proxy-Authorization: Basic !!!\r\n"), credentials).kind, "auth_required");
  assert.equal(refusalOf(head("Proxy-Authorization: Bearer abc\r\n"), credentials).kind, "auth_required");
  const answer = new TextDecoder().decode(httpFailureResponse({ kind: "auth_required", reason: "no" }));
  assert.match(answer, /^HTTP\/1\.1 407 Proxy Authentication Required\r\n/);
  assert.match(answer, /\r\nProxy-Authenticate: Basic realm="tls-tunnel"\r\n/);
});

Deno.test("failure answers carry the status, Connection: close and the reason as body", () => {
  const answer = new TextDecoder().decode(
    httpFailureResponse({ kind: "forbidden", reason: "10.0.0.1 is a private address\r\nInjected: 1" }),
  );
  assert.match(answer, /^HTTP\/1\.1 403 Forbidden\r\n/);
  assert.match(answer, /\r\nConnection: close\r\n/);
  assert.ok(answer.endsWith("\r\n\r\n10.0.0.1 is a private address  Injected: 1\n"), "no header injection");
  const length = Number(/Content-Length: (\d+)/.exec(answer)?.[1]);
  assert.equal(length, new TextEncoder().encode(answer.split("\r\n\r\n")[1] ?? "").length);
  assert.match(
    new TextDecoder().decode(httpFailureResponse({ kind: "timeout", reason: "x" })),
    /^HTTP\/1\.1 504 /,
  );
  assert.match(
    new TextDecoder().decode(httpFailureResponse({ kind: "unreachable", reason: "x" })),
    /^HTTP\/1\.1 502 /,
  );
});

Deno.test("a head split over many reads is read whole; bytes after it stay for the destination", async () => {
  const raw = "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01early";
  const reader = new HeadReader(scripted([...raw].map((char) => text(char))), new AbortController().signal);
  const request = await readHttpProxyRequest(reader, null);
  assert.equal(request.kind, "connect");
  assert.deepEqual(reader.rest(), new Uint8Array(0), "one byte per read: nothing is read past the head");
  const whole = new HeadReader(scripted([text(raw)]), new AbortController().signal);
  await readHttpProxyRequest(whole, null);
  assert.deepEqual(new TextDecoder().decode(whole.rest()), "\x16\x03\x01early");
});

Deno.test("an oversized head is refused after MAX_HEAD_BYTES, not buffered further", async () => {
  let served = 0;
  const endless = {
    read(buffer: Uint8Array) {
      buffer.fill(0x41);
      served += buffer.length;
      return Promise.resolve(buffer.length);
    },
  };
  const reader = new HeadReader(endless, new AbortController().signal);
  await assert.rejects(readHttpProxyRequest(reader, null), (error: unknown) => {
    assert.ok(error instanceof HeadError);
    assert.equal(error.kind, "too_large");
    return true;
  });
  assert.equal(served, MAX_HEAD_BYTES);
});

Deno.test("a slow head (slowloris) fails at the deadline, whatever it trickles", async () => {
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(), 50);
  const trickle = scripted([text("GET http://a/ HTTP/1.1\r\n"), text("X: 1\r\n")], false);
  try {
    await assert.rejects(
      readHttpProxyRequest(new HeadReader(trickle, deadline.signal), null),
      (error: unknown) => {
        assert.ok(error instanceof HeadError);
        assert.equal(error.kind, "timeout");
        return true;
      },
    );
  } finally {
    clearTimeout(timer);
  }
});

Deno.test("a connection that ends mid-head is a closed HeadError", async () => {
  const reader = new HeadReader(scripted([text("CONNECT a:1 HTTP/1.1\r\n")]), new AbortController().signal);
  await assert.rejects(
    readHttpProxyRequest(reader, null),
    (error: unknown) => error instanceof HeadError && error.kind === "closed",
  );
});

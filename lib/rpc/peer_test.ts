import assert from "node:assert/strict";
import { concatBytes } from "../../testing/bytes.ts";
import fc from "fast-check";
import { z } from "zod";
import { type DuplexConn, writeAll } from "../net/conn.ts";
import { type MemoryConn, memoryPair } from "../net/memory_pair.ts";
import { encodeFrame, FRAME_HEADER_BYTES, FrameReader, FrameTooLargeError } from "./framing.ts";
import {
  INTERNAL_ERROR,
  INVALID_PARAMS,
  INVALID_REQUEST,
  type JsonRpcErrorResponse,
  METHOD_NOT_FOUND,
  PARSE_ERROR,
  parseMessage,
  RpcError,
  SERVER_OVERLOADED,
} from "./messages.ts";
import {
  MAX_PENDING_WRITES,
  type RequestContext,
  RpcClosedError,
  RpcInvalidResultError,
  RpcPeer,
  type RpcPeerOptions,
  RpcTimeoutError,
} from "./peer.ts";

const concat = (...parts: Uint8Array[]) => concatBytes(parts);

/** A promise with its resolver, to hold handlers until the test releases them. */
function gate<T = void>(): { promise: Promise<T>; open: (value: T) => void } {
  let open: (value: T) => void = () => {};
  const promise = new Promise<T>((resolve) => (open = resolve));
  return { promise, open };
}

/** Two connected peers; closes both and waits for them when `body` ends, however it ends. */
async function withPeers(
  body: (a: RpcPeer, b: RpcPeer) => Promise<void>,
  options: { a?: RpcPeerOptions; b?: RpcPeerOptions; capacityBytes?: number } = {},
): Promise<void> {
  const [connA, connB] = memoryPair(
    options.capacityBytes === undefined ? {} : { capacityBytes: options.capacityBytes },
  );
  const a = new RpcPeer(connA, options.a);
  const b = new RpcPeer(connB, options.b);
  try {
    await body(a, b);
  } finally {
    a.close();
    b.close();
    await Promise.all([a.closed, b.closed]);
  }
}

/** A peer facing a raw connection, so tests can write arbitrary bytes and read the peer's frames. */
async function withRawRemote(
  body: (peer: RpcPeer, raw: MemoryConn, frames: FrameReader) => Promise<void>,
  options: RpcPeerOptions = {},
): Promise<void> {
  const [peerConn, raw] = memoryPair();
  const peer = new RpcPeer(peerConn, options);
  try {
    await body(peer, raw, new FrameReader(raw));
  } finally {
    peer.close();
    raw.close();
    await peer.closed;
  }
}

function rawFrame(body: Uint8Array, declaredBytes = body.length): Uint8Array {
  const frame = new Uint8Array(FRAME_HEADER_BYTES + body.length);
  new DataView(frame.buffer).setUint32(0, declaredBytes, false);
  frame.set(body, FRAME_HEADER_BYTES);
  return frame;
}

/** Reads the next frame and checks it is an error response. */
async function nextErrorResponse(frames: FrameReader): Promise<JsonRpcErrorResponse> {
  const value = await frames.next();
  assert.ok(typeof value === "object" && value !== null && "error" in value, JSON.stringify(value));
  return value as JsonRpcErrorResponse;
}

Deno.test("requests and notifications round-trip in both directions", async () => {
  await withPeers(async (a, b) => {
    a.handle("whoami", () => "a");
    b.handle("whoami", () => "b");
    b.handle("add", (params) => (params as number[]).reduce((sum, n) => sum + n, 0));
    a.handle("echo", (params) => params);
    b.handle("nothing", () => undefined);
    const seenByA: unknown[] = [];
    const seenByB: unknown[] = [];
    const bothNotified = gate();
    a.onNotification("note", (params) => {
      seenByA.push(params);
      if (seenByB.length > 0) bothNotified.open();
    });
    b.onNotification("note", (params) => {
      seenByB.push(params);
      if (seenByA.length > 0) bothNotified.open();
    });

    assert.equal(await a.request("whoami"), "b");
    assert.equal(await b.request("whoami"), "a");
    assert.equal(await a.request<number>("add", [1, 2, 39]), 42);
    assert.deepEqual(await b.request("echo", { nested: { list: [1, "two", null] } }), {
      nested: { list: [1, "two", null] },
    });
    assert.equal(await a.request("nothing"), null, "undefined results arrive as null");
    await a.notify("note", { from: "a" });
    await b.notify("note", ["from b"]);
    await bothNotified.promise;
    assert.deepEqual(seenByB, [{ from: "a" }]);
    assert.deepEqual(seenByA, [["from b"]]);
    assert.equal(a.pendingRequestCount, 0);
  });
});

Deno.test("a slow handler does not delay a fast one (no head-of-line blocking)", async () => {
  await withPeers(async (client, server) => {
    const release = gate();
    let slowStarted = false;
    server.handle("slow", async () => {
      slowStarted = true;
      await release.promise;
      return "slow done";
    });
    server.handle("fast", () => "fast done");
    let slowSettled = false;
    const slow = client.request("slow").finally(() => (slowSettled = true));
    // A short timeout makes head-of-line blocking fail fast instead of hanging for the default 30 s.
    assert.equal(await client.request("fast", undefined, { timeoutMs: 2000 }), "fast done");
    assert.ok(slowStarted, "the slow request reached its handler first");
    assert.equal(slowSettled, false, "the fast answer overtook the slow one");
    release.open();
    assert.equal(await slow, "slow done");
  });
});

Deno.test("notifications are delivered in order, one at a time, and do not block requests", async () => {
  await withPeers(async (client, server) => {
    const received: number[] = [];
    let inHandler = 0;
    let maxInHandler = 0;
    const blockFirst = gate();
    const allReceived = gate();
    server.onNotification("seq", async (params) => {
      inHandler++;
      maxInHandler = Math.max(maxInHandler, inHandler);
      const n = (params as { n: number }).n;
      if (n === 0) await blockFirst.promise;
      else if (n % 3 === 0) await new Promise((resolve) => setTimeout(resolve, 1));
      received.push(n);
      inHandler--;
      if (received.length === 50) allReceived.open();
    });
    server.handle("ping", () => "pong");
    for (let n = 0; n < 50; n++) await client.notify("seq", { n });
    assert.equal(await client.request("ping"), "pong", "a request overtakes stalled notifications");
    assert.deepEqual(received, [], "the first notification is still being handled");
    blockFirst.open();
    await allReceived.promise;
    assert.deepEqual(received, Array.from({ length: 50 }, (_, n) => n));
    assert.equal(maxInHandler, 1);
  });
});

Deno.test("an unknown method is answered -32601 and the peer keeps serving", async () => {
  await withPeers(async (client, server) => {
    server.handle("known", () => "yes");
    await assert.rejects(client.request("unknown", [1]), (error: unknown) => {
      assert.ok(error instanceof RpcError);
      assert.equal(error.code, METHOD_NOT_FOUND);
      assert.match(error.message, /'unknown' not found/);
      return true;
    });
    assert.equal(await client.request("known"), "yes");
    await client.notify("no-such-notification", {});
    assert.equal(await client.request("known"), "yes", "unknown notifications are ignored");
  });
});

Deno.test("a handler for other methods answers every method without its own handler, until unregistered", async () => {
  await withPeers(async (client, server) => {
    server.handle("known", () => "yes");
    const unregister = server.handleOtherMethods((_params, context) => {
      throw new RpcError(-32004, `Not yet: ${context.method}`);
    });
    assert.throws(() => server.handleOtherMethods(() => null), /already registered/);
    await assert.rejects(client.request("anything", {}), (error: unknown) => {
      assert.ok(error instanceof RpcError);
      assert.equal(error.code, -32004);
      assert.equal(error.message, "Not yet: anything");
      return true;
    });
    assert.equal(await client.request("known"), "yes", "methods with a handler are not affected");
    unregister();
    await assert.rejects(client.request("anything", {}), (error: unknown) => {
      assert.ok(error instanceof RpcError);
      assert.equal(error.code, METHOD_NOT_FOUND);
      return true;
    });
  });
});

Deno.test("a handler's RpcError reaches the caller with its code, message and data", async () => {
  await withPeers(async (client, server) => {
    server.handle("authenticate", () => {
      throw new RpcError(-32001, "auth_key rejected", { retry: false });
    });
    await assert.rejects(client.request("authenticate", {}), (error: unknown) => {
      assert.ok(error instanceof RpcError);
      assert.equal(error.code, -32001);
      assert.equal(error.message, "auth_key rejected");
      assert.deepEqual(error.data, { retry: false });
      return true;
    });
  });
});

Deno.test("any other handler failure is answered -32603 without revealing the error", async () => {
  await withPeers(async (client, server) => {
    server.handle("explode", () => {
      throw new Error("cannot open /etc/secret-file with password hunter2");
    });
    server.handle("reject", () => Promise.reject("a bare string"));
    for (const method of ["explode", "reject"]) {
      await assert.rejects(client.request(method), (error: unknown) => {
        assert.ok(error instanceof RpcError);
        assert.equal(error.code, INTERNAL_ERROR);
        assert.match(error.message, new RegExp(`'${method}'`));
        assert.doesNotMatch(error.message, /secret|hunter2|bare string/);
        assert.equal(error.data, undefined);
        return true;
      });
    }
  });
});

Deno.test("params that fail a zod schema are answered -32602 with the issue paths", async () => {
  await withPeers(async (client, server) => {
    const Register = z.object({ proxies: z.array(z.object({ name: z.string(), port: z.number().int() })) });
    let calls = 0;
    server.handle("register", Register, (params) => {
      calls++;
      return params.proxies.map((proxy) => `${proxy.name}:${proxy.port}`);
    });
    assert.deepEqual(await client.request("register", { proxies: [{ name: "web", port: 80 }] }), ["web:80"]);
    await assert.rejects(
      client.request("register", { proxies: [{ name: "web", port: 80 }, { name: 5, port: 1.5 }] }),
      (error: unknown) => {
        assert.ok(error instanceof RpcError);
        assert.equal(error.code, INVALID_PARAMS);
        assert.match(error.message, /proxies\[1\]\.name/);
        const issues = (error.data as { issues: { path: unknown[]; message: string }[] }).issues;
        assert.deepEqual(issues.map((issue) => issue.path), [["proxies", 1, "name"], ["proxies", 1, "port"]]);
        assert.ok(issues.every((issue) => typeof issue.message === "string" && issue.message !== ""));
        return true;
      },
    );
    await assert.rejects(client.request("register"), (error: unknown) => {
      assert.ok(error instanceof RpcError);
      assert.equal(error.code, INVALID_PARAMS);
      return true;
    });
    assert.equal(calls, 1, "the handler never sees invalid params");
  });
});

Deno.test("notifications that fail their schema are dropped and later ones still arrive", async () => {
  await withPeers(async (client, server) => {
    const seen: string[] = [];
    const done = gate();
    server.onNotification("status", z.object({ state: z.enum(["up", "down"]) }), (params) => {
      seen.push(params.state);
      if (params.state === "down") done.open();
    });
    await client.notify("status", { state: "up" });
    await client.notify("status", { state: "sideways" });
    await client.notify("status", { state: "down" });
    await done.promise;
    assert.deepEqual(seen, ["up", "down"]);
  });
});

Deno.test("a result that fails resultSchema rejects with RpcInvalidResultError", async () => {
  await withPeers(async (client, server) => {
    server.handle("version", () => ({ version: 3 }));
    const ok = await client.request("version", undefined, {
      resultSchema: z.object({ version: z.number() }),
    });
    assert.equal(ok.version, 3);
    await assert.rejects(
      client.request("version", undefined, { resultSchema: z.object({ version: z.string() }) }),
      (error: unknown) => {
        assert.ok(error instanceof RpcInvalidResultError);
        assert.deepEqual(error.issues.map((issue) => issue.path), [["version"]]);
        return true;
      },
    );
  });
});

Deno.test("malformed JSON is answered -32700 with id null and the peer continues", async () => {
  await withRawRemote(async (peer, raw, frames) => {
    peer.handle("ping", () => "pong");
    await writeAll(raw, rawFrame(new TextEncoder().encode("{oops")));
    const response = await nextErrorResponse(frames);
    assert.equal(response.id, null);
    assert.equal(response.error.code, PARSE_ERROR);
    assert.match(response.error.message, /not valid UTF-8 JSON/);
    await writeAll(raw, rawFrame(Uint8Array.of(0xc3, 0x28)));
    assert.equal((await nextErrorResponse(frames)).error.code, PARSE_ERROR);
    await writeAll(raw, encodeFrame({ jsonrpc: "2.0", id: 9, method: "ping" }));
    assert.deepEqual(await frames.next(), { jsonrpc: "2.0", id: 9, result: "pong" });
    assert.equal(peer.isClosed, false);
  });
});

Deno.test("invalid request shapes are answered -32600, with the id when it is usable", async () => {
  await withRawRemote(async (peer, raw, frames) => {
    peer.handle("ping", () => "pong");
    const cases: [unknown, string | number | null][] = [
      [{ jsonrpc: "1.0", id: 5, method: "ping" }, 5],
      [{ jsonrpc: "2.0", id: "x", method: 12 }, "x"],
      [[{ jsonrpc: "2.0", id: 1, method: "ping" }], null],
      [42, null],
      [{ jsonrpc: "2.0", id: 6, method: "ping", params: "not structured" }, 6],
      [{ jsonrpc: "2.0", id: [1], method: "ping" }, null],
    ];
    for (const [message, id] of cases) {
      await writeAll(raw, encodeFrame(message));
      const response = await nextErrorResponse(frames);
      assert.equal(response.error.code, INVALID_REQUEST, JSON.stringify(message));
      assert.equal(response.id, id, JSON.stringify(message));
    }
    await writeAll(raw, encodeFrame({ jsonrpc: "2.0", id: 10, method: "ping" }));
    assert.deepEqual(await frames.next(), { jsonrpc: "2.0", id: 10, result: "pong" });
  });
});

Deno.test("an oversized frame closes the peer with an error naming the size and the limit", async () => {
  await withRawRemote(async (peer, raw, frames) => {
    await writeAll(raw, rawFrame(new Uint8Array(16), 5000));
    await peer.closed;
    const reason = peer.closeReason;
    assert.ok(reason instanceof FrameTooLargeError);
    assert.equal(reason.frameBytes, 5000);
    assert.equal(reason.maxFrameBytes, 4096);
    assert.match(reason.message, /5000 bytes exceeds the limit of 4096 bytes/);
    const notice = await nextErrorResponse(frames);
    assert.equal(notice.id, null, "the remote is told why before the connection closes");
    assert.equal(notice.error.code, INVALID_REQUEST);
    assert.deepEqual(notice.error.data, { frameBytes: 5000, maxFrameBytes: 4096 });
    assert.equal(await frames.next(), null);
  }, { maxFrameBytes: 4096 });
});

Deno.test("the sender of an oversized frame learns the reason when the receiver closes", async () => {
  await withPeers(async (big, small) => {
    small.handle("store", () => "stored");
    const pending = big.request("store", { blob: "x".repeat(10_000) });
    await assert.rejects(pending, (error: unknown) => {
      assert.ok(error instanceof RpcClosedError);
      assert.match(error.message, /exceeds the limit of 2000 bytes/);
      return true;
    });
    await Promise.all([big.closed, small.closed]);
    assert.ok(small.closeReason instanceof FrameTooLargeError);
    assert.ok(big.closeReason instanceof RpcClosedError);
  }, { b: { maxFrameBytes: 2000 } });
});

Deno.test("a request or notification too large to send is refused and the peer stays open", async () => {
  await withPeers(async (client, server) => {
    server.handle("ping", () => "pong");
    await assert.rejects(client.request("ping", ["y".repeat(2000)]), FrameTooLargeError);
    await assert.rejects(client.notify("ping", ["y".repeat(2000)]), FrameTooLargeError);
    assert.equal(client.pendingRequestCount, 0);
    assert.equal(await client.request("ping"), "pong");
  }, { a: { maxFrameBytes: 1000 } });
});

Deno.test("a result too large to send is answered -32603 naming its size", async () => {
  await withPeers(async (client, server) => {
    server.handle("dump", () => "z".repeat(5000));
    server.handle("bigint", () => 1n);
    await assert.rejects(client.request("dump"), (error: unknown) => {
      assert.ok(error instanceof RpcError);
      assert.equal(error.code, INTERNAL_ERROR);
      const responseBytes = JSON.stringify({ jsonrpc: "2.0", id: 1, result: "z".repeat(5000) }).length;
      assert.match(
        error.message,
        new RegExp(`response of ${responseBytes} bytes exceeds the frame limit of 1000`),
      );
      return true;
    });
    await assert.rejects(client.request("bigint"), (error: unknown) => {
      assert.ok(error instanceof RpcError);
      assert.equal(error.code, INTERNAL_ERROR);
      assert.match(error.message, /not serializable/);
      return true;
    });
  }, { b: { maxFrameBytes: 1000 } });
});

Deno.test("a request without an answer times out with RpcTimeoutError and a late answer is ignored", async () => {
  const release = gate();
  await withPeers(async (client, server) => {
    server.handle("stuck", async () => {
      await release.promise;
      return "late";
    });
    server.handle("ping", () => "pong");
    const started = performance.now();
    await assert.rejects(client.request("stuck", [], { timeoutMs: 50 }), (error: unknown) => {
      assert.ok(error instanceof RpcTimeoutError);
      assert.equal(error.method, "stuck");
      assert.equal(error.timeoutMs, 50);
      assert.match(error.message, /'stuck' got no response within 50 ms/);
      return true;
    });
    assert.ok(performance.now() - started >= 45);
    assert.equal(client.pendingRequestCount, 0);
    release.open();
    assert.equal(await client.request("ping"), "pong", "the late answer did not disturb the peer");
  }, { a: { requestTimeoutMs: 60_000 } });
});

Deno.test("the peer's default request timeout applies when a call gives none", async () => {
  const release = gate();
  await withPeers(async (client, server) => {
    server.handle("stuck", () => release.promise);
    await assert.rejects(client.request("stuck"), RpcTimeoutError);
    release.open();
  }, { a: { requestTimeoutMs: 30 } });
});

Deno.test("aborting a request's signal rejects it with the signal's reason", async () => {
  const release = gate();
  await withPeers(async (client, server) => {
    server.handle("stuck", () => release.promise);
    const controller = new AbortController();
    const pending = client.request("stuck", [], { signal: controller.signal });
    const reason = new Error("user pressed ctrl-c");
    controller.abort(reason);
    await assert.rejects(pending, (error: unknown) => error === reason);
    assert.equal(client.pendingRequestCount, 0);
    await assert.rejects(
      client.request("stuck", [], { signal: controller.signal }),
      (e: unknown) => e === reason,
    );
    release.open();
  });
});

Deno.test("closing while requests are pending rejects them, aborts handlers and refuses new calls", async () => {
  await withPeers(async (client, server) => {
    let handlerSignal: AbortSignal | undefined;
    const handlerEntered = gate();
    server.handle("wait", async (_params, context: RequestContext) => {
      handlerSignal = context.signal;
      handlerEntered.open();
      await new Promise((resolve) => context.signal.addEventListener("abort", resolve, { once: true }));
      return "unreachable";
    });
    const pending = [client.request("wait"), client.request("wait"), client.request("wait")];
    await handlerEntered.promise;
    client.close();
    for (const request of pending) {
      await assert.rejects(request, (error: unknown) => {
        assert.ok(error instanceof RpcClosedError);
        assert.match(error.message, /closed locally/);
        return true;
      });
    }
    await client.closed;
    await server.closed;
    assert.ok(handlerSignal?.aborted, "the remote peer's handlers were told to stop");
    assert.ok(server.closeReason instanceof RpcClosedError);
    assert.match(server.closeReason.message, /remote peer closed the connection/);
    await assert.rejects(client.request("wait"), RpcClosedError);
    await assert.rejects(client.notify("wait"), RpcClosedError);
    assert.equal(client.pendingRequestCount, 0);
  });
});

Deno.test("the end of the connection rejects pending requests with RpcClosedError", async () => {
  const [peerConn, raw] = memoryPair();
  const peer = new RpcPeer(peerConn);
  const pending = peer.request("anything");
  const frames = new FrameReader(raw);
  assert.deepEqual(await frames.next(), { jsonrpc: "2.0", id: 1, method: "anything" });
  raw.close();
  await assert.rejects(pending, RpcClosedError);
  await peer.closed;
  assert.ok(peer.closeReason instanceof RpcClosedError);
});

Deno.test("a truncated frame closes the peer with TruncatedFrameError", async () => {
  const [peerConn, raw] = memoryPair();
  const peer = new RpcPeer(peerConn);
  const frame = encodeFrame({ jsonrpc: "2.0", method: "x" });
  await writeAll(raw, frame.subarray(0, frame.length - 2));
  await raw.closeWrite();
  await peer.closed;
  assert.equal(peer.closeReason?.name, "TruncatedFrameError");
  raw.close();
});

Deno.test("a write failure closes the peer with the connection's error", async () => {
  const broken = new Error("connection reset by peer");
  const [inner, other] = memoryPair();
  const conn: DuplexConn = {
    read: (buffer) => inner.read(buffer),
    write: () => Promise.reject(broken),
    closeWrite: () => inner.closeWrite(),
    close: () => inner.close(),
  };
  const peer = new RpcPeer(conn);
  await assert.rejects(peer.request("x"), (error: unknown) => {
    assert.ok(error instanceof RpcClosedError);
    assert.equal(error.cause, broken);
    return true;
  });
  await peer.closed;
  assert.equal(peer.closeReason, broken);
  other.close();
});

Deno.test("requests beyond maxConcurrentRequests are answered as overloaded at once", async () => {
  const release = gate();
  await withPeers(async (client, server) => {
    server.handle("slow", () => release.promise.then(() => "done"));
    const first = client.request("slow");
    const second = client.request("slow");
    await assert.rejects(client.request("slow"), (error: unknown) => {
      assert.ok(error instanceof RpcError);
      assert.equal(error.code, SERVER_OVERLOADED);
      return true;
    });
    release.open();
    assert.deepEqual(await Promise.all([first, second]), ["done", "done"]);
    assert.equal(await client.request("slow"), "done", "capacity is available again");
  }, { b: { maxConcurrentRequests: 2 } });
});

Deno.test("many concurrent large messages over a tiny buffer arrive intact", async () => {
  await withPeers(async (client, server) => {
    server.handle("echo", (params) => params);
    const payloads = Array.from({ length: 30 }, (_, i) => [String(i).repeat(2000 + i * 101)]);
    const answers = await Promise.all(payloads.map((payload) => client.request("echo", payload)));
    assert.deepEqual(answers, payloads);
  }, { capacityBytes: 997 });
});

Deno.test("handler registration rejects duplicates and reserved names, and can be undone", async () => {
  await withPeers(async (client, server) => {
    const unregister = server.handle("m", () => 1);
    assert.throws(() => server.handle("m", () => 2), /already registered/);
    assert.throws(() => server.handle("rpc.discover", () => 3), /reserved/);
    assert.throws(() => server.onNotification("rpc.x", () => {}), /reserved/);
    assert.equal(await client.request("m"), 1);
    unregister();
    await assert.rejects(
      client.request("m"),
      (error: unknown) => (error as RpcError).code === METHOD_NOT_FOUND,
    );
    server.handle("m", () => 2);
    assert.equal(await client.request("m"), 2);
  });
});

Deno.test("with autoStart false nothing is read until start()", async () => {
  const [connA, connB] = memoryPair();
  const server = new RpcPeer(connA, { autoStart: false });
  const client = new RpcPeer(connB);
  const answer = client.request("late-registered");
  await new Promise((resolve) => setTimeout(resolve, 5));
  server.handle("late-registered", () => "served");
  server.start();
  server.start();
  assert.equal(await answer, "served");
  client.close();
  await Promise.all([client.closed, server.closed]);
});

Deno.test("option values are checked", () => {
  const [a, b] = memoryPair();
  assert.throws(() => new RpcPeer(a, { autoStart: false, requestTimeoutMs: 0 }), RangeError);
  assert.throws(() => new RpcPeer(a, { autoStart: false, requestTimeoutMs: 2 ** 40 }), RangeError);
  assert.throws(() => new RpcPeer(a, { autoStart: false, maxConcurrentRequests: 0 }), RangeError);
  assert.throws(() => new RpcPeer(a, { autoStart: false, maxFrameBytes: -5 }), RangeError);
  const peer = new RpcPeer(a, { autoStart: false, requestTimeoutMs: Infinity });
  peer.close();
  b.close();
});

Deno.test("a remote that sends requests without reading answers is slowed down, and nothing is lost", async () => {
  const [peerConn, raw] = memoryPair({ capacityBytes: 4096 });
  const peer = new RpcPeer(peerConn);
  const requestCount = MAX_PENDING_WRITES * 3;
  const requests = concatFrames(
    Array.from({ length: requestCount }, (_, id) => ({ jsonrpc: "2.0", id, method: "missing" })),
  );
  let sent = false;
  const sending = writeAll(raw, requests).then(() => (sent = true));
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(sent, false, "the peer stopped reading while its answers were not read");
  const frames = new FrameReader(raw);
  const answered = new Set<unknown>();
  while (answered.size < requestCount) {
    const response = await nextErrorResponse(frames);
    assert.equal(response.error.code, METHOD_NOT_FOUND);
    answered.add(response.id);
  }
  await sending;
  assert.equal(peer.isClosed, false);
  peer.close();
  raw.close();
  await peer.closed;
});

Deno.test("a peer fed arbitrary frames answers only with valid responses and never crashes", async () => {
  const message = fc.record(
    {
      jsonrpc: fc.constantFrom("2.0", "2.0", "1.0"),
      id: fc.oneof(
        fc.integer(),
        fc.string({ maxLength: 5 }),
        fc.constant(null),
        fc.jsonValue({ maxDepth: 1 }),
      ),
      method: fc.oneof(fc.constantFrom("echo", "fail", "missing", "rpc.x"), fc.jsonValue({ maxDepth: 1 })),
      params: fc.jsonValue({ maxDepth: 2 }),
      result: fc.jsonValue({ maxDepth: 1 }),
      error: fc.oneof(fc.record({ code: fc.integer(), message: fc.string() }), fc.jsonValue({ maxDepth: 1 })),
    },
    { requiredKeys: [] },
  );
  const frame = fc.oneof(
    message.map((value) => encodeFrame(value)),
    fc.jsonValue({ maxDepth: 2 }).map((value) => encodeFrame(value)),
    fc.uint8Array({ maxLength: 30 }).map((bytes) => rawFrame(bytes)),
  );
  await fc.assert(
    fc.asyncProperty(
      fc.array(frame, { maxLength: 25 }),
      fc.uint8Array({ maxLength: 6 }),
      async (frames, tail) => {
        const [peerConn, raw] = memoryPair();
        const peer = new RpcPeer(peerConn, { maxFrameBytes: 4096 });
        peer.handle("echo", (params) => params);
        peer.handle("fail", () => {
          throw new Error("handler failure");
        });
        const responses: unknown[] = [];
        const reader = new FrameReader(raw);
        const reading = (async () => {
          for (let value = await reader.next(); value !== null; value = await reader.next()) {
            responses.push(
              value,
            );
          }
        })();
        await writeAll(raw, concat(...frames, tail));
        await raw.closeWrite();
        await peer.closed;
        await reading.catch(() => {});
        raw.close();
        const reason = peer.closeReason;
        assert.ok(
          reason instanceof RpcClosedError || reason instanceof FrameTooLargeError ||
            reason?.name === "TruncatedFrameError",
          `unexpected close reason ${reason}`,
        );
        for (const response of responses) {
          const kind = parseMessage(response).kind;
          assert.ok(kind === "success" || kind === "error", JSON.stringify(response));
        }
      },
    ),
    { numRuns: 150 },
  );
});

function concatFrames(messages: unknown[]): Uint8Array {
  return concat(...messages.map((message) => encodeFrame(message)));
}

import assert from "node:assert/strict";
import type { ForwarderConfig } from "../config/types.ts";
import { writeAll } from "../net/conn.ts";
import { memoryPair } from "../net/memory_pair.ts";
import { encodeOpenReply, type OpenReply, readOpenRequest } from "../protocol/open_request.ts";
import { pipeBoth } from "../transport/pipe.ts";
import { Forwarder, TunnelDownError, type TunnelStream } from "./forwarder.ts";

function config(proxyType: "http" | "socks5", extra: Partial<ForwarderConfig> = {}): ForwarderConfig {
  return { name: "test", proxyType, bindAddr: "127.0.0.1", bindPort: 0, maxConnections: 8, ...extra };
}

/**
 * A fake server end: reads the open request, answers `reply(request)`, and on ok connects to the request's
 * host:port and splices. Records the requests it saw.
 */
function fakeServer(reply: (host: string, port: number) => OpenReply) {
  const seen: string[] = [];
  const tasks: Promise<unknown>[] = [];
  const open = (): Promise<TunnelStream> => {
    const [client, server] = memoryPair();
    tasks.push(
      (async () => {
        const request = await readOpenRequest(server);
        if (request.kind !== "forward") throw new Error("not a forward");
        seen.push(`${request.forwarder} ${request.host}:${request.port}`);
        const answer = reply(request.host, request.port);
        await writeAll(server, encodeOpenReply(answer));
        if (!answer.ok) {
          server.close();
          return;
        }
        const destination = await Deno.connect({ hostname: request.host, port: request.port });
        await pipeBoth(server, destination);
      })().catch(() => server.close()),
    );
    return Promise.resolve(client);
  };
  return { open, seen, settled: () => Promise.all(tasks) };
}

/** Sends `bytes` to 127.0.0.1:`port` and reads until the peer closes (or `maxMs`). */
async function exchange(port: number, bytes: Uint8Array, maxMs = 3000): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const timer = setTimeout(() => conn.close(), maxMs);
  try {
    await writeAll(conn, bytes);
    const chunks: number[] = [];
    const buffer = new Uint8Array(4096);
    while (true) {
      const count = await conn.read(buffer).catch(() => null);
      if (count === null) break;
      chunks.push(...buffer.subarray(0, count));
      if (new TextDecoder().decode(new Uint8Array(chunks)).includes("\nEND")) break;
    }
    return new TextDecoder().decode(new Uint8Array(chunks));
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch {
      // Closed by the timer.
    }
  }
}

/** A destination that answers with what it received first, then "\nEND". */
function recorder() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const done = (async () => {
    for await (const conn of listener) {
      const buffer = new Uint8Array(4096);
      const count = await conn.read(buffer);
      await writeAll(
        conn,
        new TextEncoder().encode(`got:${new TextDecoder().decode(buffer.subarray(0, count ?? 0))}\nEND`),
      );
      conn.close();
    }
  })();
  return {
    port: listener.addr.port,
    close: async () => {
      listener.close();
      await done.catch(() => {});
    },
  };
}

const text = (value: string) => new TextEncoder().encode(value);

Deno.test("an absolute-URI request reaches the destination rewritten to origin-form", async () => {
  const destination = recorder();
  const server = fakeServer(() => ({ ok: true }));
  const forwarder = new Forwarder(config("http"), server.open);
  const addr = forwarder.start();
  try {
    const answer = await exchange(
      addr.port,
      text(
        `GET http://127.0.0.1:${destination.port}/x?y HTTP/1.1\r\nHost: a\r\nProxy-Connection: keep-alive\r\n\r\n`,
      ),
    );
    assert.match(answer, /^got:GET \/x\?y HTTP\/1\.1\r\nHost: 127\.0\.0\.1:\d+\r\nConnection: close\r\n\r\n/);
    assert.deepEqual(server.seen, [`test 127.0.0.1:${destination.port}`]);
    assert.equal(forwarder.snapshot().results.proxy?.ok, 1);
  } finally {
    await forwarder.close();
    await server.settled();
    await destination.close();
  }
});

Deno.test("CONNECT answers 200 only once the server said ok; early bytes reach the destination", async () => {
  const destination = recorder();
  const server = fakeServer(() => ({ ok: true }));
  const forwarder = new Forwarder(config("http"), server.open);
  const addr = forwarder.start();
  try {
    const answer = await exchange(
      addr.port,
      text(`CONNECT 127.0.0.1:${destination.port} HTTP/1.1\r\n\r\nearly-bytes`),
    );
    assert.equal(answer, "HTTP/1.1 200 Connection Established\r\n\r\ngot:early-bytes\nEND");
  } finally {
    await forwarder.close();
    await server.settled();
    await destination.close();
  }
});

Deno.test("the server's refusals reach the application as HTTP status and SOCKS5 reply codes", async () => {
  const replies: Record<number, OpenReply> = {
    1: { ok: false, code: "FORBIDDEN_DESTINATION", reason: "10.0.0.1 is a private address" },
    2: { ok: false, code: "UNREACHABLE", reason: "Connecting to x:2 took longer than 10000 ms" },
    3: { ok: false, code: "UNREACHABLE", reason: "x:3 refused the connection" },
    4: { ok: false, code: "LIMIT", reason: "too many" },
    5: { ok: false, code: "DISABLED", reason: "allow_forward = false" },
  };
  const server = fakeServer((_host, port) => replies[port] ?? { ok: true });
  const http = new Forwarder(config("http"), server.open);
  const socks = new Forwarder(config("socks5"), server.open);
  const httpPort = http.start().port;
  const socksPort = socks.start().port;
  try {
    const expected: Record<number, [string, number]> = {
      1: ["403", 0x02],
      2: ["504", 0x04],
      3: ["502", 0x05],
      4: ["503", 0x01],
      5: ["403", 0x02],
    };
    for (const [port, [status, code]] of Object.entries(expected)) {
      const answer = await exchange(httpPort, text(`CONNECT x.example:${port} HTTP/1.1\r\n\r\n`));
      assert.match(answer, new RegExp(`^HTTP/1\\.1 ${status} `), answer);
      const refused = replies[Number(port)];
      if (refused !== undefined && !refused.ok) assert.ok(answer.includes(refused.reason), answer);
      const reply = await exchange(
        socksPort,
        new Uint8Array([5, 1, 0, 5, 1, 0, 3, 9, ...text("x.example"), 0, Number(port)]),
      );
      assert.equal(reply.charCodeAt(3), code, `SOCKS5 reply for port ${port}`);
    }
    assert.equal(http.snapshot().results.proxy?.forbidden, 2);
    assert.equal(socks.snapshot().results.proxy?.timeout, 1);
  } finally {
    await http.close();
    await socks.close();
    await server.settled();
  }
});

Deno.test("a tunnel that is down: 503 with a reason, SOCKS5 0x03", async () => {
  const open = () => Promise.reject(new TunnelDownError("no session with the server now"));
  const http = new Forwarder(config("http"), open);
  const socks = new Forwarder(config("socks5"), open);
  try {
    const answer = await exchange(http.start().port, text("CONNECT example.com:443 HTTP/1.1\r\n\r\n"));
    assert.match(answer, /^HTTP\/1\.1 503 .*tunnel to the server is not connected/s);
    const reply = await exchange(
      socks.start().port,
      new Uint8Array([5, 1, 0, 5, 1, 0, 1, 1, 2, 3, 4, 1, 187]),
    );
    assert.equal(reply.charCodeAt(3), 0x03);
  } finally {
    await http.close();
    await socks.close();
  }
});

Deno.test("max_connections: one more local connection is answered 503 at once", async () => {
  const held: (() => void)[] = [];
  const open = () =>
    new Promise<TunnelStream>((_, reject) => held.push(() => reject(new TunnelDownError("gone"))));
  const forwarder = new Forwarder(config("http", { maxConnections: 2 }), open);
  const port = forwarder.start().port;
  const waiting: Deno.Conn[] = [];
  try {
    for (let index = 0; index < 2; index++) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      await writeAll(conn, text("CONNECT example.com:443 HTTP/1.1\r\n\r\n"));
      waiting.push(conn);
    }
    while (held.length < 2) await new Promise((resolve) => setTimeout(resolve, 10));
    const answer = await exchange(port, text("CONNECT example.com:443 HTTP/1.1\r\n\r\n"));
    assert.match(answer, /^HTTP\/1\.1 503 .*max_connections/s);
    assert.equal(forwarder.snapshot().results.none?.busy, 1);
  } finally {
    for (const release of held) release();
    for (const conn of waiting) conn.close();
    await forwarder.close();
  }
});

Deno.test("a slow request head is answered 408 at the handshake deadline", async () => {
  const forwarder = new Forwarder(config("http"), () => Promise.reject(new Error("unused")), {
    headTimeoutMs: 100,
  });
  const port = forwarder.start().port;
  try {
    const started = performance.now();
    const answer = await exchange(port, text("GET http://example.com/ HTTP/1.1\r\nX-Slow: 1"));
    assert.match(answer, /^HTTP\/1\.1 408 Request Timeout/);
    assert.ok(performance.now() - started < 2000);
  } finally {
    await forwarder.close();
  }
});

Deno.test("a flood of silent SOCKS5 connections: at most max_connections held, each closed at the deadline", async () => {
  const forwarder = new Forwarder(
    config("socks5", { maxConnections: 4 }),
    () => Promise.reject(new Error("unused")),
    {
      headTimeoutMs: 300,
    },
  );
  const port = forwarder.start().port;
  const conns: Deno.Conn[] = [];
  try {
    // Half a greeting each (a slowloris), 20 at once.
    for (let index = 0; index < 20; index++) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      await conn.write(new Uint8Array([5]));
      conns.push(conn);
    }
    const started = performance.now();
    const closedAfterMs = await Promise.all(conns.map(async (conn) => {
      const buffer = new Uint8Array(16);
      while ((await conn.read(buffer).catch(() => null)) !== null) {
        // A SOCKS5 client that has not greeted gets no reply: only the close.
      }
      return performance.now() - started;
    }));
    const early = closedAfterMs.filter((ms) => ms < 250).length;
    assert.ok(
      early >= 16,
      `${early} of 20 closed at once (over max_connections): ${closedAfterMs.map(Math.round)}`,
    );
    assert.ok(Math.max(...closedAfterMs) < 3000, "the held ones are closed at the handshake deadline");
    const results = forwarder.snapshot().results.none ?? {};
    assert.equal((results.busy ?? 0) + (results.request_timeout ?? 0), 20, JSON.stringify(results));
    assert.equal(forwarder.snapshot().active_connections, 0);
  } finally {
    for (const conn of conns) conn.close();
    await forwarder.close();
  }
});

import assert from "node:assert/strict";
import { memorySessions, within } from "../../testing/mux.ts";
import { writeAll } from "../net/conn.ts";
import type { Session, Stream } from "../mux/mod.ts";
import { encodeOpenRequest, readOpenReply } from "../protocol/open_request.ts";
import { RpcPeer } from "../rpc/mod.ts";
import { pipeBoth } from "../transport/pipe.ts";
import { ClientStreamHandlers, type ClientStreamLimits, REFUSAL_LOG_BURST } from "./client_streams.ts";
import { withLogRecords } from "../../testing/log.ts";
import { ConnectedClient } from "./connected_client.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A served client session: `session` is the client's end, opening streams the server dispatches. */
async function served(handlers: ClientStreamHandlers, limits: ClientStreamLimits) {
  const sessions = memorySessions({ keepaliveIntervalMs: 0 });
  const [, control] = await Promise.all([sessions.client.open(), sessions.server.accept()]);
  assert.ok(control);
  const rpc = new RpcPeer(control);
  const client = new ConnectedClient(
    "laptop",
    "laptop",
    "s1",
    "127.0.0.1:1",
    { entryName: null, allowPorts: [{ start: 1024, end: 65535 }], maxProxies: 8 },
    sessions.server,
    rpc,
  );
  const serving = handlers.serve(client, limits);
  return {
    session: sessions.client as Session,
    async [Symbol.asyncDispose]() {
      await client.close("test over");
      rpc.close();
      await sessions.close();
      await rpc.closed;
      await within(serving, 5000, "serve() after the session ended");
    },
  };
}

async function readText(stream: Stream): Promise<string> {
  const chunks: string[] = [];
  const buffer = new Uint8Array(1024);
  for (;;) {
    const count = await stream.read(buffer);
    if (count === null) return chunks.join("");
    chunks.push(decoder.decode(buffer.subarray(0, count)));
  }
}

/** An echo through an in-memory pair stands in for "the other client". */
function echoHandlers(): ClientStreamHandlers {
  const handlers = new ClientStreamHandlers();
  handlers.register("visit", (request) => {
    if (request.name === "missing") {
      return Promise.resolve({ ok: false, code: "NOT_FOUND", reason: `no proxy ${request.name}` });
    }
    if (request.name === "broken") return Promise.reject(new Error("target session is gone"));
    return Promise.resolve({
      ok: true,
      carry: async (stream: Stream) => {
        const buffer = new Uint8Array(1024);
        for (;;) {
          const count = await stream.read(buffer).catch(() => null);
          if (count === null) break;
          await writeAll(stream, buffer.subarray(0, count));
        }
        await stream.closeWrite().catch(() => {});
        stream.close();
      },
      abandon: () => {},
    });
  });
  return handlers;
}

Deno.test("a visit stream the client opens is answered ok and then carries bytes both ways", async () => {
  const handlers = echoHandlers();
  await using tunnel = await served(handlers, { maxStreamsPerClient: 8 });
  const stream = await tunnel.session.open();
  await writeAll(stream, encodeOpenRequest({ kind: "visit", name: "ssh", publish_port: 2222 }));
  assert.deepEqual(await within(readOpenReply(stream), 5000, "reply"), { ok: true });
  await writeAll(stream, encoder.encode("hello"));
  await stream.closeWrite();
  assert.equal(await within(readText(stream), 5000, "echo"), "hello");
  stream.close();
  assert.deepEqual(handlers.counts, { visit: { ok: 1 } });
});

Deno.test("a refusal, a kind nobody serves and a failing handler are answered with their codes and closed", async () => {
  const handlers = echoHandlers();
  await using tunnel = await served(handlers, { maxStreamsPerClient: 8 });
  const cases: Array<[Parameters<typeof encodeOpenRequest>[0], string, RegExp]> = [
    [{ kind: "visit", name: "missing", publish_port: 1 }, "NOT_FOUND", /no proxy missing/],
    [{ kind: "forward", forwarder: "fw", host: "example.com", port: 80 }, "DISABLED", /"forward"/],
    [{ kind: "visit", name: "broken", publish_port: 1 }, "UNREACHABLE", /target session is gone/],
  ];
  for (const [request, code, reason] of cases) {
    const stream = await tunnel.session.open();
    await writeAll(stream, encodeOpenRequest(request));
    const reply = await within(readOpenReply(stream), 5000, "reply");
    assert.ok(!reply.ok && reply.code === code && reason.test(reply.reason), JSON.stringify(reply));
    await stream.closeWrite();
    assert.equal(await within(readText(stream), 5000, "end after a refusal"), "");
    stream.close();
  }
  assert.deepEqual(handlers.counts, {
    visit: { not_found: 1, unreachable: 1 },
    forward: { disabled: 1 },
  });
});

Deno.test("hostile open requests (wrong version, bad JSON, oversized length, unknown kind) get BAD_REQUEST; the session goes on", async () => {
  const handlers = echoHandlers();
  await using tunnel = await served(handlers, { maxStreamsPerClient: 8 });
  const frames = [
    new Uint8Array([0x01, 0x00, 0x02, 0x7b, 0x7d]),
    new Uint8Array([0x02, 0x00, 0x04, 0x7b, 0x6e, 0x6f, 0x7d]),
    new Uint8Array([0x02, 0xff, 0xff]),
    new Uint8Array([0x02, 0x00, 0x00]),
    new Uint8Array([0x02, 0x00, 0x10, ...encoder.encode('{"kind":"socks"}')]),
  ];
  for (const bytes of frames) {
    const stream = await tunnel.session.open();
    await writeAll(stream, bytes);
    const reply = await within(readOpenReply(stream), 5000, "reply");
    assert.ok(!reply.ok && reply.code === "BAD_REQUEST", JSON.stringify(reply));
    stream.close();
  }
  // The session still serves a good request afterwards.
  const stream = await tunnel.session.open();
  await writeAll(stream, encodeOpenRequest({ kind: "visit", name: "ssh", publish_port: 2222 }));
  assert.deepEqual(await within(readOpenReply(stream), 5000, "reply"), { ok: true });
  stream.close();
  assert.equal(handlers.counts.unknown?.bad_request, frames.length);
});

Deno.test("a stream that sends no open request in time is refused BAD_REQUEST and reset", async () => {
  const handlers = echoHandlers();
  await using tunnel = await served(handlers, { maxStreamsPerClient: 8, openRequestTimeoutMs: 100 });
  const stream = await tunnel.session.open();
  await writeAll(stream, new Uint8Array([0x02, 0x00]));
  const reply = await within(readOpenReply(stream), 5000, "reply");
  assert.ok(!reply.ok && reply.code === "BAD_REQUEST" && /no open request within 0.1 s/.test(reply.reason));
  stream.close();
  assert.equal(handlers.counts.unknown?.timeout, 1);
});

Deno.test("client-opened streams beyond the per-client limit are answered LIMIT and counted; freed slots serve again", async () => {
  const handlers = new ClientStreamHandlers();
  const held: Array<() => void> = [];
  handlers.register("visit", () =>
    Promise.resolve({
      ok: true,
      carry: (stream: Stream) =>
        new Promise<void>((resolve) =>
          held.push(() => {
            stream.close();
            resolve();
          })
        ),
      abandon: () => {},
    }));
  await using tunnel = await served(handlers, { maxStreamsPerClient: 2 });
  const request = encodeOpenRequest({ kind: "visit", name: "ssh", publish_port: 22 });
  const streams: Stream[] = [];
  for (let i = 0; i < 2; i++) {
    const stream = await tunnel.session.open();
    await writeAll(stream, request);
    assert.deepEqual(await within(readOpenReply(stream), 5000, "reply"), { ok: true });
    streams.push(stream);
  }
  const third = await tunnel.session.open();
  await writeAll(third, request).catch(() => {});
  const refused = await within(readOpenReply(third), 5000, "LIMIT reply");
  assert.ok(!refused.ok && refused.code === "LIMIT" && /max_client_streams/.test(refused.reason));
  third.close();
  assert.equal(handlers.counts.unknown?.limit, 1);
  for (const release of held.splice(0)) release();
  for (const stream of streams) stream.close();
  await new Promise((resolve) => setTimeout(resolve, 50));
  const fourth = await tunnel.session.open();
  await writeAll(fourth, request);
  assert.deepEqual(await within(readOpenReply(fourth), 5000, "reply"), { ok: true });
  for (const release of held.splice(0)) release();
  fourth.close();
});

Deno.test("an accepted stream whose carry pipes to another stream copies both ways (pipeBoth)", async () => {
  // The shape a visit handler has: a prepared stream on another session, spliced after the ok.
  const other = memorySessions({ keepaliveIntervalMs: 0 });
  const handlers = new ClientStreamHandlers();
  handlers.register("visit", async () => {
    const target = await other.server.open();
    return {
      ok: true,
      carry: async (stream: Stream) => {
        await pipeBoth(stream, target);
      },
      abandon: () => target.reset(),
    };
  });
  await using tunnel = await served(handlers, { maxStreamsPerClient: 8 });
  try {
    const stream = await tunnel.session.open();
    await writeAll(stream, encodeOpenRequest({ kind: "visit", name: "db", publish_port: 5432 }));
    assert.deepEqual(await within(readOpenReply(stream), 5000, "reply"), { ok: true });
    const target = await within(other.client.accept(), 5000, "target stream");
    assert.ok(target);
    await writeAll(stream, encoder.encode("ping"));
    await stream.closeWrite();
    assert.equal(await within(readText(target), 5000, "visitor's bytes"), "ping");
    await writeAll(target, encoder.encode("pong"));
    await target.closeWrite();
    assert.equal(await within(readText(stream), 5000, "target's bytes"), "pong");
  } finally {
    await other.close();
  }
});

Deno.test("an open request pipelined with the first bytes of the connection: the bytes after it are carried, none lost", async () => {
  const handlers = echoHandlers();
  await using tunnel = await served(handlers, { maxStreamsPerClient: 8 });
  const stream = await tunnel.session.open();
  const request = encodeOpenRequest({ kind: "visit", name: "ssh", publish_port: 2222 });
  const payload = encoder.encode("SSH-2.0-OpenSSH_9.6\r\n");
  const both = new Uint8Array(request.length + payload.length);
  both.set(request);
  both.set(payload, request.length);
  await writeAll(stream, both);
  await stream.closeWrite();
  assert.deepEqual(await within(readOpenReply(stream), 5000, "reply"), { ok: true });
  assert.equal(await within(readText(stream), 5000, "echo"), "SSH-2.0-OpenSSH_9.6\r\n");
  stream.close();
});

Deno.test("a client refused in a loop gets every refusal counted but at most a burst of log lines per window", async () => {
  await withLogRecords(async (records) => {
    const handlers = echoHandlers();
    await using tunnel = await served(handlers, { maxStreamsPerClient: 8 });
    const total = REFUSAL_LOG_BURST + 15;
    for (let i = 0; i < total; i++) {
      const stream = await tunnel.session.open();
      await writeAll(stream, encodeOpenRequest({ kind: "visit", name: "missing", publish_port: 1 }));
      const reply = await within(readOpenReply(stream), 5000, "reply");
      assert.ok(!reply.ok && reply.code === "NOT_FOUND");
      stream.close();
    }
    assert.equal(handlers.counts.visit?.not_found, total);
    const logged = records.filter((record) =>
      String(record.message.join("")).includes("Refused a visit stream")
    );
    assert.equal(logged.length, REFUSAL_LOG_BURST);
  });
});

/**
 * Session and stream tests over an in-memory connection pair: open/accept, data both ways, reset, close,
 * backlog and stream limits, unacknowledged opens, GoAway, ping, the session's end, Web Streams wrappers.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Flag, FrameType, INITIAL_STREAM_WINDOW_BYTES } from "./constants.ts";
import { FrameDecoder } from "./decoder.ts";
import type { DuplexConn } from "../net/conn.ts";
import { RemoteGoAwayError, SessionClosedError, StreamClosedError, StreamResetError } from "./errors.ts";
import { Session } from "./session.ts";
import { memoryPair } from "../net/memory_pair.ts";
import {
  accepted,
  closeAll,
  memorySessions,
  patternBytes,
  readAll,
  sha256Hex,
  within,
} from "../../testing/mux.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

Deno.test("session opens a stream, and data and half-close flow both ways", async () => {
  const { client, server, close } = memorySessions();
  try {
    const opened = await client.open();
    assert.equal(opened.id, 1);
    await opened.write(encoder.encode("ping"));
    await opened.closeWrite();
    const stream = await accepted(server);
    assert.equal(stream.id, 1);
    assert.equal(decoder.decode(await readAll(stream)), "ping");
    // Our direction is still open after the peer's FIN.
    await stream.write(encoder.encode("pong"));
    await stream.closeWrite();
    assert.equal(decoder.decode(await readAll(opened)), "pong");
    await within(Promise.all([opened.closed, stream.closed]), 2000, "streams closing after FIN both ways");
    assert.equal(client.numStreams, 0);
    assert.equal(server.numStreams, 0);
    await assert.rejects(opened.write(encoder.encode("late")), StreamClosedError);
  } finally {
    await close();
  }
});

Deno.test("server-opened streams use even ids and client-opened odd ids", async () => {
  const { client, server, close } = memorySessions();
  try {
    const fromServer = [await server.open(), await server.open()];
    const fromClient = [await client.open(), await client.open()];
    assert.deepEqual(fromServer.map((s) => s.id), [2, 4]);
    assert.deepEqual(fromClient.map((s) => s.id), [1, 3]);
    assert.equal((await accepted(client)).id, 2);
    assert.equal((await accepted(server)).id, 1);
  } finally {
    await close();
  }
});

Deno.test("a stream carries 8 MiB intact (sha256) in both directions at once", async () => {
  const { client, server, close } = memorySessions();
  try {
    const up = patternBytes(8 * 1024 * 1024, 1);
    const down = patternBytes(8 * 1024 * 1024, 2);
    const opened = await client.open();
    const serverSide = (async () => {
      const stream = await accepted(server);
      const [received] = await Promise.all([
        readAll(stream),
        (async () => {
          for (let offset = 0; offset < down.length; offset += 100_000) {
            await stream.write(down.subarray(offset, offset + 100_000));
          }
          await stream.closeWrite();
        })(),
      ]);
      return received;
    })();
    const writeUp = (async () => {
      await opened.write(up);
      await opened.closeWrite();
    })();
    const [receivedDown, receivedUp] = await within(
      Promise.all([readAll(opened, 10_000), serverSide, writeUp]),
      20_000,
      "8 MiB each way",
    );
    assert.equal(await sha256Hex(receivedUp), await sha256Hex(up));
    assert.equal(await sha256Hex(receivedDown), await sha256Hex(down));
  } finally {
    await close();
  }
});

Deno.test("reset fails reads and writes on both ends with StreamResetError", async () => {
  const { client, server, close } = memorySessions();
  try {
    const opened = await client.open();
    await opened.write(encoder.encode("x"));
    const stream = await accepted(server);
    const pendingRead = opened.read(new Uint8Array(10));
    opened.reset();
    await assert.rejects(pendingRead, (error: unknown) => {
      assert.ok(error instanceof StreamResetError);
      assert.equal(error.byPeer, false);
      assert.equal(error.streamId, 1);
      return true;
    });
    await within(stream.closed, 2000, "peer seeing RST");
    await assert.rejects(stream.read(new Uint8Array(10)), (error: unknown) => {
      assert.ok(error instanceof StreamResetError);
      assert.equal(error.byPeer, true);
      assert.match(error.message, /stream 1 was reset by the peer/);
      return true;
    });
    await assert.rejects(stream.write(encoder.encode("y")), StreamResetError);
    assert.equal(client.numStreams, 0);
    assert.equal(server.numStreams, 0);
  } finally {
    await close();
  }
});

Deno.test("close() discards unread data and releases the stream once the peer finishes", async () => {
  const { client, server, close } = memorySessions();
  try {
    const opened = await client.open();
    await opened.write(patternBytes(100_000, 3));
    const stream = await accepted(server);
    await within(
      (async () => {
        while (stream.bufferedBytes < 100_000) await new Promise((resolve) => setTimeout(resolve, 1));
      })(),
      2000,
      "data arriving",
    );
    stream.close();
    assert.equal(await stream.read(new Uint8Array(10)), null);
    // The peer keeps writing well past one window: discarded data is still granted back.
    await within(
      opened.write(patternBytes(3 * INITIAL_STREAM_WINDOW_BYTES, 4)),
      5000,
      "writing past a window",
    );
    assert.equal((await readAll(opened)).length, 0);
    await opened.closeWrite();
    await within(Promise.all([opened.closed, stream.closed]), 2000, "both ends released");
    assert.equal(server.numStreams, 0);
  } finally {
    await close();
  }
});

Deno.test("accept backlog overflow resets the extra streams", async () => {
  const { client, server, close } = memorySessions({ acceptBacklog: 2 });
  try {
    const streams = [];
    for (let i = 0; i < 5; i++) streams.push(await client.open());
    const extra = streams.slice(2);
    for (const stream of extra) {
      await assert.rejects(
        within(stream.read(new Uint8Array(1)), 2000, "RST for a stream over the backlog"),
        (
          error: unknown,
        ) => error instanceof StreamResetError && error.byPeer,
      );
    }
    assert.deepEqual([(await accepted(server)).id, (await accepted(server)).id], [1, 3]);
    assert.equal(server.numStreams, 2);
  } finally {
    await close();
  }
});

Deno.test("open() waits while maxUnackedOpens streams await their ACK", async () => {
  const { client, server, close } = memorySessions({ maxUnackedOpens: 2 });
  try {
    await client.open();
    await client.open();
    let thirdOpened = false;
    const third = client.open().then((stream) => {
      thirdOpened = true;
      return stream;
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(thirdOpened, false, "the third open must wait for an ACK");
    await accepted(server); // accept() sends the ACK
    assert.equal((await within(third, 2000, "open after an ACK")).id, 5);
  } finally {
    await close();
  }
});

/** `conn`, recording a copy of every write (each one is a TLS record and a system call on a real session). */
function recordingWrites(conn: DuplexConn): { conn: DuplexConn; writes: Uint8Array[] } {
  const writes: Uint8Array[] = [];
  return {
    writes,
    conn: {
      read: (buffer) => conn.read(buffer),
      write: (bytes) => {
        writes.push(bytes.slice());
        return conn.write(bytes);
      },
      closeWrite: () => conn.closeWrite(),
      close: () => conn.close(),
    },
  };
}

/** The [type, flags, stream id] of each frame in each of `writes`. */
function streamFrames(writes: readonly Uint8Array[]): Array<Array<[number, number, number]>> {
  const perWrite = writes.map((write) => {
    const decoder = new FrameDecoder();
    decoder.push(write);
    const frames: Array<[number, number, number]> = [];
    for (let frame = decoder.next(); frame !== null; frame = decoder.next()) {
      frames.push([frame.header.type, frame.header.flags, frame.header.streamId]);
    }
    return frames;
  });
  return perWrite.filter((frames) => frames.length > 0);
}

Deno.test("open(firstBytes) sends the SYN and those bytes in one write; the ACK rides with the answer", async () => {
  const [a, b] = memoryPair({ capacityBytes: 1024 * 1024 });
  const opener = recordingWrites(a);
  const accepter = recordingWrites(b);
  // No keepalive: a ping's answer would carry the ACK along before the stream's answer does.
  const server = new Session(opener.conn, { role: "server", keepaliveIntervalMs: 0 });
  const client = new Session(accepter.conn, { role: "client", keepaliveIntervalMs: 0 });
  try {
    // Each session pings once at the start (an RTT sample): let those exchanges end first.
    await Promise.all([server.ping(), client.ping()]);
    await new Promise((resolve) => setTimeout(resolve, 10));
    opener.writes.length = 0;
    accepter.writes.length = 0;
    const opened = await server.open(encoder.encode("header"));
    const stream = await accepted(client);
    // Answered in the same tick as the accept: the lazy ACK has had no chance to go alone.
    await stream.write(encoder.encode("answer"));
    const first = new Uint8Array(6);
    assert.equal(await stream.read(first), 6);
    assert.equal(decoder.decode(first), "header");
    const answer = new Uint8Array(6);
    assert.equal(await opened.read(answer), 6);
    assert.equal(decoder.decode(answer), "answer");
    assert.deepEqual(streamFrames(opener.writes), [[[FrameType.WindowUpdate, Flag.SYN, 2], [
      FrameType.Data,
      0,
      2,
    ]]]);
    assert.deepEqual(streamFrames(accepter.writes), [[[FrameType.WindowUpdate, Flag.ACK, 2], [
      FrameType.Data,
      0,
      2,
    ]]]);
  } finally {
    await closeAll(client, server);
  }
});

Deno.test("an accepted stream that never answers still has its ACK sent, alone, within a second", async () => {
  const [a, b] = memoryPair({ capacityBytes: 1024 * 1024 });
  const accepter = recordingWrites(b);
  const server = new Session(a, { role: "server", maxUnackedOpens: 1, keepaliveIntervalMs: 0 });
  const client = new Session(accepter.conn, { role: "client", keepaliveIntervalMs: 0 });
  try {
    await Promise.all([server.ping(), client.ping()]);
    await new Promise((resolve) => setTimeout(resolve, 10));
    accepter.writes.length = 0;
    await server.open();
    await accepted(client);
    // open() waits for the first stream's ACK (maxUnackedOpens 1): it comes without any data to ride on.
    const second = await within(server.open(), 1000, "an open after the lazy ACK");
    assert.equal(second.id, 4);
    assert.deepEqual(streamFrames(accepter.writes), [[[FrameType.WindowUpdate, Flag.ACK, 2]]]);
  } finally {
    await closeAll(client, server);
  }
});

Deno.test("GoAway from either side stops new streams but keeps existing ones", async () => {
  const { client, server, close } = memorySessions();
  try {
    const existing = await client.open();
    const existingServer = await accepted(server);
    await server.goAway();
    await within(
      (async () => {
        while (client.remoteGoAwayCode === null) await new Promise((resolve) => setTimeout(resolve, 1));
      })(),
      2000,
      "GoAway arriving",
    );
    await assert.rejects(
      client.open(),
      (error: unknown) => error instanceof RemoteGoAwayError && error.code === 0,
    );
    // The server still opens streams towards the client.
    const fromServer = await server.open();
    const atClient = await accepted(client);
    assert.equal(atClient.id, fromServer.id);
    await existing.write(encoder.encode("still works"));
    await existing.closeWrite();
    assert.equal(decoder.decode(await readAll(existingServer)), "still works");
    // The other direction.
    await client.goAway();
    await within(
      (async () => {
        while (server.remoteGoAwayCode === null) await new Promise((resolve) => setTimeout(resolve, 1));
      })(),
      2000,
      "GoAway arriving",
    );
    await assert.rejects(server.open(), RemoteGoAwayError);
    assert.equal(client.isClosed, false);
    assert.equal(server.isClosed, false);
  } finally {
    await close();
  }
});

Deno.test("ping resolves with the round-trip time", async () => {
  const { client, server, close } = memorySessions({ keepaliveIntervalMs: 0 });
  try {
    const rtt = await within(client.ping(), 2000, "ping");
    assert.ok(rtt >= 0 && rtt < 2000, `rtt ${rtt}`);
    assert.ok((await server.ping()) >= 0);
    assert.ok(client.rttMs > 0);
  } finally {
    await close();
  }
});

Deno.test("closing a session ends streams, accept and the iterator, and resolves closed on both ends", async () => {
  const { client, server, close } = memorySessions();
  try {
    const opened = await client.open();
    const stream = await accepted(server);
    const iterated: number[] = [];
    const iterating = (async () => {
      for await (const next of server) iterated.push(next.id);
    })();
    const pendingRead = stream.read(new Uint8Array(10));
    await client.close();
    assert.equal(client.closeReason, "local-close");
    assert.equal(client.error, null);
    await within(server.closed, 2000, "server noticing the end");
    assert.equal(server.closeReason, "remote-closed");
    await assert.rejects(pendingRead, (error: unknown) => {
      assert.ok(error instanceof SessionClosedError);
      assert.equal(error.reason, "remote-closed");
      return true;
    });
    await assert.rejects(opened.write(encoder.encode("x")), SessionClosedError);
    assert.equal(await server.accept(), null);
    await within(iterating, 2000, "iterator ending");
    assert.deepEqual(iterated, []);
    await assert.rejects(client.open(), SessionClosedError);
    await assert.rejects(client.ping(), SessionClosedError);
    assert.equal(client.isClosed, true);
  } finally {
    await close();
  }
});

Deno.test("data and FIN sent just before the peer closes the connection stay readable", async () => {
  const pair = memorySessions();
  try {
    const opened = await pair.client.open();
    const stream = await accepted(pair.server);
    await opened.write(encoder.encode("last words"));
    await opened.closeWrite();
    await within(
      (async () => {
        while (stream.bufferedBytes < 10) await new Promise((resolve) => setTimeout(resolve, 1));
      })(),
      2000,
      "data arriving",
    );
    await pair.client.close();
    await within(pair.server.closed, 2000, "server end");
    assert.equal(decoder.decode(await readAll(stream)), "last words");
  } finally {
    await pair.close();
  }
});

Deno.test("the readable and writable wrappers carry a stream", async () => {
  const { client, server, close } = memorySessions();
  try {
    const opened = await client.open();
    const writer = opened.writable.getWriter();
    await writer.write(encoder.encode("web "));
    await writer.write(encoder.encode("streams"));
    await writer.close();
    const stream = await accepted(server);
    let text = "";
    for await (const chunk of stream.readable) text += decoder.decode(chunk, { stream: true });
    assert.equal(text, "web streams");
  } finally {
    await close();
  }
});

Deno.test("session options are validated with the option's name and value", () => {
  const [a, b] = memoryPair();
  try {
    assert.throws(
      () => new Session(a, { role: "client", acceptBacklog: -1 }),
      /acceptBacklog must be an integer/,
    );
    assert.throws(
      () => new Session(a, { role: "client", maxStreamWindowBytes: 1000 }),
      /maxStreamWindowBytes must be an integer from 262144 to 4294967295, got 1000/,
    );
    assert.throws(
      () => new Session(a, { role: "peer" as "client" }),
      /role must be "client" or "server", got "peer"/,
    );
  } finally {
    a.close();
    b.close();
  }
});

Deno.test("maxStreams limits open() with StreamLimitError and refuses inbound SYNs", async () => {
  const { client, server, close } = memorySessions({ maxStreams: 2 });
  try {
    await client.open();
    await client.open();
    await assert.rejects(client.open(), /2 streams are live and maxStreams is 2/);
    const a = await accepted(server);
    const b = await accepted(server);
    assert.deepEqual([a.id, b.id], [1, 3]);
    // The server is at its limit too: its open is refused locally.
    await assert.rejects(server.open(), /maxStreams is 2/);
  } finally {
    await close();
  }
});

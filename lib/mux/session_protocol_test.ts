/**
 * Session tests against a peer driven frame by frame: protocol errors and GoAway, late frames, pings,
 * keepalive, FIN and RST on the wire.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Flag, FrameType, GoAwayCode, INITIAL_STREAM_WINDOW_BYTES } from "./constants.ts";
import { KeepaliveTimeoutError, ProtocolError, RemoteGoAwayError, SessionClosedError } from "./errors.ts";
import type { Frame } from "./frame.ts";
import { Session } from "./session.ts";
import type { SessionOptions } from "./options.ts";
import { memoryPair } from "../net/memory_pair.ts";
import { frameBytes, memorySessions, RawPeer, readAll, within } from "../../testing/mux.ts";

const encoder = new TextEncoder();

/** A server session whose peer is driven by hand. */
function rawClient(options: Partial<SessionOptions> = {}, capacityBytes = 1024 * 1024, read = true) {
  const [sessionEnd, rawEnd] = memoryPair({ capacityBytes });
  const session = new Session(sessionEnd, { role: "server", keepaliveIntervalMs: 0, ...options });
  const peer = new RawPeer(rawEnd, read);
  return {
    session,
    peer,
    close: async () => {
      await session.close();
      await peer.close();
    },
  };
}

const isGoAway = (code: number) => (frame: Frame) =>
  frame.header.type === FrameType.GoAway && frame.header.length === code;

/** Sends `bytes`, then expects GoAway(protocol error) and the session ending with a matching ProtocolError. */
async function expectProtocolError(bytes: Uint8Array[], message: RegExp): Promise<void> {
  const { session, peer, close } = rawClient();
  try {
    for (const part of bytes) await peer.send(part);
    await within(session.closed, 3000, "session ending on a protocol error");
    assert.equal(session.closeReason, "protocol-error");
    assert.ok(session.error instanceof ProtocolError, `error was ${session.error}`);
    assert.equal(session.error.goAwayCode, GoAwayCode.ProtocolError);
    assert.match(session.error.message, message);
    assert.ok(await peer.waitFor(isGoAway(GoAwayCode.ProtocolError)), "GoAway(1) reaches the peer");
  } finally {
    await close();
  }
}

const syn = (id: number) => frameBytes(FrameType.WindowUpdate, Flag.SYN, id, 0);

Deno.test("data beyond the receive window → GoAway(1) and ProtocolError", async () => {
  const oversized = INITIAL_STREAM_WINDOW_BYTES + 1;
  await expectProtocolError(
    [syn(1), frameBytes(FrameType.Data, 0, 1, oversized, new Uint8Array(oversized))],
    /stream 1 received a 262145-byte data frame but its receive window allowed only 262144/,
  );
});

Deno.test("data beyond the window across several frames is caught too", async () => {
  const half = INITIAL_STREAM_WINDOW_BYTES / 2;
  await expectProtocolError(
    [
      syn(1),
      frameBytes(FrameType.Data, 0, 1, half, new Uint8Array(half)),
      frameBytes(FrameType.Data, 0, 1, half, new Uint8Array(half)),
      frameBytes(FrameType.Data, 0, 1, 1, new Uint8Array(1)),
    ],
    /allowed only 0 more bytes/,
  );
});

Deno.test("a bad protocol version → ProtocolError, and another session keeps working", async () => {
  const healthy = memorySessions();
  try {
    await expectProtocolError(
      [frameBytes(FrameType.Ping, Flag.SYN, 0, 1, undefined, 7)],
      /unsupported yamux version 7/,
    );
    const stream = await healthy.client.open();
    await stream.write(encoder.encode("alive"));
    await stream.closeWrite();
    const peer = await healthy.server.accept();
    assert.ok(peer !== null);
    assert.equal(new TextDecoder().decode(await readAll(peer)), "alive");
  } finally {
    await healthy.close();
  }
});

Deno.test("an unknown frame type → ProtocolError", async () => {
  await expectProtocolError([frameBytes(9, 0, 1, 0)], /unknown yamux frame type 9/);
});

Deno.test("an oversized frame header → ProtocolError before its payload arrives", async () => {
  const { session, peer, close } = rawClient({ maxFramePayloadBytes: 1024 });
  try {
    await peer.send(syn(1));
    await peer.send(frameBytes(FrameType.Data, 0, 1, 100_000));
    await within(session.closed, 3000, "session ending");
    assert.match(String(session.error?.message), /100000 bytes exceeds the limit of 1024/);
  } finally {
    await close();
  }
});

Deno.test("a SYN reusing an open stream id → ProtocolError", async () => {
  await expectProtocolError([syn(1), syn(1)], /SYN for stream 1, which is already open/);
});

Deno.test("a SYN with the wrong parity → ProtocolError", async () => {
  await expectProtocolError([syn(2)], /opened stream 2, but as the client it must use odd stream ids/);
});

Deno.test("data without SYN for a never-opened stream → ProtocolError", async () => {
  await expectProtocolError(
    [frameBytes(FrameType.Data, 0, 5, 3, new Uint8Array(3))],
    /data frame .* for stream 5, which was never opened/,
  );
  await expectProtocolError(
    [frameBytes(FrameType.WindowUpdate, 0, 2, 10)],
    /window update frame .* for stream 2, which was never opened/,
  );
});

Deno.test("data after the peer's FIN → ProtocolError", async () => {
  await expectProtocolError(
    [
      syn(1),
      frameBytes(FrameType.WindowUpdate, Flag.FIN, 1, 0),
      frameBytes(FrameType.Data, 0, 1, 2, new Uint8Array(2)),
    ],
    /stream 1 received 2 bytes of data after the peer's FIN/,
  );
});

Deno.test("late frames for a reset stream are ignored", async () => {
  const { session, peer, close } = rawClient();
  try {
    await peer.send(syn(1));
    const stream = await within(session.accept(), 2000, "accept");
    assert.ok(stream !== null);
    stream.reset();
    assert.ok(await peer.waitFor((f) => f.header.streamId === 1 && (f.header.flags & Flag.RST) !== 0));
    await peer.send(frameBytes(FrameType.Data, 0, 1, 4, new Uint8Array(4)));
    await peer.send(frameBytes(FrameType.WindowUpdate, 0, 1, 1000));
    await peer.send(frameBytes(FrameType.Ping, Flag.SYN, 0, 77));
    assert.ok(await peer.waitFor((f) => f.header.type === FrameType.Ping && f.header.length === 77));
    assert.equal(session.isClosed, false);
  } finally {
    await close();
  }
});

Deno.test("a peer's ping is answered with ACK and the same opaque value", async () => {
  const { peer, close } = rawClient();
  try {
    await peer.send(frameBytes(FrameType.Ping, Flag.SYN, 0, 0xdeadbeef));
    const pong = await peer.waitFor((f) => f.header.type === FrameType.Ping && f.header.flags === Flag.ACK);
    assert.equal(pong?.header.length, 0xdeadbeef);
  } finally {
    await close();
  }
});

Deno.test("GoAway(2) from the peer ends the session with RemoteGoAwayError", async () => {
  const { session, peer, close } = rawClient();
  try {
    await peer.send(syn(1));
    const stream = await session.accept();
    assert.ok(stream !== null);
    await peer.send(frameBytes(FrameType.GoAway, 0, 0, GoAwayCode.InternalError));
    await within(session.closed, 2000, "session ending");
    assert.equal(session.closeReason, "remote-goaway");
    assert.ok(session.error instanceof RemoteGoAwayError);
    assert.equal(session.error.code, 2);
    assert.match(session.error.message, /code 2 \(internal error\)/);
    await assert.rejects(stream.read(new Uint8Array(1)), (error: unknown) => {
      assert.ok(error instanceof SessionClosedError);
      assert.ok(error.cause instanceof RemoteGoAwayError);
      return true;
    });
  } finally {
    await close();
  }
});

Deno.test("a connection ending inside a frame is a connection error", async () => {
  const { session, peer, close } = rawClient();
  try {
    await peer.send(frameBytes(FrameType.Ping, Flag.SYN, 0, 1).subarray(0, 5));
    await peer.conn.closeWrite();
    await within(session.closed, 2000, "session ending");
    assert.equal(session.closeReason, "conn-error");
    assert.match(String(session.error?.message), /ended inside a frame \(5 bytes of it received\)/);
  } finally {
    await close();
  }
});

Deno.test("keepalive ends the session when the peer reads but never answers", async () => {
  // Taken before the session exists: its first ping (and the 300 ms deadline) starts with it, so a
  // pause between the two (a GC under load) would otherwise show as an early end.
  const started = performance.now();
  const { session, close } = rawClient({ keepaliveIntervalMs: 50, keepaliveTimeoutMs: 300 });
  try {
    await within(session.closed, 3000, "keepalive timeout");
    const elapsed = performance.now() - started;
    assert.ok(elapsed >= 290 && elapsed < 2000, `ended after ${elapsed} ms`);
    assert.equal(session.closeReason, "keepalive-timeout");
    assert.ok(session.error instanceof KeepaliveTimeoutError);
    assert.equal(session.error.timeoutMs, 300);
    assert.equal(session.error.intervalMs, 50);
    assert.match(session.error.message, /no answer within 300 ms/);
  } finally {
    await close();
  }
});

Deno.test("keepalive fires even while the connection's writes block forever", async () => {
  // A 1 KiB pipe the peer never reads: the session's writer blocks on the first big write.
  const { session, close } = rawClient({ keepaliveIntervalMs: 50, keepaliveTimeoutMs: 300 }, 1024, false);
  try {
    const stream = await session.open();
    const write = stream.write(new Uint8Array(200_000));
    const outcome = write.then(() => "written", (error) => error);
    await within(session.closed, 3000, "keepalive timeout with a blocked writer");
    assert.equal(session.closeReason, "keepalive-timeout");
    const result = await outcome;
    assert.ok(result === "written" || result instanceof SessionClosedError, `write ended with ${result}`);
  } finally {
    await close();
  }
});

Deno.test("keepalive keeps a healthy session open", async () => {
  const { client, server, close } = memorySessions({ keepaliveIntervalMs: 20, keepaliveTimeoutMs: 200 });
  try {
    await new Promise((resolve) => setTimeout(resolve, 400));
    assert.equal(client.isClosed, false);
    assert.equal(server.isClosed, false);
    assert.ok(client.rttMs > 0);
  } finally {
    await close();
  }
});

Deno.test("FIN and RST travel on WindowUpdate frames with a zero delta, as PROTOCOL.md says", async () => {
  const { session, peer, close } = rawClient();
  try {
    await peer.send(syn(1));
    await peer.send(syn(3));
    const finished = await within(session.accept(), 2000, "accept");
    const reset = await within(session.accept(), 2000, "accept");
    assert.ok(finished !== null && reset !== null);
    await finished.closeWrite();
    reset.reset();
    const fin = await peer.waitFor((f) => f.header.streamId === 1 && (f.header.flags & Flag.FIN) !== 0);
    const rst = await peer.waitFor((f) => f.header.streamId === 3 && (f.header.flags & Flag.RST) !== 0);
    assert.ok(fin && rst);
    for (const flag of [Flag.FIN, Flag.RST]) {
      const frames = peer.frames.filter((f) => (f.header.flags & flag) !== 0);
      assert.ok(frames.length > 0);
      for (const frame of frames) {
        assert.equal(
          frame.header.type,
          FrameType.WindowUpdate,
          `flag ${flag} on frame type ${frame.header.type}`,
        );
        assert.equal(frame.header.length, 0, "a zero window delta");
      }
    }
  } finally {
    await close();
  }
});

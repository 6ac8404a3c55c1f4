/**
 * Session tests over real TCP on 127.0.0.1: large transfers, a stalled reader, window growth, a dying
 * connection, random read sizes, resets in the middle of transfers.
 *
 * @module
 */

import assert from "node:assert/strict";
import { INITIAL_STREAM_WINDOW_BYTES } from "./constants.ts";
import { SessionClosedError } from "./errors.ts";
import type { Session } from "./session.ts";
import type { Stream } from "./stream.ts";
import { memorySessions, patternBytes, readAll, sha256Hex, tcpSessions, within } from "../../testing/mux.ts";

/** Echoes every stream the session accepts until it ends. */
async function echoServer(session: Session): Promise<void> {
  const echoes: Promise<void>[] = [];
  for await (const stream of session) {
    echoes.push((async () => {
      const buffer = new Uint8Array(32 * 1024);
      for (;;) {
        const count = await stream.read(buffer);
        if (count === null) break;
        await stream.write(buffer.subarray(0, count));
      }
      await stream.closeWrite();
    })());
  }
  await Promise.allSettled(echoes);
}

async function echoThrough(client: Session, payload: Uint8Array): Promise<Uint8Array> {
  const stream = await client.open();
  const [echoed] = await Promise.all([
    readAll(stream, 16 * 1024),
    (async () => {
      await stream.write(payload);
      await stream.closeWrite();
    })(),
  ]);
  return echoed;
}

for (const transport of ["memory", "tcp"] as const) {
  Deno.test(`1000 concurrent streams echo intact over ${transport}`, async () => {
    const { client, server, close } = transport === "tcp" ? await tcpSessions() : memorySessions();
    const serving = echoServer(server);
    try {
      const payloads = Array.from({ length: 1000 }, (_, i) => patternBytes(1 + ((i * 7919) % 4096), i));
      const echoed = await within(
        Promise.all(payloads.map((payload) => echoThrough(client, payload))),
        30_000,
        "1000 echoes",
      );
      for (let i = 0; i < payloads.length; i++) assert.deepEqual(echoed[i], payloads[i], `stream ${i}`);
      await within(
        (async () => {
          while (client.numStreams > 0 || server.numStreams > 0) await new Promise((r) => setTimeout(r, 5));
        })(),
        5000,
        "all streams released",
      );
    } finally {
      await close();
      await serving;
    }
  });
}

Deno.test("large payloads on several streams over TCP arrive intact (sha256)", async () => {
  const { client, server, close } = await tcpSessions();
  const serving = echoServer(server);
  try {
    const sizes = [0, 1, 65_535, 262_144, 262_145, 3 * 1024 * 1024 + 17];
    const payloads = sizes.map((size, i) => patternBytes(size, 100 + i));
    const echoed = await within(Promise.all(payloads.map((p) => echoThrough(client, p))), 20_000, "echoes");
    for (let i = 0; i < sizes.length; i++) {
      assert.equal(await sha256Hex(echoed[i] as Uint8Array), await sha256Hex(payloads[i] as Uint8Array));
    }
  } finally {
    await close();
    await serving;
  }
});

Deno.test("a stalled reader holds one window and does not slow another stream (TCP)", async () => {
  const { client, server, close } = await tcpSessions();
  try {
    const stalled = await client.open();
    const busy = await client.open();
    const stalledPeer = (await server.accept()) as Stream;
    const busyPeer = (await server.accept()) as Stream;
    // Writer of the stalled stream: 16 KiB writes, counting how much got queued.
    let stalledQueued = 0;
    let stopStalled = false;
    const stalledWriter = (async () => {
      const chunk = new Uint8Array(16 * 1024);
      while (!stopStalled && stalledQueued < 4 * 1024 * 1024) {
        await stalled.write(chunk);
        stalledQueued += chunk.length;
      }
    })();
    // Wait until the stalled sender stops making progress (bounded).
    for (let last = -1, rounds = 0; rounds < 200 && last !== stalledQueued; rounds++) {
      last = stalledQueued;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    assert.ok(
      stalledQueued <= INITIAL_STREAM_WINDOW_BYTES &&
        stalledQueued >= INITIAL_STREAM_WINDOW_BYTES - 16 * 1024,
      `the stalled stream's sender queued ${stalledQueued} bytes; it must stop at one window`,
    );
    // Meanwhile 8 MiB flows on the other stream.
    const payload = patternBytes(8 * 1024 * 1024, 9);
    const started = performance.now();
    const [received] = await within(
      Promise.all([
        readAll(busyPeer, 256 * 1024),
        (async () => {
          await busy.write(payload);
          await busy.closeWrite();
        })(),
      ]),
      10_000,
      "8 MiB on the busy stream",
    );
    const elapsedMs = performance.now() - started;
    assert.equal(await sha256Hex(received), await sha256Hex(payload));
    assert.ok(elapsedMs < 5000, `8 MiB took ${elapsedMs} ms next to a stalled stream`);
    assert.ok(
      stalledPeer.bufferedBytes <= INITIAL_STREAM_WINDOW_BYTES,
      `${stalledPeer.bufferedBytes} buffered`,
    );
    assert.equal(stalledPeer.receiveWindowBytes, INITIAL_STREAM_WINDOW_BYTES);
    // Unstall: the reader drains, the writer finishes.
    stopStalled = true;
    const drained = readAll(stalledPeer);
    await within(stalledWriter, 5000, "stalled writer resuming");
    await stalled.closeWrite();
    assert.equal((await within(drained, 5000, "draining")).length, stalledQueued);
  } finally {
    await close();
  }
});

Deno.test("the receive window grows on a fast link and stays within the maximum", async () => {
  const maxStreamWindowBytes = 4 * 1024 * 1024;
  const { client, server, close } = await tcpSessions({ maxStreamWindowBytes });
  try {
    await client.ping(); // an RTT sample, as a running session has
    const stream = await client.open();
    const peer = (await server.accept()) as Stream;
    const payload = new Uint8Array(32 * 1024 * 1024);
    const [received] = await within(
      Promise.all([
        readAll(peer, 256 * 1024),
        (async () => {
          await stream.write(payload);
          await stream.closeWrite();
        })(),
      ]),
      20_000,
      "32 MiB",
    );
    assert.equal(received.length, payload.length);
    assert.ok(peer.receiveWindowBytes > INITIAL_STREAM_WINDOW_BYTES, `window ${peer.receiveWindowBytes}`);
    assert.ok(peer.receiveWindowBytes <= maxStreamWindowBytes);
  } finally {
    await close();
  }
});

Deno.test("when the connection dies, streams fail, accept returns null and closed resolves", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [rawClient, accepted] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
    listener.accept(),
  ]);
  listener.close();
  const { Session } = await import("./session.ts");
  const client = new Session(rawClient, { role: "client" });
  const server = new Session(accepted, { role: "server" });
  try {
    const stream = await client.open();
    await stream.write(new Uint8Array(10));
    const peer = (await server.accept()) as Stream;
    assert.equal(await peer.read(new Uint8Array(100)), 10);
    const pendingRead = peer.read(new Uint8Array(100));
    const pendingAccept = server.accept();
    rawClient.close(); // the client's connection vanishes under its session
    await within(server.closed, 3000, "server session ending");
    assert.equal(await pendingAccept, null);
    await assert.rejects(pendingRead, SessionClosedError);
    assert.equal(server.numStreams, 0);
    await within(client.closed, 3000, "client session ending");
    assert.ok(client.closeReason === "conn-error", `client ended with ${client.closeReason}`);
  } finally {
    await client.close();
    await server.close();
  }
});

Deno.test("reads of random sizes get every byte in order, with zero-copy writes too (TCP)", async () => {
  for (const zeroCopyMinBytes of [0, 64 * 1024]) {
    const { client, server, close } = await tcpSessions({ zeroCopyMinBytes });
    try {
      const payload = patternBytes(6 * 1024 * 1024 + 123, 77);
      const stream = await client.open();
      const writing = (async () => {
        // Mixed write sizes: tiny, frame-sized and larger than a frame.
        const sizes = [1, 300 * 1024, 70_000, 5, 1024 * 1024, 256 * 1024];
        let offset = 0;
        for (let i = 0; offset < payload.length; i++) {
          const size = Math.min(sizes[i % sizes.length] as number, payload.length - offset);
          await stream.write(payload.subarray(offset, offset + size));
          offset += size;
        }
        await stream.closeWrite();
      })();
      const peer = (await server.accept()) as Stream;
      const received = new Uint8Array(payload.length);
      let filled = 0;
      const readSizes = [1, 40_000, 512 * 1024, 33 * 1024, 100, 300 * 1024];
      for (let i = 0;; i++) {
        const size = readSizes[i % readSizes.length] as number;
        const buffer = new Uint8Array(size);
        const count = await within(peer.read(buffer), 5000, "read");
        if (count === null) break;
        assert.ok(count > 0 && count <= size);
        received.set(buffer.subarray(0, count), filled);
        filled += count;
      }
      await writing;
      assert.equal(filled, payload.length);
      assert.equal(await sha256Hex(received), await sha256Hex(payload));
    } finally {
      await close();
    }
  }
});

Deno.test("resetting or closing streams in the middle of large transfers leaves the session healthy", async () => {
  const { client, server, close } = await tcpSessions();
  try {
    const streams = await Promise.all(Array.from({ length: 6 }, () => client.open()));
    const peers: Stream[] = [];
    for (let i = 0; i < streams.length; i++) peers.push((await server.accept()) as Stream);
    const chunk = new Uint8Array(512 * 1024);
    const writers = streams.map(async (stream) => {
      try {
        for (let i = 0; i < 40; i++) await stream.write(chunk);
        await stream.closeWrite();
      } catch {
        // Reset streams fail their writes: expected for half of them.
      }
    });
    const readers = peers.map(async (peer, index) => {
      const buffer = new Uint8Array(256 * 1024);
      let total = 0;
      try {
        for (;;) {
          const count = await peer.read(buffer);
          if (count === null) return total;
          total += count;
          if (total > 2 * 1024 * 1024) {
            if (index % 3 === 0) peer.reset();
            else if (index % 3 === 1) peer.close();
          }
        }
      } catch {
        return -1;
      }
    });
    const totals = await within(Promise.all(readers), 15_000, "readers");
    await within(Promise.all(writers), 15_000, "writers");
    for (let i = 0; i < totals.length; i++) {
      if (i % 3 === 2) assert.equal(totals[i], 40 * chunk.length, `stream ${i} read everything`);
    }
    // The session still carries new streams.
    const fresh = await client.open();
    await fresh.write(new Uint8Array([1, 2, 3]));
    await fresh.closeWrite();
    const freshPeer = (await server.accept()) as Stream;
    assert.deepEqual([...await readAll(freshPeer)], [1, 2, 3]);
    assert.equal(client.isClosed || server.isClosed, false);
  } finally {
    await close();
  }
});

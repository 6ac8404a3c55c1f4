/**
 * A cut transfer must not look complete: real server and client processes over real TLS; the outside
 * peer of a transfer that was cut (the client killed, the local service reset) reads a TCP reset, while a
 * transfer that finished, half-close included, ends with every byte and a clean end of stream.
 */

import assert from "node:assert/strict";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { freePort, patternBytes, sha256Hex } from "../testing/helpers.ts";
import { ProcessTunnel } from "../testing/process_tunnel.ts";
import { writeAll } from "../lib/net/conn.ts";
import { closeQuietly } from "../lib/transport/pipe.ts";

const MIB = 1024 * 1024;

/** How an outside peer's download ended. */
interface DownloadEnd {
  /** Bytes read before the end. */
  bytes: number;
  /** "eof" for a clean end of stream, else the error's name (ConnectionReset for ECONNRESET). */
  end: string;
  /** SHA-256 of what was read. */
  digest: string;
}

/**
 * Reads `conn` until its end; calls `onProgress` with the byte count after each read (it may return a
 * promise, awaited before the next read).
 */
async function readToEnd(
  conn: Deno.Conn,
  onProgress: (bytes: number) => void | Promise<void> = () => {},
): Promise<DownloadEnd> {
  const buffer = new Uint8Array(256 * 1024);
  const chunks: Uint8Array[] = [];
  let bytes = 0;
  let end = "eof";
  try {
    while (true) {
      const count = await conn.read(buffer);
      if (count === null) break;
      chunks.push(buffer.slice(0, count));
      bytes += count;
      await onProgress(bytes);
    }
  } catch (error) {
    end = error instanceof Error ? error.name : String(error);
  }
  const all = new Uint8Array(bytes);
  let offset = 0;
  for (const chunk of chunks) {
    all.set(chunk, offset);
    offset += chunk.length;
  }
  return { bytes, end, digest: await sha256Hex(all) };
}

/** A local service that sends `payload` to each connection (after reading its request to the end, if asked). */
function downloadService(payload: Uint8Array, options: { readRequestFirst?: boolean } = {}) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const loop = (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      (async () => {
        try {
          if (options.readRequestFirst) {
            const sink = new Uint8Array(64 * 1024);
            while ((await conn.read(sink)) !== null) {
              // The request: read to its end (the outside peer half-closes after it).
            }
          }
          await writeAll(conn, payload);
          await conn.closeWrite();
          // Wait for the tunnel to close its side before closing ours.
          while ((await conn.read(new Uint8Array(1024))) !== null) {
            // Nothing more is expected.
          }
        } catch {
          // The tunnel side went away: what the test looks at is the outside peer.
        } finally {
          conns.delete(conn);
          closeQuietly(conn);
        }
      })();
    }
  })();
  return {
    port: listener.addr.port,
    async close() {
      closeQuietly(listener);
      for (const conn of conns) closeQuietly(conn);
      await loop;
    },
  };
}

Deno.test("an outside peer downloading 64 MiB when the client is killed reads a reset, not a clean end", async () => {
  const payload = patternBytes(64 * MIB, 11);
  const service = downloadService(payload);
  try {
    await using tunnel = await ProcessTunnel.create();
    const { client, publishPort } = await tunnel.serverAndClient({ name: "dl", localPort: service.port });
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: publishPort });
    let killed = false;
    const result = await readToEnd(conn, async (bytes) => {
      if (!killed && bytes >= 8 * MIB) {
        killed = true;
        client.kill("SIGKILL");
        await client.status();
      }
    });
    closeQuietly(conn);
    console.log(`outside peer: ${result.bytes} of ${payload.length} bytes, then ${result.end}`);
    assert.ok(killed, "the client was killed mid-transfer");
    assert.ok(result.bytes < payload.length, "the transfer was cut");
    assert.equal(result.end, "ConnectionReset", "the outside peer reads ECONNRESET, not a clean end");
  } finally {
    await service.close();
  }
});

Deno.test("an outside peer reads a reset when the local service resets its connection mid-stream", async () => {
  // The local service sends 2 MiB and then resets (node:net's resetAndDestroy sends RST in Deno 2.9.6).
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => {});
    socket.on("close", () => sockets.delete(socket));
    socket.write(patternBytes(2 * MIB, 12), () => setTimeout(() => socket.resetAndDestroy(), 50));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  assert.ok(address !== null && typeof address === "object");
  try {
    await using tunnel = await ProcessTunnel.create();
    const { publishPort } = await tunnel.serverAndClient({ name: "rst", localPort: address.port });
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: publishPort });
    const result = await readToEnd(conn);
    closeQuietly(conn);
    console.log(`outside peer: ${result.bytes} bytes, then ${result.end}`);
    assert.equal(result.end, "ConnectionReset", "the local service's reset reaches the outside peer");
    assert.ok(result.bytes <= 2 * MIB);
  } finally {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

Deno.test("an outside peer that half-closes after its request gets all 64 MiB and a clean end", async () => {
  const payload = patternBytes(64 * MIB, 11);
  const service = downloadService(payload, { readRequestFirst: true });
  try {
    await using tunnel = await ProcessTunnel.create();
    const { publishPort } = await tunnel.serverAndClient({ name: "dl", localPort: service.port });
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: publishPort });
    await writeAll(conn, new TextEncoder().encode("GET /big\r\n\r\n"));
    await conn.closeWrite();
    const result = await readToEnd(conn);
    closeQuietly(conn);
    assert.equal(result.end, "eof");
    assert.equal(result.bytes, payload.length);
    assert.equal(result.digest, await sha256Hex(payload));
  } finally {
    await service.close();
  }
});

Deno.test("an outside peer of a proxy whose local service is down reads a reset, not an empty answer", async () => {
  await using tunnel = await ProcessTunnel.create();
  const { client, publishPort } = await tunnel.serverAndClient({
    name: "down",
    localPort: freePort(),
    lines: "health_check = { interval_secs = 0.2, timeout_secs = 0.2 }",
  }, "local_connect_retries = 1");
  // Once through the stream (the client cannot connect and resets it), and once the server has been told
  // the service is down (it refuses at accept): a reset either way.
  for (const waitForHealth of [false, true]) {
    if (waitForHealth) await client.waitForLine(/Proxy down: local service .* is down/);
    let conn: Deno.TcpConn;
    try {
      conn = await Deno.connect({ hostname: "127.0.0.1", port: publishPort });
    } catch (error) {
      // Refused at accept, the reset can arrive before Deno's connect has finished with the socket (it
      // asks for the addresses after connect(2): ECONNRESET, or ENOTCONN from getpeername): the peer sees
      // the reset there, which is the outcome.
      assert.ok(
        error instanceof Deno.errors.ConnectionReset || error instanceof Deno.errors.NotConnected,
        `connect failed otherwise: ${error}`,
      );
      continue;
    }
    const result = await readToEnd(conn);
    closeQuietly(conn);
    assert.equal(result.bytes, 0);
    assert.equal(result.end, "ConnectionReset");
  }
});

Deno.test("the local service reads a reset when the outside peer vanishes abruptly mid-upload", async () => {
  const service = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const outcome = Promise.withResolvers<DownloadEnd>();
  const served = (async () => {
    for await (const conn of service) {
      readToEnd(conn).then(outcome.resolve, outcome.reject).finally(() => closeQuietly(conn));
    }
  })();
  try {
    await using tunnel = await ProcessTunnel.create();
    const { publishPort } = await tunnel.serverAndClient({
      name: "up",
      localPort: service.addr.port,
    });
    // The outside peer sends 1 MiB and then resets its connection (RST, not FIN).
    const socket = createConnection({ host: "127.0.0.1", port: publishPort });
    socket.on("error", () => {});
    await new Promise<void>((resolve) => socket.once("connect", resolve));
    await new Promise<void>((resolve) => socket.write(patternBytes(MIB, 13), () => resolve()));
    await new Promise((resolve) => setTimeout(resolve, 200));
    socket.resetAndDestroy();
    const result = await outcome.promise;
    console.log(`local service: ${result.bytes} bytes, then ${result.end}`);
    assert.equal(result.end, "ConnectionReset", "the outside peer's reset reaches the local service");
  } finally {
    closeQuietly(service);
    await served;
  }
});

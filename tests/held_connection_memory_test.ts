/**
 * Memory per held outside connection through the real server and client processes over TLS (issue 10
 * item 3): connections that each echo exactly 1 KiB and stay open used to keep a 256 KiB copy buffer
 * pinned by the read waiting on each idle socket, ≈ 145 KiB of RSS per connection on each side.
 * `deno task bench --only tunnel-memory` measures the same at 10,000 connections and other payloads.
 *
 * @module
 */

import assert from "node:assert/strict";
import { closeQuietly } from "../lib/transport/pipe.ts";
import { freePort, patternBytes } from "../testing/helpers.ts";
import { ProcessTunnel, proxyUp } from "../testing/process_tunnel.ts";

/** Connections held in the measured burst. */
const HELD_CONNECTIONS = 300;
/** Connections of the warm-up burst (first-use code and pools are not a per-connection cost). */
const WARMUP_CONNECTIONS = 30;
/** Connections opened and echoing at a time. */
const CONCURRENCY = 16;
/** Bytes each connection echoes: exactly the copy loop's small buffer, the shape that pinned 256 KiB. */
const PAYLOAD_BYTES = 1024;
/**
 * Most RSS growth per held connection on either side. Measured after the fix: 20–30 KiB at 300
 * connections (fixed costs spread over few connections); before it: ≈ 145 KiB.
 */
const MAX_KIB_PER_CONNECTION = 64;
/** The whole burst must be done within this (connections are closed when it passes). */
const BURST_TIMEOUT_MS = 30_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** RSS in KiB of each of `pids` (read with `ps`: Deno grants another process's /proc only with -A). */
async function rssKiB(pids: readonly number[]): Promise<number[]> {
  const output = await new Deno.Command("ps", {
    args: ["-o", "pid=,rss=", "-p", pids.join(",")],
    stdout: "piped",
    stderr: "null",
  }).output();
  const byPid = new Map<number, number>();
  for (const line of new TextDecoder().decode(output.stdout).split("\n")) {
    const [pid, rss] = line.trim().split(/\s+/).map(Number);
    if (pid !== undefined && rss !== undefined && !Number.isNaN(rss)) byPid.set(pid, rss);
  }
  return pids.map((pid) => {
    const rss = byPid.get(pid);
    if (rss === undefined) throw new Error(`process ${pid} is gone; cannot read its RSS`);
    return rss;
  });
}

async function readFull(conn: Deno.Conn, buffer: Uint8Array): Promise<void> {
  let filled = 0;
  while (filled < buffer.length) {
    const count = await conn.read(buffer.subarray(filled));
    if (count === null) throw new Error(`connection ended after ${filled} of ${buffer.length} echoed bytes`);
    filled += count;
  }
}

/**
 * Opens `count` connections to 127.0.0.1:`port`, `CONCURRENCY` at a time; each sends its seeded
 * 1 KiB and reads it back. Returns them open; all are closed if one fails or the time runs out.
 */
async function holdEchoing(port: number, count: number, seed: number): Promise<Deno.Conn[]> {
  const conns: Deno.Conn[] = [];
  const timer = setTimeout(() => conns.forEach(closeQuietly), BURST_TIMEOUT_MS);
  let next = 0;
  const worker = async () => {
    const reply = new Uint8Array(PAYLOAD_BYTES);
    while (next < count) {
      const index = next++;
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      conns.push(conn);
      const payload = patternBytes(PAYLOAD_BYTES, seed + index);
      let written = 0;
      while (written < payload.length) written += await conn.write(payload.subarray(written));
      await readFull(conn, reply);
      assert.deepEqual(reply, payload, `connection ${index} got its own bytes back`);
    }
  };
  try {
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  } catch (error) {
    conns.forEach(closeQuietly);
    throw error;
  } finally {
    clearTimeout(timer);
  }
  return conns;
}

Deno.test(
  "300 outside connections that each echo 1 KiB and stay open cost the server and the client little memory each",
  async () => {
    await using tunnel = await ProcessTunnel.create();
    const publishPort = freePort();
    const server = await tunnel.server();
    const client = tunnel.client(await tunnel.clientConfig("held", [{ name: "held", publishPort }]));
    await client.waitForLine(proxyUp("held"));

    (await holdEchoing(publishPort, WARMUP_CONNECTIONS, 1)).forEach(closeQuietly);
    await sleep(500);
    const before = await rssKiB([server.pid, client.pid]);
    const held = await holdEchoing(publishPort, HELD_CONNECTIONS, 1_000);
    try {
      await sleep(500);
      const after = await rssKiB([server.pid, client.pid]);
      const [serverKiB, clientKiB] = after.map((rss, side) =>
        (rss - (before[side] ?? rss)) / HELD_CONNECTIONS
      );
      const figures = `server ${serverKiB?.toFixed(1)} KiB, client ${
        clientKiB?.toFixed(1)
      } KiB per connection`;
      assert.ok((serverKiB ?? Infinity) <= MAX_KIB_PER_CONNECTION, `the server grew too much: ${figures}`);
      assert.ok((clientKiB ?? Infinity) <= MAX_KIB_PER_CONNECTION, `the client grew too much: ${figures}`);
    } finally {
      held.forEach(closeQuietly);
    }
  },
);

/**
 * The tunnel port in front of the internet: sockets that never send a byte and TLS handshakes that stall
 * are closed (their descriptors really freed) after `handshake_timeout_secs`, unauthenticated connections
 * are limited in all and per address, and a real client still gets in during such a flood. The server
 * runs as a real process; the flood comes from 127.0.0.2 and the real client from 127.0.0.1.
 */

import assert from "node:assert/strict";
import { connect as nodeConnect, type Socket } from "node:net";
import { Session } from "../lib/mux/mod.ts";
import { RpcPeer } from "../lib/rpc/mod.ts";
import { freePort, testCertificates, waitFor } from "../testing/helpers.ts";
import { PROCESS_AUTH_KEY, ProcessTunnel } from "../testing/process_tunnel.ts";

/** The start of a TLS ClientHello record: a handshake that then never goes on. */
const STALLED_HELLO = new Uint8Array([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]);

/** Open descriptors of process `pid` (through `ls`: Deno lets only --allow-all read another's /proc). */
async function openFds(pid: number): Promise<number> {
  const { stdout } = await new Deno.Command("ls", { args: ["-1", `/proc/${pid}/fd`], stdout: "piped" })
    .output();
  return new TextDecoder().decode(stdout).split("\n").filter(Boolean).length;
}

/** Opens `count` TCP connections from 127.0.0.1, `inFlight` at a time; with `hello`, each sends it. */
async function floodFromHere(port: number, count: number, hello: Uint8Array | null): Promise<Deno.TcpConn[]> {
  const conns: Deno.TcpConn[] = [];
  const inFlight = 100;
  for (let start = 0; start < count; start += inFlight) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(inFlight, count - start) }, async () => {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port });
        if (hello) await conn.write(hello);
        return conn;
      }),
    );
    conns.push(...batch);
  }
  return conns;
}

/** Opens `count` TCP connections from 127.0.0.2, `inFlight` at a time; with `hello`, each sends it. */
async function flood(port: number, count: number, hello: Uint8Array | null): Promise<Socket[]> {
  const sockets: Socket[] = [];
  const inFlight = 100;
  for (let start = 0; start < count; start += inFlight) {
    const batch = Array.from(
      { length: Math.min(inFlight, count - start) },
      () =>
        new Promise<Socket>((resolve) => {
          const socket = nodeConnect({ host: "127.0.0.1", port, localAddress: "127.0.0.2" });
          // A refused or reset connection is what the limits are for; it is not a test failure.
          socket.on("error", () => {});
          socket.once("connect", () => {
            if (hello) socket.write(hello);
            resolve(socket);
          });
          socket.once("close", () => resolve(socket));
        }),
    );
    sockets.push(...await Promise.all(batch));
  }
  return sockets;
}

/** Milliseconds a real TLS + yamux + authenticate takes from 127.0.0.1. */
async function authenticateMs(port: number): Promise<number> {
  const certs = await testCertificates();
  const started = performance.now();
  const conn = await Deno.connectTls({ hostname: "localhost", port, caCerts: [certs.caCertPem] });
  const session = new Session(conn, { role: "client", keepaliveIntervalMs: 0 });
  const rpc = new RpcPeer(await session.open());
  try {
    await rpc.request("authenticate", {
      auth_key: PROCESS_AUTH_KEY,
      protocol_version: 1,
      client_id: "during-flood",
    }, { timeoutMs: 5000 });
    return performance.now() - started;
  } finally {
    rpc.close();
    await session.close();
    await session.closed;
    await rpc.closed;
  }
}

/** handshake_timeout_secs of the second test: long enough for the flood to be in place first. */
const TIMEOUT_SECS = 6;

function destroyAll(sockets: Socket[]): void {
  for (const socket of sockets) socket.destroy();
}

Deno.test("idle sockets and stalled handshakes beyond the per-address limit are refused at once; a real client still authenticates", async () => {
  const statsPort = freePort();
  await using tunnel = await ProcessTunnel.create(`handshake_timeout_secs = 2\nstats_port = ${statsPort}\n`);
  const server = await tunnel.server();
  await new Promise((resolve) => setTimeout(resolve, 300));
  const baselineFds = await openFds(server.pid);
  const idle = await flood(tunnel.serverPort, 2000, null);
  const stalled = await flood(tunnel.serverPort, 300, STALLED_HELLO);
  try {
    // 32 per address by default: the rest were closed at once, not held.
    await waitFor(
      async () => await openFds(server.pid) <= baselineFds + 32 + 10,
      1000,
      "at most 32 pending from 127.0.0.2",
    );
    const tookMs = await authenticateMs(tunnel.serverPort);
    assert.ok(tookMs < 1000, `authenticating during the flood took ${tookMs.toFixed(0)} ms`);
    await waitFor(
      async () => await openFds(server.pid) <= baselineFds + 10,
      2000 + 2000,
      "the server's fds at baseline",
    );
    const metrics = await (await fetch(`http://127.0.0.1:${statsPort}/metrics`)).text();
    const refused = Number(
      /tls_tunnel_connections_refused_total\{reason="pending_per_ip_limit"\} (\d+)/.exec(metrics)?.[1],
    );
    assert.ok(refused >= 2000, `refused counter ${refused}`);
  } finally {
    destroyAll(idle);
    destroyAll(stalled);
  }
});

Deno.test("admitted idle sockets and stalled handshakes are closed after handshake_timeout_secs and their descriptors freed", async () => {
  await using tunnel = await ProcessTunnel.create(
    `handshake_timeout_secs = ${TIMEOUT_SECS}\nmax_pending_connections = 5000\nmax_pending_per_ip = 5000\n`,
  );
  const server = await tunnel.server();
  await new Promise((resolve) => setTimeout(resolve, 300));
  const baselineFds = await openFds(server.pid);
  const idle = await floodFromHere(tunnel.serverPort, 2000, null);
  const stalled = await floodFromHere(tunnel.serverPort, 300, STALLED_HELLO);
  const floodedAt = performance.now();
  try {
    assert.ok(
      await openFds(server.pid) >= baselineFds + 1000,
      "the server holds the flood until the timeout",
    );
    const tookMs = await authenticateMs(tunnel.serverPort);
    assert.ok(tookMs < 1000, `authenticating with 2,300 pending connections took ${tookMs.toFixed(0)} ms`);
    const limitMs = TIMEOUT_SECS * 1000 + 2000;
    await waitFor(
      async () => await openFds(server.pid) <= baselineFds + 10,
      limitMs,
      "the server's fds at baseline",
    );
    const freedAfterMs = performance.now() - floodedAt;
    assert.ok(freedAfterMs < limitMs, `descriptors freed ${freedAfterMs.toFixed(0)} ms after the flood`);
    // The server's end is closed: each flooding connection reads end of stream or a reset.
    const ended = await Promise.all(
      idle.map((conn) => conn.read(new Uint8Array(16)).then((n) => n === null, () => true)),
    );
    assert.ok(ended.every(Boolean), "every idle connection was closed by the server");
  } finally {
    for (const conn of [...idle, ...stalled]) conn.close();
  }
});

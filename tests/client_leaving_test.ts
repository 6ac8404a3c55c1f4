/**
 * A client that says goodbye leaves: real server and client processes over real TLS. On SIGTERM the client
 * sends GoAway; the server releases its ports at once, lets the connections in flight finish, and logs a
 * departure at INFO.
 */

import assert from "node:assert/strict";
import { canBind, freePort, type LogRecord, waitFor } from "../testing/helpers.ts";
import { ProcessTunnel, proxyUp } from "../testing/process_tunnel.ts";
import { writeAll } from "../lib/net/conn.ts";
import { closeQuietly } from "../lib/transport/pipe.ts";
import { LEAVE_GRACE_MS } from "../lib/protocol/leaving.ts";
import { tcpResetUnavailableReason } from "../lib/net/tcp_reset.ts";
import { startServer } from "../testing/tunnel.ts";
import { RawClient } from "../testing/raw_client.ts";

/** The server's log records from `from` on, as "level message" lines (for assertion messages). */
function describe(records: LogRecord[], from = 0): string {
  return records.slice(from).map((record) => `${record.level} ${record.message}`).join("\n");
}

Deno.test("a client stopped with SIGTERM frees its ports within 100 ms of its GoAway; the server logs a departure at INFO", async () => {
  await using tunnel = await ProcessTunnel.create();
  const publishPorts = [freePort(), freePort()];
  const server = await tunnel.server();
  const client = tunnel.client(
    await tunnel.clientConfig("client", [
      { name: "web", publishPort: publishPorts[0] as number },
      { name: "api", publishPort: publishPorts[1] as number },
    ]),
  );
  await client.waitForLine(proxyUp("web"));
  await client.waitForLine(proxyUp("api"));
  const before = server.records.length;
  const stoppedAt = performance.now();
  client.kill("SIGTERM");
  await waitFor(() => publishPorts.every((port) => canBind(port)), 2000, "both ports to be released", 1);
  const freeMs = performance.now() - stoppedAt;
  const [, released, ms] = await server.waitForLine(
    /is leaving \(GoAway\): released (\d+) port\(s\) in ([\d.]+) ms/,
  );
  console.log(
    `ports bindable ${freeMs.toFixed(1)} ms after SIGTERM; the server released them ${ms} ms after GoAway`,
  );
  assert.equal(Number(released), 2);
  assert.ok(Number(ms) < 100, `ports released ${ms} ms after the GoAway arrived`);
  assert.equal((await client.status()).code, 0);
  await server.waitForLine(/Client \S+ disconnected \(left\)/);
  const after = server.records.slice(before);
  const departure = after.filter((record) => /is leaving|disconnected \(left\)/.test(record.message));
  assert.equal(departure.length, 2, describe(server.records, before));
  assert.ok(departure.every((record) => record.level === "info"), describe(server.records, before));
  const warnings = after.filter((record) => record.level !== "info" && record.level !== "debug");
  assert.deepEqual(
    warnings,
    [],
    `the server warned about a normal departure:\n${describe(server.records, before)}`,
  );
  assert.ok(!/UnexpectedEof|close_notify/.test(describe(server.records, before)));
});

/** A local service that answers every connection with `chunks` chunks of 64 KiB, one every 100 ms. */
function slowService(chunks: number) {
  const chunk = new Uint8Array(64 * 1024).fill(7);
  const service = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = (async () => {
    for await (const conn of service) {
      (async () => {
        try {
          for (let index = 0; index < chunks; index++) {
            await writeAll(conn, chunk);
            await new Promise((resolve) => setTimeout(resolve, 100));
          }
          await conn.closeWrite();
          while ((await conn.read(new Uint8Array(1024))) !== null) {
            // Until the tunnel closes its side.
          }
        } catch {
          // The test looks at the outside peer.
        } finally {
          closeQuietly(conn);
        }
      })();
    }
  })();
  return {
    port: service.addr.port,
    totalBytes: chunk.length * chunks,
    async close() {
      closeQuietly(service);
      await served;
    },
  };
}

/**
 * A server and a client publishing the local service on `servicePort` as "slow", and an outside
 * connection through it that has read its first bytes.
 */
async function downloadStarted(tunnel: ProcessTunnel, servicePort: number) {
  const { server, client, publishPort } = await tunnel.serverAndClient({
    name: "slow",
    localPort: servicePort,
  });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: publishPort });
  const buffer = new Uint8Array(256 * 1024);
  const firstBytes = (await conn.read(buffer)) ?? 0;
  return { server, client, publishPort, conn, buffer, firstBytes };
}

/** Reads `conn` to its end: the bytes read, and "eof" or the name of the error it ended with. */
async function readRest(conn: Deno.Conn, buffer: Uint8Array): Promise<{ bytes: number; end: string }> {
  let bytes = 0;
  try {
    while (true) {
      const count = await conn.read(buffer);
      if (count === null) break;
      bytes += count;
    }
  } catch (error) {
    return { bytes, end: error instanceof Error ? error.name : String(error) };
  }
  return { bytes, end: "eof" };
}

Deno.test("a connection in flight when the client is stopped finishes, while new connections are refused", async () => {
  const service = slowService(12);
  try {
    await using tunnel = await ProcessTunnel.create();
    const { server, client, publishPort, conn, buffer, firstBytes } = await downloadStarted(
      tunnel,
      service.port,
    );
    let received = firstBytes;
    const stoppedAt = performance.now();
    client.kill("SIGTERM");
    await server.waitForLine(/is leaving \(GoAway\): released 1 port\(s\) in [\d.]+ ms; 1 connection/);
    await assert.rejects(
      Deno.connect({ hostname: "127.0.0.1", port: publishPort }),
      Deno.errors.ConnectionRefused,
      "a leaving client's port takes no new connections",
    );
    const rest = await readRest(conn, buffer);
    received += rest.bytes;
    const end = rest.end;
    const tookMs = performance.now() - stoppedAt;
    closeQuietly(conn);
    console.log(
      `in-flight download finished ${tookMs.toFixed(0)} ms after SIGTERM: ${received} bytes, ${end}`,
    );
    assert.equal(end, "eof");
    assert.equal(received, service.totalBytes);
    assert.ok(tookMs < LEAVE_GRACE_MS, `finished within the grace period (${tookMs.toFixed(0)} ms)`);
    assert.equal((await client.status()).code, 0);
    await server.waitForLine(/Client \S+ disconnected \(left\)/);
  } finally {
    await service.close();
  }
});

Deno.test("a second SIGTERM stops a leaving client at once, and its outside connection is reset", async () => {
  const service = slowService(30);
  try {
    await using tunnel = await ProcessTunnel.create();
    const { server, client, conn, buffer, firstBytes } = await downloadStarted(
      tunnel,
      service.port,
    );
    let received = firstBytes;
    client.kill("SIGTERM");
    await server.waitForLine(/is leaving \(GoAway\)/);
    const secondAt = performance.now();
    client.kill("SIGTERM");
    const status = await client.status();
    const exitMs = performance.now() - secondAt;
    const rest = await readRest(conn, buffer);
    received += rest.bytes;
    const end = rest.end;
    closeQuietly(conn);
    console.log(
      `client exited ${status.code} ${exitMs.toFixed(0)} ms after the second SIGTERM; peer: ${end}`,
    );
    assert.equal(status.code, 130);
    assert.ok(exitMs < 1000, `${exitMs} ms`);
    assert.ok(received < service.totalBytes);
    assert.equal(end, "ConnectionReset");
  } finally {
    await service.close();
  }
});

Deno.test("a client that says GoAway but holds its connections open loses them and its session after the grace period", async () => {
  const started = await startServer();
  const raw = await RawClient.dial(started.port);
  try {
    await raw.authenticate("holder");
    const publishPort = freePort();
    const answer = await raw.register([{ name: "held", publish_port: publishPort }]);
    assert.equal(answer.proxies[0]?.status, "accepted");
    // An outside connection whose stream the client accepts and then never serves nor closes.
    const outside = await Deno.connect({ hostname: "127.0.0.1", port: publishPort });
    const held = await raw.session.accept();
    assert.ok(held);
    const goAwayAt = performance.now();
    await raw.session.goAway();
    await waitFor(() => canBind(publishPort), 1000, "the port to be released", 2);
    const end = await outside.read(new Uint8Array(16)).then(
      (count) => (count === null ? "eof" : "data"),
      (error: unknown) => (error instanceof Error ? error.name : String(error)),
    );
    const endedMs = performance.now() - goAwayAt;
    closeQuietly(outside);
    await raw.session.closed;
    const sessionMs = performance.now() - goAwayAt;
    console.log(
      `held connection ended (${end}) ${endedMs.toFixed(0)} ms after GoAway, session ${
        sessionMs.toFixed(0)
      } ms`,
    );
    assert.ok(endedMs >= LEAVE_GRACE_MS - 100 && endedMs < LEAVE_GRACE_MS + 1500, `${endedMs} ms`);
    assert.ok(sessionMs < LEAVE_GRACE_MS + 2000, `${sessionMs} ms`);
    // This test process may lack --allow-ffi: then the cut connection can only be closed (FIN).
    assert.equal(end, tcpResetUnavailableReason() === null ? "ConnectionReset" : "eof");
    assert.equal(started.server.clients.size, 0);
  } finally {
    await raw.close().catch(() => {});
    await started.stop();
  }
});

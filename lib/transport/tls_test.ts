import assert from "node:assert/strict";
import { withTimeout } from "../_async.ts";
import { writeAll } from "../net/conn.ts";
import { testCertificates } from "../../testing/helpers.ts";
import { closeQuietly } from "./pipe.ts";
import { transportFor } from "./registry.ts";
import { TlsDialError } from "./tls.ts";
import {
  type AdmittedConn,
  type IncomingConn,
  TransportDialError,
  TransportHandshakeTimeoutError,
  type TransportListener,
} from "./transport.ts";

const tls = transportFor("tls");

/** A tls listener on 127.0.0.1 whose accepted connections go to `onConnection`. */
async function listen(
  onConnection: (incoming: IncomingConn) => void,
  handshakeTimeoutMs = 10_000,
): Promise<{ listener: TransportListener; serving: Promise<void> }> {
  const certs = await testCertificates();
  const listener = await tls.listen({
    hostname: "127.0.0.1",
    port: 0,
    certPem: certs.serverChainPem,
    keyPem: certs.serverKeyPem,
    handshakeTimeoutMs,
  });
  return { listener, serving: listener.serve(onConnection) };
}

/** Reads until the peer ends or resets the connection; resolves with how long that took. */
async function msUntilEnded(conn: Deno.Conn): Promise<number> {
  const startedMs = performance.now();
  const buffer = new Uint8Array(1024);
  try {
    while (await conn.read(buffer) !== null) {
      // Nothing is expected; keep reading until the end.
    }
  } catch {
    // A reset ends it too.
  }
  return performance.now() - startedMs;
}

Deno.test("tls transport: a dialed connection and the admitted one carry bytes both ways after the handshake", async () => {
  const certs = await testCertificates();
  const admitted = Promise.withResolvers<AdmittedConn>();
  const { listener, serving } = await listen((incoming) => admitted.resolve(incoming.admit()));
  const dialed = await tls.dial({
    hostname: "127.0.0.1",
    port: listener.addr.port,
    serverName: "localhost",
    caCertPem: certs.caCertPem,
    timeoutMs: 5000,
  });
  const server = await admitted.promise;
  await server.handshake();
  await writeAll(dialed, new TextEncoder().encode("ping"));
  const buffer = new Uint8Array(16);
  assert.equal(new TextDecoder().decode(buffer.subarray(0, await server.read(buffer) ?? 0)), "ping");
  await writeAll(server, new TextEncoder().encode("pong"));
  assert.equal(new TextDecoder().decode(buffer.subarray(0, await dialed.read(buffer) ?? 0)), "pong");
  assert.equal(dialed.remote, `127.0.0.1:${listener.addr.port}`);
  closeQuietly(dialed);
  closeQuietly(server);
  listener.close();
  await serving;
});

Deno.test("tls transport: an admitted connection that never handshakes is closed after handshakeTimeoutMs", async () => {
  const admitted = Promise.withResolvers<AdmittedConn>();
  const { listener, serving } = await listen((incoming) => admitted.resolve(incoming.admit()), 300);
  const idle = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const ended = msUntilEnded(idle);
  const conn = await admitted.promise;
  await assert.rejects(withTimeout(conn.handshake(), 3000, "the handshake to end"), (error: unknown) => {
    assert.ok(error instanceof TransportHandshakeTimeoutError, String(error));
    assert.equal(error.timeoutMs, 300);
    return true;
  });
  const endedAfterMs = await ended;
  assert.ok(endedAfterMs >= 200 && endedAfterMs < 3000, `the idle peer was let go after ${endedAfterMs} ms`);
  closeQuietly(idle);
  listener.close();
  await serving;
});

Deno.test("tls transport: a refused connection is closed at once, before any handshake", async () => {
  const { listener, serving } = await listen((incoming) => incoming.refuse());
  const refused = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const endedAfterMs = await msUntilEnded(refused);
  assert.ok(endedAfterMs < 2000, `closed after ${endedAfterMs} ms`);
  closeQuietly(refused);
  listener.close();
  await serving;
});

Deno.test("tls transport: aborting the listen signal closes the listener", async () => {
  const certs = await testCertificates();
  const stop = new AbortController();
  const listener = await tls.listen({
    hostname: "127.0.0.1",
    port: 0,
    certPem: certs.serverChainPem,
    keyPem: certs.serverKeyPem,
    handshakeTimeoutMs: 1000,
  }, stop.signal);
  const serving = listener.serve((incoming) => incoming.refuse());
  stop.abort();
  await serving;
  await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }));
});

Deno.test("tls transport: dialing a port nobody listens on fails with a dial error that says so", async () => {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = probe.addr.port;
  probe.close();
  await assert.rejects(tls.dial({ hostname: "127.0.0.1", port, timeoutMs: 5000 }), (error: unknown) => {
    assert.ok(error instanceof TlsDialError && error instanceof TransportDialError, String(error));
    assert.match(error.message, /refused: is the server running on that port\?/);
    return true;
  });
});

import assert from "node:assert/strict";
import { BindError } from "../net/tcp.ts";
import { writeAll } from "../net/conn.ts";
import { readExactly } from "../../testing/bytes.ts";
import { testCertificates } from "../../testing/helpers.ts";
import { listenAdmitting } from "../../testing/transport.ts";
import { QUIC_ALPN, QuicDialError, quicTransport } from "./quic.ts";
import { TransportHandshakeTimeoutError } from "./transport.ts";

const encoder = new TextEncoder();

/** A dial to `port` on loopback trusting the test CA, with `extra` options. */
async function dialLoopback(port: number, extra: Record<string, unknown> = {}) {
  const certs = await testCertificates();
  return await quicTransport.dial({
    hostname: "127.0.0.1",
    port,
    serverName: "localhost",
    caCertPem: certs.caCertPem,
    timeoutMs: 5000,
    ...extra,
  });
}

/** Whether UDP `port` on 127.0.0.1 can be bound (the QUIC endpoint that held it is gone). */
function udpPortFree(port: number): boolean {
  try {
    new Deno.QuicEndpoint({ hostname: "127.0.0.1", port }).close();
    return true;
  } catch {
    return false;
  }
}

/**
 * UDP sockets this process holds (Linux: its descriptors whose inode /proc/net/udp{,6} lists), read by a
 * child shell: Deno asks for --allow-all to read /proc itself.
 */
async function udpSocketsHeld(): Promise<number> {
  const proc = `/proc/${Deno.pid}`;
  const { stdout } = await new Deno.Command("sh", {
    args: ["-c", `cat ${proc}/net/udp ${proc}/net/udp6; echo ---; ls -l ${proc}/fd`],
    stdout: "piped",
    stderr: "null",
  }).output();
  const [tables = "", fds = ""] = new TextDecoder().decode(stdout).split("---\n");
  const inodes = new Set(tables.split("\n").map((line) => line.trim().split(/\s+/)[9]).filter(Boolean));
  return [...fds.matchAll(/socket:\[(\d+)\]/g)].filter((match) => inodes.has(match[1])).length;
}

/**
 * Waits until this process holds at most `expected` UDP sockets. Measured: about 3 s after the close, the time
 * a closed QUIC connection drains (three probe timeouts) before its endpoint lets the socket go.
 */
async function waitForUdpSockets(expected: number, what: string): Promise<void> {
  const startedAt = performance.now();
  let held = await udpSocketsHeld();
  // At most: sockets of the tests before may still be draining when `expected` was counted.
  while (held > expected) {
    if (performance.now() - startedAt > 8000) {
      throw new Error(`${what}: ${held} UDP sockets, not ${expected}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
    held = await udpSocketsHeld();
  }
}

async function waitUntil(condition: () => boolean, timeoutMs: number, what: string): Promise<number> {
  const startedAt = performance.now();
  while (!condition()) {
    if (performance.now() - startedAt > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return performance.now() - startedAt;
}

Deno.test("quic: bytes cross both ways on the one stream, a half-close reaches the server, the server's last answer before its close arrives, and the client's UDP socket goes with its close", async () => {
  const { listener, next } = await listenAdmitting(quicTransport);
  const socketsBefore = await udpSocketsHeld();
  try {
    const accepted = next();
    const client = await dialLoopback(listener.addr.port);
    assert.equal(await udpSocketsHeld(), socketsBefore + 1, "the dial's own endpoint");
    const server = await accepted;
    // A QUIC stream reaches the peer with its first bytes (yamux's first frame, in the tunnel).
    await writeAll(client, encoder.encode("ping"));
    await server.handshake();
    assert.deepEqual(await readExactly(server, 4), encoder.encode("ping"));
    await writeAll(server, encoder.encode("pong!"));
    assert.deepEqual(await readExactly(client, 5), encoder.encode("pong!"));
    await client.closeWrite();
    assert.equal(await server.read(new Uint8Array(16)), null, "the client's FIN is the end of the stream");
    // The server's last answer, written right before its close, still arrives (close lingers).
    const last = new Uint8Array(4 * 1024 * 1024).fill(9);
    const reading = readExactly(client, last.length);
    await writeAll(server, last);
    server.close();
    assert.deepEqual(await reading, last);
    assert.equal(await client.read(new Uint8Array(16)), null);
    client.close();
    await waitForUdpSockets(socketsBefore, "after the client's close");
  } finally {
    listener.close();
  }
});

Deno.test("quic: closing the listener and its last connection releases the server's UDP port", async () => {
  const { listener, next } = await listenAdmitting(quicTransport);
  const port = listener.addr.port;
  const accepted = next();
  const client = await dialLoopback(port);
  const server = await accepted;
  await writeAll(client, encoder.encode("first"));
  await server.handshake();
  assert.deepEqual(await readExactly(server, 5), encoder.encode("first"));
  listener.close();
  // Admitted connections stay open after the listener closed.
  await writeAll(client, encoder.encode("still"));
  assert.deepEqual(await readExactly(server, 5), encoder.encode("still"));
  assert.ok(!udpPortFree(port), "the endpoint is held while a connection lives");
  client.close();
  server.close();
  const releasedMs = await waitUntil(() => udpPortFree(port), 8000, `UDP port ${port} to be released`);
  assert.ok(releasedMs < 8000, `released after ${releasedMs.toFixed(0)} ms`);
});

Deno.test("quic: a pinned fingerprint is the only check; another pin is refused before the tunnel stream opens", async () => {
  const certs = await testCertificates();
  const { listener, admitted } = await listenAdmitting(quicTransport, { handshakeTimeoutMs: 1000 });
  try {
    // The right pin: accepted under any name and without the CA.
    const pinned = await dialLoopback(listener.addr.port, {
      caCertPem: undefined,
      serverName: "not-in-the-certificate.example",
      pinnedFingerprint: certs.serverFingerprintSha256,
    });
    pinned.close();
    const wrong = "SHA256:" + "AB:".repeat(31) + "AB";
    await assert.rejects(
      dialLoopback(listener.addr.port, { pinnedFingerprint: wrong }),
      (error: unknown) => {
        assert.ok(error instanceof QuicDialError);
        assert.match(error.message, /server_fingerprint \(--fingerprint\) pins \(SHA256:AB:AB:/);
        assert.match(error.message, /refused before sending the key/);
        return true;
      },
    );
    // The refused client never opened the tunnel stream: its admitted connection fails its handshake.
    const refused = admitted[1];
    assert.ok(refused);
    await assert.rejects(refused.handshake());
  } finally {
    listener.close();
  }
});

Deno.test("quic: a certificate for another name fails the dial with what to change", async () => {
  const { listener } = await listenAdmitting(quicTransport);
  try {
    await assert.rejects(
      dialLoopback(listener.addr.port, { serverName: "example.com" }),
      /not issued for the name 'example\.com'; set server_name/,
    );
  } finally {
    listener.close();
  }
});

Deno.test("quic: a client that completes QUIC but never opens the tunnel stream is closed at the handshake deadline", async () => {
  const certs = await testCertificates();
  const { listener, next } = await listenAdmitting(quicTransport, { handshakeTimeoutMs: 400 });
  const endpoint = new Deno.QuicEndpoint({ hostname: "127.0.0.1", port: 0 });
  try {
    const accepted = next();
    const idle = await Deno.connectQuic({
      endpoint,
      hostname: "127.0.0.1",
      port: listener.addr.port,
      serverName: "localhost",
      caCerts: [certs.caCertPem],
      alpnProtocols: [QUIC_ALPN],
    });
    const admitted = await accepted;
    const startedAt = performance.now();
    await assert.rejects(admitted.handshake(), TransportHandshakeTimeoutError);
    const info = await idle.closed;
    assert.equal(info.reason, "handshake timeout");
    assert.ok(performance.now() - startedAt < 2000);
  } finally {
    endpoint.close();
    listener.close();
  }
});

Deno.test("quic: a refused connection is closed at once with the reason", async () => {
  const certs = await testCertificates();
  const listener = await quicTransport.listen({
    hostname: "127.0.0.1",
    port: 0,
    certPem: certs.serverChainPem,
    keyPem: certs.serverKeyPem,
    handshakeTimeoutMs: 5000,
  });
  const serving = listener.serve((incoming) => {
    assert.equal(incoming.remoteAddr.hostname, "127.0.0.1");
    incoming.refuse();
  });
  try {
    await assert.rejects(dialLoopback(listener.addr.port), /refused|closed/);
  } finally {
    listener.close();
    await serving;
  }
});

Deno.test("quic: a busy UDP port is a classified BindError; a host name is refused before binding", async () => {
  const { listener } = await listenAdmitting(quicTransport);
  const certs = await testCertificates();
  const options = {
    hostname: "127.0.0.1",
    port: listener.addr.port,
    certPem: certs.serverChainPem,
    keyPem: certs.serverKeyPem,
    handshakeTimeoutMs: 1000,
  };
  try {
    await assert.rejects(quicTransport.listen(options), (error: unknown) => {
      assert.ok(error instanceof BindError);
      assert.equal(error.kind, "address_in_use");
      return true;
    });
    assert.throws(() => quicTransport.listen({ ...options, hostname: "localhost", port: 0 }));
  } finally {
    listener.close();
  }
});

Deno.test("quic: an outbound proxy or skip_verify fails the dial with what to use instead; nothing is sent", async () => {
  await assert.rejects(
    dialLoopback(9, { proxy: { hop: "the HTTP proxy 127.0.0.1:3128" } }),
    /runs over UDP, which the HTTP proxy 127\.0\.0\.1:3128 cannot carry/,
  );
  await assert.rejects(
    dialLoopback(9, { skipVerify: true, caCertPem: undefined }),
    /skip_verify cannot be used with transport = "quic".*server_fingerprint/,
  );
});

Deno.test("quic: aborting a dial to a silent UDP port rejects at once and frees its socket", async () => {
  // A bound UDP socket that never answers: the QUIC handshake would wait for its idle timeout.
  const silent = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  const socketsBefore = await udpSocketsHeld();
  const abort = new AbortController();
  const startedAt = performance.now();
  const dialing = quicTransport.dial({
    hostname: "127.0.0.1",
    port: (silent.addr as Deno.NetAddr).port,
    serverName: "localhost",
    timeoutMs: 20_000,
  }, abort.signal);
  setTimeout(() => abort.abort(), 200);
  try {
    await assert.rejects(dialing, QuicDialError);
    assert.ok(performance.now() - startedAt < 2000, "the abort ends the handshake in flight");
    await waitForUdpSockets(socketsBefore, "after the aborted dial");
  } finally {
    silent.close();
  }
});

/**
 * The `"quic"` transport's own cases (the transfer, kill -9 and restart scenario every transport shares
 * is in `transport_process_test.ts`): started without `--unstable-net`, the real CLI's server and client
 * exit 1 naming `transport = "quic"`. Hostile peers on the
 * server's UDP port (garbage datagrams, a QUIC client with another ALPN, one that does not trust the
 * certificate, one that sends no stream, one that sends garbage on it) leave a canary client served
 * (in-process server, real QUIC).
 *
 * @module
 */

import assert from "node:assert/strict";
import { writeAll } from "../lib/net/conn.ts";
import { captureOutput } from "../lib/cli/_command_output.ts";
import { checkCommand } from "../lib/cli/check.ts";
import { generateCertificates } from "../lib/pki/cert.ts";
import { QUIC_ALPN, quicTransport } from "../lib/transport/quic.ts";
import {
  freePort,
  patternBytes,
  roundTrip,
  sha256Hex,
  testCertificates,
  waitFor,
} from "../testing/helpers.ts";
import { echoThrough, ProcessTunnel, proxyUp } from "../testing/process_tunnel.ts";
import { acceptedPort, TunnelFixture } from "../testing/tunnel.ts";
import { listenAdmitting } from "../testing/transport.ts";
import { readExactly } from "../testing/bytes.ts";

const QUIC = `transport = "quic"\n`;
const NEEDS_UNSTABLE_NET = /^transport = "quic" needs Deno's --unstable-net .*deno run --unstable-net/;

Deno.test('quic: a server or client with transport = "quic" started without --unstable-net exits 1 saying so', async () => {
  await using tunnel = await ProcessTunnel.create(QUIC);
  const server = await tunnel.server(false);
  assert.equal((await server.status()).code, 1, server.output);
  assert.ok(server.records.some((record) => NEEDS_UNSTABLE_NET.test(record.message)), server.output);
  assert.doesNotMatch(server.output, /Listening for clients/);

  const client = tunnel.client(
    await tunnel.clientConfig("client", [{ name: "echo", publishPort: freePort() }], QUIC),
  );
  assert.equal((await client.status()).code, 1, client.output);
  assert.ok(client.records.some((record) => NEEDS_UNSTABLE_NET.test(record.message)), client.output);
  assert.doesNotMatch(client.output, /Connecting to/);
});

Deno.test("quic: a client whose environment names HTTPS_PROXY connects directly and says the proxy is not used", async () => {
  await using tunnel = await ProcessTunnel.create(QUIC, { denoFlags: ["--unstable-net"] });
  await tunnel.server();
  const publishPort = freePort();
  // Nothing listens on port 9 (discard): a dial through this proxy would fail every time.
  const client = tunnel.client(
    await tunnel.clientConfig("client", [{ name: "echo", publishPort }], QUIC),
    { HTTPS_PROXY: "http://127.0.0.1:9" },
  );
  await client.waitForLine(proxyUp("echo"));
  assert.equal(await echoThrough(publishPort, "direct over udp"), "direct over udp");
  assert.ok(
    client.records.some((record) =>
      /^HTTPS_PROXY is not used for 127\.0\.0\.1: transport = "quic" runs over UDP/.test(record.message)
    ),
    client.output,
  );
  assert.doesNotMatch(client.output, /Leaving through/);
});

/** A QUIC connection attempt to the fixture's server as `options` make it; resolves whatever happens. */
async function quicAttempt(
  port: number,
  options: { alpn?: string; trust?: boolean; stream?: Uint8Array },
): Promise<string> {
  const certs = await testCertificates();
  const endpoint = new Deno.QuicEndpoint({ hostname: "127.0.0.1", port: 0 });
  try {
    const conn = await Deno.connectQuic({
      endpoint,
      hostname: "127.0.0.1",
      port,
      serverName: "localhost",
      alpnProtocols: [options.alpn ?? QUIC_ALPN],
      ...(options.trust === false ? {} : { caCerts: [certs.caCertPem] }),
      maxIdleTimeout: 5000,
    });
    if (options.stream !== undefined) {
      const stream = await conn.createBidirectionalStream();
      const writer = stream.writable.getWriter();
      await writer.write(options.stream).catch(() => {});
    }
    const info = await conn.closed.catch((error: Error) => ({ closeCode: -1, reason: error.message }));
    return `closed by the server: ${info.closeCode} ${info.reason}`;
  } catch (error) {
    return `failed: ${(error as Error).message}`;
  } finally {
    endpoint.close();
  }
}

Deno.test("quic: garbage datagrams and hostile QUIC clients on the server's port leave a canary client served", async () => {
  await using fixture = await TunnelFixture.start(`${QUIC}handshake_timeout_secs = 1\n`);
  const echo = fixture.echo();
  const canary = await fixture.client([{ name: "canary", publishPort: 0, localPort: echo.port }], {
    extra: QUIC,
  });
  const publicPort = acceptedPort(await canary.registered, "canary");
  const payload = patternBytes(64 * 1024, 7);
  assert.equal(await sha256Hex(await roundTrip(publicPort, payload)), await sha256Hex(payload));

  // Garbage: random datagrams of every size, and full-size ones that look like QUIC v1 Initials.
  const socket = Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" });
  const target: Deno.NetAddr = { transport: "udp", hostname: "127.0.0.1", port: fixture.port };
  try {
    for (let index = 0; index < 300; index++) {
      const datagram = crypto.getRandomValues(new Uint8Array(1 + (index * 37) % 1500));
      if (index % 2 === 0 && datagram.length >= 1200) datagram.set([0xc3, 0, 0, 0, 1], 0);
      await socket.send(datagram, target);
    }
  } finally {
    socket.close();
  }

  const [wrongAlpn, untrusting, silent, garbage] = await Promise.all([
    quicAttempt(fixture.port, { alpn: "h3" }),
    quicAttempt(fixture.port, { trust: false }),
    quicAttempt(fixture.port, {}),
    quicAttempt(fixture.port, { stream: crypto.getRandomValues(new Uint8Array(4096)) }),
  ]);
  assert.match(wrongAlpn, /failed: .*(protocol|120)/);
  assert.match(untrusting, /failed: .*(certificate|UnknownIssuer)/);
  assert.match(silent, /closed by the server: 2 handshake timeout/);
  assert.match(garbage, /closed by the server/);

  // Only the canary is connected, and it still carries bytes.
  assert.deepEqual([...fixture.server.clients.values()].length, 1);
  assert.equal(await sha256Hex(await roundTrip(publicPort, payload)), await sha256Hex(payload));
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: publicPort });
  try {
    await writeAll(conn, new TextEncoder().encode("still here"));
  } finally {
    conn.close();
  }
});

Deno.test("quic: max_pending_per_ip counts QUIC connections as on tls: one beyond it is refused at once, a client gets in once the silent one hit the deadline", async () => {
  await using fixture = await TunnelFixture.start(
    `${QUIC}max_pending_per_ip = 1\nhandshake_timeout_secs = 2\n`,
  );
  const holding = quicAttempt(fixture.port, {});
  // The first (silent) connection holds 127.0.0.1's only pending slot until its deadline.
  await waitFor(
    () => fixture.server.snapshot().pending_connections === 1,
    5000,
    "the first to be pending",
    20,
  );
  // Closed by the server within its handshake (the close code is not shown to a client still in it).
  assert.match(
    await quicAttempt(fixture.port, {}),
    /failed: aborted by peer: .*closed during the handshake|closed by the server: 1 refused/,
  );
  assert.equal(fixture.server.snapshot().connections_refused.pending_per_ip_limit, 1);
  assert.match(await holding, /closed by the server: 2 handshake timeout/);
  const echo = fixture.echo();
  const client = await fixture.client([{ name: "late", publishPort: 0, localPort: echo.port }], {
    extra: QUIC,
  });
  const publicPort = acceptedPort(await client.registered, "late");
  const payload = patternBytes(16 * 1024, 9);
  assert.equal(await sha256Hex(await roundTrip(publicPort, payload)), await sha256Hex(payload));
});

Deno.test("quic: a server certificate from another CA than ca_cert_path fails the dial naming the file", async () => {
  const other = await generateCertificates({ commonName: "localhost", altNames: [], validityDays: 2 });
  await using fixture = await TunnelFixture.start(QUIC);
  await assert.rejects(
    quicTransport.dial({
      hostname: "127.0.0.1",
      port: fixture.port,
      serverName: "localhost",
      caCertPem: other.caCertPem,
      caCertPath: "/etc/other-ca.pem",
      timeoutMs: 5000,
    }),
    /not accepted .*does not chain to the CA in ca_cert_path \/etc\/other-ca\.pem/,
  );
});

Deno.test("quic: a replaced certificate is presented from the next handshake on; a connection up keeps working", async () => {
  const [certs, other] = await Promise.all([
    testCertificates(),
    generateCertificates({ commonName: "localhost", altNames: [], validityDays: 2 }),
  ]);
  const { listener, next } = await listenAdmitting(quicTransport);
  const dial = (caCertPem: string) =>
    quicTransport.dial({
      hostname: "127.0.0.1",
      port: listener.addr.port,
      serverName: "localhost",
      caCertPem,
      timeoutMs: 5000,
    });
  try {
    const accepted = next();
    const before = await dial(certs.caCertPem);
    await writeAll(before, new TextEncoder().encode("one"));
    const server = await accepted;
    await server.handshake();
    assert.ok(listener.replaceCertificate);
    await listener.replaceCertificate(other.serverChainPem, other.serverKeyPem);
    await assert.rejects(dial(certs.caCertPem), /not accepted/);
    const after = await dial(other.caCertPem);
    after.close();
    await writeAll(before, new TextEncoder().encode("two"));
    assert.deepEqual(await readExactly(server, 6), new TextEncoder().encode("onetwo"));
    before.close();
    server.close();
  } finally {
    listener.close();
  }
});

Deno.test('quic: check notes that transport = "quic" needs --unstable-net and refuses skip_verify and proxy_url with it', async () => {
  const dir = await Deno.makeTempDir({ prefix: "tls-tunnel-quic-check-" });
  try {
    const server = `${dir}/server.toml`;
    await Deno.writeTextFile(
      server,
      `[server]\nbind_addr = "127.0.0.1"\nbind_port = 8443\nauth_key = "${"k".repeat(24)}"\n${QUIC}`,
      { mode: 0o600 },
    );
    let io = captureOutput();
    assert.equal(await checkCommand({ configPath: server, format: "text" }, io), 0, io.stderr);
    assert.match(io.stdout + io.stderr, /transport = "quic" \(experimental, UDP\): .*--unstable-net/);

    const client = `${dir}/client.toml`;
    await Deno.writeTextFile(
      client,
      `[client]\nserver_addr = "127.0.0.1"\nserver_port = 8443\nauth_key = "${"k".repeat(24)}"\n${QUIC}` +
        `skip_verify = true\nproxy_url = "http://127.0.0.1:3128"\n\n` +
        `[[proxies]]\nname = "web"\npublish_port = 8080\nlocal_port = 3000\n`,
      { mode: 0o600 },
    );
    io = captureOutput();
    assert.equal(await checkCommand({ configPath: client, format: "text" }, io), 1);
    assert.match(io.stderr, /client\.skip_verify: skip_verify = true cannot be used with transport = "quic"/);
    assert.match(io.stderr, /client\.proxy_url: transport = "quic" runs over UDP/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * The transport plug-in point is real: a transport written here (plain TCP with a one-line greeting, no
 * TLS), registered by name, carries a whole tunnel (server and client roles in process), and the roles
 * refuse a transport name no one registered.
 */

import assert from "node:assert/strict";
import { TunnelClient } from "../lib/client/client.ts";
import { TunnelServer } from "../lib/server/server.ts";
import { withTimeout } from "../lib/_async.ts";
import { acceptEach } from "../lib/net/accept.ts";
import { type DuplexConn, writeAll } from "../lib/net/conn.ts";
import { listenTcp } from "../lib/net/tcp.ts";
import type { ProxyRegistration } from "../lib/protocol/control.ts";
import { closeQuietly } from "../lib/transport/pipe.ts";
import { registerTransport, UnknownTransportError } from "../lib/transport/registry.ts";
import {
  type AdmittedConn,
  type DialedConn,
  type IncomingConn,
  type Transport,
  TransportDialError,
  type TransportDialOptions,
  TransportHandshakeTimeoutError,
  type TransportListener,
  type TransportListenOptions,
} from "../lib/transport/transport.ts";
import { EchoService, patternBytes, roundTrip, sha256Hex, testCertificates } from "../testing/helpers.ts";
import { acceptedPort, clientConfig, serverConfig } from "../testing/tunnel.ts";

/** What the dialer sends first; the listener admits nothing else. */
const GREETING = new TextEncoder().encode("PLAIN-TEST-TRANSPORT/1\n");

/** A {@linkcode DuplexConn} over a TCP connection that counts the bytes it carries. */
class CountingConn implements DuplexConn {
  constructor(readonly tcp: Deno.TcpConn, readonly counts: { read: number; written: number }) {}

  async read(buffer: Uint8Array): Promise<number | null> {
    const count = await this.tcp.read(buffer);
    if (count !== null) this.counts.read += count;
    return count;
  }

  async write(data: Uint8Array): Promise<number> {
    const count = await this.tcp.write(data);
    this.counts.written += count;
    return count;
  }

  closeWrite(): Promise<void> {
    return this.tcp.closeWrite();
  }

  close(): void {
    closeQuietly(this.tcp);
  }
}

/** The server's end: the greeting is the handshake, under the contract's timeout. */
class PlainAdmittedConn extends CountingConn implements AdmittedConn {
  readonly #handshake: Promise<void>;

  constructor(tcp: Deno.TcpConn, counts: { read: number; written: number }, timeoutMs: number) {
    super(tcp, counts);
    this.#handshake = this.#readGreeting(timeoutMs);
    this.#handshake.catch(() => {});
  }

  get remoteAddr(): Deno.NetAddr {
    return this.tcp.remoteAddr;
  }

  async #readGreeting(timeoutMs: number): Promise<void> {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      this.close();
    }, timeoutMs);
    try {
      const got = new Uint8Array(GREETING.length);
      let filled = 0;
      while (filled < got.length) {
        const count = await this.tcp.read(got.subarray(filled));
        if (count === null) throw new Deno.errors.ConnectionAborted("closed before the greeting");
        filled += count;
      }
      if (!got.every((byte, index) => byte === GREETING[index])) throw new Error("not the greeting");
    } catch (error) {
      this.close();
      throw timedOut ? new TransportHandshakeTimeoutError(timeoutMs) : error;
    } finally {
      clearTimeout(timer);
    }
  }

  handshake(): Promise<void> {
    return this.#handshake;
  }
}

/** Plain TCP, for this test only: no TLS, so what it carries is seen and counted here. */
class PlainTestTransport implements Transport {
  /** Tunnel bytes the server's end read (from clients) and wrote (to clients). */
  readonly serverCounts = { read: 0, written: 0 };
  listened = 0;
  dialed = 0;
  admitted = 0;

  constructor(readonly name: string) {}

  listen(options: TransportListenOptions, signal?: AbortSignal): Promise<TransportListener> {
    const tcp = listenTcp(options.hostname, options.port);
    this.listened++;
    let closed = false;
    const close = () => {
      closed = true;
      closeQuietly(tcp);
    };
    signal?.addEventListener("abort", close, { once: true });
    const serve = (onConnection: (incoming: IncomingConn) => void) =>
      acceptEach(tcp, (conn) => {
        conn.setNoDelay(true);
        onConnection({
          remoteAddr: conn.remoteAddr,
          admit: () => {
            this.admitted++;
            return new PlainAdmittedConn(conn, this.serverCounts, options.handshakeTimeoutMs);
          },
          refuse: () => closeQuietly(conn),
        });
      }, { stopped: () => closed });
    return Promise.resolve({ addr: tcp.addr, serve, close });
  }

  async dial(options: TransportDialOptions, signal?: AbortSignal): Promise<DialedConn> {
    const timeout = AbortSignal.timeout(options.timeoutMs);
    let conn: Deno.TcpConn;
    try {
      conn = await Deno.connect({
        hostname: options.hostname,
        port: options.port,
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      });
    } catch (error) {
      throw new TransportDialError(`plain test transport: cannot connect: ${error}`, { cause: error });
    }
    conn.setNoDelay(true);
    await writeAll(conn, GREETING);
    this.dialed++;
    return Object.assign(new CountingConn(conn, { read: 0, written: 0 }), {
      remote: `${options.hostname}:${options.port}`,
    });
  }
}

Deno.test("a transport registered by name carries a whole tunnel's traffic, both ways", async () => {
  const transport = new PlainTestTransport("plain-test");
  const unregister = registerTransport(transport);
  const certs = await testCertificates();
  const stop = new AbortController();
  const echo = new EchoService();
  const server = new TunnelServer({
    config: serverConfig(),
    certPem: certs.serverChainPem,
    keyPem: certs.serverKeyPem,
    signal: stop.signal,
    transport: "plain-test",
  });
  let serving: Promise<void> = Promise.resolve();
  let running: Promise<void> = Promise.resolve();
  try {
    const addr = await server.listen();
    serving = server.serve();
    const registered = Promise.withResolvers<ProxyRegistration[]>();
    const client = new TunnelClient({
      config: clientConfig(addr.port, [{ name: "echo", publishPort: 0, localPort: echo.port }]),
      signal: stop.signal,
      transport: "plain-test",
      onRegistered: (registrations) => registered.resolve(registrations),
    });
    running = client.run().catch(() => {});
    const registrations = await withTimeout(registered.promise, 10_000, "the registration over plain-test");
    const publicPort = acceptedPort(registrations, "echo");

    const payload = patternBytes(256 * 1024, 12);
    const answer = await roundTrip(publicPort, payload);
    assert.equal(await sha256Hex(answer), await sha256Hex(payload), "the echo came back whole");

    assert.equal(transport.listened, 1, "the server listened through the registered transport");
    assert.ok(transport.dialed >= 1, "the client dialed through the registered transport");
    assert.ok(transport.admitted >= 1, "the server admitted the client's connection through it");
    // Every tunnel byte crossed the test transport: the payload each way plus yamux and control framing.
    assert.ok(
      transport.serverCounts.read > payload.length,
      `server read ${transport.serverCounts.read} B from clients through the transport`,
    );
    assert.ok(
      transport.serverCounts.written > payload.length,
      `server wrote ${transport.serverCounts.written} B to clients through the transport`,
    );
  } finally {
    stop.abort();
    await running;
    await serving;
    await echo.close();
    unregister();
  }
});

Deno.test("a server or client naming an unregistered transport fails at once with the known transports named", async () => {
  const certs = await testCertificates();
  const server = new TunnelServer({
    config: serverConfig(),
    certPem: certs.serverChainPem,
    keyPem: certs.serverKeyPem,
    transport: "carrier-pigeon",
  });
  await assert.rejects(server.listen(), (error: unknown) => {
    assert.ok(error instanceof UnknownTransportError, String(error));
    assert.match(error.message, /"carrier-pigeon"/);
    assert.match(error.message, /"tls"/);
    return true;
  });
  assert.throws(
    () =>
      new TunnelClient({
        config: clientConfig(1, [{ name: "echo", publishPort: 0, localPort: 1 }]),
        transport: "carrier-pigeon",
      }),
    (error: unknown) => error instanceof UnknownTransportError && /"tls"/.test(error.message),
  );
});

/**
 * End-to-end tests of the tunnel with the server and client in this process, over real TLS on
 * loopback.
 */

import assert from "node:assert/strict";
import { writeAll } from "../lib/net/conn.ts";
import { readAll } from "../testing/bytes.ts";
import { within } from "../testing/mux.ts";
import { closeQuietly } from "../lib/transport/pipe.ts";
import { FatalClientError } from "../lib/client/client.ts";
import { acceptedPort, TunnelFixture } from "../testing/tunnel.ts";
import {
  canBind,
  freePort,
  patternBytes,
  roundTrip,
  sha256Hex,
  testCertificates,
  waitFor,
} from "../testing/helpers.ts";

Deno.test("tunnel carries 64 MiB each way intact through one connection", async () => {
  await using tunnel = await TunnelFixture.start();
  const echo = tunnel.echo();
  const client = await tunnel.client([{ name: "echo", publishPort: 0, localPort: echo.port }]);
  const port = acceptedPort(await client.registered, "echo");
  const payload = patternBytes(64 * 1024 * 1024, 7);
  const echoed = await roundTrip(port, payload, 60_000);
  assert.equal(echoed.length, payload.length);
  assert.equal(await sha256Hex(echoed), await sha256Hex(payload));
});

Deno.test("tunnel carries 200 concurrent outside connections", async () => {
  await using tunnel = await TunnelFixture.start();
  const echo = tunnel.echo();
  const client = await tunnel.client([{ name: "echo", publishPort: 0, localPort: echo.port }]);
  const port = acceptedPort(await client.registered, "echo");
  const results = await Promise.all(
    Array.from({ length: 200 }, async (_, index) => {
      const payload = patternBytes(16 * 1024 + index, index + 1);
      const echoed = await roundTrip(port, payload, 30_000);
      return (await sha256Hex(echoed)) === (await sha256Hex(payload));
    }),
  );
  assert.equal(results.filter(Boolean).length, 200);
  assert.equal(echo.accepted, 200);
});

Deno.test("tunnel propagates half-close in both directions", async () => {
  // A local service that speaks first, closes its write side, then still reads what the peer sends.
  const local = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = (async () => {
    const conn = await local.accept();
    await writeAll(conn, new TextEncoder().encode("banner"));
    await conn.closeWrite();
    const received: number[] = [];
    const buffer = new Uint8Array(1024);
    while (true) {
      const count = await conn.read(buffer);
      if (count === null) break;
      received.push(...buffer.subarray(0, count));
    }
    conn.close();
    return new TextDecoder().decode(new Uint8Array(received));
  })();
  try {
    await using tunnel = await TunnelFixture.start();
    const client = await tunnel.client([{ name: "svc", publishPort: 0, localPort: local.addr.port }]);
    const port = acceptedPort(await client.registered, "svc");
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const buffer = new Uint8Array(1024);
    let banner = "";
    while (true) {
      const count = await conn.read(buffer);
      if (count === null) break; // the service's FIN came through the tunnel
      banner += new TextDecoder().decode(buffer.subarray(0, count));
    }
    assert.equal(banner, "banner");
    // Our direction is still open after the service's half-close.
    await writeAll(conn, new TextEncoder().encode("still talking"));
    await conn.closeWrite();
    assert.equal(await served, "still talking");
    conn.close();
  } finally {
    local.close();
  }
});

Deno.test("server releases published ports when the client disconnects", async () => {
  await using tunnel = await TunnelFixture.start();
  const echo = tunnel.echo();
  const publishPort = freePort();
  const client = await tunnel.client([{ name: "echo", publishPort, localPort: echo.port }]);
  assert.equal(acceptedPort(await client.registered, "echo"), publishPort);
  assert.equal(canBind(publishPort), false);
  const started = performance.now();
  await client.stop();
  await waitFor(() => canBind(publishPort), 1000, `port ${publishPort} to be released`, 2);
  const releasedMs = performance.now() - started;
  assert.ok(releasedMs < 1000, `released after ${releasedMs} ms`);
  assert.equal(tunnel.server.clients.size, 0);
});

Deno.test("client with a wrong key fails with a clear, fatal error", async () => {
  await using tunnel = await TunnelFixture.start();
  const client = await tunnel.client([{ name: "web", publishPort: 0, localPort: 9 }], {
    authKey: "wrong-key-0123456789abcdef",
  });
  await assert.rejects(client.running, (error: unknown) => {
    assert.ok(error instanceof FatalClientError);
    assert.match(error.message, /auth_key is not accepted/);
    return true;
  });
});

Deno.test("second client asking for a port another live client publishes is rejected with its name", async () => {
  await using tunnel = await TunnelFixture.start();
  const echo = tunnel.echo();
  const publishPort = freePort();
  const first = await tunnel.client([{ name: "a", publishPort, localPort: echo.port }], {
    extra: `client_id = "first"`,
  });
  acceptedPort(await first.registered, "a");
  const second = await tunnel.client([{ name: "b", publishPort, localPort: echo.port }], {
    extra: `client_id = "second"`,
  });
  const [rejected] = await second.registered;
  assert.ok(rejected);
  assert.equal(rejected.status, "rejected");
  if (rejected.status === "rejected") {
    assert.equal(rejected.code, "PORT_IN_USE_BY_CLIENT");
    assert.match(rejected.reason, /client 'first'/);
  }
  // The first client's proxy still works.
  const echoed = await roundTrip(publishPort, new TextEncoder().encode("ping"));
  assert.equal(new TextDecoder().decode(echoed), "ping");
});

Deno.test("outside connection is closed promptly when the local service is down", async () => {
  await using tunnel = await TunnelFixture.start();
  const client = await tunnel.client([{ name: "dead", publishPort: 0, localPort: freePort() }]);
  const port = acceptedPort(await client.registered, "dead");
  const started = performance.now();
  // A reset where the process may send one (--allow-ffi on Linux, issue 11), else an empty clean end.
  const echoed = await roundTrip(port, new TextEncoder().encode("anyone?"), 5000).catch((error) => {
    assert.ok(error instanceof Deno.errors.ConnectionReset, `expected a reset or an end, got ${error}`);
    return new Uint8Array(0);
  });
  const elapsedMs = performance.now() - started;
  assert.equal(echoed.length, 0);
  assert.ok(elapsedMs < 2000, `closed after ${elapsedMs} ms`);
  assert.equal(client.client.proxies.get("dead")?.stats.failedConnections, 1);
});

Deno.test("garbage on the tunnel port does not disturb a connected client", async () => {
  await using tunnel = await TunnelFixture.start();
  const echo = tunnel.echo();
  const client = await tunnel.client([{ name: "echo", publishPort: 0, localPort: echo.port }]);
  const port = acceptedPort(await client.registered, "echo");
  const certs = await testCertificates();
  // Plain TCP garbage (not TLS), then TLS with a garbage yamux stream.
  const raw = await Deno.connect({ hostname: "127.0.0.1", port: tunnel.port });
  await writeAll(raw, patternBytes(4096, 3));
  const tls = await Deno.connectTls({ hostname: "localhost", port: tunnel.port, caCerts: [certs.caCertPem] });
  await writeAll(tls, patternBytes(4096, 4));
  const echoed = await roundTrip(port, new TextEncoder().encode("unaffected"));
  assert.equal(new TextDecoder().decode(echoed), "unaffected");
  closeQuietly(raw);
  closeQuietly(tls);
  assert.equal(tunnel.server.clients.size, 1);
});

Deno.test("one client's abrupt end does not disturb another client's transfer", async () => {
  await using tunnel = await TunnelFixture.start();
  const echo = tunnel.echo();
  const steady = await tunnel.client([{ name: "steady", publishPort: 0, localPort: echo.port }], {
    extra: `client_id = "steady"`,
  });
  const doomed = await tunnel.client([{ name: "doomed", publishPort: 0, localPort: echo.port }], {
    extra: `client_id = "doomed"`,
  });
  const steadyPort = acceptedPort(await steady.registered, "steady");
  const doomedPort = acceptedPort(await doomed.registered, "doomed");
  const payload = patternBytes(32 * 1024 * 1024, 11);
  const transfer = roundTrip(steadyPort, payload, 60_000);
  // The doomed client is busy too when it goes away.
  const doomedTransfer = roundTrip(doomedPort, patternBytes(32 * 1024 * 1024, 12), 60_000).catch(() => null);
  await new Promise((resolve) => setTimeout(resolve, 50));
  await doomed.stop();
  await doomedTransfer;
  const echoed = await transfer;
  assert.equal(await sha256Hex(echoed), await sha256Hex(payload));
  assert.ok(tunnel.server.clients.has("steady"));
  assert.ok(!tunnel.server.clients.has("doomed"));
});

Deno.test("an outside connection that stops reading does not hold up another one through the same client", async () => {
  await using tunnel = await TunnelFixture.start();
  // A local service that sends the same 24 MiB to every connection as fast as it is read.
  const download = patternBytes(24 * 1024 * 1024, 21);
  const service = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serving = (async () => {
    const sends: Promise<void>[] = [];
    for await (const conn of service) {
      sends.push(
        writeAll(conn, download).then(() => conn.closeWrite()).catch(() => {}).finally(() =>
          closeQuietly(conn)
        ),
      );
    }
    await Promise.all(sends);
  })();
  try {
    const client = await tunnel.client([{ name: "download", publishPort: 0, localPort: service.addr.port }]);
    const port = acceptedPort(await client.registered, "download");
    // The first outside connection reads nothing: the tunnel must hold only its window for it.
    const slow = await Deno.connect({ hostname: "127.0.0.1", port });
    await new Promise((resolve) => setTimeout(resolve, 200));
    const started = performance.now();
    const fast = await Deno.connect({ hostname: "127.0.0.1", port });
    const received = await within(readAll(fast, 256 * 1024), 20_000, "the second download");
    const fastMs = performance.now() - started;
    assert.equal(await sha256Hex(received), await sha256Hex(download));
    // The stalled one still gets every byte once it reads.
    const late = await within(readAll(slow, 256 * 1024), 20_000, "the stalled download once read");
    assert.equal(await sha256Hex(late), await sha256Hex(download));
    console.log(`24 MiB in ${fastMs.toFixed(0)} ms past a connection that read nothing`);
    assert.ok(fastMs < 15_000, `the second download took ${fastMs.toFixed(0)} ms`);
  } finally {
    service.close();
    await serving;
  }
});

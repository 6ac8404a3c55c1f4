/**
 * The same end-to-end behaviours over every built-in transport (`TRANSPORT_NAMES`: tls, wss, http2, quic):
 * for each, a real server and client in process (real TLS on loopback, `transport = "<name>"` on both
 * sides) carry 4 MiB each way sha256-checked, pass a half-close through, carry 20 concurrent
 * connections, and release the published port within 2 s once the client stops.
 *
 * Not covered here: the client reconnecting after the server restarts on the same port, because the
 * in-process fixture (`testing/tunnel.ts`) always binds its server to port 0 and cannot restart it; the
 * process tests (`tests/http2_transport_test.ts`, `testing/process_tunnel.ts`) cover that for http2.
 */

import assert from "node:assert/strict";
import { withTimeout } from "../lib/_async.ts";
import { writeAll } from "../lib/net/conn.ts";
import { closeQuietly } from "../lib/transport/pipe.ts";
import { TRANSPORT_NAMES } from "../lib/transport/registry.ts";
import { readAll } from "../testing/bytes.ts";
import { canBind, patternBytes, roundTrip, sha256Hex, waitFor } from "../testing/helpers.ts";
import { acceptedPort, type StartedClient, TunnelFixture } from "../testing/tunnel.ts";

/** A fixture whose server and client both use `transport`, publishing a service on `localPort`. */
async function tunnelOver(
  transport: string,
  localPort: (fixture: TunnelFixture) => number,
): Promise<{ fixture: TunnelFixture; client: StartedClient; publicPort: number }> {
  const line = `transport = "${transport}"\n`;
  const fixture = await TunnelFixture.start(line);
  try {
    const client = await fixture.client([{ name: "svc", publishPort: 0, localPort: localPort(fixture) }], {
      extra: line,
    });
    return { fixture, client, publicPort: acceptedPort(await client.registered, "svc") };
  } catch (error) {
    await fixture[Symbol.asyncDispose]();
    throw error;
  }
}

/**
 * A local service that reads its peer to end of stream, then answers the digest of what it read
 * followed by `answer`: the answer exists only if the half-close crossed the
 * tunnel, and it all travels after it.
 */
function answerAfterEnd(answer: Uint8Array): { port: number; served: Promise<string>; close(): void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = (async () => {
    const conn = await listener.accept();
    try {
      const request = await readAll(conn);
      const digest = await sha256Hex(request);
      await writeAll(conn, new TextEncoder().encode(digest));
      await writeAll(conn, answer);
      await conn.closeWrite();
      return digest;
    } finally {
      closeQuietly(conn);
    }
  })();
  return { port: listener.addr.port, served, close: () => closeQuietly(listener) };
}

for (const transport of TRANSPORT_NAMES) {
  Deno.test(`over ${transport}: 4 MiB each way through a published port arrive intact (sha256)`, async () => {
    const started = await tunnelOver(transport, (fixture) => fixture.echo().port);
    await using _fixture = started.fixture;
    const data = patternBytes(4 * 1024 * 1024, 41);
    const echoed = await roundTrip(started.publicPort, data, 30_000);
    assert.equal(echoed.length, data.length);
    assert.equal(await sha256Hex(echoed), await sha256Hex(data));
  });

  Deno.test(`over ${transport}: an outside client that closes its write side still reads the whole answer`, async () => {
    const request = patternBytes(256 * 1024, 43);
    const answer = patternBytes(1024 * 1024, 47);
    const service = answerAfterEnd(answer);
    try {
      const started = await tunnelOver(transport, () => service.port);
      await using _fixture = started.fixture;
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: started.publicPort });
      try {
        await writeAll(conn, request);
        await conn.closeWrite();
        // Bounded: a half-close lost in the tunnel would leave both ends waiting for ever.
        const received = await withTimeout(readAll(conn), 10_000, "the answer after the half-close");
        const digest = await sha256Hex(request);
        assert.equal(await withTimeout(service.served, 10_000, "the service's answer"), digest);
        assert.equal(received.length, digest.length + answer.length);
        assert.equal(new TextDecoder().decode(received.subarray(0, digest.length)), digest);
        assert.equal(await sha256Hex(received.subarray(digest.length)), await sha256Hex(answer));
      } finally {
        closeQuietly(conn);
      }
    } finally {
      service.close();
      await service.served.catch(() => {});
    }
  });

  Deno.test(`over ${transport}: 20 concurrent connections each echo 64 KiB intact`, async () => {
    let echoAccepted = () => 0;
    const started = await tunnelOver(transport, (fixture) => {
      const echo = fixture.echo();
      echoAccepted = () => echo.accepted;
      return echo.port;
    });
    await using _fixture = started.fixture;
    const results = await Promise.all(
      Array.from({ length: 20 }, async (_, index) => {
        const payload = patternBytes(64 * 1024, 100 + index);
        const echoed = await roundTrip(started.publicPort, payload, 30_000);
        return (await sha256Hex(echoed)) === (await sha256Hex(payload));
      }),
    );
    assert.equal(results.filter(Boolean).length, 20);
    assert.equal(echoAccepted(), 20);
  });

  Deno.test(`over ${transport}: the published port is released within 2 s after the client stops`, async () => {
    const started = await tunnelOver(transport, (fixture) => fixture.echo().port);
    await using _fixture = started.fixture;
    const data = patternBytes(16 * 1024, 53);
    assert.equal(await sha256Hex(await roundTrip(started.publicPort, data)), await sha256Hex(data));
    assert.ok(!canBind(started.publicPort), "the published port is held while the client is up");
    const stoppedAt = performance.now();
    await started.client.stop();
    await waitFor(() => canBind(started.publicPort), 2000, `port ${started.publicPort} to be released`, 10);
    const releasedMs = performance.now() - stoppedAt;
    assert.ok(releasedMs < 2000, `released ${releasedMs.toFixed(0)} ms after the client stopped`);
  });
}

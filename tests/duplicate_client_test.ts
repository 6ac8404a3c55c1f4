/**
 * Two copies of one client (same client_id): the newcomer is refused with DUPLICATE_CLIENT while the
 * first answers a liveness ping, and replaces it at once when it does not (a half-open session). Real
 * server over real TLS: in process, and as real `deno run main.ts` processes.
 */

import assert from "node:assert/strict";
import { RpcError } from "../lib/rpc/mod.ts";
import type { DuplexConn } from "../lib/net/conn.ts";
import { FatalClientError } from "../lib/client/client.ts";
import { freePort } from "../testing/helpers.ts";
import { dialTls, RawClient } from "../testing/raw_client.ts";
import { echoThrough, ProcessTunnel, proxyUp } from "../testing/process_tunnel.ts";
import { acceptedPort, TunnelFixture } from "../testing/tunnel.ts";

/**
 * A connection that can be frozen: from then on nothing is read or written (pings go unanswered, as
 * on a half-open connection), until it is closed.
 */
class FreezableConn implements DuplexConn {
  #frozen = false;
  readonly #closed = Promise.withResolvers<never>();

  constructor(readonly inner: Deno.TlsConn) {}

  freeze(): void {
    this.#frozen = true;
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    const read = await this.inner.read(buffer);
    return this.#frozen ? await this.#closed.promise : read;
  }

  write(data: Uint8Array): Promise<number> {
    return this.#frozen ? this.#closed.promise : this.inner.write(data);
  }

  closeWrite(): Promise<void> {
    return this.inner.closeWrite();
  }

  close(): void {
    this.#closed.reject(new Deno.errors.BadResource("closed"));
    this.#closed.promise.catch(() => {});
    try {
      this.inner.close();
    } catch {
      // Already closed.
    }
  }
}

/** A hand-driven protocol client over a connection the test can freeze. */
async function rawClient(port: number) {
  const conn = new FreezableConn(await dialTls(port));
  const raw = await RawClient.over(conn);
  return {
    conn,
    session: raw.session,
    rpc: raw.rpc,
    authenticate: (clientId: string) => raw.authenticate(clientId),
    /** Publishes one proxy "web" on `port`; returns the server's answer for it. */
    async publish(port: number): Promise<{ status: string; publish_port: number }> {
      const result = await raw.register([{ name: "web", publish_port: port }]);
      const entry = result.proxies[0];
      assert.ok(entry);
      return entry;
    },
    close: () => raw.close(),
  };
}

Deno.test("a second copy of a client is refused with DUPLICATE_CLIENT and the first keeps its port", async () => {
  await using tunnel = await TunnelFixture.start();
  const echo = tunnel.echo();
  const proxies = [{ name: "web", publishPort: 0, localPort: echo.port }];
  const first = await tunnel.client(proxies, { extra: `client_id = "twin"` });
  const port = acceptedPort(await first.registered, "web");
  const firstSession = tunnel.server.clients.get("twin");
  assert.ok(firstSession);

  const second = await tunnel.client(proxies, { extra: `client_id = "twin"` });
  const refusal = await second.running.then(
    () => assert.fail("the second copy should have been refused"),
    (error: unknown) => error,
  );
  assert.ok(refusal instanceof FatalClientError, String(refusal));
  assert.equal(refusal.code, -32006);
  assert.match(refusal.message, /give each copy its own client_id/);
  assert.ok(refusal.message.includes(firstSession.remoteAddr), refusal.message);

  assert.equal(tunnel.server.clients.get("twin"), firstSession, "the first session was not replaced");
  assert.equal(tunnel.server.sessionsTotal, 1);
  assert.equal(await echoThrough(port, "still mine"), "still mine");
  assert.equal(first.client.state, "connected");
  assert.ok(tunnel.server.events.recent().some((event) => event.code === "DUPLICATE_CLIENT"));
});

Deno.test("the DUPLICATE_CLIENT answer names the other session's address and the session then closes", async () => {
  await using tunnel = await TunnelFixture.start();
  const first = await rawClient(tunnel.port);
  const second = await rawClient(tunnel.port);
  try {
    await first.authenticate("twin");
    const firstAddr = tunnel.server.clients.get("twin")?.remoteAddr;
    assert.ok(firstAddr);
    const error = await second.authenticate("twin").then(
      () => assert.fail("the second session should have been refused"),
      (error: unknown) => error,
    );
    assert.ok(error instanceof RpcError, String(error));
    assert.equal(error.code, -32006);
    assert.ok(error.message.includes(`from ${firstAddr}`), error.message);
    assert.match(error.message, /give each copy its own client_id/);
    assert.deepEqual(error.data, { other_remote_addr: firstAddr });
    await second.session.closed;
    assert.equal((await first.rpc.request("heartbeat", { time_ms: 3 }) as { time_ms: number }).time_ms, 3);
  } finally {
    await second.close();
    await first.close();
  }
});

Deno.test("a previous session that no longer answers a ping is replaced at once, freeing its port", async () => {
  // The server's keepalive (1 s interval, 3 s timeout) would end the stale session only after 3 s.
  await using tunnel = await TunnelFixture.start();
  const stale = await rawClient(tunnel.port);
  const fresh = await rawClient(tunnel.port);
  try {
    await stale.authenticate("roaming");
    const published = await stale.publish(0);
    assert.equal(published.status, "accepted");
    stale.conn.freeze(); // half-open: the connection stays up, nothing answers
    const started = performance.now();
    const auth = await fresh.authenticate("roaming");
    const tookMs = performance.now() - started;
    assert.equal(tunnel.server.clients.get("roaming")?.sessionId, auth.session_id);
    assert.ok(tookMs >= 900 && tookMs < 2000, `replaced after ${tookMs.toFixed(0)} ms (1 s ping timeout)`);
    assert.ok(
      tunnel.server.events.recent().some((event) =>
        event.code === "CLIENT_DISCONNECTED" && /replaced by a new session/.test(event.message)
      ),
    );
    const again = await fresh.publish(published.publish_port);
    assert.equal(again.status, "accepted", "the stale session's port went to the new one");
    assert.equal(again.publish_port, published.publish_port);
  } finally {
    await fresh.close();
    await stale.close();
  }
});

Deno.test("two client processes with the same config: the second exits 1 saying why, the first keeps working", async () => {
  await using tunnel = await ProcessTunnel.create();
  const publishPort = freePort();
  const server = await tunnel.server();
  // No client_id: both copies derive the same default one, as two copies of one config do.
  const configPath = await tunnel.clientConfig("client", [{ name: "web", publishPort }]);
  const first = tunnel.client(configPath);
  await first.waitForLine(proxyUp("web"));
  const second = tunnel.client(configPath);
  const status = await second.status();
  assert.equal(status.code, 1, second.output);
  assert.match(second.output, /Another copy of this client is already connected/);
  assert.match(second.output, /give each copy its own client_id/);
  assert.equal(second.output.match(/Connecting to/g)?.length, 1, "no retry loop");
  assert.equal(await echoThrough(publishPort, "first copy"), "first copy");
  assert.equal(first.exited, false);
  await server.waitForLine(/already connected from 127\.0\.0\.1:\d+/);
  assert.ok(!server.output.includes("replacing its previous session"), server.output);
});

/**
 * Per-proxy limits end to end with real processes: `bandwidth_limit` (the client's token bucket) holds a
 * 6 MiB download to about 2 MiB/s while an unlimited proxy beside it is not slowed; `max_connections` (the
 * server) closes the outside connection beyond the limit at once, counts it in /api/stats and /metrics,
 * and takes new ones again once a slot is free.
 */

import assert from "node:assert/strict";
import { freePort } from "../testing/helpers.ts";
import { ProcessTunnel, proxyUp } from "../testing/process_tunnel.ts";
import type { ServerSnapshot } from "../lib/stats/snapshot.ts";

const DOWNLOAD_BYTES = 6 * 1024 * 1024;

/** A local service that sends {@linkcode DOWNLOAD_BYTES} on each connection and closes. */
class SourceService {
  readonly listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  readonly #serving: Promise<void>;
  readonly #tasks = new Set<Promise<void>>();

  constructor() {
    const chunk = new Uint8Array(64 * 1024).fill(0x5a);
    this.#serving = (async () => {
      for await (const conn of this.listener) {
        const task = (async () => {
          try {
            for (let sent = 0; sent < DOWNLOAD_BYTES; sent += chunk.length) {
              let offset = 0;
              while (offset < chunk.length) offset += await conn.write(chunk.subarray(offset));
            }
          } catch {
            // The reader went away.
          } finally {
            try {
              conn.close();
            } catch {
              // Already closed.
            }
          }
        })();
        this.#tasks.add(task);
        void task.finally(() => this.#tasks.delete(task));
      }
    })().catch(() => {});
  }

  get port(): number {
    return (this.listener.addr as Deno.NetAddr).port;
  }

  async close(): Promise<void> {
    this.listener.close();
    await this.#serving;
    await Promise.all([...this.#tasks]);
  }
}

/** Downloads everything from 127.0.0.1:`port`; returns the byte count and the seconds it took. */
async function download(port: number): Promise<{ bytes: number; seconds: number }> {
  const startedMs = performance.now();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const buffer = new Uint8Array(256 * 1024);
  let bytes = 0;
  try {
    for (;;) {
      const count = await conn.read(buffer);
      if (count === null) break;
      bytes += count;
    }
  } finally {
    conn.close();
  }
  return { bytes, seconds: (performance.now() - startedMs) / 1000 };
}

Deno.test('bandwidth_limit = "2MB" holds a 6 MiB download to about 2 MiB/s; an unlimited proxy beside it is not slowed', async () => {
  const source = new SourceService();
  try {
    await using tunnel = await ProcessTunnel.create();
    await tunnel.server();
    const limitedPort = freePort();
    const freeRunningPort = freePort();
    const client = tunnel.client(
      await tunnel.clientConfig("client", [
        {
          name: "limited",
          publishPort: limitedPort,
          localPort: source.port,
          lines: `bandwidth_limit = "2MB"`,
        },
        { name: "unlimited", publishPort: freeRunningPort, localPort: source.port },
      ]),
    );
    await client.waitForLine(proxyUp("limited"));
    await client.waitForLine(proxyUp("unlimited"));

    const unlimited = await download(freeRunningPort);
    const limited = await download(limitedPort);
    assert.equal(unlimited.bytes, DOWNLOAD_BYTES);
    assert.equal(limited.bytes, DOWNLOAD_BYTES);
    const rate = limited.bytes / limited.seconds / (1024 * 1024);
    console.log(
      `6 MiB download: limited ${limited.seconds.toFixed(2)} s (${rate.toFixed(2)} MiB/s), ` +
        `unlimited ${unlimited.seconds.toFixed(2)} s`,
    );
    // 6 MiB at 2 MiB/s, less the 0.2 MiB burst: 2.9 s. Never faster; a loaded machine may be slower.
    assert.ok(limited.seconds >= 2.5, `the limited download took ${limited.seconds.toFixed(2)} s`);
    assert.ok(limited.seconds < 8, `the limited download took ${limited.seconds.toFixed(2)} s`);
    assert.ok(unlimited.seconds < limited.seconds / 2, `unlimited took ${unlimited.seconds.toFixed(2)} s`);
  } finally {
    await source.close();
  }
});

/** Whether the outside connection `conn` is closed by the far end within `ms` (EOF or reset). */
async function closedWithin(conn: Deno.TcpConn, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"open">((resolve) => {
    timer = setTimeout(() => resolve("open"), ms);
  });
  const read = conn.read(new Uint8Array(16)).then(
    (count) => count === null ? "closed" : "data",
    () => "closed",
  );
  const outcome = await Promise.race([read, timeout]);
  clearTimeout(timer);
  if (outcome === "open") {
    conn.close();
    await read;
  }
  return outcome === "closed";
}

/**
 * Connects to 127.0.0.1:`port` and says whether the far end closed the connection within `ms`. A reset can
 * arrive before Deno's connect has returned: that one was closed too.
 */
async function connectionClosedAtOnce(port: number, ms: number): Promise<boolean> {
  let conn: Deno.TcpConn;
  try {
    conn = await Deno.connect({ hostname: "127.0.0.1", port });
  } catch (error) {
    // The reset seen by connect(2)'s follow-up calls: ECONNRESET, or ENOTCONN from getpeername.
    if (error instanceof Deno.errors.ConnectionReset || error instanceof Deno.errors.NotConnected) {
      return true;
    }
    throw error;
  }
  const isClosed = await closedWithin(conn, ms);
  try {
    conn.close();
  } catch {
    // Closed already.
  }
  return isClosed;
}

async function echoOnce(conn: Deno.TcpConn, text: string): Promise<string> {
  await conn.write(new TextEncoder().encode(text));
  const buffer = new Uint8Array(64);
  const count = await conn.read(buffer);
  return new TextDecoder().decode(buffer.subarray(0, count ?? 0));
}

Deno.test("max_connections = 2: the third outside connection and a flood of 50 are closed at once and counted; a freed slot takes a new one", async () => {
  const statsPort = freePort();
  await using tunnel = await ProcessTunnel.create(`stats_addr = "127.0.0.1"\nstats_port = ${statsPort}\n`);
  await tunnel.server();
  const port = freePort();
  const client = tunnel.client(
    await tunnel.clientConfig("client", [{
      name: "capped",
      publishPort: port,
      lines: "max_connections = 2",
    }]),
  );
  await client.waitForLine(proxyUp("capped"));

  const first = await Deno.connect({ hostname: "127.0.0.1", port });
  const second = await Deno.connect({ hostname: "127.0.0.1", port });
  assert.equal(await echoOnce(first, "one"), "one");
  assert.equal(await echoOnce(second, "two"), "two");
  assert.ok(await connectionClosedAtOnce(port, 2000), "the connection over max_connections stayed open");

  // A flood of 50 at once beyond the limit: every one closed at once, none held.
  const closed = await Promise.all(Array.from({ length: 50 }, () => connectionClosedAtOnce(port, 3000)));
  assert.equal(closed.filter((isClosed) => isClosed).length, 50);

  const stats = await (await fetch(`http://127.0.0.1:${statsPort}/api/stats`)).json() as ServerSnapshot;
  const proxy = stats.clients[0]?.proxies.find((entry) => entry.name === "capped");
  assert.equal(proxy?.max_connections, 2);
  assert.equal(proxy?.over_limit_connections, 51);
  assert.equal(proxy?.active_connections, 2);
  const metrics = await (await fetch(`http://127.0.0.1:${statsPort}/metrics`)).text();
  assert.match(
    metrics,
    /^tls_tunnel_proxy_connections_over_limit_total\{client="[^"]+",proxy="capped"\} 51$/m,
  );

  first.close();
  // The server frees the slot when it sees the close; a new connection is carried again.
  let fourth: Deno.TcpConn | null = null;
  for (let attempt = 0; attempt < 50 && fourth === null; attempt++) {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port }).catch(() => null);
    if (conn === null) continue;
    const answer = await echoOnce(conn, "four").catch(() => "");
    if (answer === "four") fourth = conn;
    else {
      conn.close();
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  assert.ok(fourth, "no connection was carried after a slot was freed");
  fourth.close();
  second.close();
});

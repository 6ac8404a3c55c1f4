/**
 * Visitors end to end, with real processes: a server and `deno run main.ts client` processes, one owning a
 * private proxy, others visiting it through their local `[[visitors]]` ports (README "Visitors",
 * protocol README §5b).
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  canBind,
  type CliProcess,
  freePort,
  patternBytes,
  tryExchange,
  waitFor,
} from "../testing/helpers.ts";
import { echoThrough, PROCESS_AUTH_KEY, ProcessTunnel } from "../testing/process_tunnel.ts";
import { RawClient, RawServer } from "../testing/raw_client.ts";
import { writeAll } from "../lib/net/conn.ts";
import { encodeOpenRequest, readOpenReply } from "../lib/protocol/open_request.ts";
import { acceptedPort, TunnelFixture } from "../testing/tunnel.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A local service that answers each connection with the sha256 (hex) of everything it received. */
class HashService implements AsyncDisposable {
  readonly #listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  readonly #serving: Promise<void>;
  readonly #conns = new Set<Promise<void>>();

  constructor() {
    this.#serving = (async () => {
      for await (const conn of this.#listener) {
        const done: Promise<void> = this.#hash(conn).finally(() => this.#conns.delete(done));
        this.#conns.add(done);
      }
    })().catch(() => {});
  }

  get port(): number {
    return this.#listener.addr.port;
  }

  async #hash(conn: Deno.TcpConn): Promise<void> {
    const hash = createHash("sha256");
    const buffer = new Uint8Array(256 * 1024);
    try {
      for (;;) {
        const count = await conn.read(buffer);
        if (count === null) break;
        hash.update(buffer.subarray(0, count));
      }
      await conn.write(encoder.encode(hash.digest("hex")));
      await conn.closeWrite();
    } catch {
      // The test cut it.
    } finally {
      conn.close();
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#listener.close();
    await this.#serving;
    await Promise.all([...this.#conns]);
  }
}

/** Writes a client config: `[client]` for this tunnel with `key` and `clientLines`, then `tables`. */
async function writeClient(
  tunnel: ProcessTunnel,
  name: string,
  tables: string,
  options: { key?: string; clientLines?: string } = {},
): Promise<string> {
  const path = `${tunnel.dir}/${name}.toml`;
  await Deno.writeTextFile(
    path,
    `[client]\nserver_addr = "127.0.0.1"\nserver_port = ${tunnel.serverPort}\nserver_name = "localhost"\n` +
      `ca_cert_path = "${tunnel.caPath}"\nauth_key = "${options.key ?? PROCESS_AUTH_KEY}"\n` +
      `client_id = "${name}"\nkeepalive_interval_secs = 1\nkeepalive_timeout_secs = 3\n` +
      `${options.clientLines ?? ""}\n[client.reconnect]\nmax_delay_secs = 1\n\n${tables}`,
    { mode: 0o600 },
  );
  return path;
}

/** A `[[visitors]]` table. */
function visitor(name: string, publishPort: number, bindPort: number, lines = ""): string {
  return `[[visitors]]\nname = "${name}"\npublish_port = ${publishPort}\nbind_port = ${bindPort}\n${lines}\n`;
}

/** A private `[[proxies]]` table (no publish_addr, visibility private) to `localPort`. */
function privateProxy(name: string, publishPort: number, localPort: number, lines = ""): string {
  return `[[proxies]]\nname = "${name}"\nvisibility = "private"\npublish_port = ${publishPort}\n` +
    `local_port = ${localPort}\n${lines}\n`;
}

/** The line a client logs once its private proxy is registered. */
function privateUp(name: string): RegExp {
  return new RegExp(`Proxy ${name}: private \\(visitors`);
}

/** The line a client logs once its visitor listens. */
function visitorListening(name: string): RegExp {
  return new RegExp(`Visitor '${name}' \\(publish_port \\d+[^)]*\\) listening on`);
}

async function stats(
  port: number,
): Promise<{ client_opened_streams?: Record<string, Record<string, number>> }> {
  const response = await fetch(`http://127.0.0.1:${port}/api/stats`);
  return await response.json();
}

async function metrics(port: number): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${port}/metrics`);
  return await response.text();
}

Deno.test("a visitor reaches another client's private proxy (interactive, 64 MiB sha256-checked; its port never bound); the owner going away resets visits, and back again new ones work without restarting the visitor, whose port stays bound across its own reconnects", async () => {
  const statsPort = freePort();
  await using tunnel = await ProcessTunnel.create(`stats_port = ${statsPort}\n`);
  await using hashing = new HashService();
  const sshPort = freePort();
  const bulkPort = freePort();
  const [visitSsh, visitBulk] = [freePort(), freePort()];
  let server = await tunnel.server();
  const ownerConfig = await writeClient(
    tunnel,
    "office",
    privateProxy("ssh", sshPort, tunnel.echo.port) + privateProxy("bulk", bulkPort, hashing.port),
  );
  let owner = tunnel.client(ownerConfig);
  const laptop = tunnel.client(
    await writeClient(
      tunnel,
      "laptop",
      visitor("ssh", sshPort, visitSsh) + visitor("bulk", bulkPort, visitBulk),
    ),
  );
  await Promise.all([owner.waitForLine(privateUp("ssh")), owner.waitForLine(privateUp("bulk"))]);
  await laptop.waitForLine(visitorListening("bulk"));
  await laptop.waitForLine(/Authenticated with/);
  // Private: registered by name and port, never bound on the server.
  assert.ok(canBind(sshPort) && canBind(bulkPort), "a private proxy's publish_port is not bound");

  // ssh-like: one connection, many small exchanges, each answered before the next is sent.
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: visitSsh });
  const roundTripsMs: number[] = [];
  try {
    const buffer = new Uint8Array(256);
    for (let i = 0; i < 50; i++) {
      const line = `keystroke ${i}\n`;
      const startedMs = performance.now();
      await conn.write(encoder.encode(line));
      let answer = "";
      while (answer.length < line.length) {
        const count = await conn.read(buffer);
        assert.ok(count !== null, "the visit ended early");
        answer += decoder.decode(buffer.subarray(0, count));
      }
      roundTripsMs.push(performance.now() - startedMs);
      assert.equal(answer, line);
    }
  } finally {
    conn.close();
  }
  roundTripsMs.sort((a, b) => a - b);
  console.log(
    `visitor round trips (50 exchanges): median ${roundTripsMs[25]?.toFixed(2)} ms, ` +
      `max ${roundTripsMs[49]?.toFixed(2)} ms`,
  );

  // Bulk: 64 MiB up through both tunnels, checked by the service's sha256.
  const chunk = patternBytes(1024 * 1024, 7);
  const totalBytes = 64 * chunk.length;
  const expected = createHash("sha256");
  for (let i = 0; i < 64; i++) expected.update(chunk);
  const bulk = await Deno.connect({ hostname: "127.0.0.1", port: visitBulk });
  const startedMs = performance.now();
  try {
    for (let i = 0; i < 64; i++) {
      let offset = 0;
      while (offset < chunk.length) offset += await bulk.write(chunk.subarray(offset));
    }
    await bulk.closeWrite();
    const answer = decoder.decode(await new Response(bulk.readable).arrayBuffer());
    assert.equal(answer, expected.digest("hex"), "sha256 of the 64 MiB the service received");
  } finally {
    try {
      bulk.close();
    } catch {
      // The readable closed it.
    }
  }
  const secs = (performance.now() - startedMs) / 1000;
  console.log(
    `64 MiB through a visitor in ${secs.toFixed(2)} s (${(totalBytes / secs / 2 ** 20).toFixed(0)} MiB/s)`,
  );

  const counts = (await stats(statsPort)).client_opened_streams;
  assert.ok((counts?.visit?.ok ?? 0) >= 2, JSON.stringify(counts));
  assert.match(
    await metrics(statsPort),
    /tls_tunnel_client_opened_streams_total\{kind="visit",result="ok"\} [2-9]/,
  );
  const visitPort = visitSsh;

  try {
    await ownerAwayAndBack();
  } catch (error) {
    // What the processes said, for the failure report.
    for (const [name, process] of [["server", server], ["office", owner], ["laptop", laptop]] as const) {
      console.error(`--- ${name} ---\n${process.lines.slice(-30).join("\n")}`);
    }
    throw error;
  }

  async function ownerAwayAndBack(): Promise<void> {
    // A visit in progress when the owner dies is reset, not ended cleanly.
    const held = await Deno.connect({ hostname: "127.0.0.1", port: visitPort });
    await held.write(encoder.encode("first"));
    const buffer = new Uint8Array(64);
    const count = await held.read(buffer);
    assert.equal(decoder.decode(buffer.subarray(0, count ?? 0)), "first");
    owner.kill("SIGKILL");
    await owner.status();
    await assert.rejects(
      (async () => {
        for (;;) {
          if ((await held.read(buffer)) === null) throw new Error("ended cleanly (FIN), not reset");
        }
      })(),
      Deno.errors.ConnectionReset,
    );
    held.close();

    // While the owner is away: refused, and the visitor says why.
    const away = await tryExchange(visitPort, "anyone?", { untilEnd: true });
    assert.ok(away instanceof Error || away === "", `answered ${JSON.stringify(away)}`);
    await laptop.waitForLine(/\(NOT_FOUND\)/, 5000);

    // Back again: the same visitor process, the same local port.
    owner = tunnel.client(ownerConfig);
    await owner.waitForLine(privateUp("ssh"));
    assert.equal(await echoThrough(visitPort, "back"), "back");

    // The visitor's own session drops (server restarted): its port stays bound meanwhile, and works after.
    server.kill("SIGKILL");
    await server.status();
    await laptop.waitForLine(/Session with .* ended|Attempt \d+ to reach/, 10_000);
    assert.ok(!canBind(visitPort), "the visitor's port stays bound while its session is down");
    const offline = await tryExchange(visitPort, "offline", { untilEnd: true });
    assert.ok(offline instanceof Error || offline === "", `answered ${JSON.stringify(offline)}`);
    server = await tunnel.server();
    const reconnectsBefore = laptop.lines.filter((line) => /Authenticated with/.test(line)).length;
    await waitFor(
      () => laptop.lines.filter((line) => /Authenticated with/.test(line)).length > reconnectsBefore,
      15_000,
      "the visitor client to reconnect",
      50,
    );
    await waitFor(
      () => owner.lines.filter((line) => privateUp("ssh").test(line)).length >= 2,
      15_000,
      "the owner to register again",
      50,
    );
    assert.equal(await echoThrough(visitPort, "after reconnect"), "after reconnect");
  }
});

Deno.test("visits are refused with the reason logged by the visitor and the server and counted: wrong secret_key, allow_visit, another key, no such proxy", async () => {
  const statsPort = freePort();
  const keys = {
    office: "office-key-0123456789",
    laptop: "laptop-key-0123456789",
    guest: "guest-key-0123456789",
  };
  await using tunnel = await ProcessTunnel.create(
    `stats_port = ${statsPort}\n` +
      `[[server.clients]]\nname = "office"\nauth_key = "${keys.office}"\n` +
      `[[server.clients]]\nname = "laptop"\nauth_key = "${keys.laptop}"\nallow_visit = ["office"]\n` +
      `[[server.clients]]\nname = "guest"\nauth_key = "${keys.guest}"\n` +
      `[[server.clients]]\nname = "intern"\nauth_key = "intern-key-0123456789"\nallow_visit = ["laptop"]\n`,
  );
  const [sshPort, dbPort] = [freePort(), freePort()];
  const ports = { ssh: freePort(), dbGood: freePort(), dbWrong: freePort(), missing: freePort() };
  const [guestPort, internPort, laptopStats] = [freePort(), freePort(), freePort()];
  const serverProcess = await tunnel.server();
  const owner = tunnel.client(
    await writeClient(
      tunnel,
      "office",
      privateProxy("ssh", sshPort, tunnel.echo.port) +
        privateProxy("db", dbPort, tunnel.echo.port, `secret_key = "open sesame"`),
      { key: keys.office },
    ),
  );
  const laptop = tunnel.client(
    await writeClient(
      tunnel,
      "laptop",
      visitor("ssh", sshPort, ports.ssh) +
        visitor("db", dbPort, ports.dbGood, `secret_key = "open sesame"`) +
        visitor("db", dbPort, ports.dbWrong, `secret_key = "open says me"`) +
        visitor("nothing-here", 1, ports.missing),
      { key: keys.laptop, clientLines: `stats_port = ${laptopStats}` },
    ),
  );
  const guest = tunnel.client(
    await writeClient(tunnel, "guest", visitor("ssh", sshPort, guestPort), { key: keys.guest }),
  );
  const intern = tunnel.client(
    await writeClient(tunnel, "intern", visitor("ssh", sshPort, internPort), {
      key: "intern-key-0123456789",
    }),
  );
  await Promise.all([owner.waitForLine(privateUp("ssh")), owner.waitForLine(privateUp("db"))]);
  await Promise.all([laptop, guest, intern].map((client) => client.waitForLine(/Authenticated with/)));

  // Allowed: allow_visit names office; the db proxy's secret_key matches.
  assert.equal(await echoThrough(ports.ssh, "allowed"), "allowed");
  assert.equal(await echoThrough(ports.dbGood, "with the key"), "with the key");

  const refusals: Array<[CliProcess, number, RegExp]> = [
    [laptop, ports.dbWrong, /\(DENIED\): the secret_key does not match proxy 'db' of office/],
    [
      laptop,
      ports.missing,
      /\(NOT_FOUND\): no connected client has a proxy open to visitors named 'nothing-here'/,
    ],
    [guest, guestPort, /\(DENIED\): client guest and office use different keys/],
    [intern, internPort, /\(DENIED\): client intern may visit only laptop \(allow_visit/],
  ];
  for (const [client, port, reason] of refusals) {
    const result = await tryExchange(port, "let me in", { untilEnd: true });
    // The application sees its connection fail (reset), never an answer.
    assert.ok(result instanceof Error || result === "", `refused visit answered ${JSON.stringify(result)}`);
    await client.waitForLine(reason, 5000);
  }
  const server = await refusalsCounted(statsPort);
  assert.ok(server.visit !== undefined);
  assert.equal(server.visit.ok, 2);
  assert.equal(server.visit.denied, 3);
  assert.equal(server.visit.not_found, 1);
  assert.match(
    await metrics(statsPort),
    /tls_tunnel_client_opened_streams_total\{kind="visit",result="denied"\} 3/,
  );
  // The visitor's own stats: each visitor's refusals by reason, and what it carried.
  const visitors = (await (await fetch(`http://127.0.0.1:${laptopStats}/api/stats`)).json())
    .visitors as Array<
      { bind: string; total_connections: number; refused: Record<string, number>; bytes_in: number }
    >;
  const byPort = (port: number) => visitors.find((entry) => entry.bind === `127.0.0.1:${port}`);
  assert.deepEqual(byPort(ports.dbWrong)?.refused, { denied: 1 });
  assert.deepEqual(byPort(ports.missing)?.refused, { not_found: 1 });
  assert.equal(byPort(ports.ssh)?.total_connections, 1);
  assert.equal(byPort(ports.ssh)?.bytes_in, "allowed".length);
  assert.match(
    await metrics(laptopStats),
    new RegExp(
      `tls_tunnel_visitor_refused_total\\{visitor="db",bind="127\\.0\\.0\\.1:${ports.dbWrong}",reason="denied"\\} 1`,
    ),
  );
  // The secret_keys never reach a log line, on either side.
  for (const process of [serverProcess, owner, laptop, guest, intern]) {
    const leaked = process.lines.filter((line) => /open sesame|open says me/.test(line));
    assert.deepEqual(leaked, [], "a secret_key was logged");
  }
});

/** The server's visit counters once every refusal is counted. */
async function refusalsCounted(statsPort: number): Promise<Record<string, Record<string, number>>> {
  let counts: Record<string, Record<string, number>> = {};
  await waitFor(
    async () => {
      counts = (await stats(statsPort)).client_opened_streams ?? {};
      return (counts.visit?.denied ?? 0) + (counts.visit?.not_found ?? 0) >= 4;
    },
    5000,
    "the server to count the refusals",
  );
  return counts;
}

Deno.test("a private proxy a server without visitors publishes anyway is withdrawn at once, with an error naming the port", async () => {
  await using tunnel = await ProcessTunnel.create();
  const unregistered: unknown[] = [];
  // An older server: it accepts the proxy as public (no visibility in its answer), binding the port.
  const server = await RawServer.listen((rpc) => {
    rpc.handle("authenticate", (params) => ({
      client_id: (params as { client_id: string }).client_id,
      client_name: "office",
      protocol_version: 1,
      server_version: "0.0.9",
      session_id: "s1",
    }));
    rpc.handle("register_proxies", () => ({
      proxies: [{ name: "db", status: "accepted", publish_addr: "0.0.0.0", publish_port: 5432 }],
    }));
    rpc.handle("unregister_proxies", (params) => {
      unregistered.push(params);
      return { proxies: [{ name: "db", status: "removed" }] };
    });
  });
  try {
    const path = `${tunnel.dir}/office.toml`;
    await Deno.writeTextFile(
      path,
      `[client]\nserver_addr = "127.0.0.1"\nserver_port = ${server.port}\nserver_name = "localhost"\n` +
        `ca_cert_path = "${tunnel.caPath}"\nauth_key = "${PROCESS_AUTH_KEY}"\nclient_id = "office"\n\n` +
        privateProxy("db", 5432, tunnel.echo.port),
      { mode: 0o600 },
    );
    const owner = tunnel.client(path);
    await owner.waitForLine(
      /Proxy db is private, but the server at 127\.0\.0\.1:\d+ does not know private proxies .* published it on 0\.0\.0\.0:5432; withdrawing it/,
    );
    await waitFor(() => unregistered.length === 1, 5000, "the client to unregister the exposed proxy");
    assert.deepEqual(unregistered, [{ names: ["db"] }]);
  } finally {
    await server.close();
  }
});

Deno.test("a proxy with visibility both is published on its port and reached by visitors at its bound port too", async () => {
  await using tunnel = await TunnelFixture.start();
  const echo = tunnel.echo();
  const owner = await tunnel.client([{
    name: "api",
    publishPort: 0,
    localPort: echo.port,
    extra: `visibility = "both"`,
  }]);
  const [registration] = await owner.registered;
  assert.ok(
    registration?.status === "accepted" && registration.visibility === "both",
    JSON.stringify(registration),
  );
  const port = acceptedPort([registration], "api");
  assert.equal(await echoThrough(port, "from outside"), "from outside");
  const visitPort = freePort();
  // A client with one visitor of the bound port (a table after the client's own proxy).
  const laptop = await tunnel.client([{
    name: "unused",
    publishPort: 0,
    localPort: echo.port,
    extra: `\n[[visitors]]\nname = "api"\npublish_port = ${port}\nbind_port = ${visitPort}`,
  }]);
  await laptop.registered;
  assert.equal(await echoThrough(visitPort, "from a visitor"), "from a visitor");
});

Deno.test("hostile client-opened streams: beyond max_client_streams LIMIT, garbage BAD_REQUEST; other clients' visits go on", async () => {
  await using tunnel = await TunnelFixture.start("max_client_streams = 4\n");
  const echo = tunnel.echo();
  const owner = await tunnel.client([{
    name: "ssh",
    publishPort: 2222,
    localPort: echo.port,
    extra: `visibility = "private"`,
  }]);
  await owner.registered;
  const visitPort = freePort();
  const laptop = await tunnel.client([{
    name: "unused",
    publishPort: 0,
    localPort: echo.port,
    extra: `\n[[visitors]]\nname = "ssh"\npublish_port = 2222\nbind_port = ${visitPort}`,
  }]);
  await laptop.registered;
  const raw = await RawClient.dial(tunnel.port);
  try {
    await raw.authenticate("hostile");
    // Four streams that never send their request hold every slot this client has.
    const held = await Promise.all(Array.from({ length: 4 }, () => raw.session.open()));
    for (const stream of held) await stream.write(new Uint8Array([0x02]));
    const fifth = await raw.session.open();
    await writeAll(fifth, encodeOpenRequest({ kind: "visit", name: "ssh", publish_port: 2222 }));
    const limited = await readOpenReply(fifth);
    assert.ok(!limited.ok && limited.code === "LIMIT", JSON.stringify(limited));
    // The hostile client's flood does not touch another client's visits.
    assert.equal(await echoThrough(visitPort, "still fine"), "still fine");
    // Freed slots: garbage (a 65535-byte length) is answered BAD_REQUEST, the session goes on.
    for (const stream of held) stream.reset();
    await waitFor(
      async () => {
        const probe = await raw.session.open();
        await writeAll(probe, new Uint8Array([0x02, 0xff, 0xff]));
        const reply = await readOpenReply(probe).catch(() => null);
        probe.close();
        return reply !== null && !reply.ok && reply.code === "BAD_REQUEST";
      },
      5000,
      "a freed slot to answer BAD_REQUEST",
    );
    assert.ok(!raw.session.isClosed, "the hostile session is still up: refusals end streams, not sessions");
  } finally {
    await raw.close();
  }
});

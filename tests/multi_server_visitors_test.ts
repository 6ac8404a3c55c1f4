/**
 * Visitors and groups across several servers, with the real CLI: two `deno run main.ts server` processes on
 * 127.0.0.2 and 127.0.0.3 and clients with both in `[[client.servers]]`. A visitor reaches its target through
 * any server the owner is registered on: the first that answers ok (README "Several servers", "Visitors");
 * a group keeps serving on each server on its own.
 */

import assert from "node:assert/strict";
import { CliProcess, freePort, waitFor } from "../testing/helpers.ts";
import { echoAt, freePortOnAll, SERVER_ADDRESSES, TwoServers } from "../testing/multi_server.ts";
import { FAST_RECONNECT, PROCESS_AUTH_KEY } from "../testing/process_tunnel.ts";
import type { ClientRoleSnapshot, VisitorServerSnapshot } from "../lib/stats/snapshot.ts";
import { STALLED_ANSWER_MS } from "../lib/client/visitor.ts";

const [ADDRESS_A, ADDRESS_B] = SERVER_ADDRESSES;
const SERVER_NAMES = ["a", "b"] as const;

/**
 * Writes a client config `name` in the fixture's folder for the servers at `indexes` (0 → a on 127.0.0.2,
 * 1 → b on 127.0.0.3), with `tables` after it; returns its path.
 */
async function writeClient(
  fixture: TwoServers,
  name: string,
  indexes: readonly number[],
  tables: string,
  statsPort?: number,
  keepaliveTimeoutSecs = 3,
): Promise<string> {
  const path = `${fixture.dir}/${name}.toml`;
  await Deno.writeTextFile(
    path,
    `[client]\nserver_port = ${fixture.tunnelPort}\nserver_name = "localhost"\n` +
      `ca_cert_path = "${fixture.caPath}"\nauth_key = "${PROCESS_AUTH_KEY}"\nclient_id = "${name}"\n` +
      `keepalive_interval_secs = 1\nkeepalive_timeout_secs = ${keepaliveTimeoutSecs}\n` +
      (statsPort !== undefined ? `stats_port = ${statsPort}\n` : "") + "\n" +
      indexes.map((index) =>
        `[[client.servers]]\nname = "${SERVER_NAMES[index]}"\nserver_addr = "${SERVER_ADDRESSES[index]}"\n`
      ).join("\n") +
      `\n[client.reconnect]\nmax_delay_secs = 1\n\n${tables}`,
    { mode: 0o600 },
  );
  return path;
}

/** The owner's private proxy `db` on `publishPort` to the fixture's echo service. */
function privateDb(fixture: TwoServers, publishPort: number): string {
  return `[[proxies]]\nname = "db"\nvisibility = "private"\npublish_port = ${publishPort}\n` +
    `local_addr = "127.0.0.1"\nlocal_port = ${fixture.echo.port}\n`;
}

/** A visitor of `db` on `publishPort`, listening on 127.0.0.1:`bindPort`. */
function visitDb(publishPort: number, bindPort: number): string {
  return `[[visitors]]\nname = "db"\npublish_port = ${publishPort}\nbind_port = ${bindPort}\n`;
}

/** Starts a client process (fast reconnects); stopped by the caller. */
function startClient(path: string): CliProcess {
  return new CliProcess(["client", "-c", path], { env: FAST_RECONNECT });
}

/** Waits until `client` logged `count` lines matching `pattern` (one per server, for a registration). */
async function waitForLines(client: CliProcess, pattern: RegExp, count: number): Promise<void> {
  await waitFor(
    () => client.lines.filter((line) => pattern.test(line)).length >= count,
    15_000,
    `${count} lines matching ${pattern}:\n${client.output}`,
    50,
  );
}

/** The visitor's per-server counters from the client's stats endpoint. */
async function visitorServers(statsPort: number): Promise<VisitorServerSnapshot[]> {
  const response = await fetch(`http://127.0.0.1:${statsPort}/api/stats`);
  const stats = await response.json() as ClientRoleSnapshot;
  return stats.visitors?.[0]?.servers ?? [];
}

/** The visitor's refused counters (local connections it reset). */
async function visitorRefused(statsPort: number): Promise<Record<string, number>> {
  const response = await fetch(`http://127.0.0.1:${statsPort}/api/stats`);
  const stats = await response.json() as ClientRoleSnapshot;
  return stats.visitors?.[0]?.refused ?? {};
}

Deno.test("a visitor with two servers keeps working through the other when its first choice is killed with -9", async () => {
  await using fixture = await TwoServers.create();
  const publishPort = freePortOnAll();
  const bindPort = freePort();
  const statsPort = freePort();
  await fixture.startServer(0);
  await fixture.startServer(1);
  const owner = startClient(await writeClient(fixture, "owner", [0, 1], privateDb(fixture, publishPort)));
  const visitor = startClient(
    await writeClient(fixture, "visitor", [0, 1], visitDb(publishPort, bindPort), statsPort),
  );
  try {
    // The owner is registered on both servers before anything is asked.
    await waitForLines(owner, /Proxy db: private \(visitors/, 2);
    await visitor.waitForLine(/Visitor 'db' \(publish_port \d+\) listening on/);
    // Both of the visitor's sessions are up: its first choice is the first server in its config.
    await waitForLines(visitor, /Authenticated with 127\.0\.0\.[23]:/, 2);
    assert.equal(await echoAt("127.0.0.1", bindPort, "ping"), "ping");
    assert.deepEqual(await visitorServers(statsPort), [{ name: "a", visits: 1, refused: {} }]);
    const refusedBefore = await visitorRefused(statsPort);

    await fixture.killServer(0);
    // Right away, nothing restarted: every connection is carried through the other server.
    const answers: string[] = [];
    for (let index = 0; index < 10; index++) {
      answers.push(
        await echoAt("127.0.0.1", bindPort, `after kill ${index}`).catch((error) => String(error)),
      );
    }
    assert.deepEqual(answers, Array.from({ length: 10 }, (_, index) => `after kill ${index}`));
    const after = await visitorServers(statsPort);
    const other = after.find((server) => server.name === "b");
    assert.ok(other !== undefined && other.visits === 10, `per-server counters: ${JSON.stringify(after)}`);
    assert.deepEqual(await visitorRefused(statsPort), refusedBefore, "no local connection was reset");
  } finally {
    await visitor.stop();
    await owner.stop();
  }
});

Deno.test("a visitor with two servers asks the other first while its first choice is frozen (SIGSTOP) and its session still looks alive", async () => {
  await using fixture = await TwoServers.create();
  const publishPort = freePortOnAll();
  const bindPort = freePort();
  const statsPort = freePort();
  await fixture.startServer(0);
  await fixture.startServer(1);
  // Keepalive timeouts longer than the test, for the owner as for the visitor: neither session to the frozen
  // server ends under it. With the owner's 3 s, the owner left server a during the freeze, and a, thawed and
  // not yet aware, accepted the waiting visit and then lost it to the owner's closed connection (a reset).
  const owner = startClient(
    await writeClient(fixture, "owner", [0, 1], privateDb(fixture, publishPort), undefined, 30),
  );
  const visitor = startClient(
    await writeClient(fixture, "visitor", [0, 1], visitDb(publishPort, bindPort), statsPort, 30),
  );
  const frozen = fixture.servers[0];
  try {
    await waitForLines(owner, /Proxy db: private \(visitors/, 2);
    await waitForLines(visitor, /Authenticated with 127\.0\.0\.[23]:/, 2);
    assert.equal(await echoAt("127.0.0.1", bindPort, "ping"), "ping");
    assert.deepEqual(await visitorServers(statsPort), [{ name: "a", visits: 1, refused: {} }]);

    frozen?.kill("SIGSTOP");
    // The first connection after the freeze waits on server a (nothing says it is gone yet) …
    const waiting = echoAt("127.0.0.1", bindPort, "waited", 20_000).catch((error) => String(error));
    await new Promise((resolve) => setTimeout(resolve, STALLED_ANSWER_MS + 500));
    // … and once it has waited STALLED_ANSWER_MS, new connections go to server b first, at once.
    const startMs = performance.now();
    assert.equal(await echoAt("127.0.0.1", bindPort, "through b"), "through b");
    const elapsedMs = performance.now() - startMs;
    assert.ok(elapsedMs < 5000, `carried in ${elapsedMs.toFixed(0)} ms (the reply timeout is 15 s)`);
    const during = await visitorServers(statsPort);
    assert.equal(during.find((server) => server.name === "b")?.visits, 1, JSON.stringify(during));

    // Thawed, server a answers (or refuses, or its session ends): the waiting connection is carried anyway.
    frozen?.kill("SIGCONT");
    assert.equal(await waiting, "waited");
  } finally {
    frozen?.kill("SIGCONT");
    await visitor.stop();
    await owner.stop();
  }
});

Deno.test("a visitor with two servers reaches an owner registered only on the second: NOT_FOUND on the first, carried by the second", async () => {
  await using fixture = await TwoServers.create();
  const publishPort = freePortOnAll();
  const bindPort = freePort();
  const statsPort = freePort();
  await fixture.startServer(0);
  await fixture.startServer(1);
  const owner = startClient(await writeClient(fixture, "owner", [1], privateDb(fixture, publishPort)));
  const visitor = startClient(
    await writeClient(fixture, "visitor", [0, 1], visitDb(publishPort, bindPort), statsPort),
  );
  try {
    await owner.waitForLine(/Proxy db: private \(visitors/);
    // Both of the visitor's sessions are up before the first connection (else a would not be asked).
    await waitForLines(visitor, /Authenticated with 127\.0\.0\.[23]:/, 2);
    assert.equal(await echoAt("127.0.0.1", bindPort, "through b"), "through b");
    assert.deepEqual(await visitorServers(statsPort), [
      { name: "a", visits: 0, refused: { not_found: 1 } },
      { name: "b", visits: 1, refused: {} },
    ]);
    // a refused a moment ago: the next connections go to b first, a is not asked again for a while.
    assert.equal(await echoAt("127.0.0.1", bindPort, "b again"), "b again");
    assert.deepEqual(await visitorServers(statsPort), [
      { name: "a", visits: 0, refused: { not_found: 1 } },
      { name: "b", visits: 2, refused: {} },
    ]);
    assert.deepEqual(await visitorRefused(statsPort), {});
    const metrics = await (await fetch(`http://127.0.0.1:${statsPort}/metrics`)).text();
    assert.match(metrics, /tls_tunnel_visitor_server_visits_total\{visitor="db",bind="[^"]+",server="b"\} 2/);
    assert.match(
      metrics,
      /tls_tunnel_visitor_server_refused_total\{visitor="db",bind="[^"]+",server="a",reason="not_found"\} 1/,
    );
    // Server a saw the visit and refused it; b carried both.
    assert.match(fixture.servers[0]?.output ?? "", /Refused a visit stream of visitor \(NOT_FOUND\)/);

    // The owner gone from b too: the connection is reset, and the visitor's log names both servers' answers.
    await owner.stop();
    await waitFor(
      async () => (await echoAt("127.0.0.1", bindPort, "anyone?").catch(() => "")) === "",
      10_000,
      "the visit refused",
      100,
    );
    await visitor.waitForLine(
      /no server carried the connection from 127\.0\.0\.1:\d+, it is reset: (a: refused \(NOT_FOUND\)[^;]*; b: refused \(NOT_FOUND\)|b: refused \(NOT_FOUND\)[^;]*; a: refused \(NOT_FOUND\))/,
    );
  } finally {
    await visitor.stop();
    await owner.stop();
  }
});

/** A local service that answers each connection with its id and closes. */
class IdService implements AsyncDisposable {
  readonly #listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  readonly #serving: Promise<void>;

  constructor(readonly id: string) {
    this.#serving = (async () => {
      for await (const conn of this.#listener) {
        await conn.write(new TextEncoder().encode(id)).catch(() => 0);
        try {
          conn.close();
        } catch {
          // Closed by the peer already.
        }
      }
    })().catch(() => {});
  }

  get port(): number {
    return this.#listener.addr.port;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#listener.close();
    await this.#serving;
  }
}

/** The ids answering `count` connections to `hostname:port`, tallied. */
async function idsAt(hostname: string, port: number, count: number): Promise<Record<string, number>> {
  const tally: Record<string, number> = {};
  for (let index = 0; index < count; index++) {
    const id = await echoAt(hostname, port, "").catch(() => "");
    tally[id] = (tally[id] ?? 0) + 1;
  }
  return tally;
}

Deno.test("a group whose members use two servers serves on each server with both members, and on the other after one is killed", async () => {
  await using fixture = await TwoServers.create();
  await using serviceOne = new IdService("one");
  await using serviceTwo = new IdService("two");
  const groupPort = freePortOnAll();
  await fixture.startServer(0);
  await fixture.startServer(1);
  const member = (service: IdService) =>
    `[[proxies]]\nname = "web"\npublish_port = ${groupPort}\nlocal_addr = "127.0.0.1"\n` +
    `local_port = ${service.port}\ngroup = "web"\ngroup_key = "group-secret-0123456789"\n`;
  const members: CliProcess[] = [];
  try {
    for (const service of [serviceOne, serviceTwo]) {
      const client = startClient(await writeClient(fixture, `member-${service.id}`, [0, 1], member(service)));
      members.push(client);
      // Each member is published on both servers (its own default_publish_addr each) before the next joins.
      await waitForLines(client, /Proxy web: 127\.0\.0\.[23]:/, 2);
    }
    // Each server spreads its own connections over both members (round robin: exact).
    assert.deepEqual(await idsAt(ADDRESS_A, groupPort, 4), { one: 2, two: 2 });
    assert.deepEqual(await idsAt(ADDRESS_B, groupPort, 4), { one: 2, two: 2 });

    await fixture.killServer(0);
    assert.deepEqual(await idsAt(ADDRESS_B, groupPort, 4), { one: 2, two: 2 }, "server b serves on its own");
  } finally {
    for (const client of members) await client.stop();
  }
});

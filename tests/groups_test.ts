/**
 * Groups across clients, end to end with real processes: three `deno run main.ts client` processes serve
 * one published port as group "web"; the server spreads outside connections over them, keeps serving
 * after one is killed (once its keepalive runs out), refuses a wrong group_key and a proxy outside the
 * group, shows the members in /api/stats and /metrics, and frees the port when the last member leaves.
 */

import assert from "node:assert/strict";
import { canBind, freePort, waitFor } from "../testing/helpers.ts";
import { PROCESS_AUTH_KEY, ProcessTunnel, proxyUp } from "../testing/process_tunnel.ts";
import type { GroupSnapshot, ServerSnapshot } from "../lib/stats/snapshot.ts";

const GROUP_KEY = "group-secret-0123456789";

/** A local service that answers each connection with its id and closes. */
class IdService {
  readonly listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  readonly #serving: Promise<void>;

  constructor(readonly id: string) {
    this.#serving = (async () => {
      for await (const conn of this.listener) {
        void conn.write(new TextEncoder().encode(id)).catch(() => {}).finally(() => {
          try {
            conn.close();
          } catch {
            // Closed by the peer already.
          }
        });
      }
    })().catch(() => {});
  }

  get port(): number {
    return (this.listener.addr as Deno.NetAddr).port;
  }

  async close(): Promise<void> {
    this.listener.close();
    await this.#serving;
  }
}

/** Connects to the group's port and reads the id of the member that answered ("" when none did). */
async function askId(port: number): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const timer = setTimeout(() => conn.close(), 5000);
  try {
    const chunks: string[] = [];
    const buffer = new Uint8Array(64);
    for (;;) {
      const count = await conn.read(buffer).catch(() => null);
      if (count === null) break;
      chunks.push(new TextDecoder().decode(buffer.subarray(0, count)));
    }
    return chunks.join("");
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch {
      // The timer closed it.
    }
  }
}

async function serverStats(statsPort: number): Promise<ServerSnapshot> {
  const response = await fetch(`http://127.0.0.1:${statsPort}/api/stats`);
  return await response.json() as ServerSnapshot;
}

function tally(ids: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const id of ids) counts[id] = (counts[id] ?? 0) + 1;
  return counts;
}

Deno.test("three clients in one group share a port: spread, survive a kill -9 and a frozen member, refuse a wrong key, free the port at the end", async () => {
  const statsPort = freePort();
  await using tunnel = await ProcessTunnel.create(`stats_addr = "127.0.0.1"\nstats_port = ${statsPort}\n`);
  const services = ["a", "b", "c"].map((id) => new IdService(id));
  try {
    const port = freePort();
    await tunnel.server();
    const groupLines = `group = "web"\ngroup_key = "${GROUP_KEY}"`;
    const clients = [];
    for (const service of services) {
      const config = await tunnel.clientConfig(
        `client-${service.id}`,
        [{ name: "web", publishPort: port, localPort: service.port, lines: groupLines }],
        `client_id = "member-${service.id}"`,
      );
      const client = tunnel.client(config);
      // One after the other: the join order is the round-robin order.
      await client.waitForLine(proxyUp("web"));
      clients.push(client);
    }

    const first = await Promise.all(Array.from({ length: 30 }, () => askId(port)));
    // Sequential picks are deterministic; concurrent ones too (one accept loop), so round_robin is exact.
    assert.deepEqual(tally(first), { a: 10, b: 10, c: 10 }, `answers: ${first.join(",")}`);

    const stats = await serverStats(statsPort);
    const group = stats.groups?.find((entry: GroupSnapshot) => entry.name === "web");
    assert.ok(group, `no group in /api/stats: ${JSON.stringify(stats.groups)}`);
    assert.equal(group.kind, "tcp");
    assert.deepEqual(group.members.map((member) => member.client).sort(), [
      "member-a",
      "member-b",
      "member-c",
    ]);
    assert.equal(group.connections_total, 30);
    const metrics = await (await fetch(`http://127.0.0.1:${statsPort}/metrics`)).text();
    assert.match(metrics, /^tls_tunnel_group_members\{group="web",kind="tcp"\} 3$/m);

    // A wrong key, and a proxy outside the group, are refused with a reason naming the group.
    const wrongKey = tunnel.client(
      await tunnel.clientConfig(
        "wrongkey",
        [{ name: "wrongkey", publishPort: port, lines: `group = "web"\ngroup_key = "not-the-key-000000"` }],
        `client_id = "wrongkey"`,
      ),
    );
    const noGroup = tunnel.client(
      await tunnel.clientConfig("nogroup", [{ name: "nogroup", publishPort: port }], `client_id = "nogroup"`),
    );
    await wrongKey.waitForLine(/Proxy wrongkey rejected.*group_key does not match group 'web'/);
    await noGroup.waitForLine(/Proxy nogroup rejected.*served by group 'web'/);
    await Promise.all([wrongKey.stop(), noGroup.stop()]);

    // kill -9 of one member: once the server's keepalive notices, no new connection fails.
    const victim = clients[2];
    assert.ok(victim);
    victim.kill("SIGKILL");
    const killedAtMs = performance.now();
    await victim.status();
    await waitFor(
      async () =>
        (await serverStats(statsPort)).groups?.find((entry) => entry.name === "web")?.members.length === 2,
      15_000,
      "the server to drop the killed member",
      100,
    );
    console.log(
      `the server dropped the killed member after ${((performance.now() - killedAtMs) / 1000).toFixed(1)} s`,
    );
    const after: string[] = [];
    for (let index = 0; index < 30; index++) after.push(await askId(port));
    assert.deepEqual(tally(after), { a: 15, b: 15 }, `answers after the kill: ${after.join(",")}`);

    // A member frozen with its connection open (SIGSTOP: as a host or network gone) is dropped by the
    // server's keepalive (3 s here); from then on every connection goes to the last member.
    const frozen = clients[1];
    assert.ok(frozen);
    frozen.kill("SIGSTOP");
    const frozenAtMs = performance.now();
    try {
      await waitFor(
        async () =>
          (await serverStats(statsPort)).groups?.find((entry) => entry.name === "web")?.members.length === 1,
        15_000,
        "the server's keepalive to drop the frozen member",
        100,
      );
      console.log(
        `the keepalive dropped the frozen member after ${
          ((performance.now() - frozenAtMs) / 1000).toFixed(1)
        } s`,
      );
      const last: string[] = [];
      for (let index = 0; index < 10; index++) last.push(await askId(port));
      assert.deepEqual(tally(last), { a: 10 }, `answers with one member left: ${last.join(",")}`);
    } finally {
      frozen.kill("SIGKILL");
      await frozen.status();
    }

    // The port stays open while a member is connected, and is freed when the last one leaves.
    assert.equal(canBind(port), false);
    await clients[0]?.stop();
    await waitFor(() => canBind(port), 5_000, `port ${port} to be released`, 50);
    const empty = await serverStats(statsPort);
    assert.deepEqual(empty.groups, []);
  } finally {
    await Promise.all(services.map((service) => service.close()));
  }
});

/** One HTTP/1.0 GET of `host` on 127.0.0.1:`port`; returns the status line and the body. */
async function getHost(port: number, host: string): Promise<{ status: string; body: string }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const timer = setTimeout(() => conn.close(), 10_000);
  try {
    await conn.write(new TextEncoder().encode(`GET / HTTP/1.0\r\nHost: ${host}\r\n\r\n`));
    let text = "";
    const buffer = new Uint8Array(4096);
    for (;;) {
      const count = await conn.read(buffer);
      if (count === null) break;
      text += new TextDecoder().decode(buffer.subarray(0, count));
    }
    const [head = "", body = ""] = text.split("\r\n\r\n");
    return { status: head.split("\r\n")[0] ?? "", body };
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch {
      // Closed by the timer.
    }
  }
}

Deno.test("two clients in one http group serve one domain on the vhost port; a wrong key is DOMAIN_IN_USE naming the group", async () => {
  const httpPort = freePort();
  await using tunnel = await ProcessTunnel.create(
    `vhost_http_addr = "127.0.0.1"\nvhost_http_port = ${httpPort}\n`,
  );
  const backends = ["x", "y"].map((id) =>
    Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () => new Response(id))
  );
  try {
    await tunnel.server();
    const writeClient = async (name: string, key: string) => {
      const path = `${tunnel.dir}/${name}.toml`;
      const backend = backends[name === "member-y" ? 1 : 0];
      await Deno.writeTextFile(
        path,
        `[client]\nserver_addr = "127.0.0.1"\nserver_port = ${tunnel.serverPort}\nserver_name = "localhost"\n` +
          `ca_cert_path = "${tunnel.caPath}"\nauth_key = "${PROCESS_AUTH_KEY}"\nclient_id = "${name}"\n` +
          `keepalive_interval_secs = 1\nkeepalive_timeout_secs = 3\n\n` +
          `[[proxies]]\nname = "site"\nproxy_type = "http"\ncustom_domains = ["app.group.test"]\n` +
          `local_port = ${backend?.addr.port}\ngroup = "web"\ngroup_key = "${key}"\n`,
        { mode: 0o600 },
      );
      return tunnel.client(path);
    };
    const x = await writeClient("member-x", GROUP_KEY);
    await x.waitForLine(/Proxy site: /);
    const y = await writeClient("member-y", GROUP_KEY);
    await y.waitForLine(/Proxy site: /);
    const answers: string[] = [];
    for (let index = 0; index < 10; index++) {
      const answer = await getHost(httpPort, "app.group.test");
      assert.match(answer.status, / 200 /);
      answers.push(answer.body);
    }
    assert.deepEqual(tally(answers), { x: 5, y: 5 }, answers.join(","));
    const intruder = await writeClient("intruder", "not-the-key-000000");
    await intruder.waitForLine(
      /Proxy site rejected \(DOMAIN_IN_USE\).*group_key does not match http group 'web'/,
    );
    await intruder.stop();

    // One member leaves: the other serves every request; both gone: 503.
    await x.stop();
    for (let index = 0; index < 3; index++) {
      assert.equal((await getHost(httpPort, "app.group.test")).body, "y");
    }
    await y.stop();
    assert.match((await getHost(httpPort, "app.group.test")).status, / 503 /);
  } finally {
    await Promise.all(backends.map((backend) => backend.shutdown()));
  }
});

Deno.test("a member whose health check fails is skipped: every connection goes to the healthy one", async () => {
  const statsPort = freePort();
  await using tunnel = await ProcessTunnel.create(`stats_addr = "127.0.0.1"\nstats_port = ${statsPort}\n`);
  const alive = new IdService("alive");
  // A port nothing listens on: the second member's local service is down.
  const deadPort = freePort();
  try {
    const port = freePort();
    await tunnel.server();
    const groupLines =
      `group = "web"\ngroup_key = "${GROUP_KEY}"\nhealth_check = { interval_secs = 1, timeout_secs = 1 }`;
    const good = tunnel.client(
      await tunnel.clientConfig("good", [{
        name: "web",
        publishPort: port,
        localPort: alive.port,
        lines: groupLines,
      }], `client_id = "good"`),
    );
    await good.waitForLine(proxyUp("web"));
    const bad = tunnel.client(
      await tunnel.clientConfig("bad", [{
        name: "web",
        publishPort: port,
        localPort: deadPort,
        lines: groupLines,
      }], `client_id = "bad"`),
    );
    await bad.waitForLine(proxyUp("web"));
    await waitFor(
      async () =>
        (await serverStats(statsPort)).groups?.find((entry) => entry.name === "web")?.members.find((member) =>
          member.client === "bad"
        )?.healthy === false,
      10_000,
      "the server to mark the member with the dead service unhealthy",
      100,
    );
    const answers: string[] = [];
    for (let index = 0; index < 10; index++) answers.push(await askId(port));
    assert.deepEqual(tally(answers), { alive: 10 }, answers.join(","));
  } finally {
    await alive.close();
  }
});

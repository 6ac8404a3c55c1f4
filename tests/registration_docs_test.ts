/**
 * `register_proxies` as lib/protocol/README.md §4.2 and §4.4 describe it (issue 11 item 5), against the real
 * server: what a rejected entry echoes, which rejections also send PROXY_BIND_FAILED, how rejections are
 * logged, port 0 under a narrow `allow_ports`, inclusive ranges, when PORT_CHANGED is sent, what
 * `max_retries`, `retry_count` and `retries` count, and that `conn_id` counts per proxy.
 */

import assert from "node:assert/strict";
import type { PushExceptionParams } from "../lib/protocol/control.ts";
import { readStreamHeader } from "../lib/protocol/stream_header.ts";
import { closeQuietly } from "../lib/transport/pipe.ts";
import { withLogRecords } from "../testing/log.ts";
import { canBind, echoes, eventsOf, freePort, freePortRange, waitFor } from "../testing/helpers.ts";
import { RawClient } from "../testing/raw_client.ts";
import { acceptedPort, TunnelFixture } from "../testing/tunnel.ts";

Deno.test("rejected entries echo what was asked, are logged at INFO, and only failed binds also send PROXY_BIND_FAILED", async () => {
  const allowed = freePortRange(4);
  await withLogRecords(async (records) => {
    await using tunnel = await TunnelFixture.start(`allow_ports = "${allowed}-${allowed + 3}"`);
    const raw = await RawClient.dial(tunnel.port);
    const notices: PushExceptionParams[] = [];
    raw.rpc.onNotification("push_exception", (params) => void notices.push(params as PushExceptionParams));
    try {
      await raw.authenticate("echoes");
      const invalid = await raw.rpc.request("register_proxies", {
        proxies: [{
          name: "bad",
          proxy_type: "sctp",
          publish_addr: "127.0.0.1",
          publish_port: allowed,
          local_addr: "127.0.0.1",
          local_port: 9,
        }],
      }) as { proxies: Array<Record<string, unknown>> };
      assert.deepEqual(
        { ...invalid.proxies[0], reason: undefined },
        {
          name: "bad",
          status: "rejected",
          publish_addr: "127.0.0.1",
          publish_port: allowed,
          code: "INVALID_PROXY",
          reason: undefined,
        },
      );
      const answers = await raw.register([
        { name: "outside", publish_port: allowed + 10 },
        { name: "elsewhere", publish_port: allowed + 1, publish_addr: "192.0.2.1" },
        { name: "ok", publish_port: allowed + 2 },
        { name: "ok", publish_port: allowed + 3 },
      ]);
      const byCode = answers.proxies.map((entry) =>
        entry.status === "rejected"
          ? `${entry.name} ${entry.code} ${entry.publish_addr}:${entry.publish_port}`
          : `${entry.name} ${entry.status} ${entry.publish_addr}:${entry.publish_port}`
      );
      assert.deepEqual(byCode, [
        `outside PORT_NOT_ALLOWED 127.0.0.1:${allowed + 10}`,
        `elsewhere ADDRESS_NOT_AVAILABLE 192.0.2.1:${allowed + 1}`,
        `ok accepted 127.0.0.1:${allowed + 2}`,
        `ok DUPLICATE_NAME 127.0.0.1:${allowed + 3}`,
      ]);
      await waitFor(() => notices.some((notice) => notice.code === "PROXY_BIND_FAILED"), 3000, "a notice");
      await new Promise((resolve) => setTimeout(resolve, 200));
      const failed = notices.filter((notice) => notice.code === "PROXY_BIND_FAILED");
      assert.deepEqual(failed.map((notice) => notice.data?.proxy_name), ["elsewhere"]);
      assert.equal(failed[0]?.data?.max_retries, 0);
      assert.equal(failed[0]?.data?.repeat_count, 1);
    } finally {
      await raw.close();
    }
    const rejections = records.filter((record) => /rejected|not published/.test(String(record.rawMessage)));
    const logged = rejections.map((record) =>
      `${record.level} ${record.properties.proxy} ${record.properties.code}`
    );
    assert.deepEqual(logged.sort(), [
      "info bad INVALID_PROXY",
      "info elsewhere ADDRESS_NOT_AVAILABLE",
      "info ok DUPLICATE_NAME",
      "info outside PORT_NOT_ALLOWED",
    ]);
  });
});

Deno.test("publish_port 0 under an allow_ports without the ephemeral range gets a free allowed port, without PORT_CHANGED", async () => {
  const allowed = freePortRange(3);
  const holder = Deno.listen({ hostname: "127.0.0.1", port: allowed });
  try {
    await using tunnel = await TunnelFixture.start(`allow_ports = "${allowed}-${allowed + 2}"`);
    const echo = tunnel.echo();
    const client = await tunnel.client([{ name: "any", publishPort: 0, localPort: echo.port }]);
    const port = acceptedPort(await client.registered, "any");
    assert.equal(port, allowed + 1, "the first free port of allow_ports");
    assert.ok(await echoes(port, "allowed"));
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(eventsOf(client.client, "PORT_CHANGED").length, 0, "any port is what 0 asks for");

    // With every allowed port taken, the rejection says so (not "port N is in use").
    const second = await tunnel.client([{ name: "any", publishPort: 0, localPort: echo.port }], {
      extra: `client_id = "second"`,
    });
    const [entry] = await second.registered;
    assert.equal(
      entry?.status === "accepted" && entry.publish_port,
      allowed + 2,
      "the last free allowed port",
    );
    const third = await tunnel.client([{ name: "any", publishPort: 0, localPort: echo.port }], {
      extra: `client_id = "third"`,
    });
    const [full] = await third.registered;
    assert.equal(full?.status, "rejected");
    if (full?.status === "rejected") {
      assert.equal(full.code, "ADDRESS_IN_USE");
      assert.match(
        full.reason,
        new RegExp(`No port this client may publish \\(${allowed}-${allowed + 2}\\) is free`),
      );
    }
  } finally {
    holder.close();
  }
});

Deno.test("both ends of publish_port_range are candidates", async () => {
  const start = freePortRange(3);
  const holders = [start, start + 1].map((port) => Deno.listen({ hostname: "127.0.0.1", port }));
  try {
    await using tunnel = await TunnelFixture.start();
    const echo = tunnel.echo();
    const client = await tunnel.client([{
      name: "ranged",
      publishPort: 0,
      localPort: echo.port,
      extra: `publish_port_range = "${start}-${start + 2}"`,
    }]);
    assert.equal(acceptedPort(await client.registered, "ranged"), start + 2, "the end is inclusive");
    holders.forEach((holder) => holder.close());
    holders.length = 0;
    const low = await tunnel.client([{
      name: "low",
      publishPort: 0,
      localPort: echo.port,
      extra: `publish_port_range = "${start}-${start}"`,
    }], { extra: `client_id = "low"` });
    assert.equal(acceptedPort(await low.registered, "low"), start, "a one-port range is its start and end");
  } finally {
    holders.forEach((holder) => holder.close());
  }
});

Deno.test("PORT_CHANGED is sent when a remembered port is taken, not when it is given back or 0 was asked", async () => {
  await using tunnel = await TunnelFixture.start();
  const echo = tunnel.echo();
  const proxies = [{ name: "any", publishPort: 0, localPort: echo.port }];
  const first = await tunnel.client(proxies, { extra: `client_id = "remembered"` });
  const port = acceptedPort(await first.registered, "any");
  await first.stop();
  const second = await tunnel.client(proxies, { extra: `client_id = "remembered"` });
  assert.equal(acceptedPort(await second.registered, "any"), port);
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(eventsOf(second.client, "PORT_CHANGED").length, 0, "the remembered port came back");
  await second.stop();
  await waitFor(() => canBind(port), 3000, "the server to release the port");

  const holder = Deno.listen({ hostname: "127.0.0.1", port });
  try {
    const third = await tunnel.client(proxies, { extra: `client_id = "remembered"` });
    const other = acceptedPort(await third.registered, "any");
    assert.notEqual(other, port);
    await waitFor(() => eventsOf(third.client, "PORT_CHANGED").length === 1, 3000, "PORT_CHANGED");
    const data = eventsOf(third.client, "PORT_CHANGED")[0]?.data ?? {};
    assert.equal(data.requested_port, port, "names the remembered port");
    assert.equal(data.publish_port, other);
    assert.match(String(data.reason), /previous port/);
  } finally {
    holder.close();
  }
});

Deno.test("max_retries 2 means three bind attempts: PROXY_BIND_RETRY retry_count 1 and 2, then PROXY_BIND_FAILED", async () => {
  const busyPort = freePort();
  const holder = Deno.listen({ hostname: "127.0.0.1", port: busyPort });
  try {
    await using tunnel = await TunnelFixture.start(
      `[server.bind_retry]\nmax_retries = 2\ninitial_delay_secs = 0.02\nmax_delay_secs = 0.05\n`,
    );
    const client = await tunnel.client([{ name: "busy", publishPort: busyPort, localPort: 9 }]);
    const [entry] = await client.registered;
    assert.equal(entry?.status, "retrying");
    await waitFor(() => eventsOf(client.client, "PROXY_BIND_FAILED").length === 1, 3000, "PROXY_BIND_FAILED");
    const retries = eventsOf(client.client, "PROXY_BIND_RETRY");
    // Sent within the merge window, the second retry notice is held and sent before the failure.
    assert.deepEqual(retries.map((event) => event.data?.retry_count), [1, 2]);
    assert.deepEqual(retries.map((event) => event.data?.max_retries), [2, 2]);
    const proxy = tunnel.server.snapshot().clients[0]?.proxies.find((p) => p.name === "busy");
    assert.equal(proxy?.bind_retries, 2, "two retries after the first attempt: three attempts");
    assert.equal(eventsOf(client.client, "PROXY_BIND_FAILED")[0]?.data?.max_retries, 2);
  } finally {
    holder.close();
  }
});

Deno.test("conn_id counts the outside connections of each proxy from 1", async () => {
  await using tunnel = await TunnelFixture.start();
  const raw = await RawClient.dial(tunnel.port);
  const outside: Deno.TcpConn[] = [];
  try {
    await raw.authenticate("counted");
    const answer = await raw.register([{ name: "a", publish_port: 0 }, { name: "b", publish_port: 0 }]);
    const ports = answer.proxies.map((entry) => entry.publish_port);
    const seen: string[] = [];
    for (const port of [ports[0], ports[1], ports[0]]) {
      outside.push(await Deno.connect({ hostname: "127.0.0.1", port: port ?? 0 }));
      const stream = await raw.session.accept();
      assert.ok(stream);
      const header = await readStreamHeader(stream);
      seen.push(`${header.proxy}#${header.conn_id}`);
      stream.close();
    }
    assert.deepEqual(seen, ["a#1", "b#1", "a#2"]);
  } finally {
    outside.forEach((conn) => closeQuietly(conn));
    await raw.close();
  }
});

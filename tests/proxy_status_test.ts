/**
 * End-to-end tests of bind retry, live notifications, proxy status, dynamic and sticky ports and
 * health checks (the user's documents 01, 02 and 05), with server and client in this process over
 * real TLS on loopback. Delays are configured short; the 60 s defaults never run here.
 */

import assert from "node:assert/strict";
import {
  canBind,
  echoes,
  eventsOf,
  freePort,
  freePortRange,
  roundTrip,
  waitFor,
} from "../testing/helpers.ts";
import { acceptedPort, TunnelFixture } from "../testing/tunnel.ts";

const FAST_RETRY = `[server.bind_retry]\nmax_retries = 50\ninitial_delay_secs = 0.05\nmax_delay_secs = 0.1\n`;

/** Holds 127.0.0.1:`port` like another process would, until disposed or released. */
function holdPort(port: number) {
  let listener: Deno.TcpListener | null = Deno.listen({ hostname: "127.0.0.1", port });
  return {
    release() {
      listener?.close();
      listener = null;
    },
    [Symbol.dispose]() {
      this.release();
    },
  };
}

Deno.test("busy port is retried with PROXY_BIND_RETRY notices while other proxies serve, and heals when freed", async () => {
  const busyPort = freePort();
  using holder = holdPort(busyPort);
  await using tunnel = await TunnelFixture.start(FAST_RETRY);
  const echo = tunnel.echo();
  const client = await tunnel.client([
    { name: "busy", publishPort: busyPort, localPort: echo.port },
    { name: "free", publishPort: 0, localPort: echo.port },
  ]);
  const registrations = await client.registered;
  const busy = registrations.find((registration) => registration.name === "busy");
  assert.equal(busy?.status, "retrying", JSON.stringify(busy));
  assert.ok(await echoes(acceptedPort(registrations, "free"), "meanwhile"), "the other proxy serves");

  await waitFor(
    () => eventsOf(client.client, "PROXY_BIND_RETRY").length > 0,
    3000,
    "a PROXY_BIND_RETRY notice",
  );
  const notice = eventsOf(client.client, "PROXY_BIND_RETRY")[0];
  assert.equal(notice?.level, "warning");
  assert.match(notice?.message ?? "", new RegExp(`Port ${busyPort} on 127\\.0\\.0\\.1 is already in use`));
  const data = notice?.data ?? {};
  assert.equal(data.proxy_name, "busy");
  assert.equal(data.publish_addr, "127.0.0.1");
  assert.equal(data.publish_port, busyPort);
  assert.equal(data.retry_count, 1);
  assert.equal(data.max_retries, 50);
  assert.equal(typeof data.retry_delay_secs, "number");
  assert.match(String(data.error), /already in use by another process/);
  assert.equal(client.client.proxies.get("busy")?.stats.status, "unhealthy");
  const retried = tunnel.server.snapshot().clients[0]?.proxies.find((proxy) => proxy.name === "busy");
  assert.ok((retried?.bind_retries ?? 0) >= 1, "the server counts its bind retries");

  holder.release();
  await waitFor(
    () => client.client.proxies.get("busy")?.stats.status === "healthy",
    3000,
    "busy to turn healthy",
  );
  assert.ok(await echoes(busyPort, "healed"), "the healed proxy carries traffic");
  await waitFor(
    () => eventsOf(client.client, "PROXY_BIND_RECOVERED").length === 1,
    3000,
    "a recovery notice",
  );
});

Deno.test("exhausted retries end in PROXY_BIND_FAILED and bind_failed", async () => {
  const busyPort = freePort();
  using _holder = holdPort(busyPort);
  await using tunnel = await TunnelFixture.start(
    `[server.bind_retry]\nmax_retries = 2\ninitial_delay_secs = 0.02\nmax_delay_secs = 0.05\n`,
  );
  const client = await tunnel.client([{ name: "busy", publishPort: busyPort, localPort: 9 }]);
  await client.registered;
  await waitFor(() => eventsOf(client.client, "PROXY_BIND_FAILED").length > 0, 3000, "PROXY_BIND_FAILED");
  const failed = eventsOf(client.client, "PROXY_BIND_FAILED")[0];
  assert.equal(failed?.level, "error");
  assert.equal(failed?.data?.max_retries, 2);
  assert.match(String(failed?.data?.final_error), /already in use/);
  await waitFor(() => client.client.proxies.get("busy")?.stats.status === "bind_failed", 3000, "bind_failed");
});

Deno.test("an address that is not on this host fails at once with what to do", async () => {
  await using tunnel = await TunnelFixture.start(FAST_RETRY);
  // 192.0.2.1 (TEST-NET-1) is never an address of this machine: binding it fails with EADDRNOTAVAIL.
  const client = await tunnel.client([
    { name: "elsewhere", publishPort: freePort(), publishAddr: "192.0.2.1", localPort: 9 },
  ]);
  const [registration] = await client.registered;
  assert.equal(registration?.status, "rejected");
  if (registration?.status === "rejected") {
    assert.equal(registration.code, "ADDRESS_NOT_AVAILABLE");
    assert.match(registration.reason, /192\.0\.2\.1 is not an address of this host/);
  }
  assert.equal(eventsOf(client.client, "PROXY_BIND_RETRY").length, 0, "a permanent error is not retried");
});

Deno.test("a client that disconnects during bind retries leaves nothing bound", async () => {
  const busyPort = freePort();
  using holder = holdPort(busyPort);
  await using tunnel = await TunnelFixture.start(FAST_RETRY);
  const client = await tunnel.client([{ name: "busy", publishPort: busyPort, localPort: 9 }]);
  await client.registered;
  await waitFor(() => eventsOf(client.client, "PROXY_BIND_RETRY").length > 0, 3000, "retries to start");
  await client.stop();
  holder.release();
  // Several retry periods later, the server must not have taken the port for the departed client.
  await new Promise((resolve) => setTimeout(resolve, 400));
  assert.ok(canBind(busyPort), "the port was left free");
  assert.equal(tunnel.server.clients.size, 0);
});

Deno.test("a flood of identical bind failures reaches the client merged, with a count", async () => {
  const busyPort = freePort();
  using _holder = holdPort(busyPort);
  await using tunnel = await TunnelFixture.start(
    `[server.bind_retry]\nmax_retries = 1000\ninitial_delay_secs = 0.01\nmax_delay_secs = 0.01\n`,
  );
  const client = await tunnel.client([{ name: "busy", publishPort: busyPort, localPort: 9 }]);
  await client.registered;
  // Within the 5 s merge window the server retries hundreds of times; the client hears the first
  // notice, then one merged notice when the window ends.
  await waitFor(() => eventsOf(client.client, "PROXY_BIND_RETRY").length >= 2, 8000, "the merged notice", 50);
  const notices = eventsOf(client.client, "PROXY_BIND_RETRY");
  const merged = notices[1]?.data?.repeat_count;
  assert.equal(typeof merged, "number");
  assert.ok((merged as number) > 50, `merged ${merged} notices`);
  assert.ok(notices.length <= 3, `${notices.length} notices reached the client`);
});

Deno.test("port 0 and ranges pick free ports, a taken preferred port is announced with PORT_CHANGED", async () => {
  const start = freePortRange(3);
  using _holder = holdPort(start);
  await using tunnel = await TunnelFixture.start(FAST_RETRY);
  const echo = tunnel.echo();
  const client = await tunnel.client([
    { name: "any", publishPort: 0, localPort: echo.port },
    {
      name: "ranged",
      publishPort: start,
      localPort: echo.port,
      extra: `publish_port_range = "${start}-${start + 2}"`,
    },
  ]);
  const registrations = await client.registered;
  const any = acceptedPort(registrations, "any");
  assert.ok(any > 0);
  assert.ok(await echoes(any, "system port"));
  assert.equal(acceptedPort(registrations, "ranged"), start + 1, "first free port of the range");
  assert.ok(await echoes(start + 1, "ranged"));
  await waitFor(() => eventsOf(client.client, "PORT_CHANGED").length > 0, 3000, "PORT_CHANGED");
  const changed = eventsOf(client.client, "PORT_CHANGED")[0]?.data ?? {};
  assert.equal(changed.proxy_name, "ranged");
  assert.equal(changed.requested_port, start);
  assert.equal(changed.publish_port, start + 1);
});

Deno.test("a reconnecting client gets its system-picked port back", async () => {
  await using tunnel = await TunnelFixture.start();
  const echo = tunnel.echo();
  const proxies = [{ name: "any", publishPort: 0, localPort: echo.port }];
  const first = await tunnel.client(proxies, { extra: `client_id = "sticky"` });
  const port = acceptedPort(await first.registered, "any");
  await first.stop();
  const second = await tunnel.client(proxies, { extra: `client_id = "sticky"` });
  assert.equal(acceptedPort(await second.registered, "any"), port);
  assert.ok(await echoes(port, "same port"));
});

Deno.test("health check flips a proxy unhealthy and back, and the server refuses connections meanwhile", async () => {
  await using tunnel = await TunnelFixture.start();
  const first = tunnel.echo();
  const localPort = first.port;
  const client = await tunnel.client([{
    name: "checked",
    publishPort: 0,
    localPort,
    extra: `health_check = { interval_secs = 0.1, timeout_secs = 0.1 }`,
  }], { extra: `client_id = "checked"` });
  const serverProxy = () => tunnel.server.clients.get("checked")?.proxies.get("checked");
  const port = acceptedPort(await client.registered, "checked");
  assert.ok(await echoes(port, "up"));
  await first.close();
  await waitFor(() => serverProxy()?.stats.status === "unhealthy", 3000, "the server to see it unhealthy");
  assert.equal(client.client.proxies.get("checked")?.stats.status, "unhealthy");
  const refusedAt = performance.now();
  assert.equal((await roundTrip(port, new TextEncoder().encode("down?"), 3000)).length, 0);
  assert.ok(performance.now() - refusedAt < 500, "refused at once, not after a local connect timeout");
  tunnel.echo(localPort);
  await waitFor(() => serverProxy()?.stats.status === "healthy", 3000, "the server to see it healthy again");
  assert.ok(await echoes(port, "up again"));
});

Deno.test("a client asking for fewer bind retries gets them, but never more than the server allows", async () => {
  const busyPort = freePort();
  using _holder = holdPort(busyPort);
  await using tunnel = await TunnelFixture.start(
    `[server.bind_retry]\nmax_retries = 5\ninitial_delay_secs = 0.02\nmax_delay_secs = 0.05\n`,
  );
  for (const [clientId, asked, granted] of [["gentle", 1, 1], ["greedy", 500, 5]] as const) {
    const client = await tunnel.client([{ name: "busy", publishPort: busyPort, localPort: 9 }], {
      extra: `client_id = "${clientId}"\n[client.bind_retry]\nmax_retries = ${asked}`,
    });
    await client.registered;
    await waitFor(() => eventsOf(client.client, "PROXY_BIND_FAILED").length > 0, 3000, "PROXY_BIND_FAILED");
    assert.equal(eventsOf(client.client, "PROXY_BIND_FAILED")[0]?.data?.max_retries, granted, clientId);
    await client.stop();
  }
});

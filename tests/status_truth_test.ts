/**
 * Status that is never stale (issue 11 item 3), with the real server and client in this process over
 * real TLS on loopback: notifications about a proxy reach the client in order, and a proxy whose local
 * service refuses is reported unhealthy by the server, its metrics and the client.
 */

import assert from "node:assert/strict";
import type { ProxyStatus } from "../lib/stats/proxy_stats.ts";
import { renderPrometheus } from "../lib/stats/prometheus.ts";
import type { ProxySnapshot } from "../lib/stats/snapshot.ts";
import { TunnelClient } from "../lib/client/client.ts";
import { closeQuietly } from "../lib/transport/pipe.ts";
import { freePort, roundTrip, testCertificates, waitFor } from "../testing/helpers.ts";
import { acceptedPort, clientConfig, TunnelFixture } from "../testing/tunnel.ts";
import { RawClient } from "../testing/raw_client.ts";
import { ProcessTunnel, proxyUp } from "../testing/process_tunnel.ts";

/** One outside connection that sends a line and reads what comes back; "" when it was cut or refused. */
async function outsideExchange(port: number, text: string): Promise<string> {
  try {
    return new TextDecoder().decode(await roundTrip(port, new TextEncoder().encode(text), 3000));
  } catch {
    return "";
  }
}

Deno.test("a port freed after the second bind attempt ends healthy, and the last notice the client got is the recovery", async () => {
  const busyPort = freePort();
  let holder: Deno.TcpListener | null = Deno.listen({ hostname: "127.0.0.1", port: busyPort });
  // The user's timing: retries after 1 s and 2 s, all within the 5 s merge window.
  await using tunnel = await TunnelFixture.start(
    `[server.bind_retry]\nmax_retries = 5\ninitial_delay_secs = 1\nmax_delay_secs = 2\n`,
  );
  const certs = await testCertificates();
  const stop = new AbortController();
  const statuses: ProxyStatus[] = [];
  const client = new TunnelClient({
    config: clientConfig(tunnel.port, [{ name: "busy", publishPort: busyPort, localPort: 9 }]),
    caCertPem: certs.caCertPem,
    signal: stop.signal,
    onStatusChange: (proxies) => {
      const status = proxies.find((proxy) => proxy.config.name === "busy")?.stats.status;
      if (status && statuses.at(-1) !== status) statuses.push(status);
    },
  });
  const running = client.run();
  try {
    const serverProxy = () => tunnel.server.snapshot().clients[0]?.proxies.find((p) => p.name === "busy");
    await waitFor(() => (serverProxy()?.bind_retries ?? 0) >= 2, 4000, "the second failed bind attempt");
    holder.close();
    holder = null;
    await waitFor(() => serverProxy()?.status === "healthy", 4000, "the third attempt to bind");
    const firstNoticeMs = client.events.recent().find((event) => event.code === "PROXY_BIND_RETRY")?.time_ms;
    assert.ok(firstNoticeMs !== undefined);
    // Everything held in the 5 s merge window that began with the first notice has arrived by then.
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, firstNoticeMs + 5500 - Date.now())));

    const notices = client.events.recent().filter((event) => event.code.startsWith("PROXY_BIND_"));
    assert.deepEqual(
      notices.map((event) => `${event.code}${event.data?.retry_count ?? ""}`),
      ["PROXY_BIND_RETRY1", "PROXY_BIND_RETRY2", "PROXY_BIND_RECOVERED"],
      "the held second retry notice came before the recovery, not after it",
    );
    assert.equal(notices[2]?.data?.retries, 2, "recovered after two retries (three bind attempts)");
    assert.equal(notices[1]?.data?.repeat_count, 1, "a single held notice carries repeat_count 1 too");
    assert.equal(client.proxies.get("busy")?.stats.status, "healthy", "the client's final view");
    assert.equal(statuses.at(-1), "healthy", `the last status the client was told: ${statuses.join(" → ")}`);
    assert.equal(serverProxy()?.status, "healthy");
  } finally {
    holder?.close();
    stop.abort();
    await running.catch(() => {});
  }
});

Deno.test("a proxy whose local service refuses turns unhealthy after 3 failed connections and healthy at the next success", async () => {
  await using tunnel = await TunnelFixture.start();
  const localPort = freePort(); // nothing listens here yet
  const client = await tunnel.client([{ name: "web", publishPort: 0, localPort }], {
    extra: `client_id = "refused"`,
  });
  const port = acceptedPort(await client.registered, "web");
  const serverProxy = (): ProxySnapshot | undefined =>
    tunnel.server.snapshot().clients[0]?.proxies.find((proxy) => proxy.name === "web");

  for (let attempt = 1; attempt <= 2; attempt++) {
    assert.equal(await outsideExchange(port, "hello"), "", "nothing comes back from a refusing service");
    await waitFor(() => serverProxy()?.failed_connections === attempt, 3000, `failure ${attempt} counted`);
    assert.equal(serverProxy()?.status, "healthy", "below unhealthy_after_failures it stays healthy");
  }
  assert.equal(await outsideExchange(port, "hello"), "");
  await waitFor(() => serverProxy()?.status === "unhealthy", 3000, "the server to mark it unhealthy");
  const snapshot = serverProxy();
  assert.equal(snapshot?.failed_connections, 3);
  assert.match(String(snapshot?.last_error), /3 connections in a row could not reach the local service/);
  assert.match(String(snapshot?.last_error), /refused|Connection refused|os error 111/i);
  const metrics = renderPrometheus(tunnel.server.snapshot());
  assert.match(metrics, /tls_tunnel_proxy_up\{[^}]*proxy="web"[^}]*\} 0\n/);
  assert.match(metrics, /tls_tunnel_proxy_connections_failed_total\{[^}]*proxy="web"[^}]*\} 3\n/);
  assert.match(metrics, /tls_tunnel_proxy_status\{[^}]*status="unhealthy"[^}]*\} 1\n/);
  const events = tunnel.server.snapshot().recent_events.filter((event) => event.code === "PROXY_UNHEALTHY");
  assert.equal(events.length, 1);
  await waitFor(
    () => client.client.proxies.get("web")?.stats.status === "unhealthy",
    3000,
    "the client (and its status table) to show it unhealthy",
  );

  const echo = tunnel.echo(localPort);
  assert.equal(await outsideExchange(port, "back"), "back", "the started service answers");
  await waitFor(() => serverProxy()?.status === "healthy", 3000, "the success to make it healthy again");
  assert.equal(serverProxy()?.failed_connections, 3, "a success does not reset the failure counter");
  await waitFor(() => client.client.proxies.get("web")?.stats.status === "healthy", 3000, "client healthy");
  await echo.close();
});

Deno.test("a flood of forged or malformed proxy_connect_result reports costs little and counts only streams opened", async () => {
  await using tunnel = await TunnelFixture.start();
  const raw = await RawClient.dial(tunnel.port);
  const { session, rpc } = raw;
  try {
    await raw.authenticate("forger");
    const registered = await raw.register([{ name: "web", publish_port: 0 }]);
    const port = registered.proxies[0]?.publish_port ?? 0;
    const serverProxy = () =>
      tunnel.server.snapshot().clients[0]?.proxies.find((proxy) => proxy.name === "web");
    const report = (connId: number, extra: Record<string, unknown> = {}) =>
      rpc.notify("proxy_connect_result", {
        proxy_name: "web",
        conn_id: connId,
        ok: false,
        error: "forged",
        consecutive_failures: 1,
        ...extra,
      });

    const started = performance.now();
    // No stream was opened: reports of failures are refused, however many.
    for (let index = 0; index < 5000; index++) await report(1 + (index % 3));
    // Malformed: an error over 512 characters, a conn_id of 0, a string for ok, an unknown proxy.
    for (let index = 0; index < 1000; index++) {
      await report(1, { error: "x".repeat(10_000) });
      await report(0);
      await report(1, { ok: "no" });
      await report(1, { proxy_name: "other" });
    }
    assert.equal((await rpc.request("heartbeat", { time_ms: 7 }) as { time_ms: number }).time_ms, 7);
    const floodMs = performance.now() - started;
    assert.ok(floodMs < 10_000, `9000 reports took ${floodMs.toFixed(0)} ms`);
    assert.equal(serverProxy()?.failed_connections, 0, "no stream was opened, so no failure counts");
    assert.equal(serverProxy()?.status, "healthy");

    // One real stream: however many reports name it, it counts once.
    const outside = await Deno.connect({ hostname: "127.0.0.1", port });
    const stream = await session.accept();
    assert.ok(stream);
    for (let index = 0; index < 1000; index++) await report(1);
    assert.equal((await rpc.request("heartbeat", { time_ms: 8 }) as { time_ms: number }).time_ms, 8);
    assert.equal(serverProxy()?.failed_connections, 1);
    assert.equal(serverProxy()?.status, "healthy", "one failure is below unhealthy_after_failures");
    assert.equal(serverProxy()?.last_error, "forged");
    stream.reset();
    closeQuietly(outside);
  } finally {
    await raw.close();
  }
});

Deno.test("the client program's status table says unhealthy, not healthy, once its local service refuses", async () => {
  await using tunnel = await ProcessTunnel.create();
  const server = await tunnel.server();
  const localPort = freePort(); // nothing listens here
  const client = tunnel.client(
    await tunnel.clientConfig("refusing", [{ name: "web", publishPort: 0, localPort }]),
  );
  const port = Number((await client.waitForLine(proxyUp("web")))[1]);
  await client.waitForLine(/web\s+healthy\s/);
  for (let attempt = 0; attempt < 3; attempt++) assert.equal(await outsideExchange(port, "hello"), "");
  await client.waitForLine(/web\s+unhealthy\s/, 5000);
  await server.waitForLine(/Proxy web of .* is unhealthy: 3 connections in a row could not reach/, 5000);
});

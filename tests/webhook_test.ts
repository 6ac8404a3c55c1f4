/**
 * Alerts by webhook (`[server.notify]`): the server POSTs its events as JSON, with the bearer token,
 * and a webhook that is slow or down never holds up the tunnel.
 */

import assert from "node:assert/strict";
import { freePort, waitFor } from "../testing/helpers.ts";
import { acceptedPort, TunnelFixture } from "../testing/tunnel.ts";
import { ProcessTunnel, proxyUp } from "../testing/process_tunnel.ts";

/** A webhook on 127.0.0.1 that records every POST; `delayMs` makes it slow. */
function webhookReceiver(options: { delayMs?: number } = {}) {
  const received: Array<{ authorization: string | null; body: Record<string, unknown> }> = [];
  const controller = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: controller.signal, onListen: () => {} },
    async (request) => {
      const body = await request.json() as Record<string, unknown>;
      if (options.delayMs) await new Promise((resolve) => setTimeout(resolve, options.delayMs));
      received.push({ authorization: request.headers.get("authorization"), body });
      return new Response(null, { status: 204 });
    },
  );
  return {
    received,
    url: `http://127.0.0.1:${server.addr.port}/alerts`,
    codes: () => received.map((entry) => entry.body.code),
    async [Symbol.asyncDispose]() {
      controller.abort();
      await server.finished;
    },
  };
}

const TOKEN = "webhook-token-0123456789";

Deno.test("the server posts connect, bind failure and disconnect events with their data and token", async () => {
  await using webhook = webhookReceiver();
  await using tunnel = await TunnelFixture.start(
    `[server.notify]\nwebhook_url = "${webhook.url}"\nwebhook_token = "${TOKEN}"\n` +
      `events = ["CLIENT_CONNECTED", "CLIENT_DISCONNECTED", "PROXY_BIND_FAILED"]\n`,
  );
  const echo = tunnel.echo();
  const client = await tunnel.client([
    { name: "web", publishPort: 0, localPort: echo.port },
    { name: "elsewhere", publishPort: freePort(), publishAddr: "192.0.2.1", localPort: echo.port },
  ], { extra: `client_id = "alerting"` });
  const port = acceptedPort(await client.registered, "web");
  await waitFor(() => webhook.received.length >= 2, 5000, "two webhook posts");
  await client.stop();
  await waitFor(() => webhook.codes().includes("CLIENT_DISCONNECTED"), 5000, "the disconnect post");

  assert.deepEqual(webhook.codes(), ["CLIENT_CONNECTED", "PROXY_BIND_FAILED", "CLIENT_DISCONNECTED"]);
  for (const entry of webhook.received) {
    assert.equal(entry.authorization, `Bearer ${TOKEN}`);
    assert.equal(entry.body.server, `127.0.0.1:${tunnel.port}`);
    assert.equal(entry.body.client, "alerting");
    assert.match(String(entry.body.time), /^\d{4}-\d\d-\d\dT/);
  }
  const [connected, bindFailed, disconnected] = webhook.received.map((entry) => entry.body);
  assert.equal((connected?.data as Record<string, unknown>).client_id, "alerting");
  assert.equal(bindFailed?.level, "error");
  assert.equal((bindFailed?.data as Record<string, unknown>).proxy_name, "elsewhere");
  assert.match(
    String((bindFailed?.data as Record<string, unknown>).final_error),
    /not an address of this host/,
  );
  assert.deepEqual((disconnected?.data as Record<string, unknown>).ports, [port]);
});

Deno.test("a slow or unreachable webhook does not hold up clients", async () => {
  await using slow = webhookReceiver({ delayMs: 3000 });
  await using tunnel = await TunnelFixture.start(
    `[server.notify]\nwebhook_url = "${slow.url}"\nevents = ["CLIENT_CONNECTED"]\ntimeout_secs = 0.5\n`,
  );
  const echo = tunnel.echo();
  const started = performance.now();
  for (let index = 0; index < 3; index++) {
    const client = await tunnel.client([{ name: `p${index}`, publishPort: 0, localPort: echo.port }], {
      extra: `client_id = "c${index}"`,
    });
    acceptedPort(await client.registered, `p${index}`);
  }
  assert.ok(performance.now() - started < 2000, "registrations did not wait for the webhook");
  await using unreachable = await TunnelFixture.start(
    `[server.notify]\nwebhook_url = "http://127.0.0.1:${freePort()}/"\nevents = ["CLIENT_CONNECTED"]\n`,
  );
  const client = await unreachable.client([{ name: "p", publishPort: 0, localPort: echo.port }]);
  acceptedPort(await client.registered, "p");
});

Deno.test("the real server posts a disconnect alert when a client process is killed", async () => {
  await using webhook = webhookReceiver();
  await using tunnel = await ProcessTunnel.create(`[server.notify]\nwebhook_url = "${webhook.url}"\n`);
  await tunnel.server();
  const client = tunnel.client(
    await tunnel.clientConfig("client", [{ name: "web", publishPort: 0 }], `client_id = "killed"`),
  );
  await client.waitForLine(proxyUp("web"));
  client.kill("SIGKILL");
  await waitFor(() => webhook.codes().includes("CLIENT_DISCONNECTED"), 5000, "the disconnect alert");
  const alert = webhook.received.find((entry) => entry.body.code === "CLIENT_DISCONNECTED")?.body;
  assert.equal(alert?.client, "killed");
  assert.equal(alert?.level, "warning");
});

Deno.test("a local service that refuses posts PROXY_UNHEALTHY, and its return PROXY_HEALTHY", async () => {
  await using webhook = webhookReceiver();
  await using tunnel = await TunnelFixture.start(
    `unhealthy_after_failures = 2\n[server.notify]\nwebhook_url = "${webhook.url}"\n` +
      `events = ["PROXY_UNHEALTHY", "PROXY_HEALTHY"]\n`,
  );
  const localPort = freePort(); // nothing listens here yet
  const client = await tunnel.client([{ name: "web", publishPort: 0, localPort }], {
    extra: `client_id = "refusing"`,
  });
  const port = acceptedPort(await client.registered, "web");
  const exchange = async () => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await conn.write(new TextEncoder().encode("x"));
      await conn.read(new Uint8Array(16)).catch(() => null);
    } finally {
      conn.close();
    }
  };
  await exchange();
  await exchange();
  await waitFor(() => webhook.codes().includes("PROXY_UNHEALTHY"), 5000, "the PROXY_UNHEALTHY post");
  const unhealthy = webhook.received[0]?.body ?? {};
  assert.equal(unhealthy.client, "refusing");
  const data = unhealthy.data as Record<string, unknown>;
  assert.equal(data.proxy_name, "web");
  assert.equal(data.consecutive_failures, 2);
  assert.equal(typeof data.error, "string");
  tunnel.echo(localPort);
  await exchange();
  await waitFor(() => webhook.codes().includes("PROXY_HEALTHY"), 5000, "the PROXY_HEALTHY post");
  assert.deepEqual(webhook.codes(), ["PROXY_UNHEALTHY", "PROXY_HEALTHY"]);
});

/**
 * End-to-end tests with the real CLI: `deno run main.ts server|client` as child processes over real
 * TLS on loopback, killed, stopped and restarted like a user's processes.
 */

import assert from "node:assert/strict";
import { canBind, CliProcess, EchoService, freePort, freePortRange, waitFor } from "../testing/helpers.ts";
import {
  echoThrough,
  FAST_RECONNECT,
  PROCESS_AUTH_KEY,
  ProcessTunnel,
  proxyUp,
} from "../testing/process_tunnel.ts";

Deno.test("server releases published ports within a second after the client process is killed", async () => {
  await using tunnel = await ProcessTunnel.create();
  const publishPort = freePort();
  const server = await tunnel.server();
  const client = tunnel.client(await tunnel.clientConfig("client", [{ name: "web", publishPort }]));
  await client.waitForLine(proxyUp("web"));
  assert.equal(await echoThrough(publishPort, "hello"), "hello");
  const killedAt = performance.now();
  client.kill("SIGKILL");
  await client.status();
  await waitFor(() => canBind(publishPort), 1000, `port ${publishPort} to be released`, 2);
  const releasedMs = performance.now() - killedAt;
  console.log(`port released ${releasedMs.toFixed(1)} ms after SIGKILL of the client`);
  assert.ok(releasedMs < 1000);
  await server.waitForLine(/released 1 port\(s\) in/);
});

Deno.test("restarted client gets the same ports back", async () => {
  await using tunnel = await ProcessTunnel.create();
  const publishPort = freePort();
  await tunnel.server();
  const configPath = await tunnel.clientConfig("client", [{ name: "web", publishPort }]);
  const first = tunnel.client(configPath);
  await first.waitForLine(proxyUp("web"));
  assert.equal((await first.stop()).code, 0, "SIGTERM ends the client cleanly");
  const second = tunnel.client(configPath);
  const [, port] = await second.waitForLine(proxyUp("web"));
  assert.equal(Number(port), publishPort);
  assert.equal(await echoThrough(publishPort, "again"), "again");
});

Deno.test("client reconnects after a server restart and its ports return", async () => {
  await using tunnel = await ProcessTunnel.create();
  const publishPort = freePort();
  const first = await tunnel.server();
  const client = tunnel.client(await tunnel.clientConfig("client", [{ name: "web", publishPort }]));
  await client.waitForLine(proxyUp("web"));
  first.kill("SIGKILL");
  await first.status();
  await client.waitForLine(/Reconnecting in/);
  await tunnel.server();
  await waitFor(
    async () => {
      try {
        return (await echoThrough(publishPort, "back")) === "back";
      } catch {
        return false;
      }
    },
    15_000,
    "the tunnel to carry traffic again",
    100,
  );
});

Deno.test("client started before the server connects once the server is up", async () => {
  await using tunnel = await ProcessTunnel.create();
  const publishPort = freePort();
  const client = tunnel.client(await tunnel.clientConfig("client", [{ name: "web", publishPort }]));
  await client.waitForLine(/Reconnecting in/);
  await tunnel.server(false);
  await client.waitForLine(proxyUp("web"), 20_000);
  assert.equal(await echoThrough(publishPort, "late"), "late");
});

Deno.test("client with a wrong key exits non-zero with a clear message", async () => {
  await using tunnel = await ProcessTunnel.create();
  await tunnel.server();
  const path = await tunnel.clientConfig("client", [{ name: "web", publishPort: 0 }]);
  await Deno.writeTextFile(
    path,
    (await Deno.readTextFile(path)).replace(PROCESS_AUTH_KEY, "a-wrong-key-0123456789"),
  );
  const client = tunnel.client(path);
  const status = await client.status();
  assert.equal(status.code, 1, client.output);
  assert.match(client.output, /Authentication failed: the auth_key is not accepted/);
});

Deno.test("a frozen client's port goes to its restarted self at once, without waiting for keepalive", async () => {
  await using tunnel = await ProcessTunnel.create();
  const publishPort = freePort();
  const server = await tunnel.server();
  const configPath = await tunnel.clientConfig(
    "client",
    [{ name: "web", publishPort }],
    `client_id = "frozen"`,
  );
  const old = tunnel.client(configPath);
  await old.waitForLine(proxyUp("web"));
  old.kill("SIGSTOP"); // half-open: the TCP connection stays up, nobody answers
  const started = performance.now();
  const fresh = tunnel.client(configPath);
  const [, port] = await fresh.waitForLine(proxyUp("web"));
  const tookMs = performance.now() - started;
  assert.equal(Number(port), publishPort);
  assert.equal(await echoThrough(publishPort, "fresh"), "fresh");
  // Well under the 3 s keepalive timeout plus process start-up.
  assert.ok(tookMs < 2900 + 2000, `took ${tookMs} ms`);
  await server.waitForLine(/replacing its previous session/);
});

Deno.test("a different client takes a port from a frozen holder after a failed liveness ping", async () => {
  await using tunnel = await ProcessTunnel.create();
  const publishPort = freePort();
  const server = await tunnel.server();
  const holder = tunnel.client(
    await tunnel.clientConfig("holder", [{ name: "web", publishPort }], `client_id = "holder"`),
  );
  await holder.waitForLine(proxyUp("web"));
  holder.kill("SIGSTOP");
  const taker = tunnel.client(
    await tunnel.clientConfig("taker", [{ name: "web2", publishPort }], `client_id = "taker"`),
  );
  const [, port] = await taker.waitForLine(proxyUp("web2"));
  assert.equal(Number(port), publishPort);
  await server.waitForLine(/did not answer a ping/);
});

Deno.test("a second live client asking for a taken port is told which client holds it", async () => {
  await using tunnel = await ProcessTunnel.create();
  const publishPort = freePort();
  await tunnel.server();
  const first = tunnel.client(
    await tunnel.clientConfig("first", [{ name: "web", publishPort }], `client_id = "first"`),
  );
  await first.waitForLine(proxyUp("web"));
  const second = tunnel.client(
    await tunnel.clientConfig("second", [{ name: "web", publishPort }], `client_id = "second"`),
  );
  await second.waitForLine(/rejected \(PORT_IN_USE_BY_CLIENT\).*client 'first'/);
  assert.equal(await echoThrough(publishPort, "first still"), "first still");
});

Deno.test("client shows the server's bind retry notices and its proxy status table", async () => {
  await using tunnel = await ProcessTunnel.create(
    `[server.bind_retry]\nmax_retries = 100\ninitial_delay_secs = 0.1\nmax_delay_secs = 0.2\n`,
  );
  const busyPort = freePort();
  let holder: Deno.TcpListener | null = Deno.listen({ hostname: "127.0.0.1", port: busyPort });
  try {
    await tunnel.server();
    const client = tunnel.client(
      await tunnel.clientConfig("client", [{ name: "busy", publishPort: busyPort }, {
        name: "open",
        publishPort: 0,
      }]),
    );
    const [retryLine] = await client.waitForLine(/^.*Server warning PROXY_BIND_RETRY.*$/);
    const record = JSON.parse(retryLine) as { properties: { data: Record<string, unknown> } };
    assert.equal(record.properties.data.proxy_name, "busy");
    assert.equal(record.properties.data.publish_port, busyPort);
    assert.equal(record.properties.data.retry_count, 1);
    assert.match(String(record.properties.data.error), /already in use by another process/);
    await client.waitForLine(/"message":"busy +unhealthy +127\.0\.0\.1:\d+ → /);
    const [, openPort] = await client.waitForLine(proxyUp("open"));
    assert.equal(await echoThrough(Number(openPort), "meanwhile"), "meanwhile");
    holder.close();
    holder = null;
    await client.waitForLine(/"message":"busy +healthy +127\.0\.0\.1:\d+ → /);
    assert.equal(await echoThrough(busyPort, "healed"), "healed");
  } finally {
    holder?.close();
  }
});

Deno.test("a server without a certificate makes one, and a skip_verify client reaches it with a warning", async () => {
  await using tunnel = await ProcessTunnel.create("", { generatedCertificate: true });
  const server = await tunnel.server();
  await server.waitForLine(/generated a throw-away certificate \(CA SHA-256 ([0-9A-F]{2}:){31}[0-9A-F]{2}\)/);
  const client = tunnel.client(
    await tunnel.clientConfig("client", [{ name: "web", publishPort: 0 }], "", { skipVerify: true }),
  );
  await client.waitForLine(/skip_verify = true: the server's certificate is NOT verified/);
  const [, port] = await client.waitForLine(proxyUp("web"));
  assert.equal(await echoThrough(Number(port), "unverified"), "unverified");
});

Deno.test("a client trusting another CA refuses the server and says how to fix it", async () => {
  await using tunnel = await ProcessTunnel.create("", { generatedCertificate: true });
  await tunnel.server();
  const client = tunnel.client(await tunnel.clientConfig("client", [{ name: "web", publishPort: 0 }]));
  // ca_cert_path is set: the message names the file instead of asking to set it.
  await client.waitForLine(/TLS certificate of 127\.0\.0\.1:\d+ was not accepted .*ca_cert_path \S*ca\.pem/);
});

Deno.test("the real client balances over local backends, searches a port range and reports health", async () => {
  await using tunnel = await ProcessTunnel.create();
  const second = new EchoService();
  const start = freePortRange(2);
  const taken = Deno.listen({ hostname: "127.0.0.1", port: start });
  try {
    await tunnel.server();
    const client = tunnel.client(
      await tunnel.clientConfig("client", [{
        name: "web",
        publishPort: start,
        omitLocal: true,
        lines: `publish_port_range = "${start}-${start + 1}"\n` +
          `local_backends = ["127.0.0.1:${tunnel.echo.port}", "127.0.0.1:${second.port}"]\n` +
          `lb_policy = "round_robin"\nhealth_check = { interval_secs = 0.2, timeout_secs = 0.2 }`,
      }]),
    );
    const [, port] = await client.waitForLine(proxyUp("web"));
    assert.equal(Number(port), start + 1, "the preferred port was taken, so the next port of the range");
    await client.waitForLine(/Server warning PORT_CHANGED/);
    // Health checks connect to the backends too, so count what the outside connections added.
    const before = [tunnel.echo.accepted, second.accepted];
    for (let index = 0; index < 4; index++) {
      assert.equal(await echoThrough(start + 1, `n${index}`), `n${index}`);
    }
    const added = [tunnel.echo.accepted - (before[0] ?? 0), second.accepted - (before[1] ?? 0)];
    assert.ok(added.every((count) => count >= 2), `round robin over both backends: ${added}`);
    await tunnel.echo.close();
    await second.close();
    await client.waitForLine(/Proxy web: local service .* is down/);
    await client.waitForLine(/"message":"web +unhealthy +127\.0\.0\.1:\d+ → /);
  } finally {
    taken.close();
    await second.close();
  }
});

Deno.test("the real server and client give start-up memory back once they are ready", async () => {
  await using tunnel = await ProcessTunnel.create();
  const publishPort = freePort();
  const server = new CliProcess(["-v", "server", "-c", tunnel.serverConfigPath]);
  const client = new CliProcess(
    ["-v", "client", "-c", await tunnel.clientConfig("client", [{ name: "web", publishPort }])],
    { env: FAST_RECONNECT },
  );
  try {
    await server.waitForLine(/Listening for clients on/);
    await client.waitForLine(proxyUp("web"));
    for (const process of [server, client]) {
      const [line] = await process.waitForLine(
        /Collected garbage \(start-up\) in [\d.]+ ms: heap [\d.]+ → [\d.]+ MB/,
      );
      assert.ok(line);
    }
    assert.equal(await echoThrough(publishPort, "after the collection"), "after the collection");
  } finally {
    await client.stop();
    await server.stop();
  }
});

/**
 * End-to-end tests with the real CLI: `deno run main.ts server|client` as child processes over real
 * TLS on loopback, killed, stopped and restarted like a user's processes.
 */

import assert from "node:assert/strict";
import { canBind, CliProcess, EchoService, freePort, makeWorkdir, roundTrip, waitFor } from "./_helpers.ts";

const AUTH_KEY = "process-test-key-0123456789";
/** Short reconnect delays so the tests do not wait for the 5 s default. */
const FAST_RECONNECT = { TLS_TUNNEL_RECONNECT_DELAY_SECS: "0.2" };

interface Setup {
  dir: string;
  serverConfigPath: string;
  clientConfigPath(
    name: string,
    proxies: Array<{ name: string; publishPort: number; localPort: number }>,
    extra?: string,
  ): Promise<string>;
  serverPort: number;
  cleanup(): Promise<void>;
}

async function setup(serverExtra = ""): Promise<Setup> {
  const work = await makeWorkdir();
  const serverPort = freePort();
  const serverConfigPath = `${work.dir}/server.toml`;
  await Deno.writeTextFile(
    serverConfigPath,
    `[server]\nbind_addr = "127.0.0.1"\nbind_port = ${serverPort}\ncert_path = "${work.certPath}"\n` +
      `key_path = "${work.keyPath}"\nauth_key = "${AUTH_KEY}"\nkeepalive_interval_secs = 1\nkeepalive_timeout_secs = 3\n` +
      serverExtra,
  );
  return {
    dir: work.dir,
    serverConfigPath,
    serverPort,
    async clientConfigPath(name, proxies, extra = "") {
      const path = `${work.dir}/${name}.toml`;
      await Deno.writeTextFile(
        path,
        `[client]\nserver_addr = "127.0.0.1"\nserver_port = ${serverPort}\nserver_name = "localhost"\n` +
          `ca_cert_path = "${work.caPath}"\nauth_key = "${AUTH_KEY}"\nkeepalive_interval_secs = 1\n` +
          `keepalive_timeout_secs = 3\n${extra}\n[client.reconnect]\nmax_delay_secs = 1\n\n` +
          proxies.map((proxy) =>
            `[[proxies]]\nname = "${proxy.name}"\npublish_addr = "127.0.0.1"\npublish_port = ${proxy.publishPort}\n` +
            `local_addr = "127.0.0.1"\nlocal_port = ${proxy.localPort}\n`
          ).join("\n"),
      );
      return path;
    },
    cleanup: work.cleanup,
  };
}

const LISTENING = /Listening for clients on/;
const proxyUp = (name: string) => new RegExp(`Proxy ${name}: 127\\.0\\.0\\.1:(\\d+)`);

async function echoThrough(port: number, text: string): Promise<string> {
  return new TextDecoder().decode(await roundTrip(port, new TextEncoder().encode(text)));
}

Deno.test("server releases published ports within a second after the client process is killed", async () => {
  const env = await setup();
  const echo = new EchoService();
  const publishPort = freePort();
  const server = new CliProcess(["server", "-c", env.serverConfigPath]);
  let client: CliProcess | null = null;
  try {
    await server.waitForLine(LISTENING);
    client = new CliProcess([
      "client",
      "-c",
      await env.clientConfigPath("client", [{ name: "web", publishPort, localPort: echo.port }]),
    ], { env: FAST_RECONNECT });
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
  } finally {
    await client?.stop();
    await server.stop();
    await echo.close();
    await env.cleanup();
  }
});

Deno.test("restarted client gets the same ports back", async () => {
  const env = await setup();
  const echo = new EchoService();
  const publishPort = freePort();
  const server = new CliProcess(["server", "-c", env.serverConfigPath]);
  const configPath = await env.clientConfigPath("client", [{
    name: "web",
    publishPort,
    localPort: echo.port,
  }]);
  let client: CliProcess | null = null;
  try {
    await server.waitForLine(LISTENING);
    client = new CliProcess(["client", "-c", configPath], { env: FAST_RECONNECT });
    await client.waitForLine(proxyUp("web"));
    assert.equal((await client.stop()).code, 0, "SIGTERM ends the client cleanly");
    client = new CliProcess(["client", "-c", configPath], { env: FAST_RECONNECT });
    const [, port] = await client.waitForLine(proxyUp("web"));
    assert.equal(Number(port), publishPort);
    assert.equal(await echoThrough(publishPort, "again"), "again");
  } finally {
    await client?.stop();
    await server.stop();
    await echo.close();
    await env.cleanup();
  }
});

Deno.test("client reconnects after a server restart and its ports return", async () => {
  const env = await setup();
  const echo = new EchoService();
  const publishPort = freePort();
  let server = new CliProcess(["server", "-c", env.serverConfigPath]);
  let client: CliProcess | null = null;
  try {
    await server.waitForLine(LISTENING);
    client = new CliProcess([
      "client",
      "-c",
      await env.clientConfigPath("client", [{ name: "web", publishPort, localPort: echo.port }]),
    ], { env: FAST_RECONNECT });
    await client.waitForLine(proxyUp("web"));
    server.kill("SIGKILL");
    await server.status();
    await client.waitForLine(/Reconnecting in/);
    server = new CliProcess(["server", "-c", env.serverConfigPath]);
    await server.waitForLine(LISTENING);
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
  } finally {
    await client?.stop();
    await server.stop();
    await echo.close();
    await env.cleanup();
  }
});

Deno.test("client started before the server connects once the server is up", async () => {
  const env = await setup();
  const echo = new EchoService();
  const publishPort = freePort();
  const client = new CliProcess([
    "client",
    "-c",
    await env.clientConfigPath("client", [{ name: "web", publishPort, localPort: echo.port }]),
  ], { env: FAST_RECONNECT });
  let server: CliProcess | null = null;
  try {
    await client.waitForLine(/Reconnecting in/);
    server = new CliProcess(["server", "-c", env.serverConfigPath]);
    await client.waitForLine(proxyUp("web"), 20_000);
    assert.equal(await echoThrough(publishPort, "late"), "late");
  } finally {
    await client.stop();
    await server?.stop();
    await echo.close();
    await env.cleanup();
  }
});

Deno.test("client with a wrong key exits non-zero with a clear message", async () => {
  const env = await setup();
  const server = new CliProcess(["server", "-c", env.serverConfigPath]);
  try {
    await server.waitForLine(LISTENING);
    const path = await env.clientConfigPath("client", [{ name: "web", publishPort: 0, localPort: 9 }]);
    await Deno.writeTextFile(
      path,
      (await Deno.readTextFile(path)).replace(AUTH_KEY, "a-wrong-key-0123456789"),
    );
    const client = new CliProcess(["client", "-c", path], { env: FAST_RECONNECT });
    const status = await client.status();
    assert.equal(status.code, 1, client.output);
    assert.match(client.output, /Authentication failed: the auth_key is not accepted/);
  } finally {
    await server.stop();
    await env.cleanup();
  }
});

Deno.test("a frozen client's port goes to its restarted self at once, without waiting for keepalive", async () => {
  const env = await setup();
  const echo = new EchoService();
  const publishPort = freePort();
  const server = new CliProcess(["server", "-c", env.serverConfigPath]);
  const configPath = await env.clientConfigPath("client", [{
    name: "web",
    publishPort,
    localPort: echo.port,
  }], `client_id = "frozen"`);
  let old: CliProcess | null = null;
  let fresh: CliProcess | null = null;
  try {
    await server.waitForLine(LISTENING);
    old = new CliProcess(["client", "-c", configPath], { env: FAST_RECONNECT });
    await old.waitForLine(proxyUp("web"));
    old.kill("SIGSTOP"); // half-open: the TCP connection stays up, nobody answers
    const started = performance.now();
    fresh = new CliProcess(["client", "-c", configPath], { env: FAST_RECONNECT });
    const [, port] = await fresh.waitForLine(proxyUp("web"));
    const tookMs = performance.now() - started;
    assert.equal(Number(port), publishPort);
    assert.equal(await echoThrough(publishPort, "fresh"), "fresh");
    // Well under the 3 s keepalive timeout plus process start-up.
    assert.ok(tookMs < 2900 + 2000, `took ${tookMs} ms`);
    await server.waitForLine(/replacing its previous session/);
  } finally {
    await fresh?.stop();
    await old?.stop();
    await server.stop();
    await echo.close();
    await env.cleanup();
  }
});

Deno.test("a different client takes a port from a frozen holder after a failed liveness ping", async () => {
  const env = await setup();
  const echo = new EchoService();
  const publishPort = freePort();
  const server = new CliProcess(["server", "-c", env.serverConfigPath]);
  let holder: CliProcess | null = null;
  let taker: CliProcess | null = null;
  try {
    await server.waitForLine(LISTENING);
    holder = new CliProcess([
      "client",
      "-c",
      await env.clientConfigPath(
        "holder",
        [{ name: "web", publishPort, localPort: echo.port }],
        `client_id = "holder"`,
      ),
    ], { env: FAST_RECONNECT });
    await holder.waitForLine(proxyUp("web"));
    holder.kill("SIGSTOP");
    taker = new CliProcess([
      "client",
      "-c",
      await env.clientConfigPath(
        "taker",
        [{ name: "web2", publishPort, localPort: echo.port }],
        `client_id = "taker"`,
      ),
    ], { env: FAST_RECONNECT });
    const [, port] = await taker.waitForLine(proxyUp("web2"));
    assert.equal(Number(port), publishPort);
    await server.waitForLine(/did not answer a ping/);
  } finally {
    await taker?.stop();
    await holder?.stop();
    await server.stop();
    await echo.close();
    await env.cleanup();
  }
});

Deno.test("a second live client asking for a taken port is told which client holds it", async () => {
  const env = await setup();
  const echo = new EchoService();
  const publishPort = freePort();
  const server = new CliProcess(["server", "-c", env.serverConfigPath]);
  let first: CliProcess | null = null;
  let second: CliProcess | null = null;
  try {
    await server.waitForLine(LISTENING);
    first = new CliProcess([
      "client",
      "-c",
      await env.clientConfigPath(
        "first",
        [{ name: "web", publishPort, localPort: echo.port }],
        `client_id = "first"`,
      ),
    ], { env: FAST_RECONNECT });
    await first.waitForLine(proxyUp("web"));
    second = new CliProcess([
      "client",
      "-c",
      await env.clientConfigPath(
        "second",
        [{ name: "web", publishPort, localPort: echo.port }],
        `client_id = "second"`,
      ),
    ], { env: FAST_RECONNECT });
    await second.waitForLine(/rejected \(PORT_IN_USE_BY_CLIENT\).*client 'first'/);
    assert.equal(await echoThrough(publishPort, "first still"), "first still");
  } finally {
    await second?.stop();
    await first?.stop();
    await server.stop();
    await echo.close();
    await env.cleanup();
  }
});

Deno.test("client shows the server's bind retry notices and its proxy status table", async () => {
  const env = await setup(
    `[server.bind_retry]\nmax_retries = 100\ninitial_delay_secs = 0.1\nmax_delay_secs = 0.2\n`,
  );
  const echo = new EchoService();
  const busyPort = freePort();
  let holder: Deno.TcpListener | null = Deno.listen({ hostname: "127.0.0.1", port: busyPort });
  const server = new CliProcess(["server", "-c", env.serverConfigPath]);
  let client: CliProcess | null = null;
  try {
    await server.waitForLine(LISTENING);
    client = new CliProcess([
      "client",
      "-c",
      await env.clientConfigPath("client", [
        { name: "busy", publishPort: busyPort, localPort: echo.port },
        { name: "open", publishPort: 0, localPort: echo.port },
      ]),
    ], { env: FAST_RECONNECT });
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
    await client?.stop();
    await server.stop();
    await echo.close();
    await env.cleanup();
  }
});

/**
 * The client leaving through a real outbound proxy: tinyproxy (HTTP CONNECT, with and without Basic
 * credentials) and microsocks (SOCKS5, with and without user/password), each started here on a free
 * loopback port with its own config in the test's work folder, and the real CLI as child processes.
 * Needs the Debian packages tinyproxy and microsocks (.ci/run installs them).
 */

import assert from "node:assert/strict";
import { CliProcess, freePort, waitFor } from "../testing/helpers.ts";
import { echoThrough, FAST_RECONNECT, ProcessTunnel, proxyUp } from "../testing/process_tunnel.ts";

/** Empty values read as unset: the developer's own proxy variables stay out of these tests. */
const NO_PROXY_ENV = {
  https_proxy: "",
  HTTPS_PROXY: "",
  all_proxy: "",
  ALL_PROXY: "",
  no_proxy: "",
  NO_PROXY: "",
};

/** A proxy program (tinyproxy, microsocks) in the foreground, its output collected; stopped by PID. */
class ProxyProcess implements AsyncDisposable {
  readonly #child: Deno.ChildProcess;
  readonly #pumps: Promise<void>;
  output = "";

  constructor(command: string, args: string[], readonly port: number) {
    this.#child = new Deno.Command(command, { args, stdin: "null", stdout: "piped", stderr: "piped" })
      .spawn();
    const decoder = new TextDecoder();
    const pump = async (stream: ReadableStream<Uint8Array>) => {
      for await (const chunk of stream) this.output += decoder.decode(chunk, { stream: true });
    };
    this.#pumps = Promise.all([pump(this.#child.stdout), pump(this.#child.stderr)]).then(() => {});
  }

  /** Resolves once the proxy accepts connections. */
  async ready(): Promise<this> {
    await waitFor(
      async () => {
        try {
          (await Deno.connect({ hostname: "127.0.0.1", port: this.port })).close();
          return true;
        } catch {
          return false;
        }
      },
      10_000,
      `${this.#child.pid} listening on ${this.port}`,
      50,
    );
    return this;
  }

  /** SIGTERM to this process only, then waits for it and its output. */
  async stop(): Promise<void> {
    try {
      this.#child.kill("SIGTERM");
    } catch {
      // Already exited.
    }
    await this.#child.status;
    await this.#pumps;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

/** tinyproxy on a free loopback port, allowing CONNECT to `connectPort` only; with `auth`, Basic credentials. */
async function tinyproxy(dir: string, connectPort: number, auth?: [string, string]): Promise<ProxyProcess> {
  const port = freePort();
  const config = `${dir}/tinyproxy-${port}.conf`;
  await Deno.writeTextFile(
    config,
    [
      `Port ${port}`,
      "Listen 127.0.0.1",
      "Timeout 60",
      "MaxClients 20",
      "LogLevel Connect",
      "Allow 127.0.0.1",
      `ConnectPort ${connectPort}`,
      ...(auth ? [`BasicAuth ${auth[0]} ${auth[1]}`] : []),
      "",
    ].join("\n"),
  );
  return await new ProxyProcess("tinyproxy", ["-d", "-c", config], port).ready();
}

/** microsocks on a free loopback port; with `auth`, user/password required. */
async function microsocks(auth?: [string, string], port = freePort()): Promise<ProxyProcess> {
  const args = ["-i", "127.0.0.1", "-p", String(port), ...(auth ? ["-u", auth[0], "-P", auth[1]] : [])];
  return await new ProxyProcess("microsocks", args, port).ready();
}

/** The client's exit status, or a failure (after stopping it) if it still runs after `timeoutMs`. */
async function exitStatus(client: CliProcess, timeoutMs = 20_000): Promise<Deno.CommandStatus> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), timeoutMs)));
  const status = await Promise.race([client.status(), expired]);
  clearTimeout(timer);
  if (status !== null) return status;
  await client.stop();
  assert.fail(`the client still runs after ${timeoutMs} ms:\n${client.output}`);
}

/** A client process with `extra` [client] lines and environment `env`, publishing the echo service. */
async function clientThrough(
  tunnel: ProcessTunnel,
  name: string,
  extra: string,
  env: Record<string, string> = {},
  options: { skipVerify?: boolean } = {},
): Promise<{ client: CliProcess; publishPort: number }> {
  const publishPort = freePort();
  const path = await tunnel.clientConfig(name, [{ name: "echo", publishPort }], extra, options);
  const client = new CliProcess(["client", "-c", path], {
    env: { ...FAST_RECONNECT, ...NO_PROXY_ENV, ...env },
  });
  return { client, publishPort };
}

Deno.test("tinyproxy with Basic auth: the tunnel carries bytes through HTTP CONNECT; credentials never logged", async () => {
  await using tunnel = await ProcessTunnel.create();
  await tunnel.server();
  await using proxy = await tinyproxy(tunnel.dir, tunnel.serverPort, ["alice", "s3cretPass"]);
  const { client, publishPort } = await clientThrough(
    tunnel,
    "client",
    `proxy_url = "http://alice:s3cretPass@127.0.0.1:${proxy.port}"`,
  );
  try {
    await client.waitForLine(proxyUp("echo"));
    assert.equal(await echoThrough(publishPort, "through tinyproxy"), "through tinyproxy");
    assert.match(proxy.output, new RegExp(`CONNECT 127\\.0\\.0\\.1:${tunnel.serverPort} HTTP/1\\.1`));
    assert.match(
      client.output,
      new RegExp(`Connecting to 127\\.0\\.0\\.1:\\d+ through the HTTP proxy 127\\.0\\.0\\.1:${proxy.port}`),
    );
    assert.match(client.output, /http:\/\/\*\*\*@127\.0\.0\.1/);
    assert.ok(!client.output.includes("s3cretPass"), client.output);
    assert.ok(!client.output.includes("alice"), client.output);
  } finally {
    await client.stop();
  }
});

Deno.test("tinyproxy without auth, skip_verify (node:tls over the proxy): the tunnel carries bytes", async () => {
  await using tunnel = await ProcessTunnel.create();
  await tunnel.server();
  await using proxy = await tinyproxy(tunnel.dir, tunnel.serverPort);
  const { client, publishPort } = await clientThrough(
    tunnel,
    "client",
    `proxy_url = "http://127.0.0.1:${proxy.port}"`,
    {},
    { skipVerify: true },
  );
  try {
    await client.waitForLine(proxyUp("echo"));
    assert.equal(await echoThrough(publishPort, "node:tls via CONNECT"), "node:tls via CONNECT");
    assert.match(proxy.output, new RegExp(`CONNECT 127\\.0\\.0\\.1:${tunnel.serverPort} HTTP/1\\.1`));
  } finally {
    await client.stop();
  }
});

Deno.test("a wrong or missing proxy password: the client exits 1 with the proxy's answer, without a retry loop", async () => {
  await using tunnel = await ProcessTunnel.create();
  await tunnel.server();
  await using proxy = await tinyproxy(tunnel.dir, tunnel.serverPort, ["alice", "s3cretPass"]);
  // tinyproxy answers 407 to a CONNECT without credentials, and 401 to wrong ones.
  const cases: [string, string][] = [
    ["", "407 Proxy Authentication Required; put the credentials in proxy_url"],
    ["alice:wrongPass@", "401 Unauthorized; put the credentials in proxy_url"],
  ];
  for (const [userInfo, answer] of cases) {
    const { client } = await clientThrough(
      tunnel,
      "client",
      `proxy_url = "http://${userInfo}127.0.0.1:${proxy.port}"`,
    );
    const status = await exitStatus(client);
    assert.equal(status.code, 1, client.output);
    assert.ok(
      client.output.includes(`the HTTP proxy 127.0.0.1:${proxy.port} answered ${answer}`),
      client.output,
    );
    assert.equal(client.output.match(/Connecting to /g)?.length, 1, client.output);
    assert.ok(!client.output.includes("wrongPass"), client.output);
  }
});

Deno.test("microsocks with user/password: the tunnel carries bytes; a stopped proxy is retried, not fatal", async () => {
  await using tunnel = await ProcessTunnel.create();
  await tunnel.server();
  const proxy = await microsocks(["bob", "s0cksPass"]);
  const { client, publishPort } = await clientThrough(
    tunnel,
    "client",
    `proxy_url = "socks5://bob:s0cksPass@127.0.0.1:${proxy.port}"`,
  );
  try {
    await client.waitForLine(proxyUp("echo"));
    assert.equal(await echoThrough(publishPort, "through microsocks"), "through microsocks");
    // The session really runs through microsocks: stopping it ends the session, and reconnecting is
    // refused at the proxy, retried with backoff.
    await proxy.stop();
    await client.waitForLine(
      new RegExp(`Connection to the SOCKS5 proxy 127\\.0\\.0\\.1:${proxy.port} refused`),
    );
    await client.waitForLine(/Reconnecting in/);
    assert.equal(client.exited, false, client.output);
    assert.ok(!client.output.includes("s0cksPass"), client.output);
  } finally {
    await client.stop();
    await proxy.stop();
  }
});

Deno.test("microsocks without auth carries the tunnel; a wrong SOCKS5 password exits 1 naming the hop", async () => {
  await using tunnel = await ProcessTunnel.create();
  await tunnel.server();
  await using open = await microsocks();
  const first = await clientThrough(tunnel, "open", `proxy_url = "socks5://127.0.0.1:${open.port}"`);
  try {
    await first.client.waitForLine(proxyUp("echo"));
    assert.equal(await echoThrough(first.publishPort, "socks5, no auth"), "socks5, no auth");
  } finally {
    await first.client.stop();
  }
  await using locked = await microsocks(["bob", "s0cksPass"]);
  const wrong = await clientThrough(
    tunnel,
    "wrong",
    `proxy_url = "socks5://bob:nope@127.0.0.1:${locked.port}"`,
  );
  const status = await exitStatus(wrong.client);
  assert.equal(status.code, 1, wrong.client.output);
  assert.match(
    wrong.client.output,
    new RegExp(`the SOCKS5 proxy 127\\.0\\.0\\.1:${locked.port} refused the user name and password`),
  );
});

Deno.test("without proxy_url, HTTPS_PROXY is used; NO_PROXY=127.0.0.1 bypasses it", async () => {
  await using tunnel = await ProcessTunnel.create();
  await tunnel.server();
  await using proxy = await tinyproxy(tunnel.dir, tunnel.serverPort);
  const viaEnv = await clientThrough(tunnel, "env", "", { HTTPS_PROXY: `http://127.0.0.1:${proxy.port}` });
  try {
    await viaEnv.client.waitForLine(proxyUp("echo"));
    assert.equal(await echoThrough(viaEnv.publishPort, "HTTPS_PROXY"), "HTTPS_PROXY");
    assert.match(viaEnv.client.output, /Leaving through the HTTP proxy .* from HTTPS_PROXY/);
    assert.match(proxy.output, new RegExp(`CONNECT 127\\.0\\.0\\.1:${tunnel.serverPort} HTTP/1\\.1`));
  } finally {
    await viaEnv.client.stop();
  }
  // A proxy that is not there: only the bypass lets this client through.
  const deadPort = freePort();
  const bypass = await clientThrough(tunnel, "bypass", "", {
    HTTPS_PROXY: `http://127.0.0.1:${deadPort}`,
    NO_PROXY: "localhost,127.0.0.1",
  });
  try {
    await bypass.client.waitForLine(proxyUp("echo"));
    assert.equal(await echoThrough(bypass.publishPort, "NO_PROXY"), "NO_PROXY");
    assert.match(bypass.client.output, /NO_PROXY lists 127\.0\.0\.1: connecting directly/);
    assert.doesNotMatch(bypass.client.output, / through the HTTP proxy/);
  } finally {
    await bypass.client.stop();
  }
});

for (const transport of ["wss", "http2"] as const) {
  Deno.test(
    `transport = "${transport}" through tinyproxy (Basic auth) and microsocks: the ${
      transport === "wss" ? "WebSocket" : "HTTP/2"
    } tunnel carries bytes`,
    async () => {
      await using tunnel = await ProcessTunnel.create(`transport = "${transport}"\n`);
      await tunnel.server();
      await using http = await tinyproxy(tunnel.dir, tunnel.serverPort, ["alice", "s3cretPass"]);
      await using socks = await microsocks(["bob", "s0cksPass"]);
      const urls = [
        `http://alice:s3cretPass@127.0.0.1:${http.port}`,
        `socks5://bob:s0cksPass@127.0.0.1:${socks.port}`,
      ];
      for (const [index, url] of urls.entries()) {
        const { client, publishPort } = await clientThrough(
          tunnel,
          `${transport}-${index}`,
          `transport = "${transport}"\nproxy_url = "${url}"`,
        );
        try {
          await client.waitForLine(proxyUp("echo"));
          assert.equal(
            await echoThrough(publishPort, `${transport} via ${index}`),
            `${transport} via ${index}`,
          );
          assert.match(client.output, / through the (HTTP|SOCKS5) proxy 127\.0\.0\.1:/);
        } finally {
          await client.stop();
        }
      }
      assert.match(http.output, new RegExp(`CONNECT 127\\.0\\.0\\.1:${tunnel.serverPort} HTTP/1\\.1`));
    },
  );
}

/**
 * End-to-end tests of a proxy with several local backends (`local_backends`, `lb_policy`): the server and
 * client in this process over real TLS on loopback, and the config through the real CLI.
 */

import assert from "node:assert/strict";
import { acceptedPort, TunnelFixture } from "../testing/tunnel.ts";
import { freePort, patternBytes, roundTrip } from "../testing/helpers.ts";
import { ENV_OVERRIDES } from "../lib/config/env.ts";
import { renderPrometheus } from "../lib/stats/prometheus.ts";

const ROOT = new URL("../", import.meta.url);
/** Blanks every TLS_TUNNEL_* override (empty counts as unset), so the caller's environment cannot leak in. */
const CLEAN_ENV = Object.fromEntries(ENV_OVERRIDES.map((o) => [o.name, ""]));

function backendsLine(ports: number[], policy: string): string {
  return `local_backends = [${
    ports.map((port) => `"127.0.0.1:${port}"`).join(", ")
  }]\nlb_policy = "${policy}"`;
}

/** A client of `tunnel` with one proxy "web" spread over `ports` by `policy`; returns it and its port. */
async function balancedProxy(tunnel: TunnelFixture, ports: number[], policy: string) {
  const client = await tunnel.client([
    { name: "web", publishPort: 0, localPort: 0, omitLocal: true, extra: backendsLine(ports, policy) },
  ]);
  return { client, port: acceptedPort(await client.registered, "web") };
}

/** Sends `count` connections one after another through `port`, checking that each is echoed intact. */
async function echoSequentially(port: number, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const payload = patternBytes(1024 + i, i + 1);
    const echoed = await roundTrip(port, payload, 10_000);
    assert.deepEqual(echoed, payload, `connection ${i} was not echoed intact`);
  }
}

Deno.test("round_robin spreads 10 outside connections evenly over two backends", async () => {
  await using tunnel = await TunnelFixture.start();
  const [a, b] = [tunnel.echo(), tunnel.echo()];
  const { client, port } = await balancedProxy(tunnel, [a.port, b.port], "round_robin");
  await echoSequentially(port, 10);
  assert.deepEqual([a.accepted, b.accepted], [5, 5]);
  const stats = client.client.backendPool("web")?.stats() ?? [];
  assert.deepEqual(stats.map((s) => [s.port, s.successes, s.failures]), [[a.port, 5, 0], [b.port, 5, 0]]);
  // The client's stats endpoint shows the same per backend, as JSON and as metrics.
  const snapshot = client.client.snapshot();
  assert.deepEqual(snapshot.proxies[0]?.backends?.map((backend) => [backend.address, backend.successes]), [
    [`127.0.0.1:${a.port}`, 5],
    [`127.0.0.1:${b.port}`, 5],
  ]);
  assert.match(
    renderPrometheus(snapshot),
    new RegExp(`tls_tunnel_backend_connections_total\\{proxy="web",backend="127\\.0\\.0\\.1:${b.port}"\\} 5`),
  );
});

Deno.test("a backend that is down is skipped and every connection still succeeds", async () => {
  await using tunnel = await TunnelFixture.start();
  const [a, c] = [tunnel.echo(), tunnel.echo()];
  const down = freePort();
  const { client, port } = await balancedProxy(tunnel, [a.port, down, c.port], "round_robin");
  await echoSequentially(port, 9);
  assert.equal(a.accepted + c.accepted, 9);
  assert.ok(a.accepted > 0 && c.accepted > 0, `a ${a.accepted}, c ${c.accepted}`);
  const downStats = client.client.backendPool("web")?.stats().find((s) => s.port === down);
  assert.ok(downStats, "no stats for the backend that is down");
  assert.equal(downStats.successes, 0);
  assert.ok(downStats.failures >= 1, `failures ${downStats.failures}`);
  assert.equal(client.client.proxies.get("web")?.stats.failedConnections, 0);
});

Deno.test("ip_hash sends every connection from 127.0.0.1 to one backend", async () => {
  await using tunnel = await TunnelFixture.start();
  const [a, b] = [tunnel.echo(), tunnel.echo()];
  const { port } = await balancedProxy(tunnel, [a.port, b.port], "ip_hash");
  await echoSequentially(port, 10);
  assert.deepEqual([a.accepted, b.accepted].sort((x, y) => x - y), [0, 10]);
});

async function check(text: string): Promise<{ code: number; output: string }> {
  const dir = await Deno.makeTempDir({ prefix: "tls-tunnel-lb-" });
  try {
    const file = `${dir}/client.toml`;
    await Deno.writeTextFile(file, text);
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-read", "--allow-env", "main.ts", "check", "-c", file],
      cwd: ROOT.pathname,
      env: { ...CLEAN_ENV, NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const decoder = new TextDecoder();
    return { code: output.code, output: decoder.decode(output.stdout) + decoder.decode(output.stderr) };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("check accepts local_backends and rejects local_port together with local_backends", async () => {
  const head = `[client]\nserver_addr = "tunnel.example.com"\nauth_key = "0123456789abcdef-key"\n` +
    `[[proxies]]\nname = "web"\npublish_port = 8080\n`;
  const [valid, both] = await Promise.all([
    check(`${head}local_backends = ["127.0.0.1:3000", "[::1]:3001"]\nlb_policy = "least_connections"\n`),
    check(`${head}local_port = 3000\nlocal_backends = ["127.0.0.1:3000", "127.0.0.1:3001"]\n`),
  ]);
  assert.equal(valid.code, 0, valid.output);
  assert.match(valid.output, /valid client config/);
  assert.equal(both.code, 1, both.output);
  assert.match(both.output, /proxies\[0\]\.local_port: local_port and local_backends are both set/);
});

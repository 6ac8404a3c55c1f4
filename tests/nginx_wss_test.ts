/**
 * The `"wss"` transport behind a real reverse proxy: Debian's nginx terminates TLS (with the test
 * certificate) and proxies the WebSocket upgrade to a `behind_proxy = true` server; a real client process
 * with `transport = "wss"` connects through nginx. nginx runs on a free loopback port from a config in a
 * temporary folder (`-p` prefix, `daemon off`, its pid file there) and only it is killed, by its PID. It
 * reaches the server from 127.0.0.2 (`proxy_bind`), so the client's own address (127.0.0.1, from
 * `X-Forwarded-For`) and nginx's differ. Skipped (with a note) where nginx is not installed: `.ci/run`
 * installs it.
 */

import assert from "node:assert/strict";
import type { ServerSnapshot } from "../lib/stats/snapshot.ts";
import { canBind, freePort, patternBytes, roundTrip, sha256Hex, waitFor } from "../testing/helpers.ts";
import { installedNginx, NginxProcess, webSocketProxyServer } from "../testing/nginx.ts";
import { PROCESS_AUTH_KEY, ProcessTunnel, proxyUp } from "../testing/process_tunnel.ts";

const NGINX = installedNginx();

/** The server's `/api/stats`. */
async function serverStats(statsPort: number): Promise<ServerSnapshot> {
  const response = await fetch(`http://127.0.0.1:${statsPort}/api/stats`);
  assert.equal(response.status, 200);
  return await response.json() as ServerSnapshot;
}

/** A server behind nginx with `trustedProxies`, and a wss client through nginx publishing the echo. */
async function throughNginx(
  nginxBinary: string,
  trustedProxies: string,
  run: (
    setup: { tunnel: ProcessTunnel; statsPort: number; publishPort: number; kill9: () => void },
  ) => Promise<void>,
): Promise<void> {
  const statsPort = freePort();
  await using tunnel = await ProcessTunnel.create(
    `transport = "wss"\nbehind_proxy = true\ntrusted_proxies = ${trustedProxies}\nstats_port = ${statsPort}\n`,
  );
  await tunnel.server();
  // nginx reaches the server from 127.0.0.2, so its address and the client's differ.
  await using nginx = await NginxProcess.start(nginxBinary, {
    workerConnections: 256,
    server: (site) =>
      webSocketProxyServer(site, {
        upstreamPort: tunnel.serverPort,
        certPath: `${tunnel.dir}/cert.pem`,
        keyPath: `${tunnel.dir}/key.pem`,
        bindAddress: "127.0.0.2",
      }),
  });
  const publishPort = freePort();
  const configPath = `${tunnel.dir}/wss-client.toml`;
  await Deno.writeTextFile(
    configPath,
    `[client]\nserver_addr = "127.0.0.1"\nserver_port = ${nginx.port}\nserver_name = "localhost"\n` +
      `ca_cert_path = "${tunnel.caPath}"\nauth_key = "${PROCESS_AUTH_KEY}"\ntransport = "wss"\n` +
      `keepalive_interval_secs = 1\nkeepalive_timeout_secs = 3\n\n[[proxies]]\nname = "echo"\n` +
      `publish_addr = "127.0.0.1"\npublish_port = ${publishPort}\nlocal_addr = "127.0.0.1"\n` +
      `local_port = ${tunnel.echo.port}\n`,
  );
  const client = tunnel.client(configPath);
  await client.waitForLine(proxyUp("echo"), 20_000);
  await run({ tunnel, statsPort, publishPort, kill9: () => client.kill("SIGKILL") });
}

Deno.test({
  name: "nginx: a wss client through nginx carries 64 MiB each way (sha256), half-closes, shows its own " +
    "address in /api/stats, and its port is released when it is killed -9",
  ignore: NGINX === undefined,
  fn: async () => {
    await throughNginx(NGINX ?? "", `["127.0.0.2"]`, async ({ statsPort, publishPort, kill9 }) => {
      // roundTrip writes everything, half-closes, and reads the echo to its end: the half-close has to
      // cross nginx and the tunnel for the echo to end.
      const data = patternBytes(64 * 1024 * 1024, 21);
      const startedMs = performance.now();
      const echoed = await roundTrip(publishPort, data, 120_000);
      const seconds = (performance.now() - startedMs) / 1000;
      assert.equal(echoed.length, data.length);
      assert.equal(await sha256Hex(echoed), await sha256Hex(data));
      console.log(`64 MiB each way through nginx + wss in ${seconds.toFixed(2)} s`);

      const stats = await serverStats(statsPort);
      assert.equal(stats.clients.length, 1);
      // The client's own address from X-Forwarded-For (nginx reaches the server from 127.0.0.2).
      assert.equal(stats.clients[0]?.remote_addr, "127.0.0.1");

      kill9();
      await waitFor(() => canBind(publishPort), 10_000, "the published port to be released");
    });
  },
});

Deno.test({
  name: "nginx: X-Forwarded-For from a peer outside trusted_proxies is ignored (nginx's own address shows)",
  ignore: NGINX === undefined,
  fn: async () => {
    await throughNginx(NGINX ?? "", `["10.9.9.9"]`, async ({ statsPort }) => {
      const stats = await serverStats(statsPort);
      assert.match(stats.clients[0]?.remote_addr ?? "", /^127\.0\.0\.2:\d+$/);
    });
  },
});

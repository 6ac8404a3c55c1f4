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
import { PROCESS_AUTH_KEY, ProcessTunnel, proxyUp } from "../testing/process_tunnel.ts";

const NGINX = ["/usr/sbin/nginx", "/usr/bin/nginx"].find((path) => {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
});

/** nginx in front of `upstreamPort`, on its own port, killed by PID on dispose. */
class Nginx implements AsyncDisposable {
  private constructor(readonly port: number, readonly child: Deno.ChildProcess, readonly dir: string) {}

  static async start(
    binary: string,
    options: { upstreamPort: number; certPath: string; keyPath: string },
  ): Promise<Nginx> {
    const dir = await Deno.makeTempDir({ prefix: "tls-tunnel-nginx-" });
    const port = freePort();
    const temp = (name: string) => `${name} ${dir}/${name.replace("_temp_path", "")};`;
    await Deno.writeTextFile(
      `${dir}/nginx.conf`,
      `daemon off;
master_process on;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  ${temp("client_body_temp_path")}
  ${temp("proxy_temp_path")}
  ${temp("fastcgi_temp_path")}
  ${temp("uwsgi_temp_path")}
  ${temp("scgi_temp_path")}
  server {
    listen 127.0.0.1:${port} ssl;
    server_name localhost;
    ssl_certificate ${options.certPath};
    ssl_certificate_key ${options.keyPath};
    location /tunnel {
      proxy_pass http://127.0.0.1:${options.upstreamPort};
      proxy_bind 127.0.0.2;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_read_timeout 3600s;
      proxy_send_timeout 3600s;
      proxy_buffering off;
    }
  }
}
`,
    );
    const child = new Deno.Command(binary, {
      args: ["-p", dir, "-c", `${dir}/nginx.conf`, "-e", `${dir}/error.log`],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const nginx = new Nginx(port, child, dir);
    try {
      await waitFor(() => !canBind(port), 10_000, "nginx to listen");
    } catch (error) {
      await nginx[Symbol.asyncDispose]();
      throw error;
    }
    return nginx;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.child.kill("SIGTERM");
    } catch {
      // Already gone.
    }
    const stderr = new Response(this.child.stderr).text();
    const timer = setTimeout(() => {
      try {
        this.child.kill("SIGKILL");
      } catch {
        // Already gone.
      }
    }, 5000);
    await this.child.status;
    clearTimeout(timer);
    await stderr;
    await Deno.remove(this.dir, { recursive: true });
  }
}

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
  await using nginx = await Nginx.start(nginxBinary, {
    upstreamPort: tunnel.serverPort,
    certPath: `${tunnel.dir}/cert.pem`,
    keyPath: `${tunnel.dir}/key.pem`,
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

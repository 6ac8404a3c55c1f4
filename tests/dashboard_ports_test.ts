/**
 * The server dashboard's vhost and listener cards in headless Chromium, with a real server process
 * (a tls listener from `[server]`, a wss one from `[[server.listeners]]`, an HTTP vhost port) and a real
 * client publishing an `http` proxy for `app.test`: one request routed (200), one for a host nobody
 * serves (503). Needs Debian's `chromium` (installed by `.ci/run`).
 */

import assert from "node:assert/strict";
import { CliProcess, freePort, makeWorkdir, PROJECT_ROOT, waitFor } from "../testing/helpers.ts";
import type { ServedStats } from "../lib/stats/http.ts";
import type { ServerSnapshot } from "../lib/stats/snapshot.ts";

const CHROMIUM_PATH = "/usr/bin/chromium";
const AUTH_KEY = "dashboard-ports-key-0123456789";

/** Sends one HTTP/1.1 request with `host` to 127.0.0.1:`port`; returns the status code. */
async function requestStatus(port: number, host: string): Promise<number> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(
      new TextEncoder().encode(`GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`),
    );
    const text = await new Response(conn.readable).text();
    const match = /^HTTP\/1\.1 (\d{3})/.exec(text);
    if (match === null) throw new Error(`no HTTP status line from the vhost port: ${text.slice(0, 200)}`);
    return Number(match[1]);
  } finally {
    try {
      conn.close();
    } catch {
      // The readable's end closed it.
    }
  }
}

Deno.test("the server dashboard in Chromium lists the vhost route with its requests by status and both tunnel listeners", async () => {
  await Deno.stat(CHROMIUM_PATH).catch(() => {
    throw new Error(
      `Chromium is not installed at ${CHROMIUM_PATH}; install it with apt-get install -y chromium`,
    );
  });
  const work = await makeWorkdir();
  const backend = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () => new Response("ok\n"),
  );
  const tlsPort = freePort();
  let wssPort = freePort();
  while (wssPort === tlsPort) wssPort = freePort();
  const httpPort = freePort();
  const statsPort = freePort();
  const processes: CliProcess[] = [];
  try {
    await Deno.writeTextFile(
      `${work.dir}/server.toml`,
      `[server]\nbind_addr = "127.0.0.1"\nbind_port = ${tlsPort}\ncert_path = "${work.certPath}"\n` +
        `key_path = "${work.keyPath}"\nauth_key = "${AUTH_KEY}"\nstats_addr = "127.0.0.1"\n` +
        `stats_port = ${statsPort}\nvhost_http_addr = "127.0.0.1"\nvhost_http_port = ${httpPort}\n\n` +
        `[[server.listeners]]\ntransport = "wss"\nbind_addr = "127.0.0.1"\nbind_port = ${wssPort}\n`,
      { mode: 0o600 },
    );
    await Deno.writeTextFile(
      `${work.dir}/client.toml`,
      `[client]\nserver_addr = "127.0.0.1"\nserver_port = ${tlsPort}\nserver_name = "localhost"\n` +
        `ca_cert_path = "${work.caPath}"\nauth_key = "${AUTH_KEY}"\nclient_id = "alpha"\n\n` +
        `[[proxies]]\nname = "web"\nproxy_type = "http"\ncustom_domains = ["app.test"]\n` +
        `local_addr = "127.0.0.1"\nlocal_port = ${backend.addr.port}\n`,
      { mode: 0o600 },
    );
    const server = new CliProcess(["server", "-c", `${work.dir}/server.toml`]);
    processes.push(server);
    const [, statsUrl = ""] = await server.waitForLine(/"url":"(http:[^"]+)"/);
    processes.push(new CliProcess(["client", "-c", `${work.dir}/client.toml`]));
    await waitFor(
      async () => {
        const stats = await (await fetch(new URL("api/stats", statsUrl))).json() as
          & ServerSnapshot
          & ServedStats;
        return (stats.vhost?.route_list ?? []).some((route) => route.host === "app.test");
      },
      15_000,
      "the client's http proxy to be routed",
      50,
    );
    assert.equal(await requestStatus(httpPort, "app.test"), 200);
    assert.equal(await requestStatus(httpPort, "nobody.test"), 503);

    const artifacts = `${PROJECT_ROOT}tests/artifacts`;
    await Deno.mkdir(artifacts, { recursive: true });
    const listeners = [`tls 127.0.0.1:${tlsPort}`, `wss 127.0.0.1:${wssPort}`];
    const output = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--quiet",
        "-A",
        "testing/dashboard_ports_browser.ts",
        JSON.stringify({
          url: statsUrl,
          chromium: CHROMIUM_PATH,
          artifacts,
          host: "app.test",
          client: "alpha",
          proxy: "web",
          listeners,
        }),
      ],
      cwd: PROJECT_ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(output.stdout).trim();
    const report = JSON.parse(stdout.split("\n").at(-1) ?? "{}") as {
      ok?: boolean;
      error?: string;
      listeners?: string;
      errors?: string[];
    };
    assert.equal(report.error, undefined, `${report.error}\n${new TextDecoder().decode(output.stderr)}`);
    assert.equal(output.code, 0);
    assert.deepEqual(report.errors, [], "no script errors in the page");
    // The client came in over tls: one connection and one session there, none on wss.
    assert.match(report.listeners ?? "", /tls\s+127\.0\.0\.1:\d+\s+–\s+1\s+1/);
    assert.match(report.listeners ?? "", /wss\s+127\.0\.0\.1:\d+\s+\/tunnel\s+0\s+0/);
  } finally {
    for (const process of processes.reverse()) await process.stop();
    await backend.shutdown();
    await work.cleanup();
  }
});

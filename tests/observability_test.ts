/**
 * Observability end to end, as a person would use it: the real `server` and `client` programs with
 * their stats endpoints, known traffic through a published echo port, then the JSON, the Prometheus
 * text, the health check, the token, `top` (piped and in a real terminal under tmux) and the dashboard
 * in headless Chromium, which must notice a SIGKILLed client without a reload.
 *
 * Needs Debian's `chromium` (installed by `.ci/run`); the dashboard test fails when it is missing.
 */

import assert from "node:assert/strict";
import {
  CliProcess,
  EchoService,
  freePort,
  makeWorkdir,
  patternBytes,
  PROJECT_ROOT,
  roundTrip,
  sha256Hex,
  waitFor,
} from "../testing/helpers.ts";
import { closeQuietly } from "../lib/transport/pipe.ts";
import { writeAll } from "../lib/net/conn.ts";
import type { ServedStats } from "../lib/stats/http.ts";
import type { ClientRoleSnapshot, ServerSnapshot } from "../lib/stats/snapshot.ts";
import { parseExposition } from "../testing/stats_fixtures.ts";
import { expositionProblems, promtoolProblems } from "../testing/exposition_lint.ts";

const AUTH_KEY = "observability-key-0123456789";
const STATS_TOKEN = "observability-stats-token-0123456789";
const CLIENT_ID = "office";
const OFFLINE_CLIENT = "branch";
const CHROMIUM_PATH = "/usr/bin/chromium";
const ARTIFACTS = `${PROJECT_ROOT}tests/artifacts`;
const MIB = 1024 * 1024;

/** A server and a client, both with stats endpoints, and the echo service the client publishes. */
interface Tunnel {
  server: CliProcess;
  client: CliProcess;
  echo: EchoService;
  serverStatsUrl: string;
  clientStatsUrl: string;
  publishPort: number;
  /** The server's config file (for `top -c`). */
  serverConfig: string;
  /** The client's config file (to start the client again). */
  clientConfig: string;
  /** Stops everything started (whatever already stopped is skipped) and removes the work folder. */
  close(): Promise<void>;
}

async function startTunnel(): Promise<Tunnel> {
  const work = await makeWorkdir();
  const echo = new EchoService();
  const tunnelPort = freePort();
  const serverStatsPort = freePort();
  const clientStatsPort = freePort();
  const publishPort = freePort();
  const serverConfig = `${work.dir}/server.toml`;
  const clientConfig = `${work.dir}/client.toml`;
  await Deno.writeTextFile(
    serverConfig,
    `[server]\nbind_addr = "127.0.0.1"\nbind_port = ${tunnelPort}\ncert_path = "${work.certPath}"\n` +
      `key_path = "${work.keyPath}"\nauth_key = "${AUTH_KEY}"\nkeepalive_interval_secs = 1\n` +
      `keepalive_timeout_secs = 5\nstats_addr = "127.0.0.1"\nstats_port = ${serverStatsPort}\n` +
      `stats_token = "${STATS_TOKEN}"\n\n` +
      // A configured client that never connects: the dashboard lists it as offline.
      `[[server.clients]]\nname = "${OFFLINE_CLIENT}"\nauth_key = "branch-key-0123456789abcdef"\n`,
  );
  await Deno.writeTextFile(
    clientConfig,
    `[client]\nserver_addr = "127.0.0.1"\nserver_port = ${tunnelPort}\nserver_name = "localhost"\n` +
      `ca_cert_path = "${work.caPath}"\nauth_key = "${AUTH_KEY}"\nclient_id = "${CLIENT_ID}"\n` +
      `keepalive_interval_secs = 1\nkeepalive_timeout_secs = 5\nstats_port = ${clientStatsPort}\n\n` +
      `[[proxies]]\nname = "web"\npublish_addr = "127.0.0.1"\npublish_port = ${publishPort}\n` +
      `local_addr = "127.0.0.1"\nlocal_port = ${echo.port}\n`,
  );
  const server = new CliProcess(["server", "-c", serverConfig]);
  let client: CliProcess | null = null;
  const close = async () => {
    await client?.stop();
    await server.stop();
    await echo.close();
    await work.cleanup();
  };
  try {
    await server.waitForLine(/Listening for clients on/);
    const [, serverStatsUrl = ""] = await server.waitForLine(/"url":"(http:[^"]+)"/);
    client = new CliProcess(["client", "-c", clientConfig]);
    const [, clientStatsUrl = ""] = await client.waitForLine(/"url":"(http:[^"]+)"/);
    const tunnel = {
      server,
      client,
      echo,
      serverStatsUrl,
      clientStatsUrl,
      publishPort,
      serverConfig,
      clientConfig,
      close,
    };
    await waitFor(
      async () => {
        const stats = await getJson<ServerSnapshot>(serverStatsUrl, "api/stats", STATS_TOKEN);
        return stats.clients[0]?.proxies[0]?.status === "healthy";
      },
      15_000,
      "the client's proxy to be healthy on the server",
      50,
    );
    return tunnel;
  } catch (error) {
    await close();
    throw error;
  }
}

async function get(base: string, path: string, token?: string): Promise<Response> {
  return await fetch(new URL(path, base), {
    headers: token !== undefined ? { authorization: `Bearer ${token}` } : {},
  });
}

async function getJson<T>(base: string, path: string, token?: string): Promise<ServedStats & T> {
  const response = await get(base, path, token);
  assert.equal(response.status, 200, `GET ${path}`);
  return await response.json() as ServedStats & T;
}

async function getText(base: string, path: string, token?: string): Promise<string> {
  const response = await get(base, path, token);
  assert.equal(response.status, 200, `GET ${path}`);
  return await response.text();
}

/**
 * `tls-tunnel top ARGS` piped, in the text log format as a person runs it (CliProcess runs with
 * `--log-format json`, where top prints one record instead of the table): exit code, stdout, and both
 * streams together.
 */
async function runTop(args: string[]): Promise<{ code: number; stdout: string; output: string }> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "--allow-net", "--allow-read", "--allow-env", "main.ts", "top", ...args],
    cwd: PROJECT_ROOT,
    env: { NO_COLOR: "1" },
    stdin: "null",
  }).output();
  const text = new TextDecoder().decode(stdout);
  return { code, stdout: text, output: text + new TextDecoder().decode(stderr) };
}

/** Sends `bytes` through the published port and checks the echo. */
async function echoThrough(port: number, bytes: Uint8Array): Promise<void> {
  const echoed = await roundTrip(port, bytes, 20_000);
  assert.equal(echoed.length, bytes.length);
  assert.equal(await sha256Hex(new Uint8Array(echoed)), await sha256Hex(new Uint8Array(bytes)));
}

/** Reads exactly `length` bytes. */
async function readExactly(conn: Deno.Conn, length: number): Promise<void> {
  const buffer = new Uint8Array(64 * 1024);
  let received = 0;
  while (received < length) {
    const count = await conn.read(buffer.subarray(0, Math.min(buffer.length, length - received)));
    if (count === null) throw new Error(`connection ended after ${received} of ${length} bytes`);
    received += count;
  }
}

Deno.test("stats endpoints report known traffic through the real programs, live and at close", async () => {
  const tunnel = await startTunnel();
  const { serverStatsUrl, clientStatsUrl } = tunnel;
  const startedMs = Date.now();
  try {
    // 1 MiB then 1 KiB, each on its own connection, closed.
    await echoThrough(tunnel.publishPort, patternBytes(MIB, 1));
    await echoThrough(tunnel.publishPort, patternBytes(1024, 2));
    const closedBytes = MIB + 1024;

    // A third connection stays open with 256 KiB echoed: its bytes must count before it closes.
    const open = await Deno.connect({ hostname: "127.0.0.1", port: tunnel.publishPort });
    try {
      await writeAll(open, patternBytes(256 * 1024, 3));
      await readExactly(open, 256 * 1024);
      await waitFor(
        async () => {
          const live = await getJson<ServerSnapshot>(serverStatsUrl, "api/stats", STATS_TOKEN);
          const web = live.clients[0]?.proxies[0];
          return web?.active_connections === 1 && web.bytes_out === closedBytes + 256 * 1024;
        },
        5000,
        "the open connection's bytes to be counted while it is open",
        20,
      );
      const live = await getJson<ServerSnapshot>(serverStatsUrl, "api/stats", STATS_TOKEN);
      const web = live.clients[0]?.proxies[0];
      assert.equal(web?.bytes_in, closedBytes + 256 * 1024);
      assert.equal(web?.total_connections, 3);
    } finally {
      closeQuietly(open);
    }
    const totalBytes = closedBytes + 256 * 1024;

    // The server's JSON, once every connection has closed.
    await waitFor(
      async () =>
        (await getJson<ServerSnapshot>(serverStatsUrl, "api/stats", STATS_TOKEN)).clients[0]?.proxies[0]
          ?.active_connections === 0,
      5000,
      "the connections to close",
    );
    // rtt comes from the 1 s keepalive; wait for the first measurement.
    await waitFor(
      async () =>
        (await getJson<ServerSnapshot>(serverStatsUrl, "api/stats", STATS_TOKEN)).clients[0]?.rtt_ms !== null,
      5000,
      "a keepalive round trip",
      100,
    );
    const stats = await getJson<ServerSnapshot>(serverStatsUrl, "api/stats", STATS_TOKEN);
    assert.equal(stats.role, "server");
    assert.equal(stats.clients.length, 1);
    const client = stats.clients[0];
    assert.ok(client);
    assert.equal(client.name, CLIENT_ID);
    assert.equal(client.client_id, CLIENT_ID);
    assert.match(client.remote_addr, /^127\.0\.0\.1:\d+$/);
    assert.ok(client.connected_since_ms <= startedMs && client.connected_since_ms > startedMs - 30_000);
    assert.equal(typeof client.rtt_ms, "number");
    assert.ok((client.rtt_ms ?? -1) >= 0 && (client.rtt_ms ?? Infinity) < 1000);
    // The last hour's throughput is checked on its own (its buckets depend on the minute the test runs in).
    const lastHour = client.proxies.map(({ throughput }) => throughput);
    assert.deepEqual(client.proxies.map(({ throughput: _, ...proxy }) => proxy), [{
      name: "web",
      publish_addr: "127.0.0.1",
      publish_port: tunnel.publishPort,
      local_addr: "127.0.0.1",
      local_port: tunnel.echo.port,
      status: "healthy",
      last_error: null,
      active_connections: 0,
      total_connections: 3,
      failed_connections: 0,
      bind_retries: 0,
      bytes_in: totalBytes,
      bytes_out: totalBytes,
    }]);
    assert.equal(lastHour[0]?.bucket_secs, 60);
    assert.equal(Math.round(lastHour[0]?.bytes_out.reduce((sum, bytes) => sum + bytes, 0) ?? 0), totalBytes);
    assert.deepEqual(stats.offline_clients, [{ name: OFFLINE_CLIENT, last_seen_ms: null }]);
    assert.equal(stats.sessions_total, 1);
    assert.equal(stats.auth_failures_total, 0);
    assert.equal(stats.stream_open_latency.count, 3, "one stream opened per outside connection");
    assert.ok(
      stats.recent_events.some((event) => event.code === "CLIENT_CONNECTED" && event.client === CLIENT_ID),
    );

    // Prometheus: the same numbers under conventional names.
    const metrics = parseExposition(await getText(serverStatsUrl, "metrics", STATS_TOKEN));
    const sample = (name: string, labels: Record<string, string> = {}) => {
      const found = metrics.samples.find((candidate) =>
        candidate.name === name &&
        Object.entries(labels).every(([key, want]) => candidate.labels[key] === want)
      );
      assert.ok(found, `${name}${JSON.stringify(labels)} is exported`);
      return found.value;
    };
    const web = { client: CLIENT_ID, proxy: "web" };
    assert.equal(sample("tls_tunnel_clients_connected"), 1);
    assert.equal(sample("tls_tunnel_sessions_total"), 1);
    assert.equal(sample("tls_tunnel_auth_failures_total"), 0);
    assert.equal(sample("tls_tunnel_streams_active"), 1, "only the control stream is open");
    assert.equal(sample("tls_tunnel_proxy_connections_total", web), 3);
    assert.equal(sample("tls_tunnel_proxy_connections_active", web), 0);
    assert.equal(sample("tls_tunnel_proxy_connections_failed_total", web), 0);
    assert.equal(sample("tls_tunnel_proxy_received_bytes_total", web), totalBytes);
    assert.equal(sample("tls_tunnel_proxy_sent_bytes_total", web), totalBytes);
    assert.equal(sample("tls_tunnel_proxy_up", web), 1);
    assert.equal(sample("tls_tunnel_proxy_status", { ...web, status: "healthy" }), 1);
    assert.equal(sample("tls_tunnel_stream_open_latency_seconds_count"), 3);
    assert.equal(sample("tls_tunnel_stream_open_latency_seconds_bucket", { le: "+Inf" }), 3);
    assert.equal(metrics.types.get("tls_tunnel_stream_open_latency_seconds"), "histogram");
    // The real scrapes of both roles pass the strict format check (promtool too, when installed),
    // carry the process metrics read from /proc, and no peer address.
    for (const [url, token] of [[serverStatsUrl, STATS_TOKEN], [clientStatsUrl, undefined]] as const) {
      const text = await getText(url, "metrics", token);
      assert.deepEqual(expositionProblems(text), [], text);
      const promtool = await promtoolProblems(text);
      if (promtool !== null) assert.deepEqual(promtool, [], text);
      const scraped = parseExposition(text);
      // process_open_fds needs /proc, which Deno 2.9 opens only to --allow-all: left out here.
      for (const name of ["process_resident_memory_bytes", "process_start_time_seconds"]) {
        const found = scraped.samples.find((candidate) => candidate.name === name)?.value ?? 0;
        assert.ok(found > 0, `${name} is exported on ${url}`);
      }
      assert.ok(scraped.samples.some((candidate) => candidate.name === "process_cpu_seconds_total"));
      assert.doesNotMatch(text, /remote_addr/);
    }

    // The token guards data, not health.
    for (const path of ["api/stats", "metrics"]) {
      const anonymous = await get(serverStatsUrl, path);
      assert.equal(anonymous.status, 401, `${path} without the token`);
      await anonymous.body?.cancel();
    }
    const health = await get(serverStatsUrl, "healthz");
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { status: "ok", role: "server", clients: 1 });

    // The client's own endpoint (loopback, no token): same counters, its state.
    const own = await getJson<ClientRoleSnapshot>(clientStatsUrl, "api/stats");
    assert.equal(own.role, "client");
    assert.equal(own.state, "connected");
    assert.equal(own.next_attempt_at_ms, null);
    assert.equal(own.sessions_total, 1);
    assert.equal(own.proxies.length, 1);
    assert.equal(own.proxies[0]?.status, "healthy");
    assert.equal(own.proxies[0]?.publish_port, tunnel.publishPort);
    assert.equal(own.proxies[0]?.total_connections, 3);
    assert.equal(own.proxies[0]?.bytes_in, totalBytes);
    assert.equal(own.proxies[0]?.bytes_out, totalBytes);
    const clientMetrics = parseExposition(await getText(clientStatsUrl, "metrics"));
    const clientSample = (name: string, labels: Record<string, string> = {}) =>
      clientMetrics.samples.find((candidate) =>
        candidate.name === name &&
        Object.entries(labels).every(([key, want]) => candidate.labels[key] === want)
      )?.value;
    assert.equal(clientSample("tls_tunnel_client_connected"), 1);
    assert.equal(clientSample("tls_tunnel_client_connect_failures_total"), 0);
    assert.equal(clientSample("tls_tunnel_client_state", { state: "connected" }), 1);
    assert.equal(clientSample("tls_tunnel_proxy_received_bytes_total", { proxy: "web" }), totalBytes);
    assert.deepEqual(await (await get(clientStatsUrl, "healthz")).json(), {
      status: "ok",
      role: "client",
      state: "connected",
    });

    // `top` piped: one plain table with exact counters, exit 0.
    const top = await runTop(["-u", serverStatsUrl, "--token", STATS_TOKEN]);
    assert.equal(top.code, 0, top.output);
    assert.match(top.stdout, /^tls-tunnel server \S+ on 127\.0\.0\.1:\d+: 1 client\(s\) connected/);
    assert.match(top.stdout, new RegExp(`\\n${CLIENT_ID}\\s+${CLIENT_ID}\\s+127\\.0\\.0\\.1:\\d+\\s`));
    assert.match(
      top.stdout,
      new RegExp(
        `\\n${CLIENT_ID}\\s+web\\s+healthy\\s+127\\.0\\.0\\.1:${tunnel.publishPort}\\s+127\\.0\\.0\\.1:${tunnel.echo.port}` +
          `\\s+0\\s+3\\s+0\\s+${totalBytes}\\s+${totalBytes}\\s+-\\n`,
      ),
    );
    // `top -c FILE` finds the endpoint and its token in the server's config.
    const fromConfig = await runTop(["-c", tunnel.serverConfig]);
    assert.equal(fromConfig.code, 0, fromConfig.output);
    assert.match(fromConfig.stdout, /^tls-tunnel server \S+ on 127\.0\.0\.1:\d+: 1 client\(s\) connected/);
    assert.match(
      fromConfig.stdout,
      new RegExp(`\\n${CLIENT_ID}\\s+web\\s+healthy\\s.*\\s${totalBytes}\\s+${totalBytes}\\s`),
    );
    const refused = await runTop(["-u", serverStatsUrl]);
    assert.equal(refused.code, 1);
    assert.match(refused.output, /needs a token; pass --token/);

    // The client dies: the server's stats drop it and say so.
    tunnel.client.kill("SIGKILL");
    await tunnel.client.status();
    await waitFor(
      async () =>
        (await getJson<ServerSnapshot>(serverStatsUrl, "api/stats", STATS_TOKEN)).clients.length === 0,
      3000,
      "the killed client to leave the server's stats",
      20,
    );
    const after = await getJson<ServerSnapshot>(serverStatsUrl, "api/stats", STATS_TOKEN);
    assert.ok(
      after.recent_events.some((event) => event.code === "CLIENT_DISCONNECTED" && event.client === CLIENT_ID),
    );
    const afterMetrics = parseExposition(await getText(serverStatsUrl, "metrics", STATS_TOKEN));
    assert.equal(afterMetrics.samples.find((s) => s.name === "tls_tunnel_clients_connected")?.value, 0);
    assert.equal(afterMetrics.samples.find((s) => s.name === "tls_tunnel_sessions_total")?.value, 1);
  } finally {
    await tunnel.close();
  }
});

Deno.test("a client that reconnects keeps its proxy's counters and last-hour throughput on the server", async () => {
  const tunnel = await startTunnel();
  let again: CliProcess | null = null;
  try {
    await echoThrough(tunnel.publishPort, patternBytes(MIB, 6));
    tunnel.client.kill("SIGKILL");
    await tunnel.client.status();
    await waitFor(
      async () =>
        (await getJson<ServerSnapshot>(tunnel.serverStatsUrl, "api/stats", STATS_TOKEN)).clients.length === 0,
      5000,
      "the killed client to leave the server's stats",
      20,
    );
    again = new CliProcess(["client", "-c", tunnel.clientConfig]);
    let web: ServerSnapshot["clients"][number]["proxies"][number] | undefined;
    await waitFor(
      async () => {
        const stats = await getJson<ServerSnapshot>(tunnel.serverStatsUrl, "api/stats", STATS_TOKEN);
        web = stats.clients[0]?.proxies[0];
        return web?.status === "healthy";
      },
      15_000,
      "the restarted client's proxy to be healthy",
      50,
    );
    await echoThrough(tunnel.publishPort, patternBytes(MIB, 7));
    const stats = await getJson<ServerSnapshot>(tunnel.serverStatsUrl, "api/stats", STATS_TOKEN);
    web = stats.clients[0]?.proxies[0];
    assert.equal(stats.sessions_total, 2, "a new session");
    assert.equal(web?.total_connections, 2, "both sessions' connections");
    assert.equal(web?.bytes_in, 2 * MIB);
    assert.equal(web?.bytes_out, 2 * MIB);
    const lastHour = web?.throughput;
    assert.ok(lastHour, "the proxy carries its throughput history");
    assert.equal(lastHour.bytes_in.length, 60);
    assert.equal(Math.round(lastHour.bytes_in.reduce((sum, bytes) => sum + bytes, 0)), 2 * MIB);
    const metrics = parseExposition(await getText(tunnel.serverStatsUrl, "metrics", STATS_TOKEN));
    const received = metrics.samples.find((sample) =>
      sample.name === "tls_tunnel_proxy_received_bytes_total" && sample.labels.proxy === "web"
    );
    assert.equal(received?.value, 2 * MIB, "the Prometheus counter did not drop to zero");
  } finally {
    await again?.stop();
    await tunnel.close();
  }
});

Deno.test("the client's endpoint and top show the reconnect countdown while the server is gone", async () => {
  const tunnel = await startTunnel();
  try {
    tunnel.server.kill("SIGKILL");
    await tunnel.server.status();
    // The first two retries come within about 1.5 s; then the client waits 5 s ± 20 %, long enough to
    // look at it from every side below.
    let stats = await getJson<ClientRoleSnapshot>(tunnel.clientStatsUrl, "api/stats");
    await waitFor(
      async () => {
        stats = await getJson<ClientRoleSnapshot>(tunnel.clientStatsUrl, "api/stats");
        return stats.state === "waiting" && (stats.next_attempt_at_ms ?? 0) - stats.now_ms > 2000;
      },
      8000,
      "the client to wait before reconnecting",
      20,
    );
    assert.ok(
      stats.next_attempt_at_ms !== null && stats.next_attempt_at_ms > stats.now_ms,
      "a countdown is due",
    );
    // The default first delay is 5 s with ±20 % jitter.
    assert.ok((stats.next_attempt_at_ms ?? 0) - stats.now_ms <= 6000);
    assert.equal(stats.proxies[0]?.status, "pending", "the proxy waits for the next session");
    assert.ok(stats.recent_events.some((event) => event.code === "DISCONNECTED"));
    const metrics = parseExposition(await getText(tunnel.clientStatsUrl, "metrics"));
    const value = (name: string, labels: Record<string, string> = {}) =>
      metrics.samples.find((sample) =>
        sample.name === name && Object.entries(labels).every(([key, want]) => sample.labels[key] === want)
      )?.value;
    assert.equal(value("tls_tunnel_client_connected"), 0);
    assert.equal(value("tls_tunnel_client_state", { state: "waiting" }), 1);
    assert.ok((value("tls_tunnel_client_next_attempt_seconds") ?? 0) > 0);
    assert.equal(value("tls_tunnel_proxy_up", { proxy: "web" }), 0);
    const top = await runTop(["-u", tunnel.clientStatsUrl]);
    assert.equal(top.code, 0, top.output);
    assert.match(
      top.stdout,
      /^tls-tunnel client \S+, server 127\.0\.0\.1:\d+: waiting, reconnecting in \d\.\d s;/,
    );
    assert.match(top.stdout, /\nweb\s+pending\s/);
  } finally {
    await tunnel.close();
  }
});

/** The browser driver (`_dashboard_browser.ts`) as a child process, stepped through stdin/stdout lines. */
class BrowserDriver {
  readonly #child: Deno.ChildProcess;
  readonly #lines: ReadableStreamDefaultReader<string>;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #stderr: Promise<string>;
  #pending = "";

  constructor(options: Record<string, unknown>) {
    this.#child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--quiet", "-A", "testing/dashboard_browser.ts", JSON.stringify(options)],
      cwd: PROJECT_ROOT,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#lines = this.#child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    this.#writer = this.#child.stdin.getWriter();
    this.#stderr = new Response(this.#child.stderr).text();
  }

  /** Waits for the driver to report `step`; throws with its error (and stderr) otherwise. */
  async expect(step: string, timeoutMs = 20_000): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      const newline = this.#pending.indexOf("\n");
      if (newline >= 0) {
        const line = this.#pending.slice(0, newline);
        this.#pending = this.#pending.slice(newline + 1);
        const message = JSON.parse(line) as Record<string, unknown>;
        if (message.step === step) return message;
        throw new Error(`The dashboard check failed: ${message.error ?? line}`);
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      const read = await Promise.race([
        this.#lines.read(),
        new Promise<"timeout">((
          resolve,
        ) => (timer = setTimeout(() => resolve("timeout"), deadline - Date.now()))),
      ]).finally(() => clearTimeout(timer));
      if (read === "timeout") {
        throw new Error(`The browser driver did not report '${step}' in ${timeoutMs} ms`);
      }
      if (read.done) {
        throw new Error(`The browser driver ended before '${step}':\n${await this.#stderr}`);
      }
      this.#pending += read.value;
    }
  }

  /** Tells the driver the test did its part. */
  async tell(line: string): Promise<void> {
    await this.#writer.write(new TextEncoder().encode(line + "\n"));
  }

  /** Ends the driver (killing it if it is still running) and waits for it. */
  async close(): Promise<Deno.CommandStatus> {
    await this.#writer.close().catch(() => {});
    let timer: ReturnType<typeof setTimeout> | undefined;
    const status = await Promise.race([
      this.#child.status,
      new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), 10_000))),
    ]).finally(() => clearTimeout(timer));
    if (status === null) {
      try {
        this.#child.kill("SIGKILL");
      } catch {
        // Exited meanwhile.
      }
    }
    await this.#lines.cancel().catch(() => {});
    await this.#stderr;
    return await this.#child.status;
  }
}

Deno.test("the dashboard in Chromium shows the client and its traffic live, and its disconnection", async () => {
  try {
    await Deno.stat(CHROMIUM_PATH);
  } catch {
    throw new Error(
      `Chromium is not installed at ${CHROMIUM_PATH}; the dashboard test needs it. ` +
        "Install it with `apt-get install -y chromium` (.ci/run does this when it is missing).",
    );
  }
  const tunnel = await startTunnel();
  await Deno.mkdir(ARTIFACTS, { recursive: true });
  const driver = new BrowserDriver({
    url: tunnel.serverStatsUrl,
    token: STATS_TOKEN,
    client: CLIENT_ID,
    publishPort: tunnel.publishPort,
    chromium: CHROMIUM_PATH,
    artifacts: ARTIFACTS,
    transferredText: "2.00 MiB",
    transferredBytes: 2 * MIB,
    offlineClient: OFFLINE_CLIENT,
  });
  try {
    await driver.expect("connected");
    await echoThrough(tunnel.publishPort, patternBytes(2 * MIB, 4));
    await driver.tell("traffic-sent");
    await driver.expect("traffic-shown");
    tunnel.client.kill("SIGKILL");
    await tunnel.client.status();
    await driver.tell("client-killed");
    await driver.expect("disconnected");
    await tunnel.server.stop();
    await driver.tell("server-stopped");
    const done = await driver.expect("done");
    assert.deepEqual(done.errors, [], "no script errors in the page");
    assert.equal((await driver.close()).code, 0);
    assert.ok((await Deno.stat(`${ARTIFACTS}/dashboard.png`)).size > 10_000, "a screenshot was saved");
  } finally {
    await driver.close();
    await tunnel.close();
  }
});

/** Runs tmux on a private server socket; returns stdout. */
async function tmux(socket: string, ...args: string[]): Promise<string> {
  const output = await new Deno.Command("tmux", { args: ["-L", socket, "-f", "/dev/null", ...args] })
    .output();
  if (!output.success) throw new Error(`tmux ${args.join(" ")}: ${new TextDecoder().decode(output.stderr)}`);
  return new TextDecoder().decode(output.stdout);
}

const HAVE_TMUX = new Deno.Command("sh", { args: ["-c", "command -v tmux"] }).outputSync().success;

Deno.test({
  name: "top in a real terminal redraws live, quits on q and restores the terminal",
  ignore: !HAVE_TMUX,
  async fn() {
    const tunnel = await startTunnel();
    const socket = `tls-tunnel-top-${Deno.pid}`;
    try {
      // The token comes from the environment here, as a person keeping it out of `ps` would pass it.
      const command = [
        `TLS_TUNNEL_STATS_TOKEN=${STATS_TOKEN}`,
        Deno.execPath(),
        "run",
        "--quiet",
        "--allow-net",
        "--allow-read",
        "--allow-env",
        "main.ts",
        "top",
        "-u",
        tunnel.serverStatsUrl,
        "--interval",
        "200",
      ].join(" ") + `; echo "top exited with $?"; sleep 60`; // the shell keeps the pane to inspect
      await tmux(
        socket,
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "140",
        "-y",
        "30",
        "-c",
        PROJECT_ROOT,
        command,
      );
      const screen = () => tmux(socket, "capture-pane", "-p", "-t", "top");
      await waitFor(
        async () => /\n {2}web\s+healthy/.test(await screen()),
        15_000,
        "top to draw the proxy",
        100,
      );
      assert.equal((await tmux(socket, "display", "-p", "-t", "top", "#{alternate_on}")).trim(), "1");
      let text = await screen();
      assert.match(text, /^ tls-tunnel top · server \S+ · 127\.0\.0\.1:\d+/);
      assert.match(text, new RegExp(`● ${CLIENT_ID}\\s+from 127\\.0\\.0\\.1:\\d+`));
      assert.match(text, /q quit · every 0\.2 s/);

      // Traffic appears on the next redraw: totals and a rate.
      await echoThrough(tunnel.publishPort, patternBytes(MIB, 5));
      await waitFor(
        async () => /web\s+healthy\s.*\s1\.00 MiB\s+1\.00 MiB/.test(await screen()),
        5000,
        "top to show the transferred MiB",
        100,
      );
      text = await screen();
      assert.match(text, /clients 1 {2}proxies 1/);

      await tmux(socket, "send-keys", "-t", "top", "q");
      let exited: RegExpMatchArray | null = null;
      await waitFor(
        async () => (exited = (await screen()).match(/top exited with (\d+)/)) !== null,
        5000,
        "top to exit on q",
        50,
      );
      const exitCode = (exited as RegExpMatchArray | null)?.[1];
      assert.equal(exitCode, "0", "top exits with 0");
      const [alternate, cursor] =
        (await tmux(socket, "display", "-p", "-t", "top", "#{alternate_on} #{cursor_flag}"))
          .trim().split(" ");
      assert.equal(alternate, "0", "the alternate screen is left");
      assert.equal(cursor, "1", "the cursor is visible again");
    } finally {
      await tmux(socket, "kill-server").catch(() => "");
      await tunnel.close();
    }
  },
});

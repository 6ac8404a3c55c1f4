/**
 * `[[server.listeners]]`: one server on several transports at once. A real `deno run main.ts server` with a
 * tls, a wss and an http2 listener serves three real clients, one per transport, each carrying traffic
 * through the port it published, shows every listener in `/api/stats`, and frees all three ports when
 * killed. In process: the pending-connection limits count the connections of every listener together,
 * and a listener that cannot bind leaves none bound.
 */

import assert from "node:assert/strict";
import { captureOutput } from "../lib/cli/_command_output.ts";
import { checkCommand } from "../lib/cli/check.ts";
import { BindError } from "../lib/net/tcp.ts";
import type { ServerSnapshot } from "../lib/stats/snapshot.ts";
import { TunnelServer } from "../lib/server/server.ts";
import { closeQuietly } from "../lib/transport/pipe.ts";
import {
  canBind,
  freePort,
  patternBytes,
  roundTrip,
  sha256Hex,
  testCertificates,
  waitFor,
} from "../testing/helpers.ts";
import { PROCESS_AUTH_KEY, ProcessTunnel, proxyUp } from "../testing/process_tunnel.ts";
import { serverConfig, startServer } from "../testing/tunnel.ts";

const TRANSPORTS = ["tls", "wss", "http2"] as const;

/** A `[[server.listeners]]` entry on 127.0.0.1. */
function listenerEntry(transport: string, port: number): string {
  return `[[server.listeners]]\ntransport = "${transport}"\nbind_addr = "127.0.0.1"\nbind_port = ${port}\n`;
}

Deno.test("one server process listens on tls, wss and http2 at once; a client of each carries traffic, /api/stats names every listener, and killing the server frees all three ports", async () => {
  await using tunnel = await ProcessTunnel.create();
  const ports = { tls: freePort(), wss: freePort(), http2: freePort() };
  const statsPort = freePort();
  const work = tunnel.dir;
  // Listeners only: [server] writes no transport/bind_addr/bind_port, so it adds no listener of its own.
  await Deno.writeTextFile(
    tunnel.serverConfigPath,
    `[server]\ncert_path = "${work}/cert.pem"\nkey_path = "${work}/key.pem"\n` +
      `auth_key = "${PROCESS_AUTH_KEY}"\nkeepalive_interval_secs = 1\nkeepalive_timeout_secs = 3\n` +
      `stats_port = ${statsPort}\n\n` +
      TRANSPORTS.map((transport) => listenerEntry(transport, ports[transport])).join("\n"),
    { mode: 0o600 },
  );
  const server = await tunnel.server();
  for (const transport of TRANSPORTS) {
    // The startup log names every listener with its transport.
    await server.waitForLine(
      new RegExp(`Listening for clients on 127\\.0\\.0\\.1:${ports[transport]} \\(${transport}[ ),]`),
    );
  }

  const published: Record<string, number> = {};
  for (const transport of TRANSPORTS) {
    const publishPort = freePort();
    published[transport] = publishPort;
    const path = `${work}/client-${transport}.toml`;
    await Deno.writeTextFile(
      path,
      `[client]\nserver_addr = "127.0.0.1"\nserver_port = ${ports[transport]}\nserver_name = "localhost"\n` +
        `ca_cert_path = "${tunnel.caPath}"\nauth_key = "${PROCESS_AUTH_KEY}"\nclient_id = "via-${transport}"\n` +
        `transport = "${transport}"\nkeepalive_interval_secs = 1\nkeepalive_timeout_secs = 3\n\n` +
        `[[proxies]]\nname = "echo-${transport}"\npublish_addr = "127.0.0.1"\npublish_port = ${publishPort}\n` +
        `local_addr = "127.0.0.1"\nlocal_port = ${tunnel.echo.port}\n`,
      { mode: 0o600 },
    );
  }
  // The three clients start together; each reports its proxy up once its listener accepted it.
  const clients = TRANSPORTS.map((transport) => tunnel.client(`${work}/client-${transport}.toml`));
  await Promise.all(
    clients.map((client, index) => client.waitForLine(proxyUp(`echo-${TRANSPORTS[index]}`), 20_000)),
  );

  for (const transport of TRANSPORTS) {
    const payload = patternBytes(1024 * 1024, transport.length);
    const answer = await roundTrip(published[transport] ?? 0, payload);
    assert.equal(
      await sha256Hex(answer),
      await sha256Hex(payload),
      `1 MiB came back whole through the ${transport} client's published port`,
    );
  }

  const stats = await fetchStats(statsPort);
  assert.deepEqual(
    stats.listeners?.map((listener) => `${listener.transport} ${listener.listen_addr}`),
    TRANSPORTS.map((transport) => `${transport} 127.0.0.1:${ports[transport]}`),
    "every listener, in config order",
  );
  for (const listener of stats.listeners ?? []) {
    assert.ok(listener.sessions_total >= 1, `a session authenticated through ${listener.transport}`);
    assert.ok(listener.connections_total >= listener.sessions_total);
  }
  const metrics = await (await fetch(`http://127.0.0.1:${statsPort}/metrics`)).text();
  for (const transport of TRANSPORTS) {
    assert.match(
      metrics,
      new RegExp(
        `^tls_tunnel_listener_sessions_total\\{transport="${transport}",listen_addr="127\\.0\\.0\\.1:${
          ports[transport]
        }"\\} [1-9]`,
        "m",
      ),
      `/metrics counts the session of the ${transport} listener`,
    );
  }
  assert.deepEqual(
    stats.clients.map((client) => `${client.client_id} ${client.transport}`).sort(),
    TRANSPORTS.map((transport) => `via-${transport} ${transport}`).sort(),
    "one server holds the clients of every listener, each shown with the transport it came through",
  );

  server.kill("SIGKILL");
  await server.status();
  await waitFor(
    () => TRANSPORTS.every((transport) => canBind(ports[transport])),
    2000,
    "the three listener ports to be free after the server was killed",
  );
});

/** The server's `/api/stats`. */
async function fetchStats(port: number): Promise<ServerSnapshot> {
  const response = await fetch(`http://127.0.0.1:${port}/api/stats`);
  const body = await response.json();
  assert.equal(response.status, 200);
  return body as ServerSnapshot;
}

Deno.test("the pending-connection limit counts the unauthenticated connections of every listener together", async () => {
  const server = await startServer(
    "max_pending_connections = 2\nmax_pending_per_ip = 100\n" + listenerEntry("wss", 0),
  );
  const conns: Deno.Conn[] = [];
  try {
    const [tls, wss] = server.server.listeners;
    assert.ok(tls && wss, "two listeners: [server]'s and the entry");
    assert.equal(tls.spec.transport, "tls");
    assert.equal(wss.spec.transport, "wss");
    // One idle connection on each listener fills the limit of 2 ...
    conns.push(await Deno.connect({ hostname: "127.0.0.1", port: tls.addr.port }));
    conns.push(await Deno.connect({ hostname: "127.0.0.1", port: wss.addr.port }));
    await waitFor(() => server.server.pendingConnections.pending === 2, 5000, "two pending connections");
    // ... so a third, on either listener, is closed at once.
    const third = await Deno.connect({ hostname: "127.0.0.1", port: wss.addr.port });
    conns.push(third);
    const read = await third.read(new Uint8Array(16)).catch(() => null);
    assert.equal(read, null, "the third connection is closed without an answer");
    const snapshot = server.server.snapshot();
    assert.equal(snapshot.connections_refused.pending_limit, 1);
    assert.deepEqual(snapshot.listeners?.map((listener) => listener.connections_total), [1, 2]);
  } finally {
    for (const conn of conns) closeQuietly(conn);
    await server.stop();
  }
});

Deno.test("a server whose second listener cannot bind fails to start, naming that listener, and leaves the first port free", async () => {
  const certs = await testCertificates();
  const busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const firstPort = freePort();
  try {
    // [server]'s tls listener on a free port first, then an http2 entry on the busy one.
    const config = serverConfig(listenerEntry("http2", busy.addr.port));
    assert.equal(config.listeners.length, 2);
    const server = new TunnelServer({
      config: {
        ...config,
        listeners: config.listeners.map((listener, index) =>
          index === 0 ? { ...listener, bindPort: firstPort } : listener
        ),
      },
      certPem: certs.serverChainPem,
      keyPem: certs.serverKeyPem,
    });
    await assert.rejects(server.listen(), (error: unknown) => {
      assert.ok(error instanceof BindError, String(error));
      assert.equal(error.kind, "address_in_use");
      assert.match(
        error.message,
        /^listener 2 of 2 \(http2 on \/tunnel\): Port \d+ on 127\.0\.0\.1 is already in use/,
      );
      return true;
    });
    assert.ok(canBind(firstPort), "the first listener, bound before the failure, was closed");
  } finally {
    busy.close();
  }
});

Deno.test("check lists every listener in order, and refuses two listeners on one port naming both", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/server.toml`;
    const head = `[server]\nauth_key = "${PROCESS_AUTH_KEY}"\nbind_port = 8443\n\n`;
    await Deno.writeTextFile(
      path,
      head + listenerEntry("wss", 443) + listenerEntry("http2", 8444) +
        listenerEntry("wss", 8080).replace("\n", "\nbehind_proxy = true\n"),
    );
    const io = captureOutput();
    assert.equal(await checkCommand({ configPath: path, format: "text" }, io), 0, io.stderr);
    const lines = io.stdout.split("\n").filter((line) => line.includes("tunnel listener:"));
    assert.equal(lines.length, 4, io.stdout);
    assert.match(lines[0] ?? "", /tunnel listener: 0\.0\.0\.0:8443 \(TLS with a throw-away certificate/);
    assert.match(lines[1] ?? "", /tunnel listener: 127\.0\.0\.1:443 \(WebSocket on \/tunnel over TLS/);
    assert.match(lines[2] ?? "", /tunnel listener: 127\.0\.0\.1:8444 \(HTTP\/2 on \/tunnel over TLS/);
    assert.match(lines[3] ?? "", /tunnel listener: 127\.0\.0\.1:8080 \(plain-text WebSocket on \/tunnel/);

    await Deno.writeTextFile(path, head + listenerEntry("wss", 8443));
    const clash = captureOutput();
    assert.equal(await checkCommand({ configPath: path, format: "text" }, clash), 1);
    assert.match(
      clash.stdout + clash.stderr,
      /server\.listeners\[0\]\.bind_port: .*wss on 127\.0\.0\.1:8443.*\[server\]'s listener \(tls on 0\.0\.0\.0:8443\)/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

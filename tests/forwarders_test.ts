/**
 * `[[forwarders]]` end to end, with real processes (`deno run main.ts server|client`) over real TLS: curl
 * through the client's local HTTP proxy (`-x`, absolute-URI and CONNECT) and SOCKS5 proxy
 * (`--socks5-hostname`) reaches a web server on loopback through the server; a server without
 * `allow_forward` answers 403 / SOCKS5 0x02 with its reason; a private destination is refused when
 * `forward_allow_private` is false, and a `direct` route reaches it from the client itself.
 */

import assert from "node:assert/strict";
import { CliProcess, freePort, makeWorkdir, PROJECT_ROOT } from "../testing/helpers.ts";
import { GEOIP_TEST_DB } from "../testing/mmdb_fixture.ts";
import { echoThrough, type ProcessProxy, ProcessTunnel, proxyUp } from "../testing/process_tunnel.ts";

const FORWARDER_UP = (name: string) =>
  new RegExp(`Forwarder ${name}: (HTTP|SOCKS5) proxy on 127\\.0\\.0\\.1:\\d+`);
const AUTHENTICATED = /Authenticated with /;

/** A web server on loopback that answers `hello <path>`. */
function webServer(): { port: number; close: () => Promise<void> } {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (request) => new Response(`hello ${new URL(request.url).pathname}\n`),
  );
  return { port: server.addr.port, close: () => server.shutdown() };
}

/** Runs curl with `args`; its exit code, body and error output. */
async function curl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const output = await new Deno.Command("curl", {
    args: ["--silent", "--show-error", "--max-time", "10", ...args],
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).output();
  const decoder = new TextDecoder();
  return { code: output.code, stdout: decoder.decode(output.stdout), stderr: decoder.decode(output.stderr) };
}

/** The SOCKS5 reply code a raw CONNECT to `host:port` through the proxy at `proxyPort` gets. */
async function socksReplyCode(proxyPort: number, host: string, port: number): Promise<number> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: proxyPort });
  try {
    const name = new TextEncoder().encode(host);
    await conn.write(new Uint8Array([5, 1, 0]));
    await conn.write(new Uint8Array([5, 1, 0, 3, name.length, ...name, port >> 8, port & 0xff]));
    const answer = new Uint8Array(12);
    let read = 0;
    while (read < 12) {
      const count = await conn.read(answer.subarray(read));
      if (count === null) break;
      read += count;
    }
    assert.deepEqual([...answer.subarray(0, 2)], [5, 0], "method none chosen");
    return answer[3] ?? -1;
  } finally {
    conn.close();
  }
}

/** A server with `serverLines` and a client with an HTTP and a SOCKS5 forwarder (and `extraForwarders`). */
async function forwardingTunnel(serverLines: string, extraForwarders = "", proxies: ProcessProxy[] = []) {
  const tunnel = await ProcessTunnel.create(serverLines);
  const httpPort = freePort();
  const socksPort = freePort();
  const configPath = await tunnel.clientConfig("client", proxies);
  await Deno.writeTextFile(
    configPath,
    `\n[[forwarders]]\nname = "web-http"\nproxy_type = "http"\nbind_addr = "127.0.0.1"\nbind_port = ${httpPort}\n` +
      `\n[[forwarders]]\nname = "web-socks"\nproxy_type = "socks5"\nbind_port = ${socksPort}\n${extraForwarders}`,
    { append: true },
  );
  const server = await tunnel.server();
  const client = tunnel.client(configPath);
  await client.waitForLine(FORWARDER_UP("web-http"));
  await client.waitForLine(FORWARDER_UP("web-socks"));
  await client.waitForLine(AUTHENTICATED);
  return { tunnel, server, client, httpPort, socksPort };
}

Deno.test("curl reaches a web server through the HTTP and SOCKS5 forwarders and the server counts them", async () => {
  const web = webServer();
  const statsPort = freePort();
  const { tunnel, client, httpPort, socksPort } = await forwardingTunnel(
    `allow_forward = true\nforward_allow_private = true\nstats_port = ${statsPort}\n`,
  );
  await using _tunnel = tunnel;
  try {
    const proxy = `http://127.0.0.1:${httpPort}`;
    const plain = await curl(["-x", proxy, `http://127.0.0.1:${web.port}/plain?x=1`]);
    assert.equal(plain.stdout, "hello /plain\n", `${plain.stderr}\n${client.output}`);
    const tunnelled = await curl(["-x", proxy, "--proxytunnel", `http://127.0.0.1:${web.port}/connect`]);
    assert.equal(tunnelled.stdout, "hello /connect\n", tunnelled.stderr);
    const socks = await curl([
      "--socks5-hostname",
      `127.0.0.1:${socksPort}`,
      `http://localhost:${web.port}/socks`,
    ]);
    assert.equal(socks.stdout, "hello /socks\n", socks.stderr);
    const socksIp = await curl([
      "--socks5",
      `127.0.0.1:${socksPort}`,
      `http://127.0.0.1:${web.port}/socks-ip`,
    ]);
    assert.equal(socksIp.stdout, "hello /socks-ip\n", socksIp.stderr);

    const stats = await (await fetch(`http://127.0.0.1:${statsPort}/api/stats`)).json() as {
      forwards?: { forwarder: string; result: string; count: number }[];
    };
    const ok = (forwarder: string) =>
      stats.forwards?.find((entry) => entry.forwarder === forwarder && entry.result === "ok")?.count;
    assert.equal(ok("web-http"), 2, JSON.stringify(stats.forwards));
    assert.equal(ok("web-socks"), 2, JSON.stringify(stats.forwards));
    const metrics = await (await fetch(`http://127.0.0.1:${statsPort}/metrics`)).text();
    assert.match(
      metrics,
      /tls_tunnel_forwarded_connections_total\{client="[^"]+",forwarder="web-http",result="ok"\} 2/,
    );
  } finally {
    await web.close();
  }
});

Deno.test("a server without allow_forward refuses: HTTP 403 with its reason, SOCKS5 reply 0x02", async () => {
  const web = webServer();
  const { tunnel, client, httpPort, socksPort } = await forwardingTunnel("");
  await using _tunnel = tunnel;
  try {
    const answer = await curl([
      "-x",
      `http://127.0.0.1:${httpPort}`,
      "-w",
      "%{http_code}",
      `http://127.0.0.1:${web.port}/`,
    ]);
    assert.match(answer.stdout, /allow_forward = false/, client.output);
    assert.ok(answer.stdout.endsWith("403"), answer.stdout);
    const connect = await curl([
      "-x",
      `http://127.0.0.1:${httpPort}`,
      "--proxytunnel",
      `http://127.0.0.1:${web.port}/`,
    ]);
    assert.notEqual(connect.code, 0);
    assert.match(connect.stderr, /403/);
    assert.equal(await socksReplyCode(socksPort, "127.0.0.1", web.port), 0x02);
  } finally {
    await web.close();
  }
});

Deno.test("a private destination is refused without forward_allow_private; a direct route reaches it from the client", async () => {
  const web = webServer();
  const directPort = freePort();
  const { tunnel, client, httpPort, socksPort } = await forwardingTunnel(
    "allow_forward = true\n",
    `\n[[forwarders]]\nname = "local-direct"\nproxy_type = "http"\nbind_port = ${directPort}\n` +
      `[forwarders.routing]\ndirect_ips = ["127.0.0.0/8"]\ndirect_domains = ["*.localhost"]\n`,
  );
  await using _tunnel = tunnel;
  try {
    await client.waitForLine(FORWARDER_UP("local-direct"));
    const refused = await curl([
      "-x",
      `http://127.0.0.1:${httpPort}`,
      "-w",
      "%{http_code}",
      `http://127.0.0.1:${web.port}/`,
    ]);
    assert.match(refused.stdout, /FORBIDDEN_DESTINATION.*127\.0\.0\.1 is a loopback address/s, client.output);
    assert.ok(refused.stdout.endsWith("403"), refused.stdout);
    assert.equal(await socksReplyCode(socksPort, "localhost", web.port), 0x02);
    const direct = await curl([
      "-x",
      `http://127.0.0.1:${directPort}`,
      `http://127.0.0.1:${web.port}/direct`,
    ]);
    assert.equal(direct.stdout, "hello /direct\n", direct.stderr);
  } finally {
    await web.close();
  }
});

Deno.test("the forwarders' local proxies refuse hostile handshakes without disturbing the tunnel", async () => {
  const web = webServer();
  const { tunnel, httpPort, socksPort } = await forwardingTunnel(
    "allow_forward = true\nforward_allow_private = true\n",
  );
  await using _tunnel = tunnel;
  try {
    const exchange = async (port: number, bytes: Uint8Array) => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        await conn.write(bytes).catch(() => 0);
        const chunks: number[] = [];
        const buffer = new Uint8Array(4096);
        while (true) {
          const count = await conn.read(buffer).catch(() => null);
          if (count === null) break;
          chunks.push(...buffer.subarray(0, count));
        }
        return new TextDecoder().decode(new Uint8Array(chunks));
      } finally {
        conn.close();
      }
    };
    const text = (value: string) => new TextEncoder().encode(value);
    assert.match(await exchange(httpPort, text("\x16\x03\x01garbage\r\n\r\n")), /^HTTP\/1\.1 400 /);
    assert.match(
      await exchange(httpPort, text(`GET http://a/ HTTP/1.1\r\nX: ${"y".repeat(20_000)}`)),
      /^HTTP\/1\.1 431 /,
    );
    assert.match(
      await exchange(
        httpPort,
        text("POST http://a/ HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
      ),
      /^HTTP\/1\.1 400 /,
    );
    assert.equal(
      await exchange(socksPort, new Uint8Array([4, 1, 0, 80, 127, 0, 0, 1, 0])),
      "",
      "SOCKS4: closed",
    );
    // After all that, the tunnel still carries a good request.
    const good = await curl(["-x", `http://127.0.0.1:${httpPort}`, `http://127.0.0.1:${web.port}/still`]);
    assert.equal(good.stdout, "hello /still\n", good.stderr);
  } finally {
    await web.close();
  }
});

Deno.test("[server.rate_limit] refuses new connections over the rate: forwards answered 429, tunnel connections closed, both counted", async () => {
  const web = webServer();
  const statsPort = freePort();
  const publishPort = freePort();
  const { tunnel, client, server, httpPort } = await forwardingTunnel(
    `allow_forward = true\nforward_allow_private = true\nstats_port = ${statsPort}\n` +
      // One token per 100 s: nothing refills while the test runs.
      // Raw connections left open below are closed by the server after 1 s, not the default 10.
      "handshake_timeout_secs = 1\n[server.rate_limit]\nrequests_per_second = 0.01\nburst_size = 4\n",
    "",
    [{ name: "echo", publishPort }],
  );
  await using _tunnel = tunnel;
  try {
    await client.waitForLine(proxyUp("echo"));
    // One bucket per client for its outside connections: a published port's connection takes a token too.
    assert.equal(await echoThrough(publishPort, "ping"), "ping");
    const statuses: string[] = [];
    for (let index = 0; index < 5; index++) {
      const answer = await curl([
        "-x",
        `http://127.0.0.1:${httpPort}`,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        `http://127.0.0.1:${web.port}/`,
      ]);
      statuses.push(answer.stdout);
    }
    assert.deepEqual(statuses, ["200", "200", "200", "429", "429"], client.output);
    // The bucket is empty: the published port refuses too (a reset, no echo).
    assert.equal(await echoThrough(publishPort, "ping").catch(() => ""), "");
    // The client's own tunnel connection took one token of 127.0.0.1's bucket: three more, then refusals.
    const closedAtOnce: boolean[] = [];
    for (let index = 0; index < 5; index++) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: tunnel.serverPort });
      const read = await Promise.race([
        conn.read(new Uint8Array(16)).catch(() => null),
        new Promise<"open">((resolve) => setTimeout(() => resolve("open"), 300)),
      ]);
      closedAtOnce.push(read === null);
      conn.close();
    }
    assert.deepEqual(closedAtOnce, [false, false, false, true, true]);
    const stats = await (await fetch(`http://127.0.0.1:${statsPort}/api/stats`)).json() as {
      rate_limited?: { tunnel_connections: number; outside_connections: number };
    };
    assert.deepEqual(stats.rate_limited, { tunnel_connections: 2, outside_connections: 3 });
    const metrics = await (await fetch(`http://127.0.0.1:${statsPort}/metrics`)).text();
    assert.match(metrics, /tls_tunnel_rate_limited_total\{kind="outside"\} 3/);
    // Each limiter logged its refusals once (the rest are summed into its next line, 10 s later).
    assert.equal(server.lines.filter((line) => /Rate limit: refused/.test(line)).length, 2, server.output);
  } finally {
    await web.close();
  }
});

Deno.test("the Rust tool's forwarder-server.toml and forwarder-geoip-client.toml run (ports, paths and key adjusted)", async () => {
  const rust = new URL("../shared/compat/rust-tls-tunnel-1.5.1/", `file://${PROJECT_ROOT}`).pathname;
  const work = await makeWorkdir();
  const web = webServer();
  const processes: CliProcess[] = [];
  try {
    const [serverPort, statsPort, socksPort, httpPort] = [freePort(), freePort(), freePort(), freePort()];
    const serverText = (await Deno.readTextFile(`${rust}forwarder-server.toml`))
      .replace(/^bind_addr = .*$/m, `bind_addr = "127.0.0.1"`)
      .replace(/^bind_port = .*$/m, `bind_port = ${serverPort}`)
      .replace(/^auth_key = .*$/m, `auth_key = "test-secret-key-12345"`)
      .replace(/^cert_path = .*$/m, `cert_path = "${work.certPath}"`)
      .replace(/^key_path = .*$/m, `key_path = "${work.keyPath}"`)
      .replace(/^stats_port = .*$/m, `stats_port = ${statsPort}`) +
      // The test's web server is on loopback, which the Rust config (rightly) cannot reach without this.
      "forward_allow_private = true\n";
    const clientText = (await Deno.readTextFile(`${rust}forwarder-geoip-client.toml`))
      .replace(/^server_port = .*$/m, `server_port = ${serverPort}`)
      .replace(/^bind_port = 2080$/m, `bind_port = ${socksPort}`)
      .replace(/^bind_port = 9080$/m, `bind_port = ${httpPort}`)
      .replace(/^geoip_db = .*$/m, `geoip_db = "${PROJECT_ROOT}${GEOIP_TEST_DB}"`);
    await Deno.writeTextFile(`${work.dir}/server.toml`, serverText, { mode: 0o600 });
    await Deno.writeTextFile(`${work.dir}/client.toml`, clientText, { mode: 0o600 });
    const server = new CliProcess(["server", "-c", `${work.dir}/server.toml`]);
    processes.push(server);
    await server.waitForLine(/Listening for clients on/);
    const client = new CliProcess(["client", "-c", `${work.dir}/client.toml`]);
    processes.push(client);
    await client.waitForLine(FORWARDER_UP("socks5-proxy-smart"));
    await client.waitForLine(AUTHENTICATED);
    const socks = await curl([
      "--socks5-hostname",
      `127.0.0.1:${socksPort}`,
      `http://127.0.0.1:${web.port}/rust`,
    ]);
    assert.equal(socks.stdout, "hello /rust\n", `${socks.stderr}\n${client.output}`);
    const http = await curl(["-x", `http://127.0.0.1:${httpPort}`, `http://127.0.0.1:${web.port}/rust-http`]);
    assert.equal(http.stdout, "hello /rust-http\n", http.stderr);
    const stats = await (await fetch(`http://127.0.0.1:${statsPort}/api/stats`)).json() as {
      forwards?: { forwarder: string; result: string; count: number }[];
    };
    assert.deepEqual(
      stats.forwards?.map((entry) => `${entry.forwarder} ${entry.result} ${entry.count}`),
      ["http-proxy ok 1", "socks5-proxy-smart ok 1"],
    );
  } finally {
    for (const process of processes.reverse()) await process.stop();
    await web.close();
    await work.cleanup();
  }
});

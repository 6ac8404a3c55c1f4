import assert from "node:assert/strict";
import fc from "fast-check";
import {
  computeRates,
  DEFAULT_TOP_URL,
  fetchStats,
  formatColumns,
  proxyTableLayout,
  renderPlainTable,
  renderScreen,
  StatsFetchError,
  statsTargetFromConfig,
  statsUrl,
} from "./top.ts";
import type { ServedStats } from "../stats/http.ts";
import { formatBytes, formatDuration } from "../stats/format.ts";
import { clientSnapshot, serverSnapshot } from "../../testing/stats_fixtures.ts";

const NOW_MS = 1_700_000_300_000;
// deno-lint-ignore no-control-regex
const ANSI_CODE = /\x1b\[[0-9;?]*[A-Za-z]/g;

function served(
  snapshot: ReturnType<typeof serverSnapshot> | ReturnType<typeof clientSnapshot>,
): ServedStats {
  return { ...snapshot, now_ms: NOW_MS };
}

Deno.test("the plain table lists every client and proxy with exact counters", () => {
  const text = renderPlainTable(served(serverSnapshot()));
  const lines = text.trimEnd().split("\n");
  assert.match(
    lines[0] ?? "",
    /^tls-tunnel server 0\.1\.0 on 0\.0\.0\.0:8443: 2 client\(s\) connected, 5 session/,
  );
  const clientHeader = lines.findIndex((line) => line.startsWith("CLIENT  "));
  assert.match(
    lines[clientHeader] ?? "",
    /^CLIENT\s+CLIENT_ID\s+REMOTE\s+CONNECTED_SINCE\s+RTT_MS\s+STREAMS/,
  );
  assert.match(
    lines[clientHeader + 1] ?? "",
    /^office\s+office-host-1\s+10\.0\.0\.7:51234\s+2023-11-14T\S+\s+1\.50\s+3/,
  );
  const proxyHeader = lines.findIndex((line) => /^CLIENT\s+PROXY\s+STATUS/.test(line));
  assert.ok(proxyHeader > clientHeader);
  const rows = lines.slice(proxyHeader + 1);
  assert.equal(rows.length, 3);
  assert.match(
    rows[0] ?? "",
    /^office\s+web\s+healthy\s+0\.0\.0\.0:8080\s+127\.0\.0\.1:3000\s+2\s+10\s+1\s+4096\s+1048576\s+-$/,
  );
  assert.match(
    rows[2] ?? "",
    /\bdb\s+bind_failed\b.*Port 5432 on 0\.0\.0\.0 is already in use by another process$/,
  );
  // Columns line up: every row's STATUS starts where the header's does.
  const statusColumn = (lines[proxyHeader] ?? "").indexOf("STATUS");
  for (const row of rows) assert.match(row.slice(statusColumn), /^(healthy|bind_failed)/);
});

Deno.test("the plain table of a client shows its state, reconnect countdown and proxies", () => {
  const text = renderPlainTable(served(clientSnapshot(NOW_MS)));
  assert.match(
    text,
    /^tls-tunnel client 0\.1\.0, server tunnel\.example\.com:8443: waiting, reconnecting in 3\.0 s;/,
  );
  assert.match(text, /\nPROXY\s+STATUS\s+PUBLISHED/);
  assert.match(text, /\nweb\s+pending\s+0\.0\.0\.0:8080\s+127\.0\.0\.1:3000\s+0\s+7\s+0\s+100\s+200\s+-\n/);
  assert.match(text, /\napi\s+unhealthy\s.*local service down\n/);
});

Deno.test("a server without clients says so in the plain table", () => {
  const text = renderPlainTable(served({ ...serverSnapshot(), clients: [] }));
  assert.match(text, /\(no clients connected\)/);
});

Deno.test("rates are byte deltas over the time between polls", () => {
  const first = served(serverSnapshot());
  const second = structuredClone(first);
  second.now_ms = first.now_ms + 2000;
  const web = second.role === "server" ? second.clients[0]?.proxies[0] : undefined;
  assert.ok(web);
  web.bytes_in += 2048;
  web.bytes_out += 4 * 1024 * 1024;
  const rates = computeRates(first, second);
  assert.deepEqual(rates.get("office\0web"), { in: 1024, out: 2 * 1024 * 1024 });
  assert.deepEqual(rates.get("office\0ssh"), { in: 0, out: 0 });
  assert.equal(computeRates(null, second).size, 0, "no rates before a second poll");
  const reset = structuredClone(second);
  reset.now_ms += 1000;
  const resetWeb = reset.role === "server" ? reset.clients[0]?.proxies[0] : undefined;
  assert.ok(resetWeb);
  resetWeb.bytes_in = 0;
  assert.equal(computeRates(second, reset).has("office\0web"), false, "counters that went down have no rate");
});

Deno.test("the live screen fills the terminal exactly and never exceeds its width", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 20, max: 220 }),
      fc.integer({ min: 3, max: 60 }),
      fc.boolean(),
      fc.boolean(),
      (columns, rows, color, server) => {
        const stats = served(server ? serverSnapshot() : clientSnapshot(NOW_MS));
        const lines = renderScreen(stats, new Map(), {
          columns,
          rows,
          color,
          url: "http://x",
          intervalMs: 1000,
        });
        assert.equal(lines.length, rows);
        for (const line of lines) assert.ok([...line.replace(ANSI_CODE, "")].length <= columns, line);
        if (!color) assert.ok(lines.every((line) => !line.includes("\x1b")));
      },
    ),
    { numRuns: 150 },
  );
});

Deno.test("the live screen of a server with vhost ports shows their routes, requests, 503s and 504s", () => {
  const stats = served(serverSnapshot());
  assert.ok(stats.role === "server");
  stats.vhost = {
    http_addr: "0.0.0.0:80",
    https_addr: "0.0.0.0:443",
    routes: 3,
    http_requests: [{ host: "app.example.com", status: 200, count: 40 }, { host: "", status: 503, count: 2 }],
    http_no_tunnel_total: 2,
    http_timeouts_total: 0,
    https_connections: [{ host: "shop.example.com", count: 7 }],
    https_refused_total: 1,
  };
  const options = { columns: 160, rows: 30, color: false, url: "http://127.0.0.1:9100", intervalMs: 1000 };
  const text = renderScreen(stats, new Map(), options).join("\n");
  assert.match(
    text,
    /vhosts http 0\.0\.0\.0:80, https 0\.0\.0\.0:443 {2}routes 3 {2}requests 42 {2}503 2 {2}504 0 {2}tls routed 7 refused 1/,
  );
  assert.doesNotMatch(renderScreen(served(serverSnapshot()), new Map(), options).join("\n"), /vhosts/);
});

Deno.test("the live screen shows clients, proxies, rates, events and the quit hint", () => {
  const stats = served(serverSnapshot());
  stats.recent_events.push({
    time_ms: NOW_MS,
    level: "warning",
    code: "CLIENT_DISCONNECTED",
    message: "Client gone disconnected",
  });
  const rates = new Map([["office\0web", { in: 2048, out: 3 * 1024 * 1024 }]]);
  const lines = renderScreen(stats, rates, {
    columns: 160,
    rows: 30,
    color: true,
    url: "http://127.0.0.1:9100",
    intervalMs: 1000,
  });
  const plain = lines.map((line) => line.replace(ANSI_CODE, ""));
  const text = plain.join("\n");
  assert.match(plain[0] ?? "", /tls-tunnel top · server 0\.1\.0 · 0\.0\.0\.0:8443/);
  assert.match(
    text,
    /clients 2 {2}proxies 3 {2}active conns 2 {2}sessions 5 {2}auth failures 2 {2}in 2\.00 KiB\/s {2}out 3\.00 MiB\/s/,
  );
  assert.match(text, /● office\s+from 10\.0\.0\.7:51234/);
  assert.match(
    text,
    /\n {2}web\s+healthy\s+0\.0\.0\.0:8080\s+127\.0\.0\.1:3000\s+2\s+10\s+1\s+4\.00 KiB\s+1\.00 MiB\s+2\.00 KiB\/s\s+3\.00 MiB\/s/,
  );
  assert.match(text, /\n {2}ssh\s+healthy.*\s–\s+–/, "a proxy without a rate yet shows dashes");
  assert.match(text, /db\s+bind failed/);
  assert.match(text, /↳ last error: Port 5432/);
  assert.match(text, /WARNING\s+CLIENT_DISCONNECTED\s+Client gone disconnected/);
  assert.match(plain.at(-1) ?? "", /^q quit · every 1\.0 s · http:\/\/127\.0\.0\.1:9100/);
  const healthyLine = lines.find((line) => line.includes("web"));
  assert.ok(healthyLine?.includes("\x1b[32mhealthy"), "healthy is green");
  assert.ok(lines.find((line) => line.includes("bind failed"))?.includes("\x1b[31m"), "bind failed is red");
});

Deno.test("the live screen of a client shows its reconnect countdown; a failed poll shows the error", () => {
  const lines = renderScreen(served(clientSnapshot(NOW_MS)), new Map(), {
    columns: 120,
    rows: 20,
    color: false,
    url: "http://127.0.0.1:9101",
    intervalMs: 500,
    error: "Cannot reach the stats endpoint",
  });
  const text = lines.join("\n");
  assert.match(text, /state waiting — reconnecting in 3\.0 s {2}sessions 3 {2}rtt –/);
  assert.match(text, /\nweb\s+pending/);
  assert.match(text, /\napi\s+unhealthy/);
  assert.match(lines.at(-1) ?? "", /^! Cannot reach the stats endpoint {3}q quit · every 0\.5 s/);
  const waiting = renderScreen(null, new Map(), {
    columns: 80,
    rows: 5,
    color: false,
    url: "http://127.0.0.1:9101",
    intervalMs: 1000,
  });
  assert.match(waiting.join("\n"), /Waiting for http:\/\/127\.0\.0\.1:9101/);
});

/** The live screen at `columns`, without colour, for the server fixture with rates on office/web. */
function screenAt(columns: number, server = true): string[] {
  const stats = served(server ? serverSnapshot() : clientSnapshot(NOW_MS));
  const rates = new Map([[server ? "office\0web" : "\0web", { in: 2048, out: 3 * 1024 * 1024 }]]);
  return renderScreen(stats, rates, { columns, rows: 30, color: false, url: "http://x", intervalMs: 1000 });
}

Deno.test("at 80 columns top still shows every byte counter and rate, dropping the lower-value columns", () => {
  for (const server of [true, false]) {
    const lines = screenAt(80, server);
    for (const line of lines) assert.ok([...line].length <= 80, line);
    const header = lines.find((line) => /PROXY/.test(line)) ?? "";
    assert.match(header, /PROXY\s+STATUS\s+PUBLISHED\s+ACTIVE\s+IN\s+OUT\s+IN\/s\s+OUT\/s$/, header);
    assert.doesNotMatch(header, /LOCAL TARGET|TOTAL|FAILED/);
    const web = lines.find((line) => /^\s*web /.test(line)) ?? "";
    const counters = server
      ? /healthy\s+0\.0\.0\.0:8080\s+2\s+4\.00 KiB\s+1\.00 MiB\s+2\.00 KiB\/s\s+3\.00 MiB\/s$/
      : /pending\s+0\.0\.0\.0:8080\s+0\s+100 B\s+200 B\s+2\.00 KiB\/s\s+3\.00 MiB\/s$/;
    assert.match(web, counters, web);
    // The totals line puts the traffic first when the full line does not fit.
    assert.ok(lines.some((line) => /^in 2\.00 KiB\/s {2}out 3\.00 MiB\/s/.test(line)), lines.join("\n"));
  }
});

Deno.test("at 120 columns top shows every column, names shortened to fit", () => {
  const lines = screenAt(120);
  for (const line of lines) assert.ok([...line].length <= 120, line);
  const header = lines.find((line) => /PROXY/.test(line)) ?? "";
  assert.match(
    header,
    /PROXY\s+STATUS\s+PUBLISHED\s+LOCAL TARGET\s+ACTIVE\s+TOTAL\s+FAILED\s+IN\s+OUT\s+IN\/s\s+OUT\/s$/,
  );
  const web = lines.find((line) => /^\s*web /.test(line)) ?? "";
  assert.match(
    web,
    /web\s+healthy\s+0\.0\.0\.0:8080\s+127\.0\.0\.1:3000\s+2\s+10\s+1\s+4\.00 KiB\s+1\.00 MiB\s+2\.00 KiB\/s\s+3\.00 MiB\/s$/,
  );
  assert.match(lines.join("\n"), /clients 2 {2}proxies 3 .* {2}in 2\.00 KiB\/s {2}out 3\.00 MiB\/s/);
});

Deno.test("the proxy table layout never drops a byte or rate column and fits whenever it can", () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 300 }), (available) => {
      const layout = proxyTableLayout(available);
      const titles = layout.map((column) => column.index);
      for (const traffic of [7, 8, 9, 10]) {
        assert.ok(titles.includes(traffic), `column ${traffic} at ${available}`);
      }
      const width = layout.reduce((sum, column) => sum + column.width, 0) + layout.length - 1;
      // Below the narrowest layout (name and traffic at their minimum), the screen cuts the line.
      if (available >= 8 + 8 + 8 + 10 + 10 + 4) assert.ok(width <= available, `${width} > ${available}`);
    }),
  );
});

Deno.test("top's default URL is the examples' stats endpoint, and top -c reads it from the file", async () => {
  const example = await statsTargetFromConfig(
    new URL("../../examples/server.toml", import.meta.url).pathname,
  );
  assert.deepEqual(example, { url: DEFAULT_TOP_URL });
});

const PROXY_TOML = `[[proxies]]\nname = "web"\npublish_port = 8080\nlocal_port = 3000\n`;

Deno.test("top -c reads stats_addr, stats_port and stats_token from a server or client config", async () => {
  const dir = await Deno.makeTempDir({ prefix: "top_config_" });
  try {
    const server = `${dir}/server.toml`;
    await Deno.writeTextFile(
      server,
      `[server]\nbind_port = 8443\nauth_key = "key-0123456789abcdef"\nstats_addr = "0.0.0.0"\n` +
        `stats_port = 9191\nstats_token = "stats-0123456789abcdef"\n`,
    );
    assert.deepEqual(await statsTargetFromConfig(server), {
      url: "http://127.0.0.1:9191",
      token: "stats-0123456789abcdef",
    });
    const client = `${dir}/client.toml`;
    await Deno.writeTextFile(
      client,
      `[client]\nserver_addr = "127.0.0.1"\nserver_port = 8443\nauth_key = "key-0123456789abcdef"\n` +
        `skip_verify = true\nstats_addr = "::1"\nstats_port = 9192\n${PROXY_TOML}`,
    );
    assert.deepEqual(await statsTargetFromConfig(client), { url: "http://[::1]:9192" });
    const silent = `${dir}/silent.toml`;
    await Deno.writeTextFile(
      silent,
      `[client]\nserver_addr = "127.0.0.1"\nserver_port = 8443\nauth_key = "key-0123456789abcdef"\n` +
        `skip_verify = true\n${PROXY_TOML}`,
    );
    await assert.rejects(
      statsTargetFromConfig(silent),
      (error: unknown) => error instanceof StatsFetchError && /sets no stats_port/.test(error.message),
    );
    await assert.rejects(statsTargetFromConfig(`${dir}/missing.toml`), /missing\.toml/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("statsUrl accepts host:port, a base URL or the full /api/stats URL", () => {
  assert.equal(statsUrl("127.0.0.1:9100").href, "http://127.0.0.1:9100/api/stats");
  assert.equal(statsUrl("http://127.0.0.1:9100/").href, "http://127.0.0.1:9100/api/stats");
  assert.equal(
    statsUrl("https://stats.example.com/tunnel").href,
    "https://stats.example.com/tunnel/api/stats",
  );
  assert.equal(statsUrl("http://h:1/api/stats").href, "http://h:1/api/stats");
  assert.throws(() => statsUrl("http://[bad"), StatsFetchError);
});

Deno.test("fetchStats explains a refused connection, a missing token and a foreign endpoint", async () => {
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const closedPort = closed.addr.port;
  closed.close();
  await assert.rejects(
    fetchStats(`127.0.0.1:${closedPort}`),
    (error: unknown) => error instanceof StatsFetchError && /Cannot reach .* stats_port/.test(error.message),
  );
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (request) => {
    const path = new URL(request.url).pathname;
    if (path === "/locked/api/stats") {
      return request.headers.get("authorization") === "Bearer right"
        ? Response.json({ ...serverSnapshot(), now_ms: NOW_MS })
        : new Response("no", { status: 401 });
    }
    if (path === "/other/api/stats") return Response.json({ hello: "world" });
    return new Response("<html>", { status: 200 });
  });
  const base = `http://127.0.0.1:${server.addr.port}`;
  try {
    await assert.rejects(
      fetchStats(`${base}/locked`),
      (error: unknown) =>
        error instanceof StatsFetchError && error.status === 401 && /pass --token/.test(error.message),
    );
    await assert.rejects(
      fetchStats(`${base}/locked`, "wrong"),
      (error: unknown) => error instanceof StatsFetchError && /refused the token/.test(error.message),
    );
    assert.equal((await fetchStats(`${base}/locked`, "right")).role, "server");
    await assert.rejects(
      fetchStats(`${base}/other`),
      (error: unknown) => error instanceof StatsFetchError && /not tls-tunnel stats/.test(error.message),
    );
    await assert.rejects(
      fetchStats(base),
      (error: unknown) => error instanceof StatsFetchError && /did not answer JSON/.test(error.message),
    );
  } finally {
    await server.shutdown();
  }
});

Deno.test("formatting helpers: bytes, durations, aligned columns", () => {
  assert.equal(formatBytes(0), "0 B");
  assert.equal(formatBytes(1023), "1023 B");
  assert.equal(formatBytes(1536), "1.50 KiB");
  assert.equal(formatBytes(5 * 1024 * 1024 * 1024), "5.00 GiB");
  assert.equal(formatDuration(59_999), "59s");
  assert.equal(formatDuration(3_723_000), "1h02m");
  assert.equal(formatDuration(90_061_000), "1d01h");
  assert.deepEqual(formatColumns([["A", "BB", "C"], ["aaa", "b", "c"]], new Set([1])), [
    "A    BB  C",
    "aaa   b  c",
  ]);
});

/** A snapshot whose peer-supplied strings try to drive the terminal: title, clear screen, bidi, CSI. */
function hostileSnapshot(): ServedStats {
  const stats = served(serverSnapshot());
  if (stats.role !== "server") throw new Error("server snapshot expected");
  const client = stats.clients[0];
  const proxy = client?.proxies[0];
  if (!client || !proxy) throw new Error("fixture changed");
  client.name = "evil\x1b]0;pwned\x07";
  client.client_id = "id\u202eevil";
  proxy.name = "web\x1b[2J";
  proxy.local_addr = "host\ud800";
  proxy.last_error = "refused\r\nFORGED LINE\x9b31m";
  stats.recent_events.push({ time_ms: NOW_MS, level: "error", code: "X\x1b", message: "gone\u2066 \x07" });
  return stats;
}

/** Every control, bidi control and lone surrogate a hostile string could smuggle in. */
// deno-lint-ignore no-control-regex
const RAW_HOSTILE = /[\x07\x1b\r\x9b\u202e\u2066]|\ud800(?![\udc00-\udfff])/;

Deno.test("top shows names, errors and events from peers escaped, in the plain table and the live screen", () => {
  const table = renderPlainTable(hostileSnapshot());
  assert.doesNotMatch(table, RAW_HOSTILE);
  assert.match(table, /evil\\u001b\]0;pwned\\u0007/);
  assert.match(table, /id\\u202eevil/);
  assert.match(table, /web\\u001b\[2J/);
  assert.match(table, /host\\ud800/);
  assert.match(table, /refused\\r\\nFORGED LINE\\u009b31m/);
  assert.equal(table.split("\n").filter((line) => line.startsWith("FORGED")).length, 0, "no forged line");

  for (const color of [false, true]) {
    const lines = renderScreen(hostileSnapshot(), new Map(), {
      columns: 200,
      rows: 40,
      color,
      url: "http://x",
      intervalMs: 1000,
      error: "poll failed\x1b[5m",
    });
    // Without colour no escape code at all may reach the terminal; with colour only top's own.
    const text = color ? lines.join("\n").replace(ANSI_CODE, "") : lines.join("\n");
    assert.doesNotMatch(text, RAW_HOSTILE);
    assert.match(text, /web\\u001b\[2J/);
    assert.match(text, /last error: refused\\r\\nFORGED LINE\\u009b31m/);
    assert.match(text, /gone\\u2066 \\u0007/);
    assert.match(text, /poll failed\\u001b\[5m/);
  }
});

Deno.test("top marks a udp proxy's port /udp and shows its flows, datagrams and drops by reason", () => {
  const snapshot = clientSnapshot(NOW_MS);
  const [web] = snapshot.proxies;
  assert.ok(web);
  web.udp = {
    flows_open: 3,
    flows_total: 50,
    flows_evicted: 0,
    flows_idle_closed: 47,
    datagrams_in: 1000,
    datagrams_out: 998,
    dropped: { oversized: 1, empty: 0, queue_full: 2, no_flow: 0, send_failed: 0, foreign_source: 0 },
  };
  const lines = renderScreen(served(snapshot), new Map(), {
    columns: 160,
    rows: 20,
    color: false,
    url: "http://127.0.0.1:9101",
    intervalMs: 500,
  });
  const text = lines.join("\n");
  assert.match(text, /\nweb\s+pending\s+0\.0\.0\.0:8080\/udp /);
  assert.match(text, /\n {2}↳ udp: 3 flows, 1000 in, 998 out, 3 dropped \(oversized 1, queue_full 2\)/);
  assert.doesNotMatch(text, /9000\/udp/, "the tcp proxy is not marked");
});

Deno.test("the plain table lists groups of clients with their members, healthy count and counters", () => {
  const snapshot = serverSnapshot();
  const text = renderPlainTable({
    ...served(snapshot),
    groups: [{
      name: "web",
      kind: "tcp",
      publish_addr: "0.0.0.0:8080",
      lb_policy: "round_robin",
      connections_total: 30,
      refused_total: 1,
      members: [
        { client: "office", proxy: "web", healthy: true, active_connections: 2 },
        { client: "lab", proxy: "web", healthy: false, active_connections: 0 },
      ],
    }],
  } as ServedStats);
  const lines = text.trimEnd().split("\n");
  const header = lines.findIndex((line) =>
    /^GROUP\s+KIND\s+PUBLISHED\s+POLICY\s+MEMBERS\s+HEALTHY/.test(line)
  );
  assert.ok(header > 0, text);
  assert.match(
    lines[header + 1] ?? "",
    /^web\s+tcp\s+0\.0\.0\.0:8080\s+round_robin\s+2\s+1\s+30\s+1\s+office,lab$/,
  );
  assert.doesNotMatch(renderPlainTable(served(snapshot)), /^GROUP/m);
});

/** A client snapshot with two visitors (one refused by the server) and a forwarder, names from the wire. */
function clientWithVisitors(name = "db"): ServedStats {
  const snapshot = clientSnapshot(NOW_MS);
  snapshot.visitors = [{
    name,
    publish_port: 5432,
    client: "office",
    bind: "127.0.0.1:15432",
    listen_addr: "127.0.0.1:15432",
    active_connections: 1,
    total_connections: 12,
    refused: { denied: 2, not_found: 1 },
    bytes_in: 2048,
    bytes_out: 4096,
    last_error: null,
  }, {
    name: "cache",
    publish_port: 6379,
    client: null,
    bind: "127.0.0.1:16379",
    listen_addr: null,
    active_connections: 0,
    total_connections: 0,
    refused: {},
    bytes_in: 0,
    bytes_out: 0,
    last_error: null,
  }];
  snapshot.forwarders = [{
    name: "egress",
    proxy_type: "http",
    listen_addr: "127.0.0.1:3128",
    active_connections: 1,
    results: { proxy: { ok: 7, forbidden: 2 }, direct: { ok: 3 }, none: { bad_request: 1 } },
    bytes_out: 100,
    bytes_in: 200,
  }];
  return served(snapshot);
}

Deno.test("top lists a client's visitors (bind → owner/proxy:port, ok/denied/refused) and forwarders", () => {
  const table = renderPlainTable(clientWithVisitors());
  assert.match(table, /\nVISITOR\s+TARGET\s+LISTEN\s+ACTIVE\s+TOTAL\s+OK\s+DENIED\s+REFUSED\s+LAST_ERROR\n/);
  // 12 accepted, 3 refused (2 denied, 1 not found): 9 carried.
  assert.match(
    table,
    /\n127\.0\.0\.1:15432\s+office\/db:5432\s+127\.0\.0\.1:15432\s+1\s+12\s+9\s+2\s+1\s+-\n/,
  );
  assert.match(table, /\n127\.0\.0\.1:16379\s+\*\/cache:6379\s+-\s+0\s+0\s+0\s+0\s+0\s+-\n/);
  assert.match(table, /\nFORWARDER\s+TYPE\s+LISTEN\s+ACTIVE\s+OK\s+REFUSED\s+BYTES_IN\s+BYTES_OUT\n/);
  assert.match(table, /\negress\s+http\s+127\.0\.0\.1:3128\s+1\s+10\s+3\s+200\s+100\n/);

  const screen = renderScreen(clientWithVisitors(), new Map(), {
    columns: 160,
    rows: 30,
    color: false,
    url: "http://127.0.0.1:9101",
    intervalMs: 1000,
  }).join("\n");
  assert.match(screen, /\nVISITORS \(bind → owner\/proxy:port\)\n/);
  assert.match(
    screen,
    /\n127\.0\.0\.1:15432 → office\/db:5432 {2}open 1 {2}ok 9 {2}denied 2 {2}refused 1 {2}in 2\.00 KiB out 4\.00 KiB\n/,
  );
  assert.match(screen, /\n127\.0\.0\.1:16379 \(not bound\) → \*\/cache:6379 {2}open 0 {2}ok 0 {2}denied 0/);
  assert.match(screen, /\nFORWARDERS\n/);
  assert.match(
    screen,
    /\negress\s+http 127\.0\.0\.1:3128 {2}open 1 {2}ok 10 {2}refused 3 {2}in 200 B out 100 B/,
  );
  // Without visitors or forwarders neither section appears.
  const plain = renderPlainTable(served(clientSnapshot(NOW_MS)));
  assert.doesNotMatch(plain, /VISITOR|FORWARDER/);
});

Deno.test("top escapes a visitor's names from the wire in the table and the screen", () => {
  const stats = clientWithVisitors("db\x1b]0;pwned\x07");
  assert.ok(stats.role === "client");
  const [visitor] = stats.visitors ?? [];
  assert.ok(visitor);
  visitor.last_error = "DENIED\r\nFORGED\u202e";
  const table = renderPlainTable(stats);
  assert.doesNotMatch(table, RAW_HOSTILE);
  assert.match(table, /office\/db\\u001b\]0;pwned\\u0007:5432/);
  for (const color of [false, true]) {
    const lines = renderScreen(stats, new Map(), {
      columns: 200,
      rows: 40,
      color,
      url: "http://x",
      intervalMs: 1000,
    });
    const text = color ? lines.join("\n").replace(ANSI_CODE, "") : lines.join("\n");
    assert.doesNotMatch(text, RAW_HOSTILE);
    assert.match(text, /DENIED\\r\\nFORGED\\u202e/);
  }
});

Deno.test("top lists a server's tunnel listeners with their connections and sessions when it has several", () => {
  const stats = served(serverSnapshot());
  assert.ok(stats.role === "server");
  stats.listeners = [
    {
      transport: "tls",
      listen_addr: "0.0.0.0:8443",
      server_path: "/tunnel",
      behind_proxy: false,
      connections_total: 3,
      sessions_total: 2,
    },
    {
      transport: "wss",
      listen_addr: "127.0.0.1:8080",
      server_path: "/tunnel",
      behind_proxy: true,
      connections_total: 5,
      sessions_total: 4,
    },
  ];
  const table = renderPlainTable(stats);
  assert.match(table, /\nLISTENER\s+ADDRESS\s+PATH\s+CONNECTIONS\s+SESSIONS\n/);
  assert.match(table, /\ntls\s+0\.0\.0\.0:8443\s+-\s+3\s+2\n/);
  assert.match(table, /\nwss \(behind proxy\)\s+127\.0\.0\.1:8080\s+\/tunnel\s+5\s+4\n?/);
  const screen = renderScreen(stats, new Map(), {
    columns: 160,
    rows: 30,
    color: false,
    url: "http://127.0.0.1:9100",
    intervalMs: 1000,
  }).join("\n");
  assert.match(
    screen,
    /\nlisteners \(conns\/sessions\) tls 0\.0\.0\.0:8443 3\/2 · wss 127\.0\.0\.1:8080 \/tunnel 5\/4\n/,
  );
  // One listener: the header already names it.
  stats.listeners = stats.listeners.slice(0, 1);
  assert.doesNotMatch(renderPlainTable(stats), /LISTENER/);
  assert.doesNotMatch(
    renderScreen(stats, new Map(), {
      columns: 160,
      rows: 30,
      color: false,
      url: "http://127.0.0.1:9100",
      intervalMs: 1000,
    }).join("\n"),
    /listeners/,
  );
});

Deno.test("the plain table of a server lists its vhost routes with client, proxy and requests by status", () => {
  const stats = served(serverSnapshot());
  assert.ok(stats.role === "server");
  stats.vhost = {
    http_addr: "0.0.0.0:80",
    https_addr: "0.0.0.0:443",
    routes: 3,
    route_list: [
      { kind: "http", host: "app.example.com", location: "/", client: "office", proxy: "web" },
      {
        kind: "http",
        host: "app.example.com",
        location: "/api",
        client: "group 'apis'",
        proxy: "apis",
        group: "apis",
      },
      { kind: "https", host: "shop.example.com", location: "/", client: "office", proxy: "shop" },
    ],
    http_requests: [
      { host: "", status: 503, count: 2 },
      { host: "app.example.com", status: 200, count: 40 },
      { host: "app.example.com", status: 504, count: 1 },
    ],
    http_no_tunnel_total: 2,
    http_timeouts_total: 1,
    https_connections: [{ host: "shop.example.com", count: 7 }],
    https_refused_total: 0,
  };
  const table = renderPlainTable(stats);
  assert.match(table, /\nROUTE\s+KIND\s+CLIENT\s+PROXY\s+GROUP\s+REQUESTS\n/);
  assert.match(table, /\napp\.example\.com\s+http\s+office\s+web\s+-\s+200:40,504:1\n/);
  assert.match(table, /\napp\.example\.com\/api\s+http\s+group 'apis'\s+apis\s+apis\s+200:40,504:1\n/);
  assert.match(table, /\nshop\.example\.com\s+https\s+office\s+shop\s+-\s+7 routed\n?/);
  assert.doesNotMatch(renderPlainTable(served(serverSnapshot())), /^ROUTE/m);
});

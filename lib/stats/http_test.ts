import assert from "node:assert/strict";
import type { LogRecord } from "@logtape/logtape";
import { withLogRecords } from "../../testing/log.ts";
import { EventLog } from "./event_log.ts";
import {
  InsecureStatsEndpointError,
  isTrustedHostHeader,
  MAX_EVENT_STREAMS,
  type ServedStats,
  SESSION_COOKIE,
  startStatsServer,
  type StatsServer,
} from "./http.ts";
import { parseHostHeader } from "./http_auth.ts";
import { PROMETHEUS_CONTENT_TYPE } from "./prometheus.ts";
import { BindError } from "../net/tcp.ts";
import type { StatsSnapshot } from "./snapshot.ts";
import { clientSnapshot, parseExposition, serverSnapshot } from "../../testing/stats_fixtures.ts";

const TOKEN = "stats-token-0123456789abcdef";

/** Runs `body` against an endpoint serving `snapshot`, and stops it afterwards. */
async function withEndpoint(
  options: { token?: string; snapshot?: () => StatsSnapshot; events?: EventLog; pushIntervalMs?: number },
  body: (stats: StatsServer, events: EventLog) => Promise<void>,
): Promise<void> {
  const events = options.events ?? new EventLog();
  const stats = startStatsServer({
    hostname: "127.0.0.1",
    port: 0,
    ...(options.token !== undefined ? { token: options.token } : {}),
    snapshot: options.snapshot ?? serverSnapshot,
    events,
    ...(options.pushIntervalMs !== undefined ? { pushIntervalMs: options.pushIntervalMs } : {}),
  });
  try {
    await body(stats, events);
  } finally {
    await stats.shutdown();
    await stats.finished;
  }
}

/** Reads an SSE body until `count` events arrived; returns them as { event, data }. */
async function readEvents(
  response: Response,
  count: number,
  onEach?: (event: { event: string; data: unknown }) => void,
): Promise<Array<{ event: string; data: unknown }>> {
  assert.ok(response.body);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  const events: Array<{ event: string; data: unknown }> = [];
  let pending = "";
  try {
    while (events.length < count) {
      const { value, done } = await reader.read();
      if (done) break;
      pending += value;
      let end: number;
      while ((end = pending.indexOf("\n\n")) >= 0 && events.length < count) {
        const block = pending.slice(0, end);
        pending = pending.slice(end + 2);
        const event = block.match(/^event: (.*)$/m)?.[1];
        const data = block.match(/^data: (.*)$/m)?.[1];
        if (event === undefined || data === undefined) continue;
        const parsed = { event, data: JSON.parse(data) as unknown };
        events.push(parsed);
        onEach?.(parsed);
      }
    }
  } finally {
    await reader.cancel();
  }
  return events;
}

Deno.test("GET /api/stats serves the snapshot as JSON with the endpoint's clock", async () => {
  await withEndpoint({}, async (stats) => {
    const before = Date.now();
    const response = await fetch(new URL("/api/stats", stats.url));
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type") ?? "", /^application\/json/);
    assert.equal(response.headers.get("cache-control"), "no-store");
    const body = await response.json() as ServedStats;
    const { now_ms, ...snapshot } = body;
    assert.deepEqual(snapshot, serverSnapshot());
    assert.ok(now_ms >= before && now_ms <= Date.now());
  });
});

Deno.test("GET /metrics serves the Prometheus text format; /healthz answers ok", async () => {
  await withEndpoint({ snapshot: () => clientSnapshot() }, async (stats) => {
    const metrics = await fetch(new URL("/metrics", stats.url));
    assert.equal(metrics.headers.get("content-type"), PROMETHEUS_CONTENT_TYPE);
    const exposition = parseExposition(await metrics.text());
    assert.ok(exposition.samples.some((sample) => sample.name === "tls_tunnel_client_connected"));
    const health = await fetch(new URL("/healthz", stats.url));
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { status: "ok", role: "client", state: "waiting" });
  });
});

Deno.test("the dashboard and its assets come from the endpoint itself, under a strict CSP", async () => {
  await withEndpoint({}, async (stats) => {
    const page = await fetch(stats.url);
    assert.equal(page.status, 200);
    const html = await page.text();
    assert.match(page.headers.get("content-security-policy") ?? "", /default-src 'none'; script-src 'self'/);
    assert.doesNotMatch(html, /https?:\/\/(?!www\.w3\.org)/, "no external URL in the page");
    for (const asset of ["/dashboard.js", "/dashboard.css", "/favicon.svg"]) {
      assert.ok(html.includes(asset), `the page loads ${asset}`);
      const response = await fetch(new URL(asset, stats.url));
      assert.equal(response.status, 200, asset);
      const text = await response.text();
      assert.ok(text.length > 100, `${asset} has content`);
      assert.doesNotMatch(text, /https?:\/\/(?!www\.w3\.org)/, `no external URL in ${asset}`);
    }
  });
});

Deno.test("with a token, data routes answer 401 without it and 200 with the bearer token", async () => {
  await withEndpoint({ token: TOKEN }, async (stats) => {
    for (const path of ["/api/stats", "/metrics", "/api/events"]) {
      const anonymous = await fetch(new URL(path, stats.url));
      assert.equal(anonymous.status, 401, path);
      assert.match(anonymous.headers.get("www-authenticate") ?? "", /^Bearer/);
      assert.match((await anonymous.json() as { error: string }).error, /Authorization: Bearer/);
      const wrong = await fetch(new URL(path, stats.url), { headers: { authorization: `Bearer ${TOKEN}x` } });
      assert.equal(wrong.status, 401, `${path} with a wrong token`);
      await wrong.body?.cancel();
    }
    const authorized = await fetch(new URL("/api/stats", stats.url), {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(authorized.status, 200);
    assert.equal((await authorized.json() as ServedStats).role, "server");
    const health = await fetch(new URL("/healthz", stats.url));
    assert.equal(health.status, 200, "health checks need no token");
    await health.body?.cancel();
  });
});

Deno.test("the dashboard login form trades the token for a session cookie", async () => {
  await withEndpoint({ token: TOKEN }, async (stats) => {
    const loginPage = await fetch(stats.url);
    assert.equal(loginPage.status, 200);
    assert.match(await loginPage.text(), /<form[^>]+action="\/login"/);
    const wrong = await fetch(new URL("/login", stats.url), {
      method: "POST",
      body: new URLSearchParams({ token: "nope" }),
      redirect: "manual",
    });
    assert.equal(wrong.status, 401);
    assert.match(await wrong.text(), /not accepted/);
    const login = await fetch(new URL("/login", stats.url), {
      method: "POST",
      body: new URLSearchParams({ token: TOKEN }),
      redirect: "manual",
    });
    assert.equal(login.status, 303);
    await login.body?.cancel();
    const cookie = login.headers.get("set-cookie") ?? "";
    assert.match(cookie, new RegExp(`^${SESSION_COOKIE}=[0-9a-f]{64}; .*HttpOnly; SameSite=Strict`));
    assert.ok(!cookie.includes(TOKEN), "the cookie is not the token");
    const session = cookie.split(";")[0] ?? "";
    const page = await fetch(stats.url, { headers: { cookie: session } });
    assert.equal(page.status, 200);
    assert.match(await page.text(), /dashboard\.js/);
    const api = await fetch(new URL("/api/stats", stats.url), { headers: { cookie: session } });
    assert.equal(api.status, 200);
    await api.body?.cancel();
    const huge = await fetch(new URL("/login", stats.url), {
      method: "POST",
      body: new URLSearchParams({ token: "x".repeat(100_000) }),
    });
    assert.equal(huge.status, 413, "an oversized login form is refused unread");
    await huge.body?.cancel();
    const viaQuery = await fetch(new URL(`/?token=${TOKEN}`, stats.url), { redirect: "manual" });
    assert.equal(viaQuery.status, 303);
    assert.equal(viaQuery.headers.get("location"), "/", "the token leaves the address bar");
    await viaQuery.body?.cancel();
  });
});

/**
 * The status line the endpoint on 127.0.0.1:`port` answers to `GET /api/stats` with `Host: host`.
 * fetch() sets Host from the URL, so this speaks HTTP by hand to choose it.
 */
async function statusLineFor(port: number, host: string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(
      new TextEncoder().encode(`GET /api/stats HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`),
    );
    let text = "";
    const buffer = new Uint8Array(65536);
    while (true) {
      const count = await conn.read(buffer);
      if (count === null) break;
      text += new TextDecoder().decode(buffer.subarray(0, count));
    }
    return text.split("\r\n")[0] ?? "";
  } finally {
    conn.close();
  }
}

Deno.test("without a token, requests under a foreign DNS name are refused (DNS rebinding)", async () => {
  await withEndpoint({}, async (stats) => {
    const ask = (host: string) => statusLineFor(stats.addr.port, host);
    assert.match(await ask("evil.example.com"), / 403 /);
    assert.match(await ask(`localhost:${stats.addr.port}`), / 200 /);
    assert.match(await ask(`127.0.0.1:${stats.addr.port}`), / 200 /);
    assert.match(await ask(`[::1]:${stats.addr.port}`), / 200 /);
    // Ports that are not 1-65535 in digits no longer pass as "localhost with a port".
    for (const host of ["evil.com:", "evil.com:abc", "evil.com.", "[evil.com]:80"]) {
      assert.doesNotMatch(await ask(host), / 200 /, `Host: ${host}`);
    }
  });
});

Deno.test("an unparsable Host header is answered 400, without an error in the log", async () => {
  let records: LogRecord[] = [];
  await withLogRecords(async (logged) => {
    records = logged;
    for (const token of [undefined, TOKEN]) {
      await withEndpoint(token === undefined ? {} : { token }, async (stats) => {
        for (const host of ["evil.com:80:1", "a b", "[::1"]) {
          assert.match(await statusLineFor(stats.addr.port, host), / 400 /, `Host: ${host}`);
        }
        // The endpoint still answers well-formed requests.
        const healthy = await fetch(new URL("/healthz", stats.url));
        assert.equal(healthy.status, 200);
        await healthy.body?.cancel();
      });
    }
  });
  const loud = records.filter((record) => record.level === "error" || record.level === "warning");
  assert.deepEqual(loud.map((record) => record.message.join("")), [], "nothing logged at WARN or ERROR");
});

Deno.test("unknown paths get 404 with the list of endpoints; other methods 405", async () => {
  await withEndpoint({}, async (stats) => {
    const missing = await fetch(new URL("/nope", stats.url));
    assert.equal(missing.status, 404);
    assert.ok((await missing.json() as { endpoints: string[] }).endpoints.includes("/metrics"));
    const post = await fetch(new URL("/api/stats", stats.url), { method: "POST" });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get("allow"), "GET, HEAD");
    await post.body?.cancel();
    const head = await fetch(new URL("/metrics", stats.url), { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(await head.text(), "");
  });
});

Deno.test("/api/events pushes a snapshot at once, then each new event and a fresh snapshot", async () => {
  let sessions = 5;
  await withEndpoint({
    snapshot: () => ({ ...serverSnapshot(), sessions_total: sessions }),
    pushIntervalMs: 60_000,
  }, async (stats, events) => {
    const response = await fetch(new URL("/api/events", stats.url));
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type") ?? "", /^text\/event-stream/);
    const received = await readEvents(response, 3, (event) => {
      if (event.event === "snapshot" && (event.data as ServedStats).sessions_total === 5) {
        sessions = 6;
        events.add({ level: "warning", code: "CLIENT_DISCONNECTED", message: "Client lab disconnected" });
      }
    });
    assert.deepEqual(received.map((event) => event.event), ["snapshot", "notice", "snapshot"]);
    assert.equal((received[1]?.data as { code: string }).code, "CLIENT_DISCONNECTED");
    assert.equal((received[2]?.data as ServedStats).sessions_total, 6, "the pushed snapshot is fresh");
  });
});

Deno.test("/api/events pushes snapshots periodically and shutdown ends open streams", async () => {
  const events = new EventLog();
  const stats = startStatsServer({
    hostname: "127.0.0.1",
    port: 0,
    snapshot: serverSnapshot,
    events,
    pushIntervalMs: 30,
  });
  const response = await fetch(new URL("/api/events", stats.url));
  const received = await readEvents(response, 3);
  assert.deepEqual(received.map((event) => event.event), ["snapshot", "snapshot", "snapshot"]);
  const open = await fetch(new URL("/api/events", stats.url));
  const reading = open.text();
  await stats.shutdown();
  await stats.finished;
  assert.match(await reading, /event: snapshot/, "the open stream ended cleanly at shutdown");
});

Deno.test("more than MAX_EVENT_STREAMS event streams get 503", async () => {
  await withEndpoint({ pushIntervalMs: 60_000 }, async (stats) => {
    const open: Response[] = [];
    try {
      for (let i = 0; i < MAX_EVENT_STREAMS; i++) open.push(await fetch(new URL("/api/events", stats.url)));
      assert.ok(open.every((response) => response.status === 200));
      const refused = await fetch(new URL("/api/events", stats.url));
      assert.equal(refused.status, 503);
      await refused.body?.cancel();
    } finally {
      await Promise.all(open.map((response) => response.body?.cancel()));
    }
  });
});

Deno.test("the endpoint refuses to listen beyond loopback without a token", () => {
  assert.throws(
    () =>
      startStatsServer({ hostname: "0.0.0.0", port: 0, snapshot: serverSnapshot, events: new EventLog() }),
    (error: unknown) => error instanceof InsecureStatsEndpointError && /stats_token/.test(error.message),
  );
});

Deno.test("a taken stats port is reported as a BindError naming stats_port", () => {
  const blocker = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    assert.throws(
      () =>
        startStatsServer({
          hostname: "127.0.0.1",
          port: blocker.addr.port,
          snapshot: serverSnapshot,
          events: new EventLog(),
        }),
      (error: unknown) =>
        error instanceof BindError && error.kind === "address_in_use" && /stats_port/.test(error.message),
    );
  } finally {
    blocker.close();
  }
});

Deno.test("an aborted signal stops the endpoint", async () => {
  const controller = new AbortController();
  const stats = startStatsServer({
    hostname: "127.0.0.1",
    port: 0,
    snapshot: serverSnapshot,
    events: new EventLog(),
    signal: controller.signal,
  });
  const response = await fetch(new URL("/healthz", stats.url));
  await response.body?.cancel();
  controller.abort();
  await stats.finished;
  await assert.rejects(fetch(new URL("/healthz", stats.url)));
});

// The loopback rows moved to lib/net/address_test.ts, the comparisons to lib/text_test.ts.
Deno.test("address helpers: trusted Host headers", () => {
  for (const host of [null, "localhost:9100", "127.0.0.1:9100", "[::1]:9100", "10.1.2.3", "app.localhost"]) {
    assert.ok(isTrustedHostHeader(host), String(host));
  }
  for (const host of ["example.com", "evil.example.com:9100", "localhost.evil.com"]) {
    assert.ok(!isTrustedHostHeader(host), host);
  }
});

Deno.test("hostile Host headers are not trusted: only host[:1-65535] or [IPv6][:port] is", () => {
  for (const host of ["localhost", "LOCALHOST:1", "127.0.0.1:65535", "[::1]", "[::ffff:127.0.0.1]:80"]) {
    assert.ok(isTrustedHostHeader(host), host);
  }
  const hostile = [
    "", // empty
    "evil.com:", // empty port
    "127.0.0.1:", // empty port after a literal
    "evil.com:abc", // non-digit port
    "localhost:12a",
    "localhost:0", // port out of range
    "localhost:65536",
    "localhost:999999",
    "localhost:+80",
    "evil.com.", // trailing dot
    "localhost.",
    "127.0.0.1.",
    "evil.com@127.0.0.1", // userinfo
    "127.0.0.1@evil.com",
    "user:pass@localhost",
    "local host", // spaces
    " localhost",
    "localhost :80",
    "localhost:80 ",
    "evil.com:80:1", // two colons
    "::1", // IPv6 without brackets
    "127.0.0.1::80",
    "[evil.com]", // brackets without IPv6
    "[127.0.0.1]:80",
    "[]",
    "[::1",
    "[::1]80",
    "[::1]:",
    "[::1]:x",
    "127.1", // not a dotted quad, not a name
    "127.0.0.256",
    "a".repeat(254), // overlong
    `${"a.".repeat(150)}localhost`,
    "localhost\r\nX: y",
  ];
  for (const host of hostile) {
    assert.equal(isTrustedHostHeader(host), false, JSON.stringify(host));
  }
});

Deno.test("parseHostHeader splits host and port", () => {
  assert.deepEqual(parseHostHeader("localhost:9100"), { host: "localhost", port: 9100 });
  assert.deepEqual(parseHostHeader("[::1]:9100"), { host: "::1", port: 9100 });
  assert.deepEqual(parseHostHeader("10.0.0.1"), { host: "10.0.0.1", port: undefined });
  assert.deepEqual(parseHostHeader("tunnel.example.com:443"), { host: "tunnel.example.com", port: 443 });
  assert.equal(parseHostHeader("evil.com:"), null);
});

import assert from "node:assert/strict";
import fc from "fast-check";
import { escapeLabelValue, formatSampleValue, renderPrometheus } from "./prometheus.ts";
import { readProcessMetrics, readProcFs } from "./process_metrics.ts";
import { expositionProblems, promtoolProblems } from "../../testing/exposition_lint.ts";
import {
  clientSnapshot,
  type Exposition,
  parseExposition,
  serverSnapshot,
} from "../../testing/stats_fixtures.ts";

/** The family a sample belongs to (histogram parts share their family's name). */
function familyOf(name: string, types: Map<string, string>): string {
  for (const suffix of ["_bucket", "_sum", "_count"]) {
    const base = name.slice(0, -suffix.length);
    if (name.endsWith(suffix) && types.get(base) === "histogram") return base;
  }
  return name;
}

function value(exposition: Exposition, name: string, labels: Record<string, string> = {}): number {
  const found = exposition.samples.filter((sample) =>
    sample.name === name && Object.entries(labels).every(([key, want]) => sample.labels[key] === want)
  );
  assert.equal(found.length, 1, `exactly one ${name}${JSON.stringify(labels)}`);
  return found[0]?.value ?? NaN;
}

Deno.test("server metrics report every counter and gauge from the snapshot", () => {
  const exposition = parseExposition(renderPrometheus(serverSnapshot()));
  assert.equal(value(exposition, "tls_tunnel_info", { role: "server", version: "0.1.0" }), 1);
  assert.equal(value(exposition, "tls_tunnel_start_time_seconds"), 1_700_000_000);
  assert.equal(value(exposition, "tls_tunnel_clients_connected"), 2);
  assert.equal(value(exposition, "tls_tunnel_sessions_total"), 5);
  assert.equal(value(exposition, "tls_tunnel_auth_failures_total"), 2);
  assert.equal(value(exposition, "tls_tunnel_streams_active"), 4);
  assert.equal(value(exposition, "tls_tunnel_client_streams_active", { client: "office" }), 3);
  assert.equal(value(exposition, "tls_tunnel_client_rtt_seconds", { client: "office" }), 0.0015);
  assert.equal(
    exposition.samples.filter((sample) => sample.name === "tls_tunnel_client_rtt_seconds").length,
    1,
    "a client without a measured rtt has no rtt sample",
  );
  const web = { client: "office", proxy: "web" };
  assert.equal(value(exposition, "tls_tunnel_proxy_connections_active", web), 2);
  assert.equal(value(exposition, "tls_tunnel_proxy_connections_total", web), 10);
  assert.equal(value(exposition, "tls_tunnel_proxy_connections_failed_total", web), 1);
  assert.equal(value(exposition, "tls_tunnel_proxy_received_bytes_total", web), 4096);
  assert.equal(value(exposition, "tls_tunnel_proxy_sent_bytes_total", web), 1_048_576);
  assert.equal(value(exposition, "tls_tunnel_proxy_up", web), 1);
  assert.equal(
    value(exposition, "tls_tunnel_proxy_info", { ...web, publish_port: "8080", local_port: "3000" }),
    1,
  );
  const db = { client: 'lab "east"\\x', proxy: "db" };
  assert.equal(value(exposition, "tls_tunnel_proxy_up", db), 0);
  assert.equal(value(exposition, "tls_tunnel_proxy_status", { ...db, status: "bind_failed" }), 1);
  for (const proxy of [web, db, { client: "office", proxy: "ssh" }]) {
    const states = exposition.samples.filter((sample) =>
      sample.name === "tls_tunnel_proxy_status" && sample.labels.client === proxy.client &&
      sample.labels.proxy === proxy.proxy
    );
    assert.equal(states.length, 5, "one sample per possible status");
    assert.equal(states.reduce((sum, sample) => sum + sample.value, 0), 1, "exactly one status is current");
  }
});

Deno.test("stream open latency is a cumulative histogram ending in +Inf = count", () => {
  const snapshot = serverSnapshot();
  const exposition = parseExposition(renderPrometheus(snapshot));
  const name = "tls_tunnel_stream_open_latency_seconds";
  assert.equal(exposition.types.get(name), "histogram");
  const buckets = exposition.samples.filter((sample) => sample.name === `${name}_bucket`);
  assert.deepEqual(buckets.map((bucket) => bucket.labels.le), ["0.001", "0.01", "0.1", "+Inf"]);
  // Observations 0.5 ms, 2 ms, 3 ms, 50 ms, 200 ms.
  assert.deepEqual(buckets.map((bucket) => bucket.value), [1, 3, 4, 5]);
  assert.equal(value(exposition, `${name}_count`), 5);
  assert.ok(Math.abs(value(exposition, `${name}_sum`) - 0.2555) < 1e-9);
});

Deno.test("every family is declared once with HELP and TYPE before its contiguous samples", () => {
  for (const snapshot of [serverSnapshot(), clientSnapshot()]) {
    const text = renderPrometheus(snapshot, 1_700_000_300_000);
    const exposition = parseExposition(text);
    const seen: string[] = [];
    for (const sample of exposition.samples) {
      const family = familyOf(sample.name, exposition.types);
      assert.ok(exposition.types.has(family), `${sample.name} has a TYPE`);
      assert.ok(exposition.helps.has(family), `${sample.name} has a HELP`);
      assert.match(family, /^tls_tunnel_/);
      if (seen.at(-1) !== family) {
        assert.ok(!seen.includes(family), `samples of ${family} are contiguous`);
        seen.push(family);
      }
    }
    for (const [family, type] of exposition.types) {
      if (type === "counter") assert.match(family, /_total$/, `counter ${family} ends in _total`);
      else assert.doesNotMatch(family, /_total$/, `non-counter ${family} does not end in _total`);
      const typeLine = text.indexOf(`# TYPE ${family} `);
      const firstSample = text.search(new RegExp(`^${family}(_bucket|_sum|_count)?[{ ]`, "m"));
      assert.ok(firstSample === -1 || typeLine < firstSample, `TYPE of ${family} comes before its samples`);
    }
  }
});

Deno.test("client metrics show connection state, reconnect countdown and per-proxy series", () => {
  const nowMs = 1_700_000_300_000;
  const exposition = parseExposition(renderPrometheus(clientSnapshot(nowMs), nowMs));
  assert.equal(value(exposition, "tls_tunnel_info", { role: "client" }), 1);
  assert.equal(value(exposition, "tls_tunnel_client_connected"), 0);
  assert.equal(value(exposition, "tls_tunnel_client_state", { state: "waiting" }), 1);
  assert.equal(value(exposition, "tls_tunnel_client_state", { state: "connected" }), 0);
  assert.equal(value(exposition, "tls_tunnel_client_sessions_total"), 3);
  assert.equal(value(exposition, "tls_tunnel_client_reconnects_total"), 2);
  assert.equal(value(exposition, "tls_tunnel_client_next_attempt_seconds"), 3);
  assert.equal(value(exposition, "tls_tunnel_proxy_connections_total", { proxy: "web" }), 7);
  assert.equal(value(exposition, "tls_tunnel_proxy_received_bytes_total", { proxy: "web" }), 100);
  assert.equal(value(exposition, "tls_tunnel_proxy_sent_bytes_total", { proxy: "web" }), 200);
  assert.equal(value(exposition, "tls_tunnel_proxy_status", { proxy: "api", status: "unhealthy" }), 1);
  assert.ok(
    exposition.samples.every((sample) => !("client" in sample.labels)),
    "the client's own series carry no client label",
  );
  assert.ok(!exposition.samples.some((sample) => sample.name === "tls_tunnel_client_rtt_seconds"));
});

Deno.test("any client or proxy name survives label escaping unchanged", () => {
  fc.assert(
    fc.property(
      fc.string({ unit: "binary", maxLength: 40 }),
      fc.string({ maxLength: 20 }),
      (client, proxy) => {
        const snapshot = serverSnapshot();
        const office = snapshot.clients[0];
        const web = office?.proxies[0];
        assert.ok(office && web);
        office.name = client;
        web.name = proxy;
        const exposition = parseExposition(renderPrometheus(snapshot));
        const sample = exposition.samples.find((candidate) =>
          candidate.name === "tls_tunnel_proxy_received_bytes_total" && candidate.labels.proxy === proxy &&
          candidate.labels.client === client
        );
        assert.equal(sample?.value, 4096);
      },
    ),
    { numRuns: 200 },
  );
});

Deno.test("label escaping handles backslash, quote and newline; values spell non-finite numbers", () => {
  assert.equal(escapeLabelValue('a\\b"c\nd'), 'a\\\\b\\"c\\nd');
  assert.equal(formatSampleValue(Infinity), "+Inf");
  assert.equal(formatSampleValue(-Infinity), "-Inf");
  assert.equal(formatSampleValue(NaN), "NaN");
  assert.equal(formatSampleValue(0.25), "0.25");
});

Deno.test("the exposition passes a strict format check (and promtool check metrics when installed)", async () => {
  const process = {
    residentMemoryBytes: 52_428_800,
    cpuSecondsTotal: 1.25,
    openFds: 17,
    maxFds: 1024,
    startTimeSeconds: 1_700_000_000.5,
  };
  for (const snapshot of [serverSnapshot(), clientSnapshot(1_700_000_300_000)]) {
    const text = renderPrometheus(snapshot, 1_700_000_300_000, process);
    assert.deepEqual(expositionProblems(text), [], text);
    const promtool = await promtoolProblems(text);
    if (promtool !== null) assert.deepEqual(promtool, [], text);
  }
});

Deno.test("the strict format check catches what promtool would refuse, and peer-address labels", () => {
  const bad: Array<[string, RegExp]> = [
    ['# TYPE a_total counter\n# HELP a_total x\na_total{remote_addr="1.2.3.4:5555"} 1\n', /peer address/],
    ["# HELP a x\n# TYPE a counter\na 1\n", /should end in _total/],
    ["# HELP a_total x\n# TYPE a_total gauge\na_total 1\n", /should not end in _total/],
    ["# HELP a x\n# TYPE a gauge\na 1\n# HELP b x\n# TYPE b gauge\nb 1\na 2\n", /not contiguous|duplicate/],
    ['# HELP a x\n# TYPE a gauge\na{x="1\\q"} 1\n', /invalid escape/],
    ["# HELP a x\n# TYPE a gauge\na one\n", /invalid value/],
    ["# HELP a x\n# TYPE a gauge\na 1", /line feed/],
    ["# HELP a x\n# TYPE a gauge\na 1\na 2\n", /duplicate series/],
    ['# HELP a x\n# TYPE a gauge\na{c="x",d="x"} 1\na{c="y",d="y"} 1\n', /always equals/],
    [
      '# HELP h x\n# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
      /cumulative/,
    ],
    ["# HELP a_ms x\n# TYPE a_ms gauge\na_ms 1\n", /base units/],
  ];
  for (const [text, problem] of bad) {
    assert.match(expositionProblems(text).join("\n"), problem, text);
  }
});

Deno.test("no metric label holds a peer address or repeats another label", () => {
  const text = renderPrometheus(serverSnapshot());
  assert.doesNotMatch(text, /remote_addr|10\.0\.0\.7:51234/);
  const exposition = parseExposition(text);
  const since = exposition.samples.filter((sample) =>
    sample.name === "tls_tunnel_client_connected_since_seconds"
  );
  assert.deepEqual(since.map((sample) => sample.labels), [{ client: "office" }, { client: 'lab "east"\\x' }]);
});

Deno.test("the client counts failed attempts to reach the server", () => {
  const snapshot = { ...clientSnapshot(1_700_000_300_000), connect_failures_total: 4 };
  const exposition = parseExposition(renderPrometheus(snapshot, 1_700_000_300_000));
  assert.equal(exposition.types.get("tls_tunnel_client_connect_failures_total"), "counter");
  assert.equal(value(exposition, "tls_tunnel_client_connect_failures_total"), 4);
});

Deno.test("process metrics come from /proc when it can be read, and are left out otherwise", async () => {
  const fake = await Deno.makeTempDir({ prefix: "fake_proc_" });
  try {
    await Deno.mkdir(`${fake}/self/fd`, { recursive: true });
    for (const fd of ["0", "1", "2", "3"]) await Deno.writeTextFile(`${fake}/self/fd/${fd}`, "");
    // The command name holds spaces and a parenthesis, as a peer cannot but a process name can.
    const fields = Array.from({ length: 50 }, (_, index) => String(index + 3));
    fields[11] = "250"; // utime, ticks
    fields[12] = "125"; // stime
    fields[19] = "12345"; // starttime, ticks after boot
    await Deno.writeTextFile(`${fake}/self/stat`, `42 (deno (x) y) ${fields.join(" ")}\n`);
    await Deno.writeTextFile(`${fake}/self/status`, "Name:\tdeno\nVmRSS:\t   51200 kB\nThreads:\t4\n");
    await Deno.writeTextFile(
      `${fake}/self/limits`,
      "Limit                     Soft Limit           Hard Limit           Units\n" +
        "Max open files            1024                 524288               files\n",
    );
    await Deno.writeTextFile(`${fake}/stat`, "cpu 1 2 3\nbtime 1700000000\nprocesses 9\n");
    assert.deepEqual(await readProcFs({ dir: fake }), {
      openFds: 3, // four entries, one of them the listing's own
      residentMemoryBytes: 51200 * 1024,
      maxFds: 1024,
      cpuSecondsTotal: 3.75,
      startTimeSeconds: 1_700_000_123.45,
    });
    assert.deepEqual(await readProcFs({ dir: `${fake}/missing` }), {});
    await Deno.writeTextFile(`${fake}/self/stat`, "garbage without a parenthesis");
    const partial = await readProcFs({ dir: fake });
    assert.equal(partial.cpuSecondsTotal, undefined);
    assert.equal(partial.startTimeSeconds, undefined);
  } finally {
    await Deno.remove(fake, { recursive: true });
  }
  // The runtime's figures are there whatever the permissions; /proc's only with --allow-all.
  const real = await readProcessMetrics();
  assert.ok((real.residentMemoryBytes ?? 0) > 1024 * 1024, "resident memory above 1 MiB");
  assert.ok(real.cpuSecondsTotal !== undefined && real.cpuSecondsTotal > 0);
  const startSecs = real.startTimeSeconds ?? 0;
  // Before this runtime's clock origin (deno test type-checks first), and not long before.
  const originSecs = performance.timeOrigin / 1000;
  assert.ok(startSecs <= originSecs + 1 && startSecs > originSecs - 600, `start ${startSecs}`);
  const procReadable = await Deno.readTextFile("/proc/self/status").then(() => true, () => false);
  if (procReadable) {
    assert.ok((real.openFds ?? 0) >= 3, "stdin, stdout, stderr at least");
    assert.ok((real.maxFds ?? 0) >= (real.openFds ?? 0));
  } else {
    assert.equal(real.openFds, undefined, "left out, not reported as 0, when /proc cannot be read");
  }
});

Deno.test("a udp proxy adds its flow and datagram series; the others add none", () => {
  const snapshot = clientSnapshot(1_700_000_300_000);
  const [web] = snapshot.proxies;
  assert.ok(web);
  web.udp = {
    flows_open: 3,
    flows_total: 50,
    flows_evicted: 2,
    flows_idle_closed: 45,
    datagrams_in: 1000,
    datagrams_out: 998,
    dropped: { oversized: 1, empty: 0, queue_full: 4, no_flow: 0, send_failed: 0, foreign_source: 0 },
  };
  const text = renderPrometheus(snapshot, 1_700_000_300_000);
  assert.deepEqual(expositionProblems(text), [], text);
  const exposition = parseExposition(text);
  const labels = { proxy: "web" };
  assert.equal(value(exposition, "tls_tunnel_proxy_udp_flows_open", labels), 3);
  assert.equal(value(exposition, "tls_tunnel_proxy_udp_flows_total", labels), 50);
  assert.equal(
    value(exposition, "tls_tunnel_proxy_udp_flows_closed_total", { ...labels, reason: "evicted" }),
    2,
  );
  assert.equal(
    value(exposition, "tls_tunnel_proxy_udp_flows_closed_total", { ...labels, reason: "idle" }),
    45,
  );
  assert.equal(
    value(exposition, "tls_tunnel_proxy_udp_datagrams_total", { ...labels, direction: "in" }),
    1000,
  );
  assert.equal(
    value(exposition, "tls_tunnel_proxy_udp_datagrams_total", { ...labels, direction: "out" }),
    998,
  );
  assert.equal(
    value(exposition, "tls_tunnel_proxy_udp_datagrams_dropped_total", { ...labels, reason: "queue_full" }),
    4,
  );
  assert.equal(exposition.types.get("tls_tunnel_proxy_udp_datagrams_dropped_total"), "counter");
  assert.ok(
    !exposition.samples.some((sample) =>
      sample.name.startsWith("tls_tunnel_proxy_udp_") && sample.labels.proxy === "api"
    ),
    "the tcp proxy has no udp series",
  );
  const none = renderPrometheus(clientSnapshot(1_700_000_300_000), 1_700_000_300_000);
  assert.doesNotMatch(none, /tls_tunnel_proxy_udp_/);
});

Deno.test("a client with several servers adds per-server series and labels its proxies by server", async () => {
  const nowMs = 1_700_000_300_000;
  const base = clientSnapshot(nowMs);
  const snapshot = {
    ...base,
    state: "connected",
    servers: [
      {
        name: "a",
        server_addr: "127.0.0.2:8443",
        state: "connected",
        next_attempt_at_ms: null,
        sessions_total: 2,
        connect_failures_total: 1,
        rtt_ms: 4,
        session_id: "s1",
        proxies: base.proxies,
      },
      {
        name: "b",
        server_addr: "127.0.0.3:8443",
        state: "waiting",
        next_attempt_at_ms: nowMs + 1500,
        sessions_total: 1,
        connect_failures_total: 3,
        rtt_ms: null,
        session_id: null,
        proxies: base.proxies.map((proxy) => ({ ...proxy, status: "pending" as const })),
      },
    ],
  };
  const text = renderPrometheus(snapshot, nowMs);
  assert.deepEqual(expositionProblems(text), [], text);
  const promtool = await promtoolProblems(text);
  if (promtool !== null) assert.deepEqual(promtool, [], text);
  const exposition = parseExposition(text);
  assert.equal(value(exposition, "tls_tunnel_client_connected"), 1);
  assert.equal(value(exposition, "tls_tunnel_client_server_connected", { server: "a" }), 1);
  assert.equal(value(exposition, "tls_tunnel_client_server_connected", { server: "b" }), 0);
  assert.equal(value(exposition, "tls_tunnel_client_server_state", { server: "b", state: "waiting" }), 1);
  assert.equal(value(exposition, "tls_tunnel_client_server_connect_failures_total", { server: "b" }), 3);
  assert.equal(value(exposition, "tls_tunnel_client_server_rtt_seconds", { server: "a" }), 0.004);
  assert.equal(value(exposition, "tls_tunnel_client_server_next_attempt_seconds", { server: "b" }), 1.5);
  assert.equal(value(exposition, "tls_tunnel_proxy_connections_total", { server: "a", proxy: "web" }), 7);
  assert.equal(value(exposition, "tls_tunnel_proxy_up", { server: "b", proxy: "web" }), 0);
  assert.ok(
    exposition.samples.filter((sample) => sample.name.startsWith("tls_tunnel_proxy_")).every((sample) =>
      "server" in sample.labels
    ),
    "every proxy series names its server",
  );
});

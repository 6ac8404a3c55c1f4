import assert from "node:assert/strict";
import {
  ClientMemory,
  THROUGHPUT_BUCKET_MS,
  THROUGHPUT_BUCKETS,
  ThroughputHistory,
  ThroughputRing,
} from "./client_memory.ts";
import { ProxyStats } from "./proxy_stats.ts";
import type { ProxySnapshot } from "./snapshot.ts";

const T0 = 1_700_000_000_000 - (1_700_000_000_000 % THROUGHPUT_BUCKET_MS);

function live(stats: ProxyStats, name = "web"): ProxySnapshot {
  return {
    name,
    publish_addr: "0.0.0.0",
    publish_port: 8080,
    local_addr: "127.0.0.1",
    local_port: 3000,
    ...stats.toSnapshotFields(),
  };
}

Deno.test("a proxy's counters survive its client's reconnect (same client id), and only that client's", () => {
  const memory = new ClientMemory([]);
  const first = new ProxyStats();
  first.totalConnections = 3;
  first.failedConnections = 1;
  first.bytesIn = 1000;
  first.bytesOut = 2000;
  assert.equal(memory.proxy("office", live(first), T0).bytes_in, 1000);
  memory.sessionEnded("office", "office", [{ name: "web", stats: first }], T0 + 1000);
  // A connection of the old session still drains: its bytes count.
  first.bytesIn += 500;
  const second = new ProxyStats();
  second.totalConnections = 1;
  second.bytesIn = 10;
  const served = memory.proxy("office", live(second), T0 + 2000);
  assert.equal(served.total_connections, 4);
  assert.equal(served.failed_connections, 1);
  assert.equal(served.bytes_in, 1510);
  assert.equal(served.bytes_out, 2000);
  // A third session: the first is folded into numbers, the second kept live.
  memory.sessionEnded("office", "office", [{ name: "web", stats: second }], T0 + 3000);
  memory.sessionEnded("office", "office", [{ name: "web", stats: second }], T0 + 3000); // reported twice
  const third = new ProxyStats();
  assert.equal(memory.proxy("office", live(third), T0 + 4000).bytes_in, 1510);
  // Another client's proxy of the same name starts from zero.
  assert.equal(memory.proxy("lab", live(new ProxyStats()), T0 + 4000).bytes_in, 0);
});

Deno.test("client memory is bounded: the longest-unused client/proxy keys are forgotten", () => {
  const memory = new ClientMemory([], 8);
  for (let index = 0; index < 100; index++) {
    const stats = new ProxyStats();
    stats.bytesIn = 1;
    memory.sessionEnded(`flood-${index}`, `flood-${index}`, [{ name: "web", stats }]);
  }
  assert.equal(memory.size, 8);
  assert.equal(memory.proxy("flood-0", live(new ProxyStats()), T0).bytes_in, 0, "forgotten");
});

Deno.test("configured clients without a session are offline, with when they were last seen", () => {
  const memory = new ClientMemory(["office", "lab", "branch"]);
  memory.sessionEnded("lab-host", "lab", [], T0 + 5000);
  memory.sessionEnded("stranger", "stranger", [], T0 + 6000); // not configured: not listed
  assert.deepEqual(memory.offlineClients(["office"]), [
    { name: "lab", last_seen_ms: T0 + 5000 },
    { name: "branch", last_seen_ms: null },
  ]);
});

Deno.test("the throughput ring keeps one hour of per-minute bytes, spreading long gaps", () => {
  const ring = new ThroughputRing();
  ring.observe(0, 0, T0);
  ring.observe(600, 60, T0 + 30_000);
  ring.observe(1200, 120, T0 + THROUGHPUT_BUCKET_MS + 1000);
  let snap = ring.snapshot();
  assert.equal(snap.bytes_in.length, THROUGHPUT_BUCKETS);
  assert.equal(snap.bucket_secs, 60);
  assert.equal(snap.end_ms, T0 + 2 * THROUGHPUT_BUCKET_MS);
  const newest = snap.bytes_in.at(-1) ?? 0;
  const before = snap.bytes_in.at(-2) ?? 0;
  assert.equal(Math.round(newest + before), 1200, "every byte lands in a bucket");
  assert.ok(before > newest, "the bytes of the first minute stay in the first minute");
  // Ten minutes without an observation: the bytes are spread over them, not dumped into the last one.
  ring.observe(1200 + 10_000, 120, T0 + 11 * THROUGHPUT_BUCKET_MS + 1000);
  snap = ring.snapshot();
  // 10,000 bytes over 600 s: the nine whole minutes in between get 1,000 each.
  const wholeMinutes = snap.bytes_in.slice(-10, -1);
  assert.ok(wholeMinutes.every((bytes) => Math.abs(bytes - 1000) < 1e-6), JSON.stringify(wholeMinutes));
  assert.equal(Math.round(snap.bytes_in.reduce((sum, bytes) => sum + bytes, 0)), 11_200);
  // More than an hour later: everything older has rolled out; a counter reset starts a new baseline.
  ring.observe(0, 0, T0 + 200 * THROUGHPUT_BUCKET_MS);
  snap = ring.snapshot();
  assert.deepEqual(snap.bytes_in, new Array(THROUGHPUT_BUCKETS).fill(0));
  ring.observe(50, 5, T0 + 200 * THROUGHPUT_BUCKET_MS + 10);
  assert.equal(ring.snapshot().bytes_in.at(-1), 50);
});

Deno.test("a served proxy carries its last hour of throughput", () => {
  const memory = new ClientMemory([]);
  const stats = new ProxyStats();
  memory.proxy("office", live(stats), T0);
  stats.bytesIn = 4096;
  stats.bytesOut = 1024;
  const served = memory.proxy("office", live(stats), T0 + 10_000);
  assert.equal(served.throughput?.bytes_in.at(-1), 4096);
  assert.equal(served.throughput?.bytes_out.at(-1), 1024);
});

Deno.test("the client's proxies carry their last hour of throughput too", () => {
  const history = new ThroughputHistory();
  const stats = new ProxyStats();
  history.serve(live(stats), T0);
  stats.bytesOut = 777;
  assert.equal(history.serve(live(stats), T0 + 5000).throughput?.bytes_out.at(-1), 777);
});

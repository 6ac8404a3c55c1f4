import assert from "node:assert/strict";
import type { ProxySnapshot } from "../stats/snapshot.ts";
import { mergeProxySnapshots } from "./multi_server_snapshot.ts";

function proxy(name: string, fields: Partial<ProxySnapshot> = {}): ProxySnapshot {
  return {
    name,
    publish_addr: "127.0.0.2",
    publish_port: 8080,
    local_addr: "127.0.0.1",
    local_port: 3000,
    status: "healthy",
    last_error: null,
    active_connections: 1,
    total_connections: 10,
    failed_connections: 2,
    bind_retries: 0,
    bytes_in: 100,
    bytes_out: 1000,
    ...fields,
  };
}

Deno.test("merged proxies: each name once, counters summed, healthy while any server publishes it", () => {
  const merged = mergeProxySnapshots([
    [proxy("web", { status: "pending", publish_addr: "127.0.0.2", publish_port: 0 }), proxy("db")],
    [proxy("web", { publish_addr: "127.0.0.3" }), proxy("db", { status: "unhealthy", last_error: "down" })],
  ]);
  assert.deepEqual(merged.map((p) => [p.name, p.status, p.publish_addr, p.publish_port]), [
    ["web", "healthy", "127.0.0.3", 8080],
    ["db", "healthy", "127.0.0.2", 8080],
  ]);
  const web = merged[0];
  assert.deepEqual(
    [web?.active_connections, web?.total_connections, web?.failed_connections, web?.bytes_in, web?.bytes_out],
    [2, 20, 4, 200, 2000],
  );
  // Down everywhere: the first server's status and error.
  const down = mergeProxySnapshots([
    [proxy("web", { status: "unhealthy", last_error: "a" })],
    [proxy("web", { status: "pending", last_error: null })],
  ]);
  assert.deepEqual([down[0]?.status, down[0]?.last_error], ["unhealthy", "a"]);
});

Deno.test("merged throughput is summed bucket by bucket, aligned on the newest", () => {
  const merged = mergeProxySnapshots([
    [proxy("web", {
      throughput: { bucket_secs: 60, end_ms: 1000, bytes_in: [1, 2, 3], bytes_out: [0, 0, 1] },
    })],
    [proxy("web", { throughput: { bucket_secs: 60, end_ms: 1200, bytes_in: [10, 20], bytes_out: [5, 5] } })],
    [proxy("web")],
  ]);
  assert.deepEqual(merged[0]?.throughput, {
    bucket_secs: 60,
    end_ms: 1200,
    bytes_in: [1, 12, 23],
    bytes_out: [0, 5, 6],
  });
});

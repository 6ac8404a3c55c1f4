/**
 * A short soak (see testing/soak.ts): idle and half-handshaken connections, wrong-key and register
 * floods, held 1 KiB echo connections and `kill -9` of a client, all at once against the real server
 * and client processes, while a canary client round-trips through the server.
 */

import assert from "node:assert/strict";
import { formatSoakReport, runSoak, SOAK_BARS, TEST_SCALE, watchedProcesses } from "../testing/soak.ts";

Deno.test("under floods and a client killed with -9, a canary client never fails and the server gives back its descriptors and memory", async () => {
  const report = await runSoak({ seconds: 15, seed: 7, scale: TEST_SCALE, settleSecs: 20 });
  const table = formatSoakReport(report);
  console.log(table);
  const canary = report.canary as { rounds: number; errors: number };
  assert.ok(canary.rounds > 0, `the canary made no round trip\n${table}`);
  assert.equal(canary.errors, 0, `canary errors\n${table}`);
  for (const p of watchedProcesses(report)) {
    assert.ok(
      p.fds_after <= p.fds_before + SOAK_BARS.fdSlack,
      `${p.label}: ${p.fds_after} fds after, ${p.fds_before} before\n${table}`,
    );
    assert.ok(
      p.rss_after_bytes <= SOAK_BARS.rssRatio * p.rss_before_bytes,
      `${p.label}: RSS ${p.rss_after_bytes} after, more than 1.25 × ${p.rss_before_bytes} before\n${table}`,
    );
  }
  const [server] = watchedProcesses(report);
  assert.ok(server, `no server figures\n${table}`);
  assert.ok(
    server.heap_used_after_full_gc_bytes <= server.heap_used_before_bytes + SOAK_BARS.heapSlackBytes,
    `server: JS heap in use after a full GC grew from ${server.heap_used_before_bytes} to ` +
      `${server.heap_used_after_full_gc_bytes} bytes (live objects kept after every connection ended)\n${table}`,
  );
  assert.ok(
    (report.faults["worker:restarted"] ?? 0) >= 1,
    `the worker client was never killed and restarted\n${table}`,
  );
});

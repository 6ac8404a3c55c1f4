/**
 * Live fuzz of the real server over real TLS (see testing/fuzz_run.ts): 2,000+ seeded cases of mutated
 * yamux frames, JSON-RPC bodies, authenticate and register_proxies params and stream headers, from
 * many loopback addresses at once, while a canary client round-trips through the server. The seed is
 * fixed so a failure replays with `deno task fuzz --seed <seed> --cases 2000`; `FUZZ_SEED` overrides it.
 * Then the other direction: a hand-driven server sends a real client 500 data streams with mutated headers.
 */

import assert from "node:assert/strict";
import { formatFuzzReport, runFuzz } from "../testing/fuzz_run.ts";
import { formatClientFuzzReport, runClientFuzz } from "../testing/client_fuzz.ts";

const SEED = Number(Deno.env.get("FUZZ_SEED") ?? 20261129);

Deno.test("hostile sessions over TLS neither crash nor stall the server, leak no port, and never disturb a working client", async () => {
  const report = await runFuzz({ seed: SEED, cases: 2000, concurrency: 10 });
  const table = formatFuzzReport(report);
  console.log(table);
  assert.ok(report.cases >= 2000, `only ${report.cases} cases ran\n${table}`);
  for (const invariant of report.invariants) {
    assert.ok(
      invariant.ok,
      `${invariant.name}: ${invariant.detail} (seed ${SEED}; replay: ${report.replay})\n${table}`,
    );
  }
});

Deno.test("hostile data-stream headers from the server cost the client that stream only, never its session", async () => {
  const report = await runClientFuzz({ seed: SEED, cases: 500 });
  const table = formatClientFuzzReport(report);
  console.log(table);
  assert.ok(report.cases >= 500, `only ${report.cases} cases ran\n${table}`);
  for (const invariant of report.invariants) {
    assert.ok(invariant.ok, `${invariant.name}: ${invariant.detail} (seed ${SEED})\n${table}`);
  }
});

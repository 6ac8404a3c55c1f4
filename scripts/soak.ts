/**
 * `deno task soak [--minutes N] [--seed N] [--only echo,kill,…]`: the soak of `testing/soak.ts` at full
 * scale (2,000 idle connections and 1,000 more from one address, 300 stalled handshakes, 20 wrong keys/s, 10 register floods/s, 2,000 held 1 KiB echo
 * connections, a client killed with -9 every ~30 s) for N minutes (default 5). Prints a table, writes
 * `bench/results/soak-<time>.json`, and exits 1 when the canary saw an error or the server's descriptors
 * or memory did not come back (fds ≤ before + 10, RSS ≤ 1.25 × before, JS heap after a forced full GC ≤
 * before + 16 MiB).
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  formatSoakReport,
  FULL_SCALE,
  runSoak,
  SOAK_BARS,
  SOAK_FAULTS,
  type SoakFault,
  watchedProcesses,
} from "../testing/soak.ts";
import { writeReport } from "../testing/live_tunnel.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { minutes: { type: "string", default: "5" }, seed: { type: "string" }, only: { type: "string" } },
});
const minutes = Number(values.minutes);
const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);
if (!(minutes > 0) || !Number.isSafeInteger(seed)) {
  console.error(
    `--minutes must be a positive number and --seed an integer (got ${values.minutes}, ${values.seed})`,
  );
  Deno.exit(2);
}
const faults = values.only?.split(",") as SoakFault[] | undefined;
const unknown = faults?.filter((fault) => !SOAK_FAULTS.includes(fault));
if (unknown?.length) {
  console.error(`--only takes ${SOAK_FAULTS.join(", ")} (comma-separated); got ${unknown.join(", ")}`);
  Deno.exit(2);
}
console.log(`Soak: ${minutes} min, seed ${seed}${faults ? `, only ${faults.join(", ")}` : ""}`);
const report = await runSoak({
  seconds: minutes * 60,
  seed,
  scale: FULL_SCALE,
  log: (line) => console.log(line),
  ...(faults ? { faults } : {}),
});
console.log(formatSoakReport(report));
console.log(`Report: ${await writeReport("soak", report)}`);
const canary = report.canary as { errors: number };
const failures = [
  ...(canary.errors > 0 ? [`canary saw ${canary.errors} errors`] : []),
  ...watchedProcesses(report).flatMap((p) => {
    return [
      ...(p.heap_used_after_full_gc_bytes > p.heap_used_before_bytes + SOAK_BARS.heapSlackBytes
        ? [`${p.label}: JS heap after a full GC ${p.heap_used_after_full_gc_bytes} > before + 16 MiB`]
        : []),
      ...(p.fds_after > p.fds_before + SOAK_BARS.fdSlack
        ? [`${p.label}: ${p.fds_after} fds after vs ${p.fds_before} before`]
        : []),
      ...(p.rss_after_bytes > SOAK_BARS.rssRatio * p.rss_before_bytes
        ? [`${p.label}: RSS after ${p.rss_after_bytes} > 1.25 × ${p.rss_before_bytes}`]
        : []),
    ];
  }),
];
if (failures.length) {
  console.log(`FAILED (seed ${seed}): ${failures.join("; ")}`);
  Deno.exit(1);
}

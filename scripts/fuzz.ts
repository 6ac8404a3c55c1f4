/**
 * `deno task fuzz [--seed N] [--cases N] [--concurrency N] [--only I,J]`: the live fuzz harness of
 * `tests/_fuzz_run.ts` at scale (default 100,000 cases, random seed). Prints a table, writes
 * `bench/results/fuzz-<time>.json`, and exits 1 when an invariant broke (the table names the seed and
 * the replay command).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { formatFuzzReport, runFuzz } from "../tests/_fuzz_run.ts";
import { writeReport } from "../tests/_live_tunnel.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    seed: { type: "string" },
    cases: { type: "string", default: "100000" },
    concurrency: { type: "string", default: "8" },
    only: { type: "string" },
  },
});

function integer(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isSafeInteger(value)) {
    console.error(`--${name} must be an integer, got ${JSON.stringify(text)}`);
    Deno.exit(2);
  }
  return value;
}

const seed = integer("seed", values.seed, Math.floor(Math.random() * 2 ** 31));
const cases = integer("cases", values.cases, 100_000);
const concurrency = integer("concurrency", values.concurrency, 8);
const only = values.only?.split(",").map((index) => integer("only", index, 0));
console.log(
  `Live fuzz: seed ${seed}, ${only ? `scripts ${only.join(",")}` : `${cases} cases`}, ${concurrency} at once`,
);
const report = await runFuzz({
  seed,
  cases,
  concurrency,
  ...(only ? { only } : {}),
  log: (line) => console.log(line),
});
console.log(formatFuzzReport(report));
console.log(`Report: ${await writeReport("fuzz", report)}`);
if (!report.ok) {
  console.log(`FAILED with seed ${seed}; replay: ${report.replay}`);
  Deno.exit(1);
}

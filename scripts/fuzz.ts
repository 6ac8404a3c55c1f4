/**
 * `deno task fuzz [--seed N] [--cases N] [--concurrency N] [--only I,J] [--client-cases N]`: the live fuzz of
 * `testing/fuzz_run.ts` at scale (default 100,000 cases, random seed), then the client's stream-header fuzz
 * of `testing/client_fuzz.ts` (`--client-cases`, default a twentieth of `--cases`). Prints tables, writes
 * `bench/results/fuzz-<time>.json`, and exits 1 when an invariant broke (the table names the seed and
 * the replay command).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { formatFuzzReport, runFuzz } from "../testing/fuzz_run.ts";
import { formatClientFuzzReport, runClientFuzz } from "../testing/client_fuzz.ts";
import { writeReport } from "../testing/live_tunnel.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    seed: { type: "string" },
    cases: { type: "string", default: "100000" },
    concurrency: { type: "string", default: "8" },
    only: { type: "string" },
    "client-cases": { type: "string" },
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
const clientCases = integer("client-cases", values["client-cases"], only ? 0 : Math.ceil(cases / 20));
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
const clientReport = clientCases > 0 ? await runClientFuzz({ seed, cases: clientCases }) : null;
if (clientReport) console.log(formatClientFuzzReport(clientReport));
console.log(`Report: ${await writeReport("fuzz", { server: report, client: clientReport })}`);
if (!report.ok || (clientReport && !clientReport.ok)) {
  console.log(`FAILED with seed ${seed}; replay: ${report.ok ? clientReport?.replay : report.replay}`);
  Deno.exit(1);
}

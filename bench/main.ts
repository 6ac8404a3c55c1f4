/**
 * Benchmark entry point: `deno task bench [--quick] [--only mux,tunnel] [--runs N] [--topology worker|same]
 * [--no-save]`. Prints a table on stdout, progress on stderr, and writes the full report as JSON to
 * `bench/results/<ISO timestamp>.json`. See bench/README.md.
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  type BenchContext,
  type BenchReport,
  type BenchSection,
  type CaseResult,
  formatTable,
  machineInfo,
  resultFileName,
  runSection,
} from "./_harness.ts";
import { SECTIONS } from "./sections/mod.ts";
import { stopAllChildren } from "./e2e/processes.ts";

const USAGE = `Usage: deno task bench [options]

Options:
  --quick                 fewer and smaller runs (a quick look, not figures to quote)
  --only NAME[,NAME...]   run only these sections, or groups of them (available: ${
  SECTIONS.map((s) => s.name).join(", ")
}; "tunnel" selects every tunnel-* section)
  --runs N                measured runs per case (default: the section's own; mux: 11 full, 3 quick)
  --topology worker|same  network cases: receiver in a Worker thread (default) or in the main thread
  --no-save               do not write bench/results/<timestamp>.json
  -h, --help              show this help`;

function selectSections(only: readonly string[]): BenchSection[] {
  if (only.length === 0) return [...SECTIONS];
  const wanted = only.flatMap((value) => value.split(",")).map((name) => name.trim()).filter(Boolean);
  const known = new Set(SECTIONS.map((section) => section.name));
  // A group name selects every section named "<group>-…" (e.g. "tunnel" selects tunnel-throughput, …).
  const matches = (section: BenchSection, name: string) =>
    section.name === name || section.name.startsWith(`${name}-`);
  const unknown = wanted.filter((name) => !SECTIONS.some((section) => matches(section, name)));
  if (unknown.length > 0) {
    throw new Error(
      `Unknown bench section(s) ${unknown.map((name) => `"${name}"`).join(", ")}; ` +
        `choose from ${[...known].join(", ")}`,
    );
  }
  return SECTIONS.filter((section) => wanted.some((name) => matches(section, name)));
}

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      quick: { type: "boolean", default: false },
      only: { type: "string", multiple: true, default: [] },
      runs: { type: "string" },
      topology: { type: "string", default: "worker" },
      "no-save": { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const topology = values.topology;
  if (topology !== "worker" && topology !== "same") {
    throw new Error(`--topology must be "worker" or "same", got "${topology}"`);
  }
  let runsOverride: number | null = null;
  if (values.runs !== undefined) {
    runsOverride = Number(values.runs);
    if (!Number.isInteger(runsOverride) || runsOverride < 1 || runsOverride > 50) {
      throw new Error(`--runs must be a whole number from 1 to 50, got "${values.runs}"`);
    }
  }
  const sections = selectSections(values.only);
  const context: BenchContext = {
    quick: values.quick,
    topology,
    log: (message) => console.error(`[bench] ${message}`),
  };

  const startedAt = new Date();
  const report: BenchReport = {
    startedAt: startedAt.toISOString(),
    finishedAt: "",
    quick: context.quick,
    topology,
    machine: machineInfo(),
    sections: [],
    results: [],
  };
  context.log(
    `deno ${report.machine.deno}, ${report.machine.os}/${report.machine.arch}, ` +
      `${report.machine.cpuCount} CPU(s)${report.machine.cpuModel ? ` (${report.machine.cpuModel})` : ""}, ` +
      `${context.quick ? "quick" : "full"} mode, topology ${topology}`,
  );
  try {
    for (const section of sections) {
      const effective: BenchSection = runsOverride === null
        ? section
        : { ...section, runs: () => runsOverride };
      context.log(`section ${section.name}: ${section.description}`);
      const { results, elapsedMs, rounds } = await runSection(effective, context);
      report.sections.push({
        name: section.name,
        description: section.description,
        elapsedMs: Math.round(elapsedMs),
        budgetMs: section.budgetMs(context),
        rounds,
      });
      report.results.push(...results);
      context.log(`section ${section.name} took ${(elapsedMs / 1000).toFixed(1)} s`);
    }
  } finally {
    // Whatever a section started and did not stop (a failed teardown) is stopped here.
    await stopAllChildren();
  }
  report.finishedAt = new Date().toISOString();

  console.log(formatTable(report.results));
  printErrors(report.results);
  if (!values["no-save"]) {
    const directory = new URL("./results/", import.meta.url);
    await Deno.mkdir(directory, { recursive: true });
    const file = new URL(resultFileName(startedAt), directory);
    await Deno.writeTextFile(file, JSON.stringify(report, null, 2) + "\n");
    console.log(`\nReport written to ${file.pathname}`);
  }
  return report.results.some((result) => result.skipped === null && result.runs.length === 0) ? 1 : 0;
}

function printErrors(results: readonly CaseResult[]): void {
  const skipReasons = new Set<string>();
  for (const result of results) {
    if (result.skipped !== null) skipReasons.add(`- ${result.section}: ${result.skipped}`);
    for (const error of result.errors) console.log(`! ${result.section}/${result.name}: ${error}`);
  }
  if (skipReasons.size > 0) console.log(`\nSkipped cases:\n${[...skipReasons].join("\n")}`);
}

if (import.meta.main) {
  let code: number;
  try {
    code = await main(Deno.args);
  } catch (error) {
    console.error(`bench: ${error instanceof Error ? error.message : String(error)}`);
    code = 2;
  }
  // Exit explicitly: a case aborted on timeout may leave a stuck operation behind, and the bench must end.
  Deno.exit(code);
}

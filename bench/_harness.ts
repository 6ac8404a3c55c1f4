/**
 * The benchmark harness: runs pluggable sections of cases, several measured runs each, and reports the
 * median, minimum and maximum of every case together with its ratio to a baseline measured in the same
 * run. Sections live in `bench/sections/` and are listed in `bench/sections/mod.ts`.
 *
 * Runs are interleaved: round 1 runs every case of a section once, then round 2, and so on, so slow drift
 * of the machine (other load, CPU frequency) affects a case and its baseline alike.
 *
 * @module
 */

/** What a section and its cases get to know about the current run. */
export interface BenchContext {
  /** Fewer and smaller runs, for a quick look (seconds, not minutes). */
  readonly quick: boolean;
  /** How the sender and the receiver of network cases are placed (see bench/README.md). */
  readonly topology: "worker" | "same";
  /** Prints a progress line on stderr (the table goes to stdout). */
  log(message: string): void;
}

/** A bar a case should clear, expressed as the least acceptable ratio to its baseline. */
export interface BenchBar {
  /** Least acceptable `median / baseline median` (for cases where higher is better). */
  readonly minRatio: number;
}

/** One measured case. `run` performs one measurement and returns the figure in `unit`. */
export interface BenchCase {
  /** Short unique name within its section, e.g. "yamux 8 streams". */
  readonly name: string;
  /** What is measured, e.g. "throughput". */
  readonly metric: string;
  /** Unit of the figure `run` returns, e.g. "MB/s". */
  readonly unit: string;
  /** Name of the case in the same section this one is compared with; absent for baselines. */
  readonly baseline?: string;
  /** Bar to show next to the ratio. */
  readonly bar?: BenchBar;
  /** Parameters recorded in the JSON so figures can be compared later (sizes, counts). */
  readonly params: Readonly<Record<string, number | string>>;
  /**
   * Performs one measurement. Must stop promptly and release every resource when `signal` aborts
   * (the harness aborts a run that exceeds its time limit).
   */
  run(signal: AbortSignal): Promise<number>;
}

/** A pluggable group of cases, e.g. "mux", "tunnel", "ssh". */
export interface BenchSection {
  /** Name used by `--only`. */
  readonly name: string;
  /** One sentence about what the section measures. */
  readonly description: string;
  /** Measured runs per case (after one warm-up run). */
  runs(context: BenchContext): number;
  /** Wall-clock budget for the section; no new round starts once it is spent. */
  budgetMs(context: BenchContext): number;
  /** Longest a single run may take before it is aborted and reported as failed. */
  runTimeoutMs(context: BenchContext): number;
  /** Prepares shared resources (workers, listeners) and returns the cases with a teardown. */
  setup(context: BenchContext): Promise<SectionInstance>;
}

/** A set-up section: its cases and how to release what `setup` created. */
export interface SectionInstance {
  readonly cases: readonly BenchCase[];
  teardown(): Promise<void>;
}

/** The figures of one case after all its runs. */
export interface CaseResult {
  section: string;
  name: string;
  metric: string;
  unit: string;
  params: Record<string, number | string>;
  /** Every measured run, in order (warm-up excluded). */
  runs: number[];
  median: number | null;
  min: number | null;
  max: number | null;
  baseline: string | null;
  /** `median / baseline median`, or null when there is no baseline or a figure is missing. */
  ratio: number | null;
  bar: { minRatio: number; met: boolean | null } | null;
  /** Why runs are missing, if some failed. */
  errors: string[];
}

/** The whole report, as written to `bench/results/<timestamp>.json`. */
export interface BenchReport {
  startedAt: string;
  finishedAt: string;
  quick: boolean;
  topology: "worker" | "same";
  machine: MachineInfo;
  sections: { name: string; description: string; elapsedMs: number; budgetMs: number; rounds: number }[];
  results: CaseResult[];
}

/** What the figures were measured on. */
export interface MachineInfo {
  deno: string;
  v8: string;
  typescript: string;
  os: string;
  arch: string;
  osRelease: string;
  cpuCount: number;
  cpuModel: string | null;
  loadAverage: number[] | null;
  totalMemoryBytes: number | null;
}

/** Median of `values` (mean of the middle two for an even count); null when empty. */
export function median(values: readonly number[]): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  const upper = sorted[middle] ?? 0;
  if (sorted.length % 2 === 1) return upper;
  const lower = sorted[middle - 1] ?? upper;
  return (lower + upper) / 2;
}

/** Collects what the report says about the machine; every probe is optional. */
export function machineInfo(): MachineInfo {
  let cpuModel: string | null = null;
  if (Deno.build.os === "linux") {
    let cpuinfo = "";
    try {
      cpuinfo = Deno.readTextFileSync("/proc/cpuinfo");
    } catch {
      // Deno grants /proc/cpuinfo only with --allow-all; `cat` works with the bench task's --allow-run.
      try {
        const output = new Deno.Command("cat", { args: ["/proc/cpuinfo"], stderr: "null" }).outputSync();
        if (output.success) cpuinfo = new TextDecoder().decode(output.stdout);
      } catch {
        // No permission either way: the model is a nice-to-have.
      }
    }
    cpuModel = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? null;
  }
  let loadAverage: number[] | null = null;
  let totalMemoryBytes: number | null = null;
  try {
    loadAverage = Deno.loadavg();
    totalMemoryBytes = Deno.systemMemoryInfo().total;
  } catch {
    // Needs --allow-sys; the figures stand without it.
  }
  let osRelease = "";
  try {
    osRelease = Deno.osRelease();
  } catch {
    // Needs --allow-sys.
  }
  return {
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    typescript: Deno.version.typescript,
    os: Deno.build.os,
    arch: Deno.build.arch,
    osRelease,
    cpuCount: navigator.hardwareConcurrency,
    cpuModel,
    loadAverage,
    totalMemoryBytes,
  };
}

/** Raised when one run exceeds the section's per-run time limit. */
export class BenchRunTimeoutError extends Error {
  override name = "BenchRunTimeoutError";
}

/** Runs `benchCase` once, aborting it after `timeoutMs`. */
async function runOnce(benchCase: BenchCase, timeoutMs: number): Promise<number> {
  const controller = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const error = new BenchRunTimeoutError(
        `"${benchCase.name}" did not finish one run within ${timeoutMs} ms; it was aborted`,
      );
      controller.abort(error);
      reject(error);
    }, timeoutMs);
  });
  const running = benchCase.run(controller.signal);
  try {
    return await Promise.race([running, timeout]);
  } finally {
    clearTimeout(timer);
    // A run that lost the race still settles (it was aborted); wait a moment so its resources are freed
    // before the next run starts, without letting a stuck run hang the bench.
    await Promise.race([running.catch(() => {}), new Promise((resolve) => setTimeout(resolve, 2_000))]);
  }
}

/** Runs one section: setup, a warm-up run per case, interleaved measured rounds, teardown. */
export async function runSection(
  section: BenchSection,
  context: BenchContext,
): Promise<{ results: CaseResult[]; elapsedMs: number; rounds: number }> {
  const started = performance.now();
  const runs = section.runs(context);
  const budgetMs = section.budgetMs(context);
  const timeoutMs = section.runTimeoutMs(context);
  const instance = await section.setup(context);
  const measured = new Map<string, { runs: number[]; errors: string[] }>();
  for (const benchCase of instance.cases) measured.set(benchCase.name, { runs: [], errors: [] });
  let rounds = 0;
  try {
    // Round 0 is the warm-up: it lets the JIT compile the hot paths and the kernel size its buffers.
    for (let round = 0; round <= runs; round++) {
      if (round > 1 && performance.now() - started > budgetMs) {
        context.log(`${section.name}: time budget of ${budgetMs} ms spent after ${round - 1} round(s)`);
        break;
      }
      for (const benchCase of instance.cases) {
        const record = measured.get(benchCase.name);
        if (record === undefined) continue;
        try {
          const value = await runOnce(benchCase, timeoutMs);
          if (round > 0) record.runs.push(value);
          context.log(
            `${section.name}: ${round === 0 ? "warm-up" : `round ${round}/${runs}`} ${benchCase.name}: ` +
              `${formatNumber(value)} ${benchCase.unit}`,
          );
        } catch (error) {
          const message = error instanceof Error ? error.message : String(error);
          record.errors.push(`round ${round}: ${message}`);
          context.log(`${section.name}: ${benchCase.name} failed in round ${round}: ${message}`);
        }
      }
      if (round > 0) rounds = round;
    }
  } finally {
    await instance.teardown();
  }

  const medians = new Map<string, number | null>();
  for (const [name, record] of measured) medians.set(name, median(record.runs));
  const results = instance.cases.map((benchCase): CaseResult => {
    const record = measured.get(benchCase.name) ?? { runs: [], errors: [] };
    const caseMedian = medians.get(benchCase.name) ?? null;
    const baselineMedian = benchCase.baseline === undefined ? null : medians.get(benchCase.baseline) ?? null;
    const ratio = caseMedian !== null && baselineMedian !== null && baselineMedian > 0
      ? caseMedian / baselineMedian
      : null;
    return {
      section: section.name,
      name: benchCase.name,
      metric: benchCase.metric,
      unit: benchCase.unit,
      params: { ...benchCase.params },
      runs: record.runs,
      median: caseMedian,
      min: record.runs.length === 0 ? null : Math.min(...record.runs),
      max: record.runs.length === 0 ? null : Math.max(...record.runs),
      baseline: benchCase.baseline ?? null,
      ratio,
      bar: benchCase.bar === undefined
        ? null
        : { minRatio: benchCase.bar.minRatio, met: ratio === null ? null : ratio >= benchCase.bar.minRatio },
      errors: record.errors,
    };
  });
  return { results, elapsedMs: performance.now() - started, rounds };
}

/** Formats a figure with about four significant digits and thousands separators. */
export function formatNumber(value: number | null): string {
  if (value === null || !Number.isFinite(value)) return "-";
  const abs = Math.abs(value);
  const digits = abs >= 1000 ? 0 : abs >= 100 ? 1 : abs >= 10 ? 2 : 3;
  return value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/**
 * Formats a ratio with two decimals, rounded down, so a ratio just under a bar never prints as meeting it
 * (0.596 prints 0.59, not 0.60).
 */
export function formatRatio(ratio: number): string {
  return (Math.floor(ratio * 100) / 100).toFixed(2);
}

/** Renders results as an aligned text table. */
export function formatTable(results: readonly CaseResult[]): string {
  const header = [
    "section",
    "case",
    "metric",
    "median",
    "min",
    "max",
    "unit",
    "runs",
    "ratio vs baseline",
    "bar",
  ];
  const rows = results.map((result) => [
    result.section,
    result.name,
    result.metric,
    formatNumber(result.median),
    formatNumber(result.min),
    formatNumber(result.max),
    result.unit,
    String(result.runs.length),
    result.baseline === null
      ? "(baseline)"
      : result.ratio === null
      ? `- vs ${result.baseline}`
      : `${formatRatio(result.ratio)}x ${result.baseline}`,
    result.bar === null
      ? ""
      : `>= ${result.bar.minRatio.toFixed(2)} ${
        result.bar.met === null ? "n/a" : result.bar.met ? "met" : "NOT MET"
      }`,
  ]);
  const numeric = new Set([3, 4, 5, 7]);
  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => (row[column] ?? "").length))
  );
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, column) => {
        const width = widths[column] ?? cell.length;
        return numeric.has(column) ? cell.padStart(width) : cell.padEnd(width);
      })
      .join("  ")
      .trimEnd();
  return [line(header), line(widths.map((width) => "-".repeat(width))), ...rows.map(line)].join("\n");
}

/** A file name for the report: the ISO start time with characters that some file systems reject replaced. */
export function resultFileName(startedAt: Date): string {
  return `${startedAt.toISOString().replaceAll(":", "-")}.json`;
}

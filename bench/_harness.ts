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

/**
 * A bar a figure should clear: a ratio to other figures of the same run, or an absolute limit. Set one of
 * `minRatio`, `maxRatio`, `maxValue`, `minValue`.
 */
export interface BenchBar {
  /** Least acceptable `median / reference median` (higher is better). */
  readonly minRatio?: number;
  /** Greatest acceptable `median / reference median` (lower is better, e.g. latency). */
  readonly maxRatio?: number;
  /** Greatest acceptable median, in the figure's unit. */
  readonly maxValue?: number;
  /** Least acceptable median, in the figure's unit. */
  readonly minValue?: number;
  /**
   * Figures (case names of the same section) a ratio bar compares with; default: the baseline. With
   * several, the most demanding one counts (the best: highest for `minRatio`, lowest for `maxRatio`),
   * e.g. "the best ssh variant"; figures without a median are left out.
   */
  readonly against?: readonly string[];
  /** Short name of the reference shown in the table, e.g. "ssh -R best"; default: the names joined. */
  readonly label?: string;
}

/** A further figure that the runs of a case measure beside their main one (e.g. p99 beside p50). */
export interface BenchFigure {
  /** Row name, unique within the section (other cases may use it as baseline or bar reference). */
  readonly name: string;
  /** Key of the figure in {@linkcode BenchRunFigures.also}. */
  readonly key: string;
  readonly metric: string;
  readonly unit: string;
  /** Name of the figure this one is compared with; absent for baselines. */
  readonly baseline?: string;
  /** Bars this figure should clear. */
  readonly bars?: readonly BenchBar[];
}

/** What one run of a case with further figures returns. */
export interface BenchRunFigures {
  /** The case's main figure. */
  readonly value: number;
  /** Every further figure by its {@linkcode BenchFigure.key}. */
  readonly also: Readonly<Record<string, number>>;
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
  /** Bar to show next to the ratio (kept for the mux section; same as a one-element `bars`). */
  readonly bar?: BenchBar;
  /** Bars the main figure should clear. */
  readonly bars?: readonly BenchBar[];
  /** Further figures each run measures, each reported as a row of its own. */
  readonly also?: readonly BenchFigure[];
  /**
   * Why this case is not run (e.g. "sshd not found; install …"): it is listed with no figures and its
   * missing figures do not count as a failure.
   */
  readonly skip?: string;
  /** Parameters recorded in the JSON so figures can be compared later (sizes, counts). */
  readonly params: Readonly<Record<string, number | string>>;
  /**
   * Performs one measurement. Must stop promptly and release every resource when `signal` aborts
   * (the harness aborts a run that exceeds its time limit). Cases with `also` figures return them all.
   */
  run(signal: AbortSignal): Promise<number | BenchRunFigures>;
}

/** A pluggable group of cases, e.g. "mux", "tunnel", "ssh". */
export interface BenchSection {
  /** Name used by `--only`. */
  readonly name: string;
  /** One sentence about what the section measures. */
  readonly description: string;
  /** Measured runs per case (after the warm-up runs). */
  runs(context: BenchContext): number;
  /** Unmeasured warm-up rounds before the measured ones; default 1. */
  warmupRounds?(context: BenchContext): number;
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
  /** The first bar that is a `minRatio` against the baseline (the mux section's bar), for older readers. */
  bar: { minRatio: number; met: boolean | null } | null;
  /** Every bar with its verdict. */
  bars: BarResult[];
  /** Why the case was not run, or null. */
  skipped: string | null;
  /** Why runs are missing, if some failed. */
  errors: string[];
}

/** A bar and how the figure fared. */
export interface BarResult {
  /** "min-ratio", "max-ratio", "max-value" or "min-value". */
  kind: "min-ratio" | "max-ratio" | "max-value" | "min-value";
  /** The limit (a ratio or a value in the figure's unit). */
  limit: number;
  /** The figure the ratio was taken against (the most demanding of `against`), or null. */
  reference: string | null;
  /** The ratio (ratio bars) or the median (value bars); null when a figure is missing. */
  actual: number | null;
  /** Null when it cannot be decided (a figure is missing). */
  met: boolean | null;
  /** One-line description, e.g. ">= 2.00x ssh -R (default cipher)". */
  description: string;
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
async function runOnce(benchCase: BenchCase, timeoutMs: number): Promise<number | BenchRunFigures> {
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

/** One row of the report: a case's main figure or one of its further figures. */
interface FigureSpec {
  name: string;
  metric: string;
  unit: string;
  baseline: string | null;
  bars: readonly BenchBar[];
  params: Record<string, number | string>;
  skipped: string | null;
  /** Null for the main figure, else the key in `BenchRunFigures.also`. */
  key: string | null;
}

function figureSpecs(benchCase: BenchCase): FigureSpec[] {
  const main: FigureSpec = {
    name: benchCase.name,
    metric: benchCase.metric,
    unit: benchCase.unit,
    baseline: benchCase.baseline ?? null,
    bars: [...(benchCase.bar ? [benchCase.bar] : []), ...(benchCase.bars ?? [])],
    params: { ...benchCase.params },
    skipped: benchCase.skip ?? null,
    key: null,
  };
  const also = (benchCase.also ?? []).map((figure): FigureSpec => ({
    name: figure.name,
    metric: figure.metric,
    unit: figure.unit,
    baseline: figure.baseline ?? null,
    bars: figure.bars ?? [],
    params: { ...benchCase.params },
    skipped: benchCase.skip ?? null,
    key: figure.key,
  }));
  return [main, ...also];
}

/** Describes a run's figures for the progress line. */
function describeRun(benchCase: BenchCase, result: number | BenchRunFigures): string {
  if (typeof result === "number") return `${formatNumber(result)} ${benchCase.unit}`;
  const parts = [`${formatNumber(result.value)} ${benchCase.unit}`];
  for (const figure of benchCase.also ?? []) {
    parts.push(`${figure.key} ${formatNumber(result.also[figure.key] ?? null)} ${figure.unit}`);
  }
  return parts.join(", ");
}

/** Runs one section: setup, warm-up rounds, interleaved measured rounds, teardown. */
export async function runSection(
  section: BenchSection,
  context: BenchContext,
): Promise<{ results: CaseResult[]; elapsedMs: number; rounds: number }> {
  const started = performance.now();
  const runs = section.runs(context);
  const warmups = section.warmupRounds?.(context) ?? 1;
  const budgetMs = section.budgetMs(context);
  const timeoutMs = section.runTimeoutMs(context);
  const instance = await section.setup(context);
  const specs = instance.cases.flatMap(figureSpecs);
  const measured = new Map<string, { runs: number[]; errors: string[] }>();
  for (const spec of specs) measured.set(spec.name, { runs: [], errors: [] });
  let rounds = 0;
  try {
    // Warm-up rounds let the JIT compile the hot paths and the kernel size its buffers.
    for (let round = 1 - warmups; round <= runs; round++) {
      if (round > 1 && performance.now() - started > budgetMs) {
        context.log(`${section.name}: time budget of ${budgetMs} ms spent after ${round - 1} round(s)`);
        break;
      }
      for (const benchCase of instance.cases) {
        if (benchCase.skip !== undefined) continue;
        const label = round <= 0 ? "warm-up" : `round ${round}/${runs}`;
        const caseSpecs = figureSpecs(benchCase);
        try {
          const result = await runOnce(benchCase, timeoutMs);
          if (round > 0) {
            for (const spec of caseSpecs) {
              const value = spec.key === null
                ? (typeof result === "number" ? result : result.value)
                : (typeof result === "number" ? undefined : result.also[spec.key]);
              const record = measured.get(spec.name);
              if (record === undefined) continue;
              if (value === undefined || !Number.isFinite(value)) {
                record.errors.push(`round ${round}: the run did not report this figure`);
              } else record.runs.push(value);
            }
          }
          context.log(`${section.name}: ${label} ${benchCase.name}: ${describeRun(benchCase, result)}`);
        } catch (error) {
          const message = error instanceof Error ? error.message : String(error);
          for (const spec of caseSpecs) measured.get(spec.name)?.errors.push(`round ${round}: ${message}`);
          context.log(`${section.name}: ${benchCase.name} failed in ${label}: ${message}`);
        }
      }
      if (round > 0) rounds = round;
    }
  } finally {
    await instance.teardown();
  }

  const medians = new Map<string, number | null>();
  for (const [name, record] of measured) medians.set(name, median(record.runs));
  const results = specs.map((spec): CaseResult => {
    const record = measured.get(spec.name) ?? { runs: [], errors: [] };
    const caseMedian = medians.get(spec.name) ?? null;
    const baselineMedian = spec.baseline === null ? null : medians.get(spec.baseline) ?? null;
    const ratio = caseMedian !== null && baselineMedian !== null && baselineMedian > 0
      ? caseMedian / baselineMedian
      : null;
    const bars = spec.bars.map((bar) => judgeBar(bar, caseMedian, spec, medians));
    const legacy = spec.bars.find((bar) => bar.minRatio !== undefined && bar.against === undefined);
    return {
      section: section.name,
      name: spec.name,
      metric: spec.metric,
      unit: spec.unit,
      params: spec.params,
      runs: record.runs,
      median: caseMedian,
      min: record.runs.length === 0 ? null : Math.min(...record.runs),
      max: record.runs.length === 0 ? null : Math.max(...record.runs),
      baseline: spec.baseline,
      ratio,
      bar: legacy?.minRatio === undefined
        ? null
        : { minRatio: legacy.minRatio, met: ratio === null ? null : ratio >= legacy.minRatio },
      bars,
      skipped: spec.skipped,
      errors: record.errors,
    };
  });
  return { results, elapsedMs: performance.now() - started, rounds };
}

/** Decides one bar from the medians of this section. */
function judgeBar(
  bar: BenchBar,
  value: number | null,
  spec: FigureSpec,
  medians: ReadonlyMap<string, number | null>,
): BarResult {
  if (bar.maxValue !== undefined || bar.minValue !== undefined) {
    const isMax = bar.maxValue !== undefined;
    const limit = (isMax ? bar.maxValue : bar.minValue) as number;
    return {
      kind: isMax ? "max-value" : "min-value",
      limit,
      reference: null,
      actual: value,
      met: value === null ? null : isMax ? value <= limit : value >= limit,
      description: `${isMax ? "<=" : ">="} ${formatNumber(limit)} ${spec.unit}`,
    };
  }
  const isMin = bar.minRatio !== undefined;
  const limit = (isMin ? bar.minRatio : bar.maxRatio) ?? Number.NaN;
  const names = bar.against ?? (spec.baseline === null ? [] : [spec.baseline]);
  const label = bar.label ?? names.join(" / ");
  const candidates = names
    .map((name) => ({ name, median: medians.get(name) ?? null }))
    .filter((candidate): candidate is { name: string; median: number } =>
      candidate.median !== null && candidate.median > 0
    );
  // Higher is better for min-ratio bars, so the best reference is the highest; the reverse for max-ratio.
  candidates.sort((a, b) => (isMin ? b.median - a.median : a.median - b.median));
  const best = candidates[0] ?? null;
  const actual = value === null || best === null ? null : value / best.median;
  return {
    kind: isMin ? "min-ratio" : "max-ratio",
    limit,
    reference: best?.name ?? null,
    actual,
    met: actual === null ? null : isMin ? actual >= limit : actual <= limit,
    description: `${isMin ? ">=" : "<="} ${limit.toFixed(2)}x ${label}`,
  };
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

/** Formats a ratio for a lower-is-better bar, rounded up, so a ratio just over it never prints as meeting it. */
function formatRatioUp(ratio: number): string {
  return (Math.ceil(ratio * 100) / 100).toFixed(2);
}

/** One bar's verdict for the table, e.g. ">= 2.00x ssh -R: 2.31x met". */
export function formatBar(bar: BarResult): string {
  const verdict = bar.met === null ? "n/a" : bar.met ? "met" : "NOT MET";
  if (bar.kind === "max-value" || bar.kind === "min-value") return `${bar.description} ${verdict}`;
  if (bar.actual === null) return `${bar.description}: ${verdict}`;
  const actual = bar.kind === "min-ratio" ? formatRatio(bar.actual) : formatRatioUp(bar.actual);
  return `${bar.description}: ${actual}x ${verdict}`;
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
  const baselines = new Set(results.map((result) => `${result.section}\u0000${result.baseline}`));
  const rows = results.map((result) => [
    result.section,
    result.name,
    result.metric,
    formatNumber(result.median),
    formatNumber(result.min),
    formatNumber(result.max),
    result.unit,
    String(result.runs.length),
    result.skipped !== null
      ? "skipped (see below)"
      : result.baseline === null
      ? (baselines.has(`${result.section}\u0000${result.name}`) ? "(baseline)" : "")
      : result.ratio === null
      ? `- vs ${result.baseline}`
      : `${formatRatio(result.ratio)}x ${result.baseline}`,
    result.bars.map((bar) =>
      // The mux section's bars are against the baseline, whose ratio is in the column before.
      bar.kind === "min-ratio" && bar.reference !== null && bar.reference === result.baseline
        ? `>= ${bar.limit.toFixed(2)} ${bar.met === null ? "n/a" : bar.met ? "met" : "NOT MET"}`
        : formatBar(bar)
    ).join("; "),
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

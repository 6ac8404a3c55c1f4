/**
 * The standard Prometheus process metrics (`process_resident_memory_bytes`, `process_cpu_seconds_total`,
 * `process_start_time_seconds`, `process_open_fds`, `process_max_fds`), read when `/metrics` is scraped.
 *
 * Deno 2.9 refuses every read under `/proc` (and `/dev/fd`) unless the program runs with `--allow-all`,
 * which tls-tunnel never asks for (the launcher, the tasks and the compiled executables grant
 * `--allow-read` and friends only). So the three figures the runtime knows come from it, on every system:
 * resident memory from `Deno.memoryUsage()`, CPU time from `process.cpuUsage()` (getrusage, no file),
 * the start time from the runtime's clock origin. The descriptor counts exist only in `/proc`: they are
 * read there, asynchronously (the scrape is a request path), when it is readable (Linux with
 * `--allow-all`) and otherwise left out rather than reported as zero.
 *
 * @module
 */

import nodeProcess from "node:process";

/** Clock ticks per second of `/proc/self/stat`'s times: Linux's USER_HZ, 100 on every architecture. */
const CLOCK_TICKS_PER_SEC = 100;

/** The process metrics that could be read; a missing field was not available. */
export interface ProcessMetrics {
  /** Resident set size, bytes (`VmRSS` of `/proc/self/status`). */
  residentMemoryBytes?: number;
  /** User and system CPU time, seconds (`utime` + `stime` of `/proc/self/stat`). */
  cpuSecondsTotal?: number;
  /** Open file descriptors (entries of `/proc/self/fd`). */
  openFds?: number;
  /** Limit of open file descriptors (`Max open files` of `/proc/self/limits`). */
  maxFds?: number;
  /** When the process started, Unix time in seconds (`starttime` of `/proc/self/stat` + `btime`). */
  startTimeSeconds?: number;
}

/** Where the files are read; tests point it at a fake `/proc`. */
export interface ProcRoot {
  /** The `/proc` folder (default `/proc`). */
  dir: string;
}

async function readText(path: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(path);
  } catch {
    return null;
  }
}

/**
 * Fields of a `/proc/PID/stat` line after the command name (which may hold spaces and parentheses, so the
 * line is split after its last `)`): index 0 is field 3 (`state`) of proc(5).
 */
export function statFields(stat: string): string[] {
  const close = stat.lastIndexOf(")");
  return close < 0 ? [] : stat.slice(close + 1).trim().split(/\s+/);
}

function finiteOrUndefined(value: number): number | undefined {
  return Number.isFinite(value) && value >= 0 ? value : undefined;
}

async function countFds(dir: string): Promise<number | undefined> {
  try {
    let count = 0;
    for await (const _ of Deno.readDir(dir)) count++;
    // The listing itself held one descriptor open while it was read.
    return Math.max(0, count - 1);
  } catch {
    return undefined;
  }
}

/**
 * `/proc` figures (descriptors, and the Linux view of memory, CPU and start time), each only when its
 * file could be read and parsed. `root` is `/proc` unless a test points it at a fake one.
 */
export async function readProcFs(root: ProcRoot = { dir: "/proc" }): Promise<ProcessMetrics> {
  if (root.dir === "/proc" && Deno.build.os !== "linux") return {};
  const [stat, status, limits, systemStat, openFds] = await Promise.all([
    readText(`${root.dir}/self/stat`),
    readText(`${root.dir}/self/status`),
    readText(`${root.dir}/self/limits`),
    readText(`${root.dir}/stat`),
    countFds(`${root.dir}/self/fd`),
  ]);
  const metrics: ProcessMetrics = {};
  if (openFds !== undefined) metrics.openFds = openFds;
  const rssKib = status?.match(/^VmRSS:\s+(\d+)\s+kB$/m)?.[1];
  if (rssKib !== undefined) metrics.residentMemoryBytes = Number(rssKib) * 1024;
  const maxFds = limits?.match(/^Max open files\s+(\d+)/m)?.[1];
  if (maxFds !== undefined) metrics.maxFds = Number(maxFds);
  if (stat !== null) {
    const fields = statFields(stat);
    // proc(5): utime is field 14, stime 15, starttime 22; fields[0] is field 3.
    const cpu = finiteOrUndefined((Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SEC);
    if (cpu !== undefined) metrics.cpuSecondsTotal = cpu;
    const bootSecs = Number(systemStat?.match(/^btime\s+(\d+)$/m)?.[1] ?? NaN);
    const start = finiteOrUndefined(bootSecs + Number(fields[19]) / CLOCK_TICKS_PER_SEC);
    if (start !== undefined) metrics.startTimeSeconds = start;
  }
  return metrics;
}

/** Memory, CPU time and start time as the runtime knows them (every system, no permission needed). */
export function runtimeProcessMetrics(): ProcessMetrics {
  const metrics: ProcessMetrics = {};
  try {
    metrics.residentMemoryBytes = Deno.memoryUsage().rss;
  } catch {
    // Not available on this system.
  }
  try {
    const { user, system } = nodeProcess.cpuUsage();
    metrics.cpuSecondsTotal = (user + system) / 1e6;
  } catch {
    // Not available on this system.
  }
  metrics.startTimeSeconds = performance.timeOrigin / 1000;
  return metrics;
}

/**
 * This process's metrics for one scrape: the runtime's figures, then `/proc`'s where it is readable
 * (it then wins: its start time is the exec, not the runtime's start). Never throws.
 */
export async function readProcessMetrics(): Promise<ProcessMetrics> {
  return { ...runtimeProcessMetrics(), ...await readProcFs() };
}

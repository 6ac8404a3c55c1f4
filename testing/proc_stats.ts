/**
 * What the fuzz and soak harnesses read about a child process from Linux's `/proc`: resident memory,
 * open file descriptors, the TCP ports it listens on, and the lag reports of `_lag_probe.ts`.
 *
 * @module
 */

/** The prefix of a `_lag_probe.ts` line on stdout. */
export const PROBE_PREFIX = "@probe ";

/**
 * The text of a `/proc` file. Deno grants another process's `/proc/<pid>` only with `--allow-all`, which
 * `deno task test` does not give; `cat` (with `--allow-run`) reads it then. Null when the file is gone.
 */
async function readProc(path: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied)) {
      return null;
    }
  }
  const output = await new Deno.Command("cat", { args: [path], stdout: "piped", stderr: "null" }).output();
  return output.success ? new TextDecoder().decode(output.stdout) : null;
}

/** Socket inodes among the open descriptors of `pid` (via `ls -l`, see {@linkcode readProc}). */
async function socketInodes(pid: number): Promise<Set<string>> {
  const output = await new Deno.Command("ls", {
    args: ["-l", `/proc/${pid}/fd`],
    stdout: "piped",
    stderr: "null",
  })
    .output();
  const text = new TextDecoder().decode(output.stdout);
  return new Set([...text.matchAll(/socket:\[(\d+)\]/g)].map((match) => match[1] as string));
}

/** A TCP socket: its local address (hex, as the kernel prints it) and port. */
export interface ListeningSocket {
  /** Local address as `/proc/net/tcp` prints it (hex). */
  addrHex: string;
  /** Local port. */
  port: number;
}

/** The TCP sockets `pid` listens on (both address families), sorted by port. */
export function listeningSockets(pid: number): Promise<ListeningSocket[]> {
  return tcpSockets(pid, (state) => state === "0A");
}

/** Local ports of every TCP socket `pid` holds, in any state (listening, connected, closing). */
export async function heldPorts(pid: number): Promise<Set<number>> {
  return new Set((await tcpSockets(pid, () => true)).map((socket) => socket.port));
}

/** The TCP sockets of `pid` whose state (hex, as the kernel prints it) passes `wanted`. */
async function tcpSockets(pid: number, wanted: (state: string) => boolean): Promise<ListeningSocket[]> {
  const inodes = await socketInodes(pid);
  const found: ListeningSocket[] = [];
  for (const table of ["tcp", "tcp6"]) {
    const text = await readProc(`/proc/${pid}/net/${table}`);
    if (text === null) continue;
    for (const line of text.split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      const [local, state, inode] = [fields[1], fields[3], fields[9]];
      if (!state || !wanted(state) || !local || !inode || !inodes.has(inode)) continue;
      const [addrHex = "", portHex = ""] = local.split(":");
      found.push({ addrHex, port: parseInt(portHex, 16) });
    }
  }
  return found.sort((a, b) => a.port - b.port);
}

/** Memory and descriptors of one process at one moment. */
export interface ProcessSample {
  /** RSS in bytes (null: unknown). */
  rssBytes: number | null;
  /** JS heap in use (null: unknown). */
  heapUsedBytes: number | null;
  /** Open descriptors (null: unknown). */
  fds: number | null;
}

/** Before/peak/after of a process's RSS and descriptors over a run, from its probe reports. */
export class ProcessWatch {
  before: ProcessSample | null = null;
  after: ProcessSample | null = null;
  /** After a full collection the harness asked for: live memory only. */
  afterFullGc: ProcessSample | null = null;

  constructor(readonly label: string, readonly probe: ProbeReader) {}

  /** The latest report's figures (at most 250 ms old). */
  sample(): ProcessSample {
    const last = this.probe.reports.at(-1);
    return {
      rssBytes: last?.rssBytes ?? null,
      heapUsedBytes: last?.heapUsedBytes ?? null,
      fds: last?.fds ?? null,
    };
  }

  /** Waits for the next probe report, then samples. */
  async fresh(timeoutMs = 2000): Promise<ProcessSample> {
    const count = this.probe.reports.length;
    const deadline = performance.now() + timeoutMs;
    while (this.probe.reports.length === count && performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return this.sample();
  }

  /** Largest RSS reported since `sinceMs` (epoch ms). */
  peakRssBytes(sinceMs = 0): number {
    return this.probe.reports.filter((report) => report.t >= sinceMs).reduce(
      (max, report) => Math.max(max, report.rssBytes ?? 0),
      0,
    );
  }

  /** Largest descriptor count reported since `sinceMs` (epoch ms). */
  peakFds(sinceMs = 0): number {
    return this.probe.reports.filter((report) => report.t >= sinceMs).reduce(
      (max, report) => Math.max(max, report.fds ?? 0),
      0,
    );
  }

  /** A plain record for the JSON report. */
  toJSON(): Record<string, unknown> {
    return {
      label: this.label,
      rss_before_bytes: this.before?.rssBytes ?? null,
      rss_peak_bytes: this.peakRssBytes(),
      rss_after_bytes: this.after?.rssBytes ?? null,
      heap_used_before_bytes: this.before?.heapUsedBytes ?? null,
      heap_used_after_bytes: this.after?.heapUsedBytes ?? null,
      rss_after_full_gc_bytes: this.afterFullGc?.rssBytes ?? null,
      heap_used_after_full_gc_bytes: this.afterFullGc?.heapUsedBytes ?? null,
      fds_before: this.before?.fds ?? null,
      fds_peak: this.peakFds(),
      fds_after: this.after?.fds ?? null,
    };
  }
}

/** One line of `_lag_probe.ts`. */
export interface ProbeReport {
  /** When the line was written (epoch ms). */
  t: number;
  /** When the process started (epoch ms, `performance.timeOrigin`). */
  origin?: number;
  /** Largest tick delay in the 250 ms window. */
  lagMaxMs: number;
  /** Largest tick delay not explained by waiting for a CPU. */
  stallMaxMs: number;
  /** RSS when the line was written. */
  rssBytes?: number;
  /** JS heap in use then. */
  heapUsedBytes?: number;
  /** Memory of JS objects held outside the heap (ArrayBuffers) then. */
  externalBytes?: number;
  /** Open descriptors then (null without `/proc/self` access). */
  fds?: number | null;
}

/** Collects the probe lines of one process. */
export class ProbeReader {
  readonly reports: ProbeReport[] = [];

  /** Takes one stdout line; returns the report it carried, or null for any other line. */
  addLine(line: string): ProbeReport | null {
    if (!line.startsWith(PROBE_PREFIX)) return null;
    try {
      const report = JSON.parse(line.slice(PROBE_PREFIX.length)) as ProbeReport;
      if (typeof report.stallMaxMs !== "number" || typeof report.lagMaxMs !== "number") return null;
      this.reports.push(report);
      // Keep the last ~4 hours of 250 ms reports at most.
      if (this.reports.length > 60_000) this.reports.splice(0, 10_000);
      return report;
    } catch {
      return null;
    }
  }

  /** The largest stall reported since `sinceMs` (epoch ms). */
  maxStallMs(sinceMs = 0): number {
    return this.reports.filter((report) => report.t >= sinceMs).reduce(
      (max, report) => Math.max(max, report.stallMaxMs),
      0,
    );
  }

  /** The largest raw lag reported since `sinceMs` (epoch ms). */
  maxLagMs(sinceMs = 0): number {
    return this.reports.filter((report) => report.t >= sinceMs).reduce(
      (max, report) => Math.max(max, report.lagMaxMs),
      0,
    );
  }
}

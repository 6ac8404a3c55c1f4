/**
 * Where the CLI commands write. Commands take it as an optional parameter so that tests can capture their
 * output in-process; the default writes to the process's stdout and stderr.
 *
 * @module
 */

import { activeLogFormat, writeOutput, writeRawLine } from "./logging.ts";

/** Line-oriented output of a command. */
export interface CommandOutput {
  /** Writes one line (a newline is added) to standard output. */
  out(line: string): void;
  /** Writes one line (a newline is added) to standard error. */
  err(line: string): void;
}

/**
 * The process's stdout and stderr. With `--log-format json` each call prints one JSON record instead
 * (see `writeOutput`): level `error` for a stderr line starting `tls-tunnel: `, `info` otherwise; a
 * line that is a JSON object already (a command's JSON report) is printed as it is.
 */
export const processOutput: CommandOutput = {
  out: (line) => print("stdout", "info", line),
  err: (line) => print("stderr", line.startsWith("tls-tunnel: ") ? "error" : "info", line),
};

function print(stream: "stdout" | "stderr", level: "info" | "error", line: string): void {
  if (activeLogFormat() === "json" && isJsonObjectLine(line)) writeRawLine(stream, line);
  else writeOutput(stream, { level, text: line });
}

/** Whether `line` is one JSON object on one line. */
function isJsonObjectLine(line: string): boolean {
  if (!line.startsWith("{") || !line.endsWith("}") || line.includes("\n")) return false;
  try {
    const value: unknown = JSON.parse(line);
    return typeof value === "object" && value !== null && !Array.isArray(value);
  } catch {
    return false;
  }
}

/** Output captured in memory, for tests. */
export interface CapturedOutput extends CommandOutput {
  /** Everything written to stdout, newline-terminated lines. */
  readonly stdout: string;
  /** Everything written to stderr, newline-terminated lines. */
  readonly stderr: string;
}

/** Creates an output that keeps what is written, for tests. */
export function captureOutput(): CapturedOutput {
  let stdout = "";
  let stderr = "";
  return {
    out: (line) => void (stdout += `${line}\n`),
    err: (line) => void (stderr += `${line}\n`),
    get stdout() {
      return stdout;
    },
    get stderr() {
      return stderr;
    },
  };
}

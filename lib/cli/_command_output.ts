/**
 * Where the CLI commands write. Commands take it as an optional parameter so that tests can capture their
 * output in-process; the default writes to the process's stdout and stderr.
 *
 * @module
 */

/** Line-oriented output of a command. */
export interface CommandOutput {
  /** Writes one line (a newline is added) to standard output. */
  out(line: string): void;
  /** Writes one line (a newline is added) to standard error. */
  err(line: string): void;
}

const encoder = new TextEncoder();

function writeAllSync(file: { writeSync(p: Uint8Array): number }, text: string): void {
  const bytes = encoder.encode(text);
  let written = 0;
  while (written < bytes.length) written += file.writeSync(bytes.subarray(written));
}

/** The process's stdout and stderr. */
export const processOutput: CommandOutput = {
  out: (line) => writeAllSync(Deno.stdout, `${line}\n`),
  err: (line) => writeAllSync(Deno.stderr, `${line}\n`),
};

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

/**
 * Typed errors of config loading: one {@link ConfigError} carries every {@link ConfigIssue} found, so a user
 * fixes a file in one pass instead of one error per run.
 *
 * @module
 */

/** One problem in a config: where it is, what is wrong, and what to do about it. */
export interface ConfigIssue {
  /**
   * Key path in TOML spelling, e.g. `proxies[1].publish_port` or `server.bind_port`; empty when the problem
   * concerns the whole file (unreadable, TOML syntax).
   */
  path: string;
  /** What is wrong, with the offending value unless it is a secret. */
  message: string;
  /** What to do about it. */
  hint: string;
  /** 1-based line, for TOML syntax errors. */
  line?: number;
  /** 1-based column, for TOML syntax errors. */
  column?: number;
}

/** Formats one issue as `path: message (hint)`, the line format of `check` and of {@link ConfigError}. */
export function formatIssue(issue: ConfigIssue): string {
  const where = issue.path !== ""
    ? issue.path
    : issue.line !== undefined
    ? `line ${issue.line}, column ${issue.column ?? 1}`
    : "";
  const hint = issue.hint !== "" ? ` (${issue.hint})` : "";
  return where !== "" ? `${where}: ${issue.message}${hint}` : `${issue.message}${hint}`;
}

/** A config that cannot be used, with every problem found in it. */
export class ConfigError extends Error {
  /** Every problem found, in file order as far as it is known. */
  readonly issues: ConfigIssue[];
  /** Where the config came from (a file path, `<text>`, …), for messages. */
  readonly sourceName: string;

  /**
   * @param sourceName where the config came from, for the message.
   * @param issues at least one problem.
   */
  constructor(sourceName: string, issues: ConfigIssue[]) {
    const count = issues.length === 1 ? "1 problem" : `${issues.length} problems`;
    super(`Invalid config ${sourceName} (${count}):\n${issues.map((i) => `  ${formatIssue(i)}`).join("\n")}`);
    this.name = "ConfigError";
    this.issues = issues;
    this.sourceName = sourceName;
  }
}

/**
 * `tls-tunnel check -c FILE [--format text|json]`: validates a server or client config and lists every
 * problem. Exit 0 when valid, 1 when not (or when the file cannot be read).
 *
 * Besides what the loader checks, `check` also verifies that the files the config names (cert_path,
 * key_path, ca_cert_path) can be read, relative to the current directory like the roles read them.
 *
 * @module
 */

import { formatPortRanges } from "../config/port_range.ts";
import { ConfigError, type ConfigIssue, formatIssue } from "../config/errors.ts";
import { type ConfigKind, InvalidConfigError, loadConfig, type ParsedConfig } from "../config/load.ts";
import type { ClientConfig, ServerConfig } from "../config/types.ts";
import { type CommandOutput, processOutput } from "./_command_output.ts";

/** Options of {@link checkCommand}. */
export interface CheckOptions {
  /** The config file to check. */
  configPath: string;
  /** `text` for people, `json` (`{ valid, kind, file, issues, summary }` on stdout) for scripts. */
  format: "text" | "json";
}

/** The JSON document `check --format json` prints. */
export interface CheckReport {
  /** True when the config can be used. */
  valid: boolean;
  /** The role the file is for, or null when that could not be told. */
  kind: ConfigKind | null;
  /** The checked path. */
  file: string;
  /** Every problem, empty when valid. */
  issues: { path: string; message: string; hint: string; line?: number; column?: number }[];
  /** Human-readable summary lines of a valid config (empty when invalid). */
  summary: string[];
}

function serverSummary(config: ServerConfig): string[] {
  const tls = config.certPath !== undefined
    ? `TLS with ${config.certPath} and ${config.keyPath ?? ""}`
    : "TLS with a throw-away certificate generated at start";
  const auth: string[] = [];
  if (config.authKey !== undefined) auth.push("shared auth_key");
  if (config.clients.length > 0) {
    auth.push(`${config.clients.length} named client(s): ${config.clients.map((c) => c.name).join(", ")}`);
  }
  return [
    `tunnel listener: ${config.bindAddr}:${config.bindPort} (${tls})`,
    `authentication: ${auth.join("; ")}`,
    `publishable ports: ${
      formatPortRanges(config.allowPorts)
    }; at most ${config.maxProxiesPerClient} proxies per client`,
    `stats endpoint: ${
      config.statsPort !== undefined
        ? `${config.statsAddr}:${config.statsPort}${
          config.statsToken !== undefined ? " (token required)" : ""
        }`
        : "off"
    }`,
  ];
}

function clientSummary(config: ClientConfig): string[] {
  const verification = config.skipVerify
    ? "certificate NOT verified: skip_verify = true"
    : config.caCertPath !== undefined
    ? `certificate verified against ${config.caCertPath} for ${config.serverName}`
    : `certificate verified against the system's CAs for ${config.serverName}`;
  const lines = [`server: ${config.serverAddr}:${config.serverPort} (${verification})`];
  if (config.serverFingerprint !== undefined) {
    lines.push(`server certificate pinned to SHA-256 ${config.serverFingerprint}`);
  }
  lines.push(`proxies (${config.proxies.length}):`);
  for (const proxy of config.proxies) {
    const published = proxy.publishPort !== 0
      ? `${proxy.publishAddr}:${proxy.publishPort}`
      : `${proxy.publishAddr}:<${
        proxy.publishPortRange ? formatPortRanges([proxy.publishPortRange]) : "any port"
      }>`;
    lines.push(`  ${proxy.name}: server ${published} -> local ${proxy.localAddr}:${proxy.localPort}`);
  }
  return lines;
}

async function unreadableFiles(parsed: ParsedConfig): Promise<ConfigIssue[]> {
  const files: [string, string | undefined][] = parsed.kind === "server"
    ? [["server.cert_path", parsed.config.certPath], ["server.key_path", parsed.config.keyPath]]
    : [["client.ca_cert_path", parsed.config.caCertPath]];
  const issues: ConfigIssue[] = [];
  for (const [path, file] of files) {
    if (file === undefined) continue;
    try {
      const info = await Deno.stat(file);
      if (!info.isFile) {
        issues.push({ path, message: `${file} is not a file`, hint: "point it at a PEM file" });
        continue;
      }
      // Reading proves permissions; PEM files are small.
      const text = await Deno.readTextFile(file);
      if (!text.includes("-----BEGIN ")) {
        issues.push({
          path,
          message: `${file} holds no PEM block`,
          hint: "use a PEM file, e.g. from `tls-tunnel cert`",
        });
      }
    } catch (error) {
      issues.push({
        path,
        message: error instanceof Deno.errors.NotFound
          ? `${file} does not exist (relative paths start at the current directory)`
          : `cannot read ${file}: ${error instanceof Error ? error.message : String(error)}`,
        hint: "fix the path, or create the files with `tls-tunnel cert`",
      });
    }
  }
  return issues;
}

/**
 * Validates the config at `configPath` and prints the result.
 *
 * @returns 0 when valid, 1 when invalid or unreadable.
 */
export async function checkCommand(
  options: CheckOptions,
  io: CommandOutput = processOutput,
): Promise<number> {
  const file = options.configPath;
  let report: CheckReport;
  try {
    const parsed = await loadConfig(file);
    const fileIssues = await unreadableFiles(parsed);
    report = {
      valid: fileIssues.length === 0,
      kind: parsed.kind,
      file,
      issues: fileIssues,
      summary: fileIssues.length === 0
        ? (parsed.kind === "server" ? serverSummary(parsed.config) : clientSummary(parsed.config))
        : [],
    };
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    report = {
      valid: false,
      kind: error instanceof InvalidConfigError ? error.kind ?? null : null,
      file,
      issues: error.issues,
      summary: [],
    };
  }

  if (options.format === "json") {
    io.out(JSON.stringify(report, null, 2));
  } else if (report.valid) {
    io.out(`${file}: valid ${report.kind} config`);
    for (const line of report.summary) io.out(`  ${line}`);
  } else {
    const count = report.issues.length === 1 ? "1 problem" : `${report.issues.length} problems`;
    io.err(`${file}: invalid${report.kind !== null ? ` ${report.kind}` : ""} config (${count}):`);
    for (const issue of report.issues) io.err(`  ${formatIssue(issue)}`);
  }
  return report.valid ? 0 : 1;
}

/**
 * Loading a config: TOML text → environment overrides → the role's schema (which outputs the camelCase
 * objects of `types.ts`) and cross-key rules. Every problem found is reported at once in one {@link ConfigError}.
 *
 * @module
 */

import { parse as parseToml, TomlError } from "smol-toml";
import { compatNotes } from "./_compat.ts";
import { convertIssue } from "./_issues.ts";
import { clientRules, serverRules } from "./_rules.ts";
import { applyEnvOverrides, type EnvSource, processEnv } from "./env.ts";
import { ConfigError, type ConfigIssue } from "./errors.ts";
import { clientFileSchema, serverFileSchema } from "./schema.ts";
import type { ClientConfig, ServerConfig } from "./types.ts";
import { errorMessage } from "../text.ts";

/** Which role a config file is for. */
export type ConfigKind = "server" | "client";

/**
 * A validated config of either role, with `notes`: what became of the Rust tls-tunnel keys and values it
 * uses that mean less here than there (`proxy_type = "ssh"`, `allow_forward = true`…; `_compat.ts`), which
 * `check` prints. Empty for most configs; never a problem.
 */
export type ParsedConfig =
  | { kind: "server"; config: ServerConfig; notes: ConfigIssue[] }
  | { kind: "client"; config: ClientConfig; notes: ConfigIssue[] };

/** Options of the loaders. */
export interface LoadOptions {
  /** Name of the source in messages (default: the file path, or `<text>`). */
  sourceName?: string;
  /**
   * Environment variables for the `TLS_TUNNEL_*` overrides (see `ENV_OVERRIDES`). Default: the process
   * environment (read only with `--allow-env`; without it no override applies). Tests pass a record.
   */
  env?: EnvSource;
}

/** Where to read a config: a file path, a file URL, or the text itself. */
export type ConfigSource = string | URL | { text: string };

/** A {@link ConfigError} that also knows which role the file was meant for, when that could be told. */
export class InvalidConfigError extends ConfigError {
  /** The role the file is for, or undefined when not even that could be determined. */
  readonly kind: ConfigKind | undefined;

  /**
   * @param sourceName where the config came from.
   * @param kind the role, when known.
   * @param issues every problem found.
   */
  constructor(sourceName: string, kind: ConfigKind | undefined, issues: ConfigIssue[]) {
    super(sourceName, issues);
    this.name = "InvalidConfigError";
    this.kind = kind;
  }
}

function isTable(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

function syntaxIssue(error: TomlError): ConfigIssue {
  // smol-toml's message is "Invalid TOML document: <what>\n\n<code excerpt>"; the excerpt repeats the
  // position we report separately.
  const firstLine = error.message.split("\n")[0] ?? error.message;
  const what = firstLine.replace(/^Invalid TOML document:\s*/, "");
  return {
    path: "",
    message: `TOML syntax error: ${what}`,
    hint: "fix the TOML syntax at this position: strings need quotes, tables are written [name]",
    line: error.line,
    column: error.column,
  };
}

function detectKind(document: Record<string, unknown>): ConfigKind | ConfigIssue {
  const hasServer = "server" in document;
  const hasClient = "client" in document || "proxies" in document;
  if (hasServer && hasClient) {
    return {
      path: "",
      message: "the file has both a [server] table and a [client] table or [[proxies]]",
      hint: "a file configures one role; put the server's and the client's settings in separate files",
    };
  }
  if (hasServer) return "server";
  if (hasClient) return "client";
  return {
    path: "",
    message: "neither a [server] nor a [client] table was found",
    hint: "start a server config with [server] and a client config with [client]; " +
      "`tls-tunnel template server` prints an example",
  };
}

/** Sorts issues by where they are in the file, keeping the discovery order within one key. */
function byPath(issues: ConfigIssue[]): ConfigIssue[] {
  const key = (path: string) => path.replace(/\[(\d+)\]/g, (_, n: string) => `[${n.padStart(6, "0")}]`);
  return issues
    .map((issue, index) => ({ issue, index }))
    .sort((a, b) => {
      const ka = key(a.issue.path);
      const kb = key(b.issue.path);
      return ka < kb ? -1 : ka > kb ? 1 : a.index - b.index;
    })
    .map((entry) => entry.issue);
}

/**
 * Parses and validates config text of either role, telling server (`[server]`) from client (`[client]`,
 * `[[proxies]]`) configs.
 *
 * @throws {InvalidConfigError} listing every problem (TOML syntax, unknown keys, bad types and values,
 *   conflicting keys), each with its key path and a hint.
 */
export function parseConfigText(text: string, options: LoadOptions = {}): ParsedConfig {
  const sourceName = options.sourceName ?? "<text>";
  let document: unknown;
  try {
    document = parseToml(text);
  } catch (error) {
    if (error instanceof TomlError) throw new InvalidConfigError(sourceName, undefined, [syntaxIssue(error)]);
    throw error;
  }
  if (!isTable(document)) {
    throw new InvalidConfigError(sourceName, undefined, [{
      path: "",
      message: "the document is not a TOML table",
      hint: "start a server config with [server] and a client config with [client]",
    }]);
  }
  const kind = detectKind(document);
  if (typeof kind !== "string") throw new InvalidConfigError(sourceName, undefined, [kind]);

  const envSources = applyEnvOverrides(document, kind, options.env ?? processEnv);
  const schema = kind === "server" ? serverFileSchema : clientFileSchema;
  const result = schema.safeParse(document, { reportInput: true });
  const issues: ConfigIssue[] = [];
  if (!result.success) {
    for (const issue of result.error.issues) issues.push(...convertIssue(issue, document, kind, envSources));
  }
  issues.push(...(kind === "server" ? serverRules(document) : clientRules(document)));
  // The schema and the rules may both notice a missing publish_port; one message per key and text is enough.
  const unique = issues.filter((issue, index) =>
    issues.findIndex((other) => other.path === issue.path && other.message === issue.message) === index
  );
  if (unique.length > 0 || !result.success) throw new InvalidConfigError(sourceName, kind, byPath(unique));

  // The schema's output is the role's config: nothing left to map.
  const notes = compatNotes(kind, document);
  return kind === "server"
    ? { kind, config: result.data as ServerConfig, notes }
    : { kind, config: result.data as ClientConfig, notes };
}

async function readSource(source: ConfigSource): Promise<{ text: string; sourceName: string }> {
  if (typeof source === "object" && "text" in source) return { text: source.text, sourceName: "<text>" };
  const sourceName = source instanceof URL ? source.pathname : source;
  try {
    return { text: await Deno.readTextFile(source), sourceName };
  } catch (error) {
    let message = `cannot read config file ${sourceName}: ${errorMessage(error)}`;
    let hint = "check the file's path and permissions";
    if (error instanceof Deno.errors.NotFound) {
      message = `config file ${sourceName} does not exist`;
      hint =
        "check the path given to -c/--config; `tls-tunnel template server|client -o FILE` writes a starting point";
    } else if (error instanceof Deno.errors.IsADirectory) {
      message = `${sourceName} is a directory, not a config file`;
      hint = "pass the path of a .toml file";
    } else if (error instanceof Deno.errors.PermissionDenied || error instanceof Deno.errors.NotCapable) {
      hint = "make the file readable by this user (and run deno with --allow-read)";
    } else if (error instanceof TypeError) {
      message = `config file ${sourceName} is not valid UTF-8 text`;
      hint = "save the file as UTF-8";
    }
    throw new InvalidConfigError(sourceName, undefined, [{ path: "", message, hint }]);
  }
}

/**
 * Reads and validates a config of either role.
 *
 * @throws {InvalidConfigError} when the file cannot be read or is invalid.
 */
export async function loadConfig(source: ConfigSource, options: LoadOptions = {}): Promise<ParsedConfig> {
  const { text, sourceName } = await readSource(source);
  return parseConfigText(text, { ...options, sourceName: options.sourceName ?? sourceName });
}

/** The error for a `actual` config handed to the `expected` role, with the command that fits it. */
export function wrongKindError(
  sourceName: string,
  expected: ConfigKind,
  actual: ConfigKind,
): InvalidConfigError {
  return new InvalidConfigError(sourceName, actual, [{
    path: "",
    message: `this is a ${actual} config, but the ${expected} was asked to load it`,
    hint: `run \`tls-tunnel ${actual} -c ${sourceName}\`, or pass a ${expected} config ([${expected}] table)`,
  }]);
}

/**
 * Reads and validates a server config.
 *
 * @throws {InvalidConfigError} when the file cannot be read, is invalid, or is a client config.
 */
export async function loadServerConfig(
  source: ConfigSource,
  options: LoadOptions = {},
): Promise<ServerConfig> {
  const { text, sourceName } = await readSource(source);
  const name = options.sourceName ?? sourceName;
  const parsed = parseConfigText(text, { ...options, sourceName: name });
  if (parsed.kind !== "server") throw wrongKindError(name, "server", parsed.kind);
  return parsed.config;
}

/**
 * Reads and validates a client config.
 *
 * @throws {InvalidConfigError} when the file cannot be read, is invalid, or is a server config.
 */
export async function loadClientConfig(
  source: ConfigSource,
  options: LoadOptions = {},
): Promise<ClientConfig> {
  const { text, sourceName } = await readSource(source);
  const name = options.sourceName ?? sourceName;
  const parsed = parseConfigText(text, { ...options, sourceName: name });
  if (parsed.kind !== "client") throw wrongKindError(name, "client", parsed.kind);
  return parsed.config;
}

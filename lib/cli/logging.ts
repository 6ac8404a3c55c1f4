/**
 * The CLI's logging setup, on `@logtape/logtape`. Library modules never configure logging; they only
 * take a logger under the root category `"tls-tunnel"`:
 *
 * ```ts
 * import { getLogger } from "@logtape/logtape";
 * const logger = getLogger(["tls-tunnel", "server"]);
 * logger.info("Client '{client}' connected from {address}", { client: "office", address: "1.2.3.4:5555" });
 * ```
 *
 * The CLI calls {@linkcode setupLogging} once it has parsed `-v`/`-vv` and `--log-format`. Records go
 * to standard error (standard output is for command output), as readable lines
 *
 * ```text
 * 2026-11-22T04:35:00.000Z INFO  server  Client 'office' connected from 1.2.3.4:5555
 * ```
 *
 * or as one JSON object per line. Either way, the value of every property whose key looks like a
 * secret ({@linkcode SECRET_KEY_PATTERN}) is written as `***`, at any depth, and that value is also
 * blanked wherever it appears in the message.
 *
 * What commands print themselves (reports, fatal errors, the client command a server suggests) goes
 * through {@linkcode writeOutput}: as is in text format, one JSON record in JSON format. In JSON format
 * `console.*` is routed the same way, so that no plain line reaches stdout or stderr.
 *
 * @module
 */

import { configure, type LogLevel, type LogRecord, reset } from "@logtape/logtape";
import { escapeForTerminal } from "../text.ts";

/** Root category of every tls-tunnel logger. */
export const ROOT_CATEGORY = "tls-tunnel";

/** Output format of log records. */
export type LogFormat = "text" | "json";

/** Receives each formatted record as one line, without the trailing newline. */
export type LineSink = (line: string) => void;

/** Property keys whose values are never written. */
export const SECRET_KEY_PATTERN = /auth_?key|token|secret|password/i;

/** What secrets are replaced with. */
export const MASK = "***";

/** Options of {@linkcode setupLogging}. */
export interface LoggingOptions {
  /** Number of `-v` flags: 0 → info, 1 → debug, 2 or more → trace. */
  verbosity: number;
  /** `text` for people, `json` for log collectors. */
  format: LogFormat;
  /** Where lines go instead of standard error (tests pass an array's `push`). */
  sink?: LineSink;
  /**
   * ANSI colours by level in text format. Default: when writing to standard error and it is a
   * terminal (and `NO_COLOR` is not set); never with a custom `sink`.
   */
  color?: boolean;
}

/** The lowest level logged for a number of `-v` flags. */
export function levelForVerbosity(verbosity: number): LogLevel {
  if (verbosity >= 2) return "trace";
  if (verbosity === 1) return "debug";
  return "info";
}

/**
 * Configures logtape for the CLI. Safe to call again (each call replaces the previous setup), e.g.
 * from tests or after reading a config file.
 */
export async function setupLogging(options: LoggingOptions): Promise<void> {
  if (options.sink === undefined) {
    // Only the process's own setup decides how commands print; a test's capture leaves it alone.
    processFormat = options.format;
    routeConsole(options.format === "json");
  }
  const sink = options.sink ?? writeToStderr;
  const color = options.color ?? (options.sink === undefined && stderrSupportsColor());
  const withStacks = options.verbosity >= 1;
  const format = options.format === "json"
    ? formatJsonLine
    : (record: LogRecord) => formatTextLine(record, { color, stacks: withStacks });
  await configure({
    reset: true,
    sinks: { main: (record: LogRecord) => sink(format(record)) },
    loggers: [
      { category: [ROOT_CATEGORY], sinks: ["main"], lowestLevel: levelForVerbosity(options.verbosity) },
      // Logtape's own diagnostics (a failing sink...); also silences its "configured" notice.
      { category: ["logtape", "meta"], sinks: ["main"], lowestLevel: "warning" },
    ],
  });
}

/** Removes the logging setup: records are dropped until the next {@linkcode setupLogging}. */
export async function resetLogging(): Promise<void> {
  await reset();
}

// ---- masking ----

/** Stand-in for an `Error` in masked properties: plain data, with secrets blanked. */
export class LoggedError {
  /**
   * @param name the error's class name (`TypeError`, `RpcClosedError`...)
   * @param message its message
   * @param stack its stack trace, if any
   * @param cause its masked cause, if any
   */
  constructor(
    readonly name: string,
    readonly message: string,
    readonly stack: string | undefined,
    readonly cause: unknown,
  ) {}
}

/** Deepest nesting copied when masking; deeper values are elided. */
const MAX_MASK_DEPTH = 12;
/** Secret values shorter than this are not searched for inside other strings (too many false hits). */
const MIN_SCRUBBED_SECRET_LENGTH = 4;

/**
 * Returns a copy of `value` in which the value of every property whose key matches
 * {@linkcode SECRET_KEY_PATTERN} is {@linkcode MASK}, at any depth, and every other string has those
 * values blanked. Errors become {@linkcode LoggedError}s; cycles become `"[Circular]"`.
 */
export function maskSecrets(value: unknown): unknown {
  const secrets = new Set<string>();
  collectSecrets(value, secrets, new Set(), 0);
  return maskValue(value, scrubberFor(secrets), new Set(), 0);
}

/** Gathers the string values stored under secret keys. */
function collectSecrets(value: unknown, secrets: Set<string>, seen: Set<object>, depth: number): void {
  if (typeof value !== "object" || value === null || seen.has(value) || depth > MAX_MASK_DEPTH) return;
  seen.add(value);
  for (const [key, child] of entriesOf(value)) {
    if (SECRET_KEY_PATTERN.test(key)) addSecretStrings(child, secrets, 0);
    else collectSecrets(child, secrets, seen, depth + 1);
  }
  seen.delete(value);
}

/** Adds every string inside a secret value (a secret may be an object of keys). */
function addSecretStrings(value: unknown, secrets: Set<string>, depth: number): void {
  if (typeof value === "string" || typeof value === "number" || typeof value === "bigint") {
    const text = String(value);
    if (text.length >= MIN_SCRUBBED_SECRET_LENGTH) secrets.add(text);
  } else if (typeof value === "object" && value !== null && depth <= MAX_MASK_DEPTH) {
    for (const [, child] of entriesOf(value)) addSecretStrings(child, secrets, depth + 1);
  }
}

/** A function that blanks every occurrence of the given secrets in a string. */
function scrubberFor(secrets: Set<string>): (text: string) => string {
  if (secrets.size === 0) return (text) => text;
  // Longest first, so that a secret containing another is blanked whole.
  const ordered = [...secrets].sort((a, b) => b.length - a.length);
  return (text) => ordered.reduce((result, secret) => result.replaceAll(secret, MASK), text);
}

function maskValue(
  value: unknown,
  scrub: (text: string) => string,
  seen: Set<object>,
  depth: number,
): unknown {
  if (typeof value === "string") return scrub(value);
  if (typeof value !== "object" || value === null) return value;
  if (seen.has(value)) return "[Circular]";
  if (depth > MAX_MASK_DEPTH) return "[…]";
  seen.add(value);
  try {
    if (value instanceof Error) {
      const cause = "cause" in value ? maskValue(value.cause, scrub, seen, depth + 1) : undefined;
      const stack = typeof value.stack === "string" ? scrub(value.stack) : undefined;
      return new LoggedError(value.name, scrub(value.message), stack, cause);
    }
    if (value instanceof LoggedError) return value;
    if (value instanceof Date || ArrayBuffer.isView(value)) return value;
    if (Array.isArray(value)) return value.map((item) => maskValue(item, scrub, seen, depth + 1));
    const copy: Record<string, unknown> = {};
    for (const [key, child] of entriesOf(value)) {
      copy[key] = SECRET_KEY_PATTERN.test(key) ? MASK : maskValue(child, scrub, seen, depth + 1);
    }
    return copy;
  } finally {
    seen.delete(value);
  }
}

/** The key/value pairs of an object as logged: own enumerable properties, or a Map's string keys. */
function entriesOf(value: object): [string, unknown][] {
  try {
    if (value instanceof Map) return [...value].map(([key, child]) => [String(key), child]);
    if (value instanceof Set) return [...value].map((child, index) => [String(index), child]);
    return Object.entries(value);
  } catch {
    return []; // a throwing getter or proxy: log nothing of it rather than fail the record
  }
}

/** The record's properties and rendered message, secrets blanked. */
function maskRecord(record: LogRecord): { message: string; properties: Record<string, unknown> } {
  const secrets = new Set<string>();
  collectSecrets(record.properties, secrets, new Set(), 0);
  const scrub = scrubberFor(secrets);
  const properties = maskValue(record.properties, scrub, new Set(), 0) as Record<string, unknown>;
  const message = record.message
    .map((part, index) => {
      if (index % 2 === 0) return scrub(String(part));
      return renderValue(maskValue(part, scrub, new Set(), 0));
    })
    .join("");
  return { message, properties };
}

// ---- formatting ----

/** Fixed-width level labels of the text format. */
const LEVEL_LABELS: Record<LogLevel, string> = {
  trace: "TRACE",
  debug: "DEBUG",
  info: "INFO ",
  warning: "WARN ",
  error: "ERROR",
  fatal: "FATAL",
};

/** ANSI colour of each level's label. */
const LEVEL_COLORS: Record<LogLevel, string> = {
  trace: "\x1b[90m",
  debug: "\x1b[36m",
  info: "\x1b[32m",
  warning: "\x1b[33m",
  error: "\x1b[31m",
  fatal: "\x1b[1;35m",
};
const ANSI_RESET = "\x1b[0m";

/** Options of {@linkcode formatTextLine}. */
export interface TextLineOptions {
  /** Colour the level label with ANSI escapes. */
  color: boolean;
  /** Append the stack traces of errors in the properties (on `-v` and above). */
  stacks: boolean;
}

/**
 * `2026-11-22T04:35:00.000Z INFO  server  message key=value`: the category without the root, the
 * rendered message, then the properties the message does not mention. Control characters, bidi
 * controls and lone surrogates from logged values are escaped ({@linkcode escapeForTerminal}), so that
 * a value cannot forge a line, drive the terminal or read in another order.
 */
export function formatTextLine(record: LogRecord, options: TextLineOptions): string {
  const { message, properties } = maskRecord(record);
  const label = LEVEL_LABELS[record.level];
  const level = options.color ? `${LEVEL_COLORS[record.level]}${label}${ANSI_RESET}` : label;
  const mentioned = placeholderKeys(record.rawMessage);
  let text = `${shortCategory(record.category)}  ${message}`;
  const stacks: string[] = [];
  for (const [key, value] of Object.entries(properties)) {
    if (options.stacks && value instanceof LoggedError && value.stack !== undefined) stacks.push(value.stack);
    if (mentioned.has(key) || value === undefined) continue;
    const rendered = renderValue(value);
    text += ` ${key}=${/^[\w.:/@*+-]+$/.test(rendered) ? rendered : JSON.stringify(rendered)}`;
  }
  let line = `${new Date(record.timestamp).toISOString()} ${level} ${escapeForTerminal(text)}`;
  // Stacks span lines by nature; each of their lines is still escaped.
  for (const stack of stacks) {
    line += stack.split("\n").map((part) => `\n  ${escapeForTerminal(part)}`).join("");
  }
  return line;
}

/**
 * One JSON object: `{"time", "level", "category", "message", "properties"}`, with `category` joined
 * by dots and errors as `{name, message, stack, cause}`.
 */
export function formatJsonLine(record: LogRecord): string {
  const { message, properties } = maskRecord(record);
  const entry = {
    time: new Date(record.timestamp).toISOString(),
    level: record.level,
    category: record.category.join("."),
    message,
    properties,
  };
  // JSON.stringify leaves C1 controls and bidi controls raw; as `\uXXXX` they mean the same to a JSON
  // reader and nothing to a terminal showing the log.
  try {
    return escapeForTerminal(JSON.stringify(entry, jsonReplacer));
  } catch (error) {
    // Never lose the record itself because one property would not serialize.
    return escapeForTerminal(JSON.stringify({ ...entry, properties: { unserializable: String(error) } }));
  }
}

function jsonReplacer(_key: string, value: unknown): unknown {
  if (typeof value === "bigint") return value.toString();
  if (value instanceof LoggedError) {
    return { name: value.name, message: value.message, stack: value.stack, cause: value.cause };
  }
  if (value instanceof Uint8Array) return `<${value.length} bytes>`;
  return value;
}

/** The category as shown in text lines: without the root, dot-separated. */
function shortCategory(category: readonly string[]): string {
  const parts = category[0] === ROOT_CATEGORY && category.length > 1 ? category.slice(1) : category;
  return parts.join(".");
}

/** Top-level property names used as `{placeholders}` in a message template. */
function placeholderKeys(rawMessage: string | TemplateStringsArray): Set<string> {
  const keys = new Set<string>();
  if (typeof rawMessage !== "string") return keys;
  for (const match of rawMessage.matchAll(/\{([^{}]+)\}/g)) {
    const name = (match[1] ?? "").trim().split(/[.[]/)[0];
    if (name !== undefined && name !== "") keys.add(name);
  }
  return keys;
}

/** A value as shown in a text message: strings bare, errors as `Name: message`, the rest inspected. */
function renderValue(value: unknown): string {
  if (typeof value === "string") return value;
  if (value instanceof LoggedError) return `${value.name}: ${value.message}`;
  return Deno.inspect(value, { colors: false, depth: 6, breakLength: Infinity, compact: true });
}

// ---- commands' own output ----

/** The format the process's own output uses: set by {@linkcode setupLogging} without a `sink`. */
let processFormat: LogFormat = "text";

/** The format in which the process prints (text until {@linkcode setupLogging} says otherwise). */
export function activeLogFormat(): LogFormat {
  return processFormat;
}

/** A message a command prints itself (not through a logger): see {@linkcode writeOutput}. */
export interface OutputMessage {
  /** The record's level in JSON format. */
  level: LogLevel;
  /** What text format prints, as is (it may span lines, e.g. a report). */
  text: string;
  /**
   * The JSON record's message; default: `text` without a leading `tls-tunnel: ` (a report's lines stay
   * in it, as `\n` inside the one JSON line).
   */
  message?: string;
  /** The JSON record's properties: the details, each in its own field, that the message leaves out. */
  properties?: Record<string, unknown>;
}

/** Category of the records {@linkcode writeOutput} makes. */
const OUTPUT_CATEGORY = [ROOT_CATEGORY, "cli"];

/**
 * Prints a command's message on standard output or error: `text` as is in text format, one JSON
 * record (`{"time", "level", "category", "message", "properties"}`, secrets masked as in log records)
 * in JSON format.
 */
export function writeOutput(stream: "stdout" | "stderr", output: OutputMessage): void {
  writeRawLine(stream, processFormat === "text" ? output.text : formatOutputRecord(output));
}

/** Prints `line` and a newline on standard output or error, as it is, synchronously. */
export function writeRawLine(stream: "stdout" | "stderr", line: string): void {
  writeLine(stream === "stdout" ? Deno.stdout : Deno.stderr, line);
}

/** The JSON line {@linkcode writeOutput} prints for `output` in JSON format. */
export function formatOutputRecord(output: OutputMessage, timestampMs: number = Date.now()): string {
  const message = output.message ?? output.text.replace(/^tls-tunnel: /, "");
  return formatJsonLine({
    category: OUTPUT_CATEGORY,
    level: output.level,
    message: [message],
    rawMessage: message,
    timestamp: timestampMs,
    properties: output.properties ?? {},
  });
}

/** `console`'s methods as they were before JSON format replaced them (null: not replaced). */
let originalConsole: Pick<Console, "log" | "info" | "debug" | "warn" | "error"> | null = null;

/**
 * In JSON format, `console.log/info/debug` (stdout) and `console.warn/error` (stderr) print one JSON
 * record per call, so that no module can put a plain line among the records; text format restores them.
 */
function routeConsole(json: boolean): void {
  if (!json) {
    if (originalConsole !== null) Object.assign(console, originalConsole);
    originalConsole = null;
    return;
  }
  if (originalConsole !== null) return;
  originalConsole = {
    log: console.log,
    info: console.info,
    debug: console.debug,
    warn: console.warn,
    error: console.error,
  };
  const route = (stream: "stdout" | "stderr", level: LogLevel) => (...args: unknown[]) =>
    writeOutput(stream, { level, text: args.map(consoleText).join(" ") });
  console.log = route("stdout", "info");
  console.info = route("stdout", "info");
  console.debug = route("stdout", "debug");
  console.warn = route("stderr", "warning");
  console.error = route("stderr", "error");
}

/** One `console` argument as text: strings as they are, anything else inspected. */
function consoleText(value: unknown): string {
  return typeof value === "string" ? value : Deno.inspect(value, { colors: false, depth: 6 });
}

// ---- standard error ----

const encoder = new TextEncoder();

/**
 * Writes a line synchronously, so that nothing is lost when the process exits right after logging
 * (an asynchronous stream sink would need flushing first).
 */
function writeLine(file: { writeSync(bytes: Uint8Array): number }, line: string): void {
  const bytes = encoder.encode(line + "\n");
  try {
    for (let offset = 0; offset < bytes.length;) offset += file.writeSync(bytes.subarray(offset));
  } catch {
    // The stream is gone (closed pipe): there is nowhere left to report to.
  }
}

/** The default sink: standard error. */
function writeToStderr(line: string): void {
  writeLine(Deno.stderr, line);
}

/** Whether text lines may carry colours: standard error is a terminal and NO_COLOR is unset. */
function stderrSupportsColor(): boolean {
  try {
    return Deno.stderr.isTerminal() && !Deno.noColor;
  } catch {
    return false;
  }
}

/**
 * What the `server` and `client` commands run with: a config file (`-c`, or `./server.toml` /
 * `./client.toml`), flags laid over it, or flags alone (the one-line mode). A config-less server keeps a
 * generated certificate, key and shared key in its state directory and prints the client command that
 * pins its certificate.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import {
  type ClientConfig,
  ConfigError,
  type ConfigKind,
  parseHostPort,
  processEnv,
  type ServerConfig,
} from "../config/mod.ts";
import { formatHostPort, isHostname, isIpAddress, isIpv4, isIpv6, isWildcard } from "../net/address.ts";
import { configPermissionWarning, expandHome, loadRoleConfig, resolveConfigPath } from "./config_path.ts";
import { writeOutput } from "./logging.ts";
import { parseRemoteForward, type RemoteForward, RemoteForwardError } from "./remote_forward.ts";
import {
  defaultStateDir,
  ensureStateDir,
  loadOrCreateAuthKey,
  loadOrCreateServerIdentity,
  type ServerIdentity,
  StateDirError,
} from "./state_dir.ts";

const logger = getLogger(["tls-tunnel", "cli"]);

/** The `server` command's flags. */
export interface ServerFlags {
  /** `-c FILE`; absent → `./server.toml` if it exists, else no file. */
  configPath?: string;
  /** `--port`: the tunnel port (bind_port). */
  port?: string;
  /** `--bind`: the tunnel listener's address (bind_addr). */
  bind?: string;
  /** `--key`: the shared key (auth_key). */
  key?: string;
  /** `--state-dir`: where a config-less server keeps its certificate, key and shared key. */
  stateDir?: string;
}

/** The `client` command's flags. */
export interface ClientFlags {
  /** `-c FILE`; absent → `./client.toml` if it exists, else no file. */
  configPath?: string;
  /** `--server HOST:PORT` (server_addr, server_port). */
  server?: string;
  /** `--key`: the key to present (auth_key). */
  key?: string;
  /** `--fingerprint SHA256:…`: the server certificate's pin (server_fingerprint). */
  fingerprint?: string;
  /** `-R` values, in order. */
  remote?: string[];
}

/** Options as the command-line parser hands them over (absent or undefined when not given). */
export interface ParsedRoleOptions {
  /** `-c`. */
  config?: string | undefined;
  /** Every other flag by its camelCase name. */
  [flag: string]: string | string[] | undefined;
}

/** Copies the flags that were given, renaming `config` to `configPath`. */
export function flagsFrom<T extends ServerFlags | ClientFlags>(options: ParsedRoleOptions): T {
  const flags: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(options)) {
    if (value !== undefined) flags[name === "config" ? "configPath" : name] = value;
  }
  // Every field of both flag types is an optional string (or string[] for -R), as commander gives them.
  return flags as unknown as T;
}

/** A usage error of the flags (exit code 2); the message says which flag and what it accepts. */
export class FlagError extends Error {
  /**
   * @param message what is wrong, with the value and the accepted form.
   */
  constructor(message: string) {
    super(message);
    this.name = "FlagError";
  }
}

/** The server's config and, for a config-less server, what the client command needs. */
export interface PreparedServer {
  /** The validated config. */
  config: ServerConfig;
  /** Set for a config-less server: prints the client command once the listener is bound. */
  announce?: (boundPort: number) => void;
}

const FINGERPRINT_FORMS = `"SHA256:" followed by 64 hex digits, or 32 hex pairs joined by colons (AB:CD:…)`;

/** Reports a failed preparation: the message on stderr, and the exit code (2 usage, 1 otherwise). */
function report(error: unknown): number {
  if (error instanceof FlagError || error instanceof RemoteForwardError) {
    console.error(`tls-tunnel: ${error.message}`);
    return 2;
  }
  if (error instanceof ConfigError) {
    // One record in JSON format: the issues in their own field, not in the message.
    writeOutput("stderr", {
      level: "error",
      text: error.message,
      message: error.message.split("\n")[0] ?? error.message,
      properties: { file: error.sourceName, issues: error.issues },
    });
    return 1;
  }
  if (error instanceof StateDirError) {
    console.error(`tls-tunnel: ${error.message}`);
    return 1;
  }
  throw error;
}

function parsePortFlag(text: string): number {
  if (!/^[0-9]{1,5}$/.test(text) || Number(text) > 65535) {
    throw new FlagError(`--port ${JSON.stringify(text)} is not a port number from 0 to 65535`);
  }
  return Number(text);
}

/** Opens the config file a role runs with (if any) and warns when others can read it. */
async function configFile(kind: ConfigKind, given: string | undefined): Promise<string | null> {
  const path = await resolveConfigPath(kind, given);
  if (path !== null) {
    const warning = await configPermissionWarning(path);
    if (warning !== null) logger.warn("{warning}", { warning });
  }
  return path;
}

/** Quotes `text` for a POSIX shell when it holds anything but safe characters. */
export function shellQuote(text: string): string {
  return /^[A-Za-z0-9._\-:/@%+=,]+$/.test(text) ? text : `'${text.replaceAll("'", `'\\''`)}'`;
}

/** `AB:CD:…` → `SHA256:abcd…`: the form `--fingerprint` and `server_fingerprint` take, without colons. */
export function pinForm(colonHexFingerprint: string): string {
  return `SHA256:${colonHexFingerprint.replaceAll(":", "")}`;
}

function hostnameOrNull(): string | null {
  try {
    return Deno.hostname();
  } catch {
    // Without --allow-sys=hostname.
    return null;
  }
}

/**
 * Prepares the server's config from the flags and the config file (if any). Without a config file, the
 * certificate and key come from the state directory, and so does the shared key when neither `--key` nor
 * `TLS_TUNNEL_AUTH_KEY` gives one.
 *
 * @returns the prepared server, or the exit code after printing why not.
 */
export async function prepareServer(flags: ServerFlags): Promise<PreparedServer | number> {
  try {
    return await resolveServer(flags);
  } catch (error) {
    return report(error);
  }
}

/**
 * {@linkcode prepareServer} without the report: what a reload loads again.
 *
 * @throws {ConfigError} for an invalid config; {@linkcode FlagError}, `StateDirError` for the rest
 */
export async function resolveServer(flags: ServerFlags): Promise<PreparedServer> {
  const path = await configFile("server", flags.configPath);
  const table: Record<string, unknown> = {};
  if (flags.port !== undefined) table.bind_port = parsePortFlag(flags.port);
  if (flags.bind !== undefined) table.bind_addr = flags.bind;
  if (flags.key !== undefined) table.auth_key = flags.key;
  // A config file's own certificate wins; the state directory fills in only for a file that names none
  // when --state-dir is given, and when there is no file at all.
  const fromFile = path !== null ? await loadRoleConfig("server", path, { table }) : null;
  if (
    fromFile !== null &&
    (flags.stateDir === undefined || fromFile.certPath !== undefined || fromFile.keyPath !== undefined)
  ) {
    return { config: fromFile };
  }

  const givenStateDir = expandHome(flags.stateDir ?? defaultStateDir());
  const warning = await ensureStateDir(givenStateDir);
  if (warning !== null) logger.warn("{warning}", { warning });
  // Absolute in what is printed: the paths are for copying.
  const stateDir = await Deno.realPath(givenStateDir);
  let keySource: KeySource = flags.key !== undefined
    ? { kind: "flag", key: flags.key }
    : path !== null
    ? { kind: "file", path }
    : { kind: "env" };
  if (fromFile === null && flags.key === undefined && processEnv("TLS_TUNNEL_AUTH_KEY") === undefined) {
    const stored = await loadOrCreateAuthKey(stateDir);
    table.auth_key = stored.key;
    keySource = stored.created
      ? { kind: "generated", key: stored.key, path: stored.path }
      : { kind: "stored", path: stored.path };
  }
  const loaded = fromFile ?? await loadRoleConfig("server", null, { table });
  const hostname = hostnameOrNull();
  const names = [hostname, loaded.bindAddr].filter((name): name is string => name !== null);
  const identity = await loadOrCreateServerIdentity(stateDir, names);
  if (identity.created) {
    logger.info(
      "Generated a certificate in {dir}; it is kept, so clients' pins stay valid across restarts",
      {
        dir: stateDir,
      },
    );
  }
  const config: ServerConfig = { ...loaded, certPath: identity.certPath, keyPath: identity.keyPath };
  return {
    config,
    announce: (boundPort) => printClientCommand(config, boundPort, identity, keySource, hostname),
  };
}

/** Where the server's shared key came from, for the printed client command. */
type KeySource =
  | { kind: "flag"; key: string }
  | { kind: "env" }
  | { kind: "file"; path: string }
  | { kind: "generated"; key: string; path: string }
  | { kind: "stored"; path: string };

function printClientCommand(
  config: ServerConfig,
  boundPort: number,
  identity: ServerIdentity,
  keySource: KeySource,
  hostname: string | null,
): void {
  const host = !isWildcard(config.bindAddr) ? config.bindAddr : hostname ?? "HOST";
  const server = formatHostPort(host, boundPort);
  const key = keySource.kind === "flag" || keySource.kind === "generated" ? shellQuote(keySource.key) : "KEY";
  const lines = [
    `Server certificate fingerprint: ${pinForm(identity.fingerprint)}`,
    `  (kept in ${identity.certPath}, so it stays the same across restarts)`,
  ];
  if (keySource.kind === "generated") {
    lines.push(`Generated a shared key, kept in ${keySource.path} and shown only now: ${keySource.key}`);
  }
  lines.push(
    "On the machine with the service, run (-R PORT:LOCALHOST:LOCALPORT publishes LOCALPORT here on PORT; " +
      "-R 0:LOCALPORT lets this server choose):",
    `  tls-tunnel client --server ${server} --key ${key} --fingerprint ${pinForm(identity.fingerprint)} ` +
      `-R 8080:localhost:3000`,
  );
  if (keySource.kind === "stored") lines.push(`  KEY: the shared key in ${keySource.path}`);
  if (keySource.kind === "env") lines.push("  KEY: the value of TLS_TUNNEL_AUTH_KEY");
  if (keySource.kind === "file") lines.push(`  KEY: auth_key in ${keySource.path}`);
  if (host === "HOST" || (host === hostname && !isIpAddress(host))) {
    lines.push(`  (${host === "HOST" ? "HOST" : host}: this machine's name or address as clients reach it)`);
  }
  writeOutput("stdout", {
    level: "info",
    text: lines.join("\n"),
    properties: {
      fingerprint: pinForm(identity.fingerprint),
      certPath: identity.certPath,
      clientCommand: `tls-tunnel client --server ${server} --key ${key} --fingerprint ${
        pinForm(identity.fingerprint)
      } -R 8080:localhost:3000`,
      ...(keySource.kind === "generated" ? { generatedKeyPath: keySource.path } : {}),
      ...(keySource.kind === "file" || keySource.kind === "stored" ? { keyPath: keySource.path } : {}),
    },
  });
}

/**
 * Prepares the client's config from the flags and the config file (if any). Without a config file,
 * `--server`, `--key` (or `TLS_TUNNEL_AUTH_KEY`) and at least one `-R` are needed.
 *
 * @returns the config, or the exit code after printing why not.
 */
export async function prepareClient(flags: ClientFlags): Promise<ClientConfig | number> {
  try {
    return await resolveClient(flags);
  } catch (error) {
    return report(error);
  }
}

/**
 * {@linkcode prepareClient} without the report: what a reload loads again.
 *
 * @throws {ConfigError} for an invalid config; {@linkcode FlagError}, `RemoteForwardError` for flags
 */
export async function resolveClient(flags: ClientFlags): Promise<ClientConfig> {
  const path = await configFile("client", flags.configPath);
  const table: Record<string, unknown> = {};
  if (flags.server !== undefined) Object.assign(table, parseServerFlag(flags.server));
  if (flags.key !== undefined) table.auth_key = flags.key;
  if (flags.fingerprint !== undefined) table.server_fingerprint = parseFingerprintFlag(flags.fingerprint);
  const forwards: RemoteForward[] = (flags.remote ?? []).map(parseRemoteForward);
  if (path === null) {
    const missing = [
      flags.server === undefined && processEnv("TLS_TUNNEL_SERVER_ADDR") === undefined
        ? "--server HOST:PORT"
        : "",
      flags.key === undefined && processEnv("TLS_TUNNEL_AUTH_KEY") === undefined ? "--key KEY" : "",
      forwards.length === 0 ? "-R PORT:LOCALPORT" : "",
    ].filter((flag) => flag !== "");
    if (missing.length > 0) {
      throw new FlagError(
        `no config file (-c FILE, or ./client.toml) and no ${missing.join(", ")}; run ` +
          "`tls-tunnel client --server HOST:PORT --key KEY --fingerprint SHA256:… -R PORT:LOCALPORT`, " +
          "or give a config with -c FILE (`tls-tunnel template client` prints one)",
      );
    }
  }
  return await loadRoleConfig("client", path, { table, forwards });
}

/**
 * `--fingerprint`: the pin as given (trimmed), in one of the forms `server_fingerprint` accepts.
 *
 * @throws {FlagError} naming the value and the accepted forms.
 */
export function parseFingerprintFlag(text: string): string {
  const pin = text.trim();
  if (/^sha256:[0-9a-f]{64}$/i.test(pin) || /^[0-9a-f]{2}(:[0-9a-f]{2}){31}$/i.test(pin)) return pin;
  throw new FlagError(
    `--fingerprint ${JSON.stringify(text.slice(0, 120))} is not a SHA-256 fingerprint; ` +
      `write ${FINGERPRINT_FORMS}, as the server prints it`,
  );
}

/**
 * `--server HOST:PORT` (IPv6 in brackets; `HOST` alone keeps the default port) → client table keys.
 *
 * @throws {FlagError} naming the value and the accepted form.
 */
export function parseServerFlag(text: string): Record<string, unknown> {
  if (isHostname(text) || isIpv4(text)) return { server_addr: text };
  if (isIpv6(text)) {
    throw new FlagError(
      `--server ${JSON.stringify(text)} is an IPv6 address without brackets (is the end a port?); write ` +
        "[ADDR]:PORT, e.g. [2001:db8::7]:8443",
    );
  }
  const bracketed = /^\[([^\]]*)\](?::\d*)?$/.exec(text)?.[1];
  if (bracketed !== undefined && !isIpv6(bracketed)) {
    throw new FlagError(
      `--server ${
        JSON.stringify(text.slice(0, 120))
      }: brackets hold an IPv6 address only; write HOST:PORT, ` +
        "e.g. tunnel.example.com:8443 or [2001:db8::7]:8443",
    );
  }
  if (bracketed !== undefined && text === `[${bracketed}]`) return { server_addr: bracketed };
  const parsed = parseHostPort(text);
  if ("host" in parsed) return { server_addr: parsed.host, server_port: parsed.port };
  throw new FlagError(
    `--server ${JSON.stringify(text.slice(0, 120))} ${parsed.problem}; write HOST:PORT, e.g. ` +
      "tunnel.example.com:8443, 203.0.113.7:8443 or [2001:db8::7]:8443",
  );
}

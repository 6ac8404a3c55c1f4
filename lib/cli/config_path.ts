/**
 * Which config the `server` and `client` commands run with, and how command-line flags combine with it:
 *
 * - the file: `-c FILE` (a leading `~` expanded), else `./server.toml` / `./client.toml` when it exists,
 *   else none (the one-line mode: flags only);
 * - a file readable by group or others draws a warning naming the file and `chmod 600 FILE` (it may hold
 *   `auth_key`);
 * - flags override the file's keys and the `TLS_TUNNEL_*` variables for the same keys (flags win), `-R`
 *   forwards are added to the file's `[[proxies]]`; the result is validated like a file;
 * - a leading `~` in `cert_path`, `key_path` and `ca_cert_path` is expanded.
 *
 * @module
 */

import { parse as parseToml, stringify as stringifyToml, TomlError } from "smol-toml";
import {
  type ClientConfig,
  type ConfigKind,
  ENV_OVERRIDES,
  type EnvSource,
  loadClientConfig,
  loadServerConfig,
  parseConfigText,
  processEnv,
  type ServerConfig,
  wrongKindError,
} from "../config/mod.ts";
import { forwardsToProxies, type RemoteForward } from "./remote_forward.ts";

/** The name `server`/`client` look for in the working directory when `-c` is not given. */
export function defaultConfigName(kind: ConfigKind): string {
  return `${kind}.toml`;
}

/** Where the config errors of a config-less run point. */
export const COMMAND_LINE_SOURCE = "<command line>";

function home(): string | undefined {
  return processEnv("HOME") ?? processEnv("USERPROFILE");
}

/** Replaces a leading `~` or `~/` with the home directory (`~user` is left alone, as is a missing HOME). */
export function expandHome(path: string, homeDir: string | undefined = home()): string {
  if (homeDir === undefined || homeDir === "") return path;
  if (path === "~") return homeDir;
  if (path.startsWith("~/")) return `${homeDir.replace(/\/+$/, "")}${path.slice(1)}`;
  return path;
}

/**
 * The config file a role runs with: `given` with `~` expanded, else `./server.toml` or `./client.toml`
 * when it exists in the working directory, else null (flags only).
 */
export async function resolveConfigPath(kind: ConfigKind, given: string | undefined): Promise<string | null> {
  if (given !== undefined) return expandHome(given);
  const fallback = `./${defaultConfigName(kind)}`;
  try {
    return (await Deno.stat(fallback)).isFile ? fallback : null;
  } catch {
    return null;
  }
}

/**
 * A warning when the config file can be read by group or others (it may hold `auth_key`), naming the
 * file and the fix; null otherwise, on Windows, and when the file cannot be examined.
 */
export async function configPermissionWarning(path: string): Promise<string | null> {
  if (Deno.build.os === "windows") return null;
  let mode: number | null;
  try {
    mode = (await Deno.stat(path)).mode;
  } catch {
    return null;
  }
  if (mode === null || (mode & 0o044) === 0) return null;
  return `Config file ${path} is readable by group or others (mode ${(mode & 0o777).toString(8)}) and may ` +
    `hold auth_key; run \`chmod 600 ${path}\``;
}

/** Values from the command line, in TOML spelling, laid over the file. */
export interface ConfigOverrides {
  /** Keys of the role's table (`[server]` or `[client]`), e.g. `{ bind_port: 9000 }`. */
  table: Record<string, unknown>;
  /** `-R` forwards, added as `[[proxies]]` after the file's (client only). */
  forwards?: readonly RemoteForward[];
}

/** Path keys whose leading `~` is expanded, per role table. */
const PATH_KEYS: Readonly<Record<ConfigKind, readonly string[]>> = {
  server: ["cert_path", "key_path"],
  client: ["ca_cert_path"],
};

function isTable(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

/** The process environment without the `TLS_TUNNEL_*` variables of keys a flag sets: flags win. */
function envWithout(kind: ConfigKind, keys: Iterable<string>): EnvSource {
  const overridden = new Set([...keys].map((key) => `${kind}.${key}`));
  const hidden = new Set(
    ENV_OVERRIDES.filter((override) => override.keys.some((key) => overridden.has(key))).map((o) => o.name),
  );
  return (name) => hidden.has(name) ? undefined : processEnv(name);
}

/**
 * Reads the role's config from `path` (or starts from an empty one when null), lays `overrides` over
 * it, expands `~` in path keys, and validates the result like a file.
 *
 * @throws {InvalidConfigError} listing every problem, with the file's name (or `<command line>`).
 */
export async function loadRoleConfig(
  kind: "server",
  path: string | null,
  overrides: ConfigOverrides,
): Promise<ServerConfig>;
export async function loadRoleConfig(
  kind: "client",
  path: string | null,
  overrides: ConfigOverrides,
): Promise<ClientConfig>;
export async function loadRoleConfig(
  kind: ConfigKind,
  path: string | null,
  overrides: ConfigOverrides,
): Promise<ServerConfig | ClientConfig> {
  const sourceName = path ?? COMMAND_LINE_SOURCE;
  if (path !== null && Object.keys(overrides.table).length === 0 && (overrides.forwards ?? []).length === 0) {
    // A file alone loads exactly as the loader reads it; only its path keys get `~` expanded.
    if (kind === "server") {
      const config = await loadServerConfig(path);
      return {
        ...config,
        ...(config.certPath !== undefined ? { certPath: expandHome(config.certPath) } : {}),
        ...(config.keyPath !== undefined ? { keyPath: expandHome(config.keyPath) } : {}),
      };
    }
    const config = await loadClientConfig(path);
    // Each server may name its own ca_cert_path ([[client.servers]]); the first's stands in for the top one.
    const servers = config.servers.map((server) =>
      server.caCertPath !== undefined ? { ...server, caCertPath: expandHome(server.caCertPath) } : server
    );
    return config.caCertPath !== undefined
      ? { ...config, caCertPath: expandHome(config.caCertPath), servers }
      : { ...config, servers };
  }
  let document: Record<string, unknown> = { [kind]: {} };
  if (path !== null) {
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch {
      // The loader's messages for a missing, unreadable or non-UTF-8 file.
      const { loadConfig } = await import("../config/mod.ts");
      await loadConfig(path);
      throw new Error(`config file ${path} could not be read`);
    }
    let parsed: unknown;
    try {
      parsed = parseToml(text);
    } catch (error) {
      if (!(error instanceof TomlError)) throw error;
      // The loader reports the syntax error with its line and column.
      parseConfigText(text, { sourceName });
      throw error;
    }
    if (!isTable(parsed)) {
      parseConfigText(text, { sourceName });
      throw new Error(`config file ${path} is not a TOML table`);
    }
    const other: ConfigKind = kind === "server" ? "client" : "server";
    const hasOther = other === "server" ? "server" in parsed : "client" in parsed || "proxies" in parsed;
    if (hasOther && !(kind in parsed)) throw wrongKindError(sourceName, kind, other);
    document = parsed;
  }
  const table = isTable(document[kind]) ? document[kind] : null;
  if (table !== null) {
    Object.assign(table, overrides.table);
    for (const key of PATH_KEYS[kind]) {
      const value = table[key];
      if (typeof value === "string") table[key] = expandHome(value);
    }
    // [[client.servers]] entries' own ca_cert_path.
    for (const entry of Array.isArray(table.servers) ? table.servers : []) {
      if (isTable(entry) && typeof entry.ca_cert_path === "string") {
        entry.ca_cert_path = expandHome(entry.ca_cert_path);
      }
    }
  }
  if (overrides.forwards !== undefined && overrides.forwards.length > 0) {
    const proxies: unknown[] = Array.isArray(document.proxies) ? document.proxies : [];
    const names = proxies.map((proxy) => isTable(proxy) ? proxy.name : undefined)
      .filter((name): name is string => typeof name === "string");
    document.proxies = [...proxies, ...forwardsToProxies(overrides.forwards, names)];
  }
  const result = parseConfigText(stringifyToml(document), {
    sourceName,
    env: envWithout(kind, Object.keys(overrides.table)),
  });
  if (result.kind !== kind) throw wrongKindError(sourceName, kind, result.kind);
  return result.config;
}

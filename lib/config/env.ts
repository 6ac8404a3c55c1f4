/**
 * `TLS_TUNNEL_*` environment variables that override config keys. They are applied to the parsed TOML
 * before validation, so an override is checked exactly like the value it replaces and a bad one is
 * reported with the variable's name.
 *
 * @module
 */

/** Where the loader reads environment variables: a plain record (tests) or a getter (the process). */
export type EnvSource = Readonly<Record<string, string | undefined>> | ((name: string) => string | undefined);

/** One documented override. */
export interface EnvOverride {
  /** Variable name, e.g. `TLS_TUNNEL_BIND_PORT`. */
  name: string;
  /** TOML key paths it sets; the one of the loaded role applies (`server.auth_key` or `client.auth_key`). */
  keys: readonly string[];
  /** How the text of the variable is read before validation. */
  type: "string" | "integer" | "number";
  /** What it is for, for the README and `--help` texts. */
  description: string;
}

/** Every environment variable the config loader honours. An empty value counts as unset. */
export const ENV_OVERRIDES: readonly EnvOverride[] = [
  {
    name: "TLS_TUNNEL_AUTH_KEY",
    keys: ["server.auth_key", "client.auth_key"],
    type: "string",
    description: "The shared key (server) or the key the client presents; keeps the secret out of the file.",
  },
  {
    name: "TLS_TUNNEL_BIND_ADDR",
    keys: ["server.bind_addr"],
    type: "string",
    description: "Address of the server's tunnel listener.",
  },
  {
    name: "TLS_TUNNEL_BIND_PORT",
    keys: ["server.bind_port"],
    type: "integer",
    description: "Port of the server's tunnel listener.",
  },
  {
    name: "TLS_TUNNEL_STATS_TOKEN",
    keys: ["server.stats_token", "client.stats_token"],
    type: "string",
    description: "Bearer token of the stats endpoint (either role); keeps the secret out of the file.",
  },
  {
    name: "TLS_TUNNEL_SERVER_ADDR",
    keys: ["client.server_addr"],
    type: "string",
    description: "Host name or address of the server the client dials.",
  },
  {
    name: "TLS_TUNNEL_SERVER_PORT",
    keys: ["client.server_port"],
    type: "integer",
    description: "Tunnel port of the server the client dials.",
  },
  {
    name: "TLS_TUNNEL_RECONNECT_DELAY_SECS",
    keys: ["client.reconnect.initial_delay_secs"],
    type: "number",
    description: "First delay before the client reconnects after losing the server (backoff starts here).",
  },
  {
    name: "TLS_TUNNEL_LOCAL_CONNECT_RETRIES",
    keys: ["client.local_connect_retries"],
    type: "integer",
    description: "Attempts to reach a local service for each outside connection.",
  },
  {
    name: "TLS_TUNNEL_LOCAL_RETRY_DELAY_MS",
    keys: ["client.local_retry_delay_ms"],
    type: "integer",
    description: "Delay in milliseconds between those attempts.",
  },
];

/** Reads the process environment; without `--allow-env` every variable reads as unset. */
export const processEnv = (name: string): string | undefined => {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined;
  }
};

function readEnv(env: EnvSource, name: string): string | undefined {
  const value = typeof env === "function" ? env(name) : env[name];
  return value === undefined || value === "" ? undefined : value;
}

const NUMERIC = /^[+-]?(\d+(\.\d*)?|\.\d+)$/;

function convert(text: string, type: EnvOverride["type"]): unknown {
  if (type === "string") return text;
  const trimmed = text.trim();
  // Text that is not a number stays text, so validation reports "expected a number, got the string …".
  return NUMERIC.test(trimmed) ? Number(trimmed) : text;
}

function isTable(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

/**
 * Applies the overrides set in `env` to a parsed TOML document of the given role, in place.
 *
 * @returns the TOML key paths that were set, each with the variable that set it.
 */
export function applyEnvOverrides(
  document: Record<string, unknown>,
  role: "server" | "client",
  env: EnvSource,
): Map<string, string> {
  const applied = new Map<string, string>();
  for (const override of ENV_OVERRIDES) {
    const value = readEnv(env, override.name);
    if (value === undefined) continue;
    for (const keyPath of override.keys) {
      const segments = keyPath.split(".");
      if (segments[0] !== role) continue;
      let table: Record<string, unknown> = document;
      let reachable = true;
      for (const segment of segments.slice(0, -1)) {
        const next = table[segment];
        if (next === undefined && segment !== role) {
          table[segment] = {};
        } else if (!isTable(next)) {
          // The table itself is malformed; validation reports that, and the override has nowhere to go.
          reachable = false;
          break;
        }
        table = table[segment] as Record<string, unknown>;
      }
      const key = segments[segments.length - 1];
      if (!reachable || key === undefined) continue;
      table[key] = convert(value, override.type);
      applied.set(keyPath, override.name);
    }
  }
  return applied;
}

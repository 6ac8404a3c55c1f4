/**
 * Turns zod's issues into {@link ConfigIssue}s that speak TOML: key paths as written in the file,
 * messages that quote the value (never a secret), and a hint for each.
 *
 * @module
 */

import type { z } from "zod";
import { closestMatch } from "./_levenshtein.ts";
import { FORWARDER_TYPES, PROXY_TYPES, RUST_TCP_PROXY_TYPES } from "./_compat.ts";
import type { ConfigIssue } from "./errors.ts";
import { KNOWN_KEYS } from "./schema.ts";

type PathSegment = PropertyKey;

/** Formats `["proxies", 1, "publish_port"]` as `proxies[1].publish_port`. */
export function formatPath(path: readonly PathSegment[]): string {
  let text = "";
  for (const segment of path) {
    if (typeof segment === "number") text += `[${segment}]`;
    else text += text === "" ? String(segment) : `.${String(segment)}`;
  }
  return text;
}

/** The table a path points into, without indices: `["proxies", 1, "x"]` → `proxies`. */
function tableOf(path: readonly PathSegment[]): string {
  return path.filter((s) => typeof s !== "number").map(String).join(".");
}

function tableLabel(tablePath: string): string {
  if (tablePath === "") return "the top level";
  if (tablePath === "proxies" || tablePath === "server.clients" || tablePath === "forwarders") {
    return `[[${tablePath}]]`;
  }
  if (tablePath === "proxies.health_check") return "a proxy's health_check";
  return `[${tablePath}]`;
}

function valueAt(document: unknown, path: readonly PathSegment[]): unknown {
  let value: unknown = document;
  for (const segment of path) {
    if (typeof value !== "object" || value === null) return undefined;
    value = (value as Record<PropertyKey, unknown>)[segment];
  }
  return value;
}

const SECRET_KEYS = new Set(["auth_key", "stats_token", "secret_key"]);

function describeValue(value: unknown, secret: boolean): string {
  if (typeof value === "string") {
    if (secret) return `a string of ${value.length} characters`;
    const shown = value.length > 40 ? `${value.slice(0, 40)}…` : value;
    return `the string ${JSON.stringify(shown)}`;
  }
  if (typeof value === "number") return Number.isInteger(value) ? `${value}` : `the number ${value}`;
  if (typeof value === "boolean") return `${value}`;
  if (value instanceof Date) return "a date";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object" && value !== null) return "a table";
  return String(value);
}

function describeExpected(expected: string, key: string): string {
  switch (expected) {
    case "int":
      return "a whole number";
    case "number":
      return "a number";
    case "string":
      return "a string";
    case "boolean":
      return "true or false";
    case "object":
      return "a table";
    case "array":
      return key === "proxies" || key === "clients" ? "an array of tables" : "an array";
    default:
      return expected;
  }
}

/** Example lines shown in hints, by key name. */
const EXAMPLES: Readonly<Record<string, string>> = {
  bind_addr: `bind_addr = "0.0.0.0"`,
  bind_port: "bind_port = 8443",
  // What a [[visitors]] entry needs (its bind_port is a local port applications connect to).
  "visitors.bind_port": "bind_port = 15432 (the local port applications connect to)",
  "visitors.publish_port": "publish_port = 5432 (the target proxy's publish_port)",
  cert_path: `cert_path = "cert.pem"`,
  key_path: `key_path = "key.pem"`,
  auth_key: `auth_key = "a-long-random-secret-of-16+-chars"`,
  allow_ports: `allow_ports = "20000-20100,8080"`,
  max_proxies_per_client: "max_proxies_per_client = 64",
  max_proxies: "max_proxies = 16",
  stats_addr: `stats_addr = "127.0.0.1"`,
  stats_port: "stats_port = 9090",
  stats_token: `stats_token = "a-long-random-secret"`,
  server_addr: `server_addr = "tunnel.example.com"`,
  server_port: "server_port = 8443",
  server_name: `server_name = "tunnel.example.com"`,
  ca_cert_path: `ca_cert_path = "ca.pem"`,
  skip_verify: "skip_verify = false",
  server_fingerprint: `server_fingerprint = "SHA256:…"`,
  client_id: `client_id = "office-laptop"`,
  name: `name = "web"`,
  proxy_type: `proxy_type = "tcp"`,
  publish_addr: `publish_addr = "0.0.0.0"`,
  publish_port: "publish_port = 8080",
  publish_port_range: `publish_port_range = "20000-20100"`,
  fallback_to_system_port: "fallback_to_system_port = true",
  local_addr: `local_addr = "127.0.0.1"`,
  local_port: "local_port = 3000",
  local_backends: `local_backends = ["127.0.0.1:3000", "127.0.0.1:3001"]`,
  lb_policy: `lb_policy = "round_robin"`,
  health_check: "health_check = { interval_secs = 10, timeout_secs = 3 }",
  reconnect: "[client.reconnect]",
  bind_retry: "[server.bind_retry]",
  proxies: "[[proxies]]",
  clients: "[[server.clients]]",
};

/** Hints for keys that other tunnels (or the Rust tls-tunnel) use and that are spelt differently here. */
const ALIASES: Readonly<Record<string, string>> = {
  insecure: "use skip_verify = true to skip certificate verification, for tests only",
  remote_port: "did you mean `publish_port`? (frp's remote_port is publish_port here)",
  local_ip: "did you mean `local_addr`?",
  token: "did you mean `auth_key`?",
  visitors: "[[visitors]] belong in a client config, which reaches other clients' private proxies; " +
    "the server needs none",
  forwarders:
    "[[forwarders]] are a feature of the Rust tls-tunnel that this tls-tunnel does not have; remove them",
  rate_limit: "rate_limit is a setting of the Rust tls-tunnel that this tls-tunnel does not have; remove it",
  size_limits:
    "size_limits is a setting of the Rust tls-tunnel that this tls-tunnel does not have; remove it",
};

function unknownKeyHint(kind: "server" | "client", tablePath: string, key: string): string {
  if (kind === "server" && tablePath === "" && key === "proxies") {
    return "[[proxies]] belong in the client's config; the client tells the server what to publish";
  }
  if (kind === "client" && tablePath === "" && key === "server") {
    return "a file configures one role: [server] and [client] go in separate files";
  }
  const alias = ALIASES[key];
  if (alias !== undefined) return alias;
  const known = KNOWN_KEYS[kind][tablePath] ?? [];
  // A key of another table usually means it was written below the wrong [header]: every key after a
  // header belongs to that header's table.
  const home = Object.entries(KNOWN_KEYS[kind]).find(([other, keys]) =>
    other !== tablePath && keys.includes(key)
  );
  if (home !== undefined && !known.includes(key)) {
    return `${key} belongs in ${
      tableLabel(home[0])
    }; keys written below a [table] header belong to that table, ` +
      "so move it above the header or under the right one";
  }
  const suggestion = closestMatch(key, known);
  if (suggestion !== undefined) return `did you mean \`${suggestion}\`?`;
  return known.length > 0 ? `keys of ${tableLabel(tablePath)}: ${known.join(", ")}` : "remove it";
}

/** The hint of an unknown `proxy_type`: the accepted values, and where the Rust tool's others belong. */
function proxyTypeHint(value: unknown): string {
  const quoted = (values: readonly string[]) => values.map((v) => JSON.stringify(v)).join(", ");
  const accepted = `proxy_type is one of ${quoted(PROXY_TYPES)} (the Rust tls-tunnel's ` +
    `${quoted(RUST_TCP_PROXY_TYPES)} are carried as tcp); HTTP, SSH and databases are all carried as tcp`;
  if (typeof value !== "string" || !FORWARDER_TYPES.includes(value)) return accepted;
  return `${JSON.stringify(value)} is a type of the Rust tls-tunnel's [[forwarders]] (a local proxy that ` +
    `leaves through the server): write it as a [[forwarders]] entry with name, proxy_type and bind_port ` +
    `(README, "Forwarders"); a [[proxies]] entry publishes a port: ${accepted}`;
}

/** Port keys where 0 means "let the system pick". */
const ZERO_ALLOWED_PORTS = new Set(["bind_port", "stats_port", "publish_port"]);

function tooSmallOrBig(
  issue: z.core.$ZodIssueTooSmall | z.core.$ZodIssueTooBig,
  key: string,
  value: unknown,
): Omit<ConfigIssue, "path"> {
  const bound = Number(issue.code === "too_small" ? issue.minimum : issue.maximum);
  if (issue.origin === "string" && typeof value === "string") {
    if (SECRET_KEYS.has(key)) {
      return issue.code === "too_small"
        ? {
          message: `${key} is ${value.length} characters long; at least ${bound} are required`,
          hint: "use a long random secret, e.g. the output of `openssl rand -hex 24`",
        }
        : {
          message: `${key} is ${value.length} characters long; at most ${bound} are allowed`,
          hint: "use a shorter secret, e.g. the output of `openssl rand -hex 24`",
        };
    }
    return { message: "must not be empty", hint: EXAMPLES[key] !== undefined ? `e.g. ${EXAMPLES[key]}` : "" };
  }
  if (key.endsWith("_port") && typeof value === "number") {
    return {
      message: `${value} is not a valid port`,
      hint: ZERO_ALLOWED_PORTS.has(key)
        ? "use a port from 1 to 65535, or 0 to let the system pick one"
        : "use a port from 1 to 65535",
    };
  }
  const shown = describeValue(value, false);
  if (issue.code === "too_small") {
    return issue.inclusive === false
      ? {
        message: `${shown} is too small; it must be greater than ${bound}`,
        hint: `use a value above ${bound}`,
      }
      : {
        message: `${shown} is too small; the minimum is ${bound}`,
        hint: `use a value of at least ${bound}`,
      };
  }
  return issue.inclusive === false
    ? { message: `${shown} is too large; it must be less than ${bound}`, hint: `use a value below ${bound}` }
    : { message: `${shown} is too large; the maximum is ${bound}`, hint: `use a value of at most ${bound}` };
}

/**
 * Converts one zod issue into config issues (an unknown-keys issue becomes one issue per key).
 *
 * @param envSources TOML key paths set by environment variables, to name the variable in the message.
 */
export function convertIssue(
  issue: z.core.$ZodIssue,
  document: unknown,
  kind: "server" | "client",
  envSources: ReadonlyMap<string, string>,
): ConfigIssue[] {
  const path = issue.path;
  const key = String([...path].reverse().find((s) => typeof s !== "number") ?? "");
  const value = valueAt(document, path);
  let converted: Omit<ConfigIssue, "path">;
  switch (issue.code) {
    case "unrecognized_keys": {
      const tablePath = tableOf(path);
      return issue.keys.map((unknownKey) => ({
        path: formatPath([...path, unknownKey]),
        message: `unknown key \`${unknownKey}\` in ${tableLabel(tablePath)}`,
        hint: unknownKeyHint(kind, tablePath, unknownKey),
      }));
    }
    case "invalid_type":
      if (value === undefined) {
        // A table's own example first (a visitor's bind_port is not the server's).
        const example = EXAMPLES[`${String(path[0])}.${key}`] ?? EXAMPLES[key];
        converted = {
          message: `missing required key \`${key}\``,
          hint: example !== undefined ? `add ${example}` : `add ${key}`,
        };
      } else {
        converted = {
          message: `expected ${describeExpected(issue.expected, key)}, got ${
            describeValue(value, SECRET_KEYS.has(key))
          }`,
          hint: EXAMPLES[key] !== undefined
            ? `write it like ${EXAMPLES[key]}`
            : "check the value's TOML type",
        };
      }
      break;
    case "too_small":
    case "too_big":
      converted = tooSmallOrBig(issue, key, value);
      break;
    case "invalid_value": {
      const allowed = issue.values.map((v) => JSON.stringify(v)).join(" or ");
      const shown = typeof value === "string"
        ? JSON.stringify(value)
        : describeValue(value, SECRET_KEYS.has(key));
      if (value === undefined) {
        // A required key whose type is a set of values (`transport` of a [[server.listeners]] entry).
        converted = { message: `missing required key \`${key}\``, hint: `add ${key} = ${allowed}` };
      } else if (key === "transport") {
        converted = {
          message: `transport ${shown} is not supported`,
          hint:
            `use transport = "tls" (the default), "wss" (WebSocket) or "http2" (both also behind a reverse proxy), ` +
            `or "quic" (UDP, experimental, needs --unstable-net)`,
        };
      } else if (key === "proxy_type" && tableOf(path.slice(0, -1)) === "forwarders") {
        converted = {
          message: `proxy_type ${shown} is not supported for a forwarder`,
          hint: `use proxy_type = "http" (CONNECT and absolute-URI requests) or "socks5"`,
        };
      } else if (key === "proxy_type" || (key === "type" && tableOf(path.slice(0, -1)) === "proxies")) {
        converted = {
          message: `${key} ${shown} is not supported`,
          hint: proxyTypeHint(value),
        };
      } else {
        converted = { message: `${shown} is not allowed here`, hint: `use ${allowed}` };
      }
      break;
    }
    case "custom": {
      const hint = typeof issue.params?.hint === "string" ? issue.params.hint : "";
      // Refinements phrase their message as a predicate ("is not …"); the value goes in front of it.
      const subject = typeof value === "string" && !SECRET_KEYS.has(key) ? JSON.stringify(value) : key;
      converted = {
        message: issue.message.startsWith("is ") ? `${subject} ${issue.message}` : issue.message,
        hint,
      };
      break;
    }
    default:
      converted = { message: issue.message, hint: "" };
  }
  const pathText = formatPath(path);
  const variable = envSources.get(pathText);
  if (variable !== undefined) converted.message += ` (value from environment variable ${variable})`;
  return [{ path: pathText, ...converted }];
}

import assert from "node:assert/strict";
import { getLogger, type LogRecord } from "@logtape/logtape";
import {
  activeLogFormat,
  formatJsonLine,
  formatOutputRecord,
  formatTextLine,
  levelForVerbosity,
  type LogFormat,
  MASK,
  maskSecrets,
  resetLogging,
  ROOT_CATEGORY,
  setupLogging,
} from "./logging.ts";

/** Sets up logging into an array for the duration of `body`. */
async function capture(
  options: { verbosity?: number; format?: LogFormat; color?: boolean },
  body: () => void,
): Promise<string[]> {
  const lines: string[] = [];
  await setupLogging({
    verbosity: options.verbosity ?? 0,
    format: options.format ?? "text",
    sink: (line) => lines.push(line),
    ...(options.color === undefined ? {} : { color: options.color }),
  });
  try {
    body();
  } finally {
    await resetLogging();
  }
  return lines;
}

/** A record as logtape builds it for `logger.info("Client '{name}' connected from {address}", ...)`. */
function sampleRecord(overrides: Partial<LogRecord> = {}): LogRecord {
  return {
    category: ["tls-tunnel", "server"],
    level: "info",
    message: ["Client '", "office", "' connected from ", "1.2.3.4:5555", ""],
    rawMessage: "Client '{name}' connected from {address}",
    timestamp: Date.UTC(2026, 10, 22, 4, 35, 0, 0),
    properties: { name: "office", address: "1.2.3.4:5555" },
    ...overrides,
  };
}

const SECRETS = ["k3y-0f-the-office", "hunter2-password", "tok-abcdef", "nested-s3cret"];

/** Properties with secrets at several depths and under several spellings. */
function secretProperties(): Record<string, unknown> {
  return {
    client: "office",
    auth_key: SECRETS[0],
    config: { password: SECRETS[1], clients: [{ name: "lab", authKey: SECRETS[0] }] },
    headers: { Authorization: `Bearer ${SECRETS[2]}`, "X-Api-Token": SECRETS[2] },
    deep: { a: { b: { client_secret: { value: SECRETS[3] } } } },
    url: `wss://example.net/?token=${SECRETS[2]}`,
  };
}

Deno.test("verbosity 0 logs info, 1 adds debug, 2 and more add trace", async () => {
  assert.deepEqual([0, 1, 2, 3].map(levelForVerbosity), ["info", "debug", "trace", "trace"]);
  for (
    const [verbosity, expected] of [[0, ["info", "warn"]], [1, ["debug", "info", "warn"]], [2, [
      "trace",
      "debug",
      "info",
      "warn",
    ]]] as const
  ) {
    const lines = await capture({ verbosity, format: "json" }, () => {
      const logger = getLogger([ROOT_CATEGORY, "server"]);
      logger.trace("trace");
      logger.debug("debug");
      logger.info("info");
      logger.warn("warn");
    });
    assert.deepEqual(lines.map((line) => JSON.parse(line).message), expected, `verbosity ${verbosity}`);
  }
});

Deno.test("text lines read time, level, category without the root, then the message", () => {
  assert.equal(
    formatTextLine(sampleRecord(), { color: false, stacks: false }),
    "2026-11-22T04:35:00.000Z INFO  server  Client 'office' connected from 1.2.3.4:5555",
  );
  const warning = formatTextLine(
    sampleRecord({ level: "warning", category: ["tls-tunnel", "client", "rpc"] }),
    {
      color: false,
      stacks: false,
    },
  );
  assert.match(warning, /^\S+Z WARN {2}client\.rpc {2}Client/);
  const rootOnly = formatTextLine(sampleRecord({ category: ["tls-tunnel"] }), {
    color: false,
    stacks: false,
  });
  assert.match(rootOnly, /^\S+Z INFO {2}tls-tunnel {2}Client/);
});

Deno.test("text lines from real loggers carry unmentioned properties as key=value", async () => {
  const lines = await capture({}, () => {
    getLogger([ROOT_CATEGORY, "server"]).info("Client '{name}' connected from {address}", {
      name: "office",
      address: "1.2.3.4:5555",
      streams: 3,
      note: "two words",
    });
  });
  assert.equal(lines.length, 1);
  assert.match(
    lines[0] ?? "",
    /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO {2}server {2}Client 'office' connected from 1\.2\.3\.4:5555 streams=3 note="two words"$/,
  );
});

Deno.test("text lines are coloured by level only when asked, and never with a custom sink by default", async () => {
  const plain = await capture({}, () => getLogger([ROOT_CATEGORY, "x"]).error("boom"));
  assert.ok(!(plain[0] ?? "").includes("\x1b"), "no escape sequences");
  const coloured = await capture({ color: true }, () => {
    getLogger([ROOT_CATEGORY, "x"]).info("fine");
    getLogger([ROOT_CATEGORY, "x"]).error("boom");
  });
  assert.ok((coloured[0] ?? "").endsWith("Z \x1b[32mINFO \x1b[0m x  fine"), coloured[0]);
  assert.ok((coloured[1] ?? "").endsWith("Z \x1b[31mERROR\x1b[0m x  boom"), coloured[1]);
});

Deno.test("json lines hold time, level, category, message and properties", async () => {
  const lines = await capture({ format: "json" }, () => {
    getLogger([ROOT_CATEGORY, "server"]).info("Client '{name}' connected", {
      name: "office",
      port: 5555,
      error: new TypeError("x"),
    });
  });
  assert.equal(lines.length, 1);
  assert.doesNotMatch(lines[0] ?? "", /\n/);
  const entry = JSON.parse(lines[0] ?? "");
  assert.deepEqual(Object.keys(entry), ["time", "level", "category", "message", "properties"]);
  assert.ok(!Number.isNaN(Date.parse(entry.time)));
  assert.equal(entry.level, "info");
  assert.equal(entry.category, "tls-tunnel.server");
  assert.equal(entry.message, "Client 'office' connected");
  assert.equal(entry.properties.name, "office");
  assert.equal(entry.properties.port, 5555);
  assert.equal(entry.properties.error.name, "TypeError");
  assert.equal(entry.properties.error.message, "x");
  assert.equal(typeof entry.properties.error.stack, "string");
});

Deno.test("formatJsonLine turns values JSON cannot hold into text", () => {
  const line = formatJsonLine(sampleRecord({ properties: { big: 12n, bytes: new Uint8Array(3) } }));
  assert.deepEqual(JSON.parse(line).properties, { big: "12", bytes: "<3 bytes>" });
});

Deno.test("maskSecrets blanks secret keys at any depth and their values anywhere else", () => {
  const masked = maskSecrets(secretProperties()) as Record<string, unknown>;
  assert.deepEqual(masked, {
    client: "office",
    auth_key: MASK,
    config: { password: MASK, clients: [{ name: "lab", authKey: MASK }] },
    headers: { Authorization: `Bearer ${MASK}`, "X-Api-Token": MASK },
    deep: { a: { b: { client_secret: MASK } } },
    url: `wss://example.net/?token=${MASK}`,
  });
  const original = secretProperties();
  maskSecrets(original);
  assert.deepEqual(original, secretProperties(), "the input is not modified");
});

Deno.test("maskSecrets survives cycles, errors, maps and throwing getters", () => {
  const cyclic: Record<string, unknown> = { name: "loop", token: "cyclic-token" };
  cyclic.self = cyclic;
  const error = new Error("login with cyclic-token failed", { cause: { password: "pw-in-cause" } });
  const hostile = {
    get boom(): never {
      throw new Error("getter");
    },
  };
  const masked = maskSecrets({
    cyclic,
    error,
    map: new Map<string, unknown>([["secret", "map-secret"], ["ok", 1]]),
    hostile: { inner: hostile },
  }) as Record<string, Record<string, unknown>>;
  assert.deepEqual(masked.cyclic, { name: "loop", token: MASK, self: "[Circular]" });
  const loggedError = masked.error as unknown as { message: string; cause: unknown; stack: string };
  assert.equal(loggedError.message, `login with ${MASK} failed`);
  assert.deepEqual(loggedError.cause, { password: MASK });
  assert.doesNotMatch(loggedError.stack, /cyclic-token/);
  assert.deepEqual(masked.map, { secret: MASK, ok: 1 });
});

for (const format of ["text", "json"] as const) {
  Deno.test(`${format} format never writes a secret, in properties or in the message`, async () => {
    const lines = await capture({ format, verbosity: 2 }, () => {
      const logger = getLogger([ROOT_CATEGORY, "server"]);
      logger.info("Authenticating {client} with key {auth_key} at {url}", secretProperties());
      logger.with({ sessionToken: "context-token-123" }).warn("context carries a token");
      logger.error("Failed: {error}", {
        error: new Error(`bad password ${SECRETS[1]}`),
        password: SECRETS[1],
      });
      logger.debug("config {config}", { config: { server: { auth_key: SECRETS[0], port: 1 } } });
    });
    assert.equal(lines.length, 4);
    const all = lines.join("\n");
    for (const secret of [...SECRETS, "context-token-123"]) {
      assert.ok(!all.includes(secret), `${secret} leaked in ${format}:\n${all}`);
    }
    assert.ok(all.includes(MASK));
    assert.ok(all.includes("office"), "ordinary values are kept");
    if (format === "text") {
      assert.match(lines[0] ?? "", /with key \*\*\* at wss:\/\/example\.net\/\?token=\*\*\*/);
      assert.match(lines[1] ?? "", /sessionToken=\*\*\*/);
    } else {
      const first = JSON.parse(lines[0] ?? "");
      assert.equal(first.properties.auth_key, MASK);
      assert.equal(first.properties.config.password, MASK);
      assert.match(first.message, /with key \*\*\* at/);
    }
  });
}

Deno.test("text lines escape control characters from logged values", () => {
  const line = formatTextLine(
    sampleRecord({
      message: [
        "Client '",
        "evil\n2026-01-01T00:00:00.000Z ERROR forged\u001b[2J",
        "' connected from ",
        "x",
        "",
      ],
      properties: { name: "evil", address: "x", extra: "a\rb" },
    }),
    { color: false, stacks: false },
  );
  for (const control of ["\n", "\r", "\x1b"]) assert.ok(!line.includes(control), JSON.stringify(line));
  assert.match(line, /evil\\n2026-01-01T00:00:00.000Z ERROR forged\\u001b\[2J/);
  assert.match(line, /extra="a\\\\rb"|extra="a\\rb"/);
});

Deno.test("log lines escape bidi controls, C1 controls and lone surrogates, in text and JSON", () => {
  const hostile = "web\u202eevil\u2066x\u009b31m\ud800\u0085";
  const record = sampleRecord({
    message: ["Client '", hostile, "' connected from ", "x", ""],
    properties: { name: hostile, address: "x", reason: `refused: ${hostile}` },
  });
  const text = formatTextLine(record, { color: false, stacks: false });
  const json = formatJsonLine(record);
  for (const line of [text, json]) {
    for (const raw of ["\u202e", "\u2066", "\u009b", "\u0085"]) {
      assert.ok(!line.includes(raw), `${JSON.stringify(raw)} raw in ${JSON.stringify(line)}`);
    }
    assert.doesNotMatch(line, /[\ud800-\udbff](?![\udc00-\udfff])/u, "no lone surrogate");
  }
  assert.match(text, /Client 'web\\u202eevil\\u2066x\\u009b31m\\ud800\\u0085' connected/);
  // The JSON escapes are JSON's own: a reader gets the original string back.
  const parsed = JSON.parse(json);
  assert.equal(parsed.properties.name, hostile);
  assert.equal(parsed.properties.reason, `refused: ${hostile}`);
});

Deno.test("error stacks follow the line only from -v up", async () => {
  const log = () =>
    getLogger([ROOT_CATEGORY, "rpc"]).error("Handler failed: {error}", {
      error: new RangeError("out of range"),
    });
  const quiet = await capture({ verbosity: 0 }, log);
  assert.equal(quiet.length, 1);
  assert.match(quiet[0] ?? "", /rpc {2}Handler failed: RangeError: out of range$/);
  const verbose = await capture({ verbosity: 1 }, log);
  assert.match(verbose[0] ?? "", /\n {2}RangeError: out of range\n {6}at /);
});

Deno.test("setupLogging can be called again and only the last setup receives records", async () => {
  const first: string[] = [];
  const second: string[] = [];
  await setupLogging({ verbosity: 0, format: "text", sink: (line) => first.push(line) });
  getLogger([ROOT_CATEGORY, "a"]).info("one");
  await setupLogging({ verbosity: 0, format: "json", sink: (line) => second.push(line) });
  getLogger([ROOT_CATEGORY, "a"]).info("two");
  await resetLogging();
  getLogger([ROOT_CATEGORY, "a"]).info("three");
  assert.equal(first.length, 1);
  assert.match(first[0] ?? "", /one$/);
  assert.deepEqual(second.map((line) => JSON.parse(line).message), ["two"]);
});

Deno.test("records under the root category are written, other libraries' are not", async () => {
  const lines = await capture({ format: "json" }, () => {
    getLogger(["tls-tunnel", "mux"]).info("direct");
    getLogger(["some-other-lib"]).info("not ours");
  });
  assert.deepEqual(lines.map((line) => JSON.parse(line).category), ["tls-tunnel.mux"]);
});

Deno.test("by default records go to standard error and nothing to standard output", async () => {
  const moduleUrl = new URL("./logging.ts", import.meta.url).href;
  const configPath = new URL("../../deno.json", import.meta.url).pathname;
  const code = `
    import { getLogger } from "@logtape/logtape";
    import { setupLogging } from ${JSON.stringify(moduleUrl)};
    await setupLogging({ verbosity: 0, format: "text" });
    getLogger(["tls-tunnel", "server"]).info("Client '{name}' connected", { name: "office", auth_key: "child-secret-key" });
  `;
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--config", configPath, code],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const stdout = new TextDecoder().decode(output.stdout);
  const stderr = new TextDecoder().decode(output.stderr);
  assert.equal(output.code, 0, stderr);
  assert.equal(stdout, "");
  assert.match(stderr, /^\S+Z INFO {2}server {2}Client 'office' connected auth_key=\*\*\*\n$/);
});

Deno.test("a command's output in JSON format is one record: one-line message, details in fields, secrets masked", () => {
  const line = formatOutputRecord(
    {
      level: "error",
      text: "tls-tunnel: Invalid config a.toml (1 problem):\n  server.auth_key: too short",
      message: "Invalid config a.toml (1 problem):",
      properties: {
        issues: [{ path: "server.auth_key", message: "too short" }],
        auth_key: "k3y-0f-the-office",
      },
    },
    Date.UTC(2026, 10, 22),
  );
  assert.ok(!line.includes("\n"), "one line");
  const record = JSON.parse(line);
  assert.deepEqual(
    [record.time, record.level, record.category, record.message],
    ["2026-11-22T00:00:00.000Z", "error", "tls-tunnel.cli", "Invalid config a.toml (1 problem):"],
  );
  assert.deepEqual(record.properties.issues, [{ path: "server.auth_key", message: "too short" }]);
  assert.equal(record.properties.auth_key, MASK);
  // Without a message, the text is the message, minus the program's prefix.
  assert.equal(JSON.parse(formatOutputRecord({ level: "error", text: "tls-tunnel: boom" })).message, "boom");
});

Deno.test("only the process's own setup (no sink) decides the format commands print in", async () => {
  const before = activeLogFormat();
  await capture({ format: "json" }, () => {
    assert.equal(activeLogFormat(), before, "a test's capture leaves it alone");
  });
});

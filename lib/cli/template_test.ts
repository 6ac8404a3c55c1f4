import assert from "node:assert/strict";
import { parse as parseToml } from "smol-toml";
import { camelCase } from "../config/_camel.ts";
import { DEFAULTS } from "../config/defaults.ts";
import { parseConfigText } from "../config/load.ts";
import { KNOWN_KEYS } from "../config/schema.ts";
import { captureOutput } from "./_command_output.ts";
import { checkCommand } from "./check.ts";
import { clientTemplate, randomAuthKey, serverTemplate, templateCommand } from "./template.ts";

/** Keys accepted only for compatibility with the Rust tls-tunnel; templates leave them out. */
const COMPAT_KEYS = new Set(["transport", "behind_proxy", "server_path", "allow_forward", "type"]);
const KEY = "0123456789abcdef-key";

Deno.test("both templates are valid configs of their kind", () => {
  assert.equal(parseConfigText(serverTemplate(randomAuthKey()), { env: {} }).kind, "server");
  assert.equal(parseConfigText(clientTemplate(randomAuthKey()), { env: {} }).kind, "client");
});

Deno.test("the templates mention every key of their role", () => {
  for (const [kind, text] of [["server", serverTemplate("k")], ["client", clientTemplate("k")]] as const) {
    for (const [table, keys] of Object.entries(KNOWN_KEYS[kind])) {
      for (const key of keys) {
        if (COMPAT_KEYS.has(key) || table === "") continue;
        const mentioned = new RegExp(`(^|[#\\s{,])${key} = `, "m").test(text) ||
          text.includes(`[${table}.${key}]`) || text.includes(`[[${table}.${key}]]`);
        assert.ok(mentioned, `the ${kind} template does not mention ${table}.${key}`);
      }
    }
  }
});

Deno.test("every template carries a fresh random auth_key", async () => {
  const keys = new Set<string>();
  for (let i = 0; i < 3; i++) {
    const io = captureOutput();
    assert.equal(await templateCommand({ kind: "server" }, io), 0);
    const key = /^auth_key = "([^"]+)"$/m.exec(io.stdout)?.[1];
    assert.ok(key !== undefined && key.length >= 32, io.stdout);
    keys.add(key);
  }
  assert.equal(keys.size, 3);
});

Deno.test("template refuses an unknown kind with exit code 2", async () => {
  const io = captureOutput();
  assert.equal(await templateCommand({ kind: "proxy" }, io), 2);
  assert.match(io.stderr, /unknown template kind "proxy"/);
  assert.equal(io.stdout, "");
});

Deno.test("template -o writes a file that passes check and never overwrites one", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/client.toml`;
    const io = captureOutput();
    assert.equal(await templateCommand({ kind: "client", outputPath: file }, io), 0);
    assert.equal(await checkCommand({ configPath: file, format: "text" }, captureOutput()), 0);
    const before = await Deno.readTextFile(file);

    const again = captureOutput();
    assert.equal(await templateCommand({ kind: "server", outputPath: file }, again), 1);
    assert.match(again.stderr, /already exists; not overwriting it/);
    assert.equal(await Deno.readTextFile(file), before);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Every `key = value  # default` line of a template, with the table it is in (commented headers count). */
function defaultLines(text: string): { table: string; key: string; value: unknown; commented: boolean }[] {
  const found: { table: string; key: string; value: unknown; commented: boolean }[] = [];
  let table = "";
  for (const line of text.split("\n")) {
    const header = /^(?:# )?\[+([a-z_.]+)\]+/.exec(line);
    if (header?.[1] !== undefined) table = header[1];
    const match = /^(# )?([a-z_]+) = (.+?)\s+# default\b/.exec(line);
    if (match?.[2] === undefined || match[3] === undefined) continue;
    found.push({
      table,
      key: match[2],
      value: parseToml(`v = ${match[3]}`).v,
      commented: match[1] !== undefined,
    });
  }
  return found;
}

/** The DEFAULTS entry of a template's table: `server.bind_retry` → DEFAULTS.server.bind_retry. */
function defaultsOf(table: string): Record<string, unknown> {
  let node: unknown = DEFAULTS;
  for (const segment of (table === "proxies" ? "proxy" : table).split(".")) {
    node = (node as Record<string, unknown>)[segment];
  }
  return node as Record<string, unknown>;
}

/** Every leaf path of a DEFAULTS subtree (`health_check`, an inline table in the template, counts as one). */
function leafPaths(tree: Record<string, unknown>, prefix: string): string[] {
  return Object.entries(tree).flatMap(([key, value]) =>
    typeof value === "object" && !Array.isArray(value) && key !== "health_check"
      ? leafPaths(value as Record<string, unknown>, `${prefix}.${key}`)
      : [`${prefix}.${key}`]
  );
}

Deno.test("every default a template shows is the value in DEFAULTS, and every default is shown", () => {
  for (const [kind, text] of [["server", serverTemplate("k")], ["client", clientTemplate("k")]] as const) {
    const shown = new Set<string>();
    for (const { table, key, value } of defaultLines(text)) {
      assert.deepEqual(value, defaultsOf(table)[key], `${kind} template: ${table}.${key}`);
      shown.add(`${table === "proxies" ? "proxy" : table}.${key}`);
    }
    // health_check is optional: the template shows the defaults its keys take once it is set.
    const healthCheck = /^# health_check = (.+)$/m.exec(text)?.[1];
    if (healthCheck !== undefined) {
      assert.deepEqual({ ...parseToml(`v = ${healthCheck}`).v as object }, DEFAULTS.proxy.health_check);
      shown.add("proxy.health_check");
    }
    const expected = kind === "server"
      ? leafPaths(DEFAULTS.server, "server")
      : [...leafPaths(DEFAULTS.client, "client"), ...leafPaths(DEFAULTS.proxy, "proxy")];
    // bind_addr and bind_port are written out as live values (checked by the next test), not as defaults.
    const missing = expected.filter((path) => !shown.has(path) && !/^server\.bind_(addr|port)$/.test(path));
    assert.deepEqual(missing, [], `${kind} template does not show these defaults`);
  }
});

Deno.test("a template parses to DEFAULTS' values: writing its default lines out changes nothing", () => {
  for (const [kind, text] of [["server", serverTemplate(KEY)], ["client", clientTemplate(KEY)]] as const) {
    // Uncomment the default lines of the tables the template does not comment out ([server.notify] is).
    let table = "";
    const explicit = text.split("\n").map((line) => {
      const header = /^\[+([a-z_.]+)\]+/.exec(line);
      if (header?.[1] !== undefined) table = header[1];
      if (/^# \[/.test(line)) table = "(commented)";
      return table !== "(commented)" && /^# [a-z_]+ = .+\s# default\b/.test(line) ? line.slice(2) : line;
    }).join("\n");
    assert.notEqual(explicit, text);
    const asWritten = parseConfigText(text, { env: {} });
    const withDefaults = parseConfigText(explicit, { env: {} });
    assert.equal(asWritten.kind, kind);
    assert.deepEqual(withDefaults, asWritten);
    // And the loaded values are DEFAULTS' own, key by key (scalar keys; ranges and tables are parsed forms).
    const config = asWritten.config as unknown as Record<string, unknown>;
    for (const [key, value] of Object.entries(kind === "server" ? DEFAULTS.server : DEFAULTS.client)) {
      if (typeof value === "object" || key === "allow_ports") continue;
      assert.equal(config[camelCase(key)], value, `${kind}.${key}`);
    }
  }
});

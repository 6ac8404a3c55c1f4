import assert from "node:assert/strict";
import { parseConfigText } from "../config/load.ts";
import { KNOWN_KEYS } from "../config/schema.ts";
import { captureOutput } from "./_command_output.ts";
import { checkCommand } from "./check.ts";
import { clientTemplate, randomAuthKey, serverTemplate, templateCommand } from "./template.ts";

/** Keys accepted only for compatibility with the Rust tls-tunnel; templates leave them out. */
const COMPAT_KEYS = new Set(["transport", "behind_proxy", "server_path"]);

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

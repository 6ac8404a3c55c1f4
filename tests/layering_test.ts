/**
 * The layering of lib/ as a test: every folder imports only the folders below it (README, "Layout"), and
 * the server and client roles never import each other. Reads the sources; runs nothing.
 */

import assert from "node:assert/strict";

const LIB = new URL("../lib/", import.meta.url);

/**
 * What each folder under lib/ may import, besides itself and the leaf files at lib/'s root (`_async.ts`,
 * `text.ts`, `version.ts`, which import nothing from lib/). `cli` sits on top and may import anything.
 */
const ALLOWED: Readonly<Record<string, readonly string[]>> = {
  net: [],
  pki: ["net"],
  mux: ["net"],
  rpc: ["net"],
  config: ["net"],
  protocol: ["net", "mux", "rpc", "config"],
  transport: ["net"],
  // stats shows what the protocol carries: the proxy statuses come from protocol/proxy_status.ts (a
  // leaf that imports nothing), so the status set is written once. protocol sits below stats in README's
  // layout table and imports nothing of stats, so no cycle can form.
  stats: ["net", "config", "protocol"],
  server: ["net", "pki", "mux", "rpc", "config", "protocol", "transport", "stats"],
  client: ["net", "pki", "mux", "rpc", "config", "protocol", "transport", "stats"],
  cli: ["net", "pki", "mux", "rpc", "config", "protocol", "transport", "stats", "server", "client"],
};

/** Relative import specifiers of a source file: static, re-exports and dynamic `import("…")`. */
function relativeImports(source: string): string[] {
  const found: string[] = [];
  const pattern = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)["'](\.{1,2}\/[^"']+)["']/g;
  for (const match of source.matchAll(pattern)) {
    const specifier = match[1];
    if (specifier !== undefined) found.push(specifier);
  }
  return found;
}

/** Every .ts file under `dir`, as paths relative to lib/. */
async function sourcesUnder(dir: URL, prefix = ""): Promise<string[]> {
  const files: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isDirectory) {
      files.push(...await sourcesUnder(new URL(`${entry.name}/`, dir), `${prefix}${entry.name}/`));
    } else if (entry.name.endsWith(".ts")) {
      files.push(`${prefix}${entry.name}`);
    }
  }
  return files.sort();
}

/** The breaches of the layering in lib/, one line each ("from → to: why"). */
async function layeringBreaches(): Promise<string[]> {
  const breaches: string[] = [];
  for (const file of await sourcesUnder(LIB)) {
    const isTest = file.endsWith("_test.ts");
    const folder = file.includes("/") ? file.slice(0, file.indexOf("/")) : null;
    const source = await Deno.readTextFile(new URL(file, LIB));
    for (const specifier of relativeImports(source)) {
      const target = new URL(specifier, new URL(file, LIB));
      if (!target.href.startsWith(LIB.href)) {
        // Leaving lib/: only tests may, and only for the shared test helpers.
        const root = new URL("../", LIB).href;
        const outside = target.href.slice(root.length);
        if (!(isTest && outside.startsWith("testing/"))) breaches.push(`${file} → ${outside}: outside lib/`);
        continue;
      }
      const path = target.href.slice(LIB.href.length);
      const targetFolder = path.includes("/") ? path.slice(0, path.indexOf("/")) : null;
      if (targetFolder === folder || targetFolder === null && folder !== null) continue;
      if (folder === null) {
        breaches.push(`${file} → ${path}: lib/'s root files import nothing from its folders`);
        continue;
      }
      const allowed = ALLOWED[folder];
      if (allowed === undefined) {
        breaches.push(`${file}: folder ${folder}/ has no place in the layering (add it to ALLOWED)`);
      } else if (targetFolder !== null && !allowed.includes(targetFolder)) {
        breaches.push(`${file} → ${path}: ${folder}/ may import only ${allowed.join(", ") || "nothing"}`);
      }
    }
  }
  return breaches;
}

Deno.test("no file under lib/ imports upward, across server/ and client/, or out of lib/", async () => {
  assert.deepEqual(await layeringBreaches(), []);
});

Deno.test("every folder under lib/ has a mod.ts with a module doc", async () => {
  const missing: string[] = [];
  for await (const entry of Deno.readDir(LIB)) {
    if (!entry.isDirectory) continue;
    const text = await Deno.readTextFile(new URL(`${entry.name}/mod.ts`, LIB)).catch(() => "");
    if (!/^\/\*\*[\s\S]*?@module[\s\S]*?\*\//.test(text)) missing.push(entry.name);
  }
  assert.deepEqual(missing.sort(), []);
});

Deno.test("the layering check finds an import that breaks it", () => {
  // The check's own parser, on lines that must be found: a static import, a re-export and a dynamic one.
  const source = [
    'import { x } from "../server/server.ts";',
    'export * from "../client/mod.ts";',
    'const m = await import("../cli/run.ts");',
    'import "./side_effect.ts";',
  ].join("\n");
  assert.deepEqual(relativeImports(source), [
    "../server/server.ts",
    "../client/mod.ts",
    "../cli/run.ts",
    "./side_effect.ts",
  ]);
});

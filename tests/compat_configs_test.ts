/**
 * The Rust tls-tunnel's example configs (`../shared/compat/`, the files its users have on disk) through the
 * real CLI: `main.ts check -c FILE` run as a child process from an empty folder, so the certificate paths
 * they name do not exist. Each file has an expected outcome: valid (with the notes `check` prints about the
 * Rust keys that mean less here), or refused for exactly the expected reasons. A file added to the folder
 * without an expectation fails, and so does any change of outcome.
 */

import assert from "node:assert/strict";
import { ENV_OVERRIDES } from "../lib/config/env.ts";
import { parseConfigText } from "../lib/config/load.ts";
import { generateCertificates } from "../lib/pki/cert.ts";
import { ProxySpecRequest } from "../lib/protocol/control.ts";
import { toProxySpec } from "../lib/protocol/convert.ts";
import type { CheckReport } from "../lib/cli/check.ts";
import { PROJECT_ROOT } from "../testing/helpers.ts";
import { geoipTestDatabase } from "../testing/mmdb_fixture.ts";

/** The shared compatibility data, beside the project (`/work/shared/compat` next to `/work/main`). */
const COMPAT_DIR = new URL("../shared/compat/", `file://${PROJECT_ROOT}`).pathname;

/** Blanks every TLS_TUNNEL_* override, so the caller's environment cannot change an outcome. */
const CLEAN_ENV = Object.fromEntries(ENV_OVERRIDES.map((o) => [o.name, ""]));

/** What `check` must say about one file: issue and note paths with a pattern their message must match. */
interface Expected {
  kind: "server" | "client";
  /** Problems, in the order check lists them; empty → the file is valid. */
  issues: [path: string, message: RegExp][];
  /** Notes about the Rust keys, in order. */
  notes: [path: string, message: RegExp][];
}

const VALID_CLIENT: Expected = { kind: "client", issues: [], notes: [] };
const VALID_SERVER: Expected = { kind: "server", issues: [], notes: [] };
const MISSING = (file: string) => new RegExp(`^${file.replaceAll(".", "\\.")} does not exist `);
/**
 * Every file of the compat folder, by its path in it. The visitor and forwarder clients pass (issue 15); the
 * servers naming certificate files pass when those files exist (checked below).
 */
const EXPECTED: Readonly<Record<string, Expected>> = {
  "rust-tls-tunnel-1.5.1/client-template.toml": VALID_CLIENT,
  "rust-tls-tunnel-1.5.1/client-with-stats.toml": VALID_CLIENT,
  // Forwarders exist (issue 15): forwarder-only clients are valid; the GeoIP database is read at start.
  "rust-tls-tunnel-1.5.1/forwarder-client.toml": VALID_CLIENT,
  // Its geoip_db is read by check as the client reads it at start.
  "rust-tls-tunnel-1.5.1/forwarder-geoip-client.toml": {
    kind: "client",
    issues: [["forwarders[0].routing.geoip_db", /^geoip_db examples\/geoip\.mmdb does not exist /]],
    notes: [],
  },
  "rust-tls-tunnel-1.5.1/forwarder-server.toml": {
    kind: "server",
    issues: [
      ["server.cert_path", MISSING("examples/certs/cert.pem")],
      ["server.key_path", MISSING("examples/certs/key.pem")],
    ],
    notes: [],
  },
  "rust-tls-tunnel-1.5.1/proxied-client.toml": VALID_CLIENT,
  "rust-tls-tunnel-1.5.1/proxied-server.toml": VALID_SERVER,
  "rust-tls-tunnel-1.5.1/server-template.toml": {
    kind: "server",
    issues: [["server.cert_path", MISSING("cert.pem")], ["server.key_path", MISSING("key.pem")]],
    notes: [],
  },
  "rust-tls-tunnel-1.5.1/standalone-client.toml": VALID_CLIENT,
  "rust-tls-tunnel-1.5.1/standalone-server.toml": VALID_SERVER,
  // Visitors (issue 15): the proxy without publish_addr is private, as in the Rust tool, and check says so.
  "rust-tls-tunnel-1.5.1/visitor-client-a.toml": {
    kind: "client",
    issues: [],
    notes: [
      ["proxies[0].type", /^type = "ssh" \(.*\) is read as proxy_type = "tcp"$/],
      [
        "proxies[0]",
        /^has no publish_addr in a config written like the Rust tls-tunnel's .* so it is private/,
      ],
    ],
  },
  "rust-tls-tunnel-1.5.1/visitor-client-b.toml": {
    kind: "client",
    issues: [],
    notes: [["visitors[1].type", /^type = "ssh" on a visitor changes nothing/]],
  },
};

/** Files the refused configs name (certificates, a GeoIP database), relative to the folder `check` runs in. */
const NAMED_FILES = [
  "cert.pem",
  "key.pem",
  "examples/certs/cert.pem",
  "examples/certs/key.pem",
  "examples/geoip.mmdb",
];

async function tomlFiles(dir: string, prefix = ""): Promise<string[]> {
  const files: string[] = [];
  for await (const entry of Deno.readDir(`${dir}${prefix}`)) {
    if (entry.isDirectory) files.push(...await tomlFiles(dir, `${prefix}${entry.name}/`));
    else if (entry.name.endsWith(".toml")) files.push(`${prefix}${entry.name}`);
  }
  return files.sort();
}

interface Output {
  code: number;
  stdout: string;
  stderr: string;
}

interface Run {
  code: number;
  report: CheckReport;
  /** The text form, run only for a file with notes (the form of everything else is check_test's). */
  text: Output | undefined;
}

/** `check -c FILE --format json` (and the text form when `withText`), as a user runs them, from `cwd`. */
async function check(file: string, cwd: string, withText: boolean): Promise<Run> {
  const run = async (format: "json" | "text"): Promise<Output> => {
    const output = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--quiet",
        "--allow-read",
        "--allow-env",
        `${PROJECT_ROOT}main.ts`,
        "check",
        "-c",
        file,
        "--format",
        format,
      ],
      cwd,
      env: { ...CLEAN_ENV, NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const decoder = new TextDecoder();
    return {
      code: output.code,
      stdout: decoder.decode(output.stdout),
      stderr: decoder.decode(output.stderr),
    };
  };
  const json = await run("json");
  const text = withText ? await run("text") : undefined;
  return { code: json.code, report: JSON.parse(json.stdout) as CheckReport, text };
}

/** Runs `fn` on every item, at most `limit` at a time (each is a deno process on a shared machine). */
async function eachLimited<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const results: R[] = [];
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

function assertOutcome(name: string, run: Run, expected: Expected): void {
  const { report, text } = run;
  const shown = `${name}:\n${JSON.stringify(report, null, 2)}`;
  const valid = expected.issues.length === 0;
  assert.equal(run.code, valid ? 0 : 1, shown);
  assert.deepEqual([report.valid, report.kind], [valid, expected.kind], shown);
  assert.deepEqual(report.issues.map((issue) => issue.path), expected.issues.map(([path]) => path), shown);
  expected.issues.forEach(([, message], index) =>
    assert.match(report.issues[index]?.message ?? "", message, shown)
  );
  assert.deepEqual(report.notes.map((note) => note.path), expected.notes.map(([path]) => path), shown);
  expected.notes.forEach(([, message], index) =>
    assert.match(report.notes[index]?.message ?? "", message, shown)
  );
  assert.deepEqual(report.warnings, [], shown);
  if (text === undefined) return;
  // The text form: the verdict, each note a `note:` line, on standard output when the file is valid.
  const textShown = `${name}:\n${text.stdout}${text.stderr}`;
  assert.equal(text.code, run.code, textShown);
  const noteLines = (valid ? text.stdout : text.stderr).split("\n").filter((line) =>
    line.startsWith("note: ")
  );
  assert.deepEqual(
    noteLines.map((line) => line.split(": ")[1]),
    expected.notes.map(([path]) => path),
    textShown,
  );
  if (valid) {
    assert.match(text.stdout, new RegExp(`: valid ${expected.kind} config\\n`), textShown);
    assert.equal(text.stderr, "", `${textShown}\na note is neither a problem nor a warning`);
  } else {
    assert.match(text.stderr, new RegExp(`: invalid ${expected.kind} config \\(`), textShown);
  }
}

Deno.test("every Rust tls-tunnel example config gets its expected check outcome through the CLI", async () => {
  const files = await tomlFiles(COMPAT_DIR).catch((error: unknown) => {
    throw new Error(`cannot read the compat data in ${COMPAT_DIR}: ${error}`);
  });
  assert.deepEqual(files, Object.keys(EXPECTED).sort(), "every file of the compat folder has an expectation");
  const cwd = await Deno.makeTempDir({ prefix: "tls-tunnel-compat-" });
  try {
    const runs = await eachLimited(
      files,
      3,
      (file) => check(`${COMPAT_DIR}${file}`, cwd, (EXPECTED[file]?.notes.length ?? 0) > 0),
    );
    files.forEach((file, index) => {
      const run = runs[index];
      const expected = EXPECTED[file];
      assert.ok(run !== undefined && expected !== undefined);
      assertOutcome(file, run, expected);
    });
  } finally {
    await Deno.remove(cwd, { recursive: true });
  }
});

Deno.test("the Rust examples refused for missing certificates or GeoIP database pass once the files exist", async () => {
  const cwd = await Deno.makeTempDir({ prefix: "tls-tunnel-compat-" });
  try {
    const certs = await generateCertificates({ commonName: "localhost", validityDays: 365 });
    await Deno.mkdir(`${cwd}/examples/certs`, { recursive: true });
    await Promise.all(
      NAMED_FILES.map((file) =>
        file.endsWith(".mmdb") ? Deno.writeFile(`${cwd}/${file}`, geoipTestDatabase()) : Deno.writeTextFile(
          `${cwd}/${file}`,
          file.endsWith("key.pem") ? certs.serverKeyPem : certs.serverChainPem,
        )
      ),
    );
    const refused = Object.entries(EXPECTED).filter(([, expected]) =>
      expected.issues.length > 0 &&
      expected.issues.every(([path]) => path.endsWith("_path") || path.endsWith(".geoip_db"))
    );
    assert.deepEqual(refused.map(([file]) => file).sort(), [
      "rust-tls-tunnel-1.5.1/forwarder-geoip-client.toml",
      "rust-tls-tunnel-1.5.1/forwarder-server.toml",
      "rust-tls-tunnel-1.5.1/server-template.toml",
    ]);
    const runs = await eachLimited(refused, 3, ([file]) => check(`${COMPAT_DIR}${file}`, cwd, true));
    refused.forEach(([file, expected], index) => {
      const run = runs[index];
      assert.ok(run !== undefined);
      assertOutcome(file, run, { ...expected, issues: [] });
      assert.match(
        run.report.summary[0] ?? "",
        expected.kind === "server"
          ? /^tunnel listener: 0\.0\.0\.0:8443 \(TLS with (examples\/certs\/)?cert\.pem/
          : /^server: 127\.0\.0\.1:3080 /,
      );
    });
  } finally {
    await Deno.remove(cwd, { recursive: true });
  }
});

Deno.test("a Rust example's ssh proxy goes on the wire as proxy_type tcp, private for visitors", async () => {
  const text = await Deno.readTextFile(`${COMPAT_DIR}rust-tls-tunnel-1.5.1/visitor-client-a.toml`);
  const parsed = parseConfigText(text, { env: {} });
  assert.equal(parsed.kind, "client");
  if (parsed.kind !== "client") return;
  const [proxy] = parsed.config.proxies;
  assert.ok(proxy !== undefined);
  const spec = toProxySpec(proxy);
  assert.equal(spec.proxy_type, "tcp");
  // No publish_addr in the Rust visitor example: private (registered for visitors, never bound).
  assert.equal(spec.visibility, "private");
  // The request form: publish_addr may be absent (the server's default_publish_addr then applies).
  assert.ok(ProxySpecRequest.safeParse(spec).success, "the server's register_proxies schema accepts it");
});

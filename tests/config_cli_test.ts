/**
 * The config commands through the real CLI: `main.ts` run as a child process, as a user or a script would.
 */

import assert from "node:assert/strict";
import { ENV_OVERRIDES } from "../lib/config/env.ts";

const ROOT = new URL("../", import.meta.url);
const INVALID = new URL("tests/testdata/config/invalid/", ROOT);

/** Blanks every TLS_TUNNEL_* override (empty counts as unset), so the caller's environment cannot leak in. */
const CLEAN_ENV = Object.fromEntries(ENV_OVERRIDES.map((o) => [o.name, ""]));

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function cli(args: string[], env: Record<string, string> = {}): Promise<Result> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-env", "--allow-write", "main.ts", ...args],
    cwd: ROOT.pathname,
    env: { ...CLEAN_ENV, NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code: output.code, stdout: decoder.decode(output.stdout), stderr: decoder.decode(output.stderr) };
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "tls-tunnel-cli-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("check -c accepts every file in examples/", async () => {
  const files: string[] = [];
  for await (const entry of Deno.readDir(new URL("examples/", ROOT))) {
    if (entry.name.endsWith(".toml")) files.push(`examples/${entry.name}`);
  }
  assert.ok(files.length >= 3, `examples: ${files.join(", ")}`);
  const results = await Promise.all(files.map((file) => cli(["check", "-c", file])));
  results.forEach((result, i) => {
    assert.equal(result.code, 0, `${files[i]}:\n${result.stdout}${result.stderr}`);
    assert.match(result.stdout, /: valid (server|client) config/);
  });
});

Deno.test("check -c rejects invalid files with exit code 1 and the problem on the output", async () => {
  const cases = [
    "unknown_proxy_key_suggestion",
    "port_out_of_range",
    "reversed_allow_ports_range",
    "duplicate_bindings",
    "bad_toml_syntax_line",
    "stats_public_without_token",
  ];
  const results = await Promise.all(
    cases.map((name) => cli(["check", "-c", new URL(`${name}.toml`, INVALID).pathname])),
  );
  for (const [i, name] of cases.entries()) {
    const result = results[i];
    assert.ok(result !== undefined);
    const expected = (await Deno.readTextFile(new URL(`${name}.expected`, INVALID))).trim();
    assert.equal(result.code, 1, `${name}: ${result.stdout}${result.stderr}`);
    assert.ok(result.stderr.includes(expected), `${name}: expected ${expected} in\n${result.stderr}`);
  }
});

Deno.test("check names a bad TLS_TUNNEL_ variable in its message", async () => {
  const result = await cli(["check", "-c", "examples/client.toml"], { TLS_TUNNEL_SERVER_PORT: "99999" });
  assert.equal(result.code, 1);
  assert.match(result.stderr, /client\.server_port: 99999 is not a valid port .*TLS_TUNNEL_SERVER_PORT/);
});

Deno.test("check --format json prints a machine-readable report", async () => {
  const [invalid, valid, missing] = await Promise.all([
    cli(["check", "-c", new URL("many_problems_at_once.toml", INVALID).pathname, "--format", "json"]),
    cli(["check", "--format", "json", "-c", "examples/server.toml"]),
    cli(["check", "-c", "does/not/exist.toml", "--format", "json"]),
  ]);
  assert.equal(invalid.code, 1);
  const report = JSON.parse(invalid.stdout);
  assert.equal(report.valid, false);
  assert.equal(report.kind, "server");
  assert.equal(report.issues.length, 4);
  for (const issue of report.issues) {
    assert.deepEqual(Object.keys(issue).sort(), ["hint", "message", "path"]);
  }
  assert.equal(valid.code, 0);
  assert.deepEqual([JSON.parse(valid.stdout).valid, JSON.parse(valid.stdout).kind], [true, "server"]);
  assert.equal(missing.code, 1);
  assert.match(JSON.parse(missing.stdout).issues[0].message, /does not exist/);
});

Deno.test("check on a missing file exits 1 with a clear message", async () => {
  const result = await cli(["check", "-c", "no-such-config.toml"]);
  assert.equal(result.code, 1);
  assert.match(result.stderr, /config file no-such-config\.toml does not exist/);
});

Deno.test("template server|client output passes check, and unknown kinds are usage errors", async () => {
  await withTempDir(async (dir) => {
    const [server, client, unknown] = await Promise.all([
      cli(["template", "server"]),
      cli(["template", "client"]),
      cli(["template", "relay"]),
    ]);
    assert.equal(server.code, 0, server.stderr);
    assert.equal(client.code, 0, client.stderr);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown template kind "relay"/);
    await Deno.writeTextFile(`${dir}/server.toml`, server.stdout);
    await Deno.writeTextFile(`${dir}/client.toml`, client.stdout);
    const [serverCheck, clientCheck, written] = await Promise.all([
      cli(["check", "-c", `${dir}/server.toml`]),
      cli(["check", "-c", `${dir}/client.toml`]),
      cli(["template", "client", "-o", `${dir}/written.toml`]),
    ]);
    assert.equal(serverCheck.code, 0, serverCheck.stderr);
    assert.match(serverCheck.stdout, /valid server config/);
    assert.equal(clientCheck.code, 0, clientCheck.stderr);
    assert.match(clientCheck.stdout, /valid client config/);
    assert.equal(written.code, 0, written.stderr);
    const overwrite = await cli(["template", "server", "-o", `${dir}/written.toml`]);
    assert.equal(overwrite.code, 1);
    assert.match(overwrite.stderr, /already exists; not overwriting it/);
    assert.equal((await cli(["check", "-c", `${dir}/written.toml`])).code, 0);
  });
});

Deno.test("cert writes files that carry a real TLS handshake, and a config using them passes check", async () => {
  await withTempDir(async (dir) => {
    const result = await cli([
      "cert",
      "--cert-out",
      `${dir}/cert.pem`,
      "--key-out",
      `${dir}/key.pem`,
      "--ca-out",
      `${dir}/ca.pem`,
      "--common-name",
      "localhost",
      "--alt-names",
      "127.0.0.1,::1",
      "--days",
      "2",
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /cert_path = ".*cert\.pem"/);
    assert.match(result.stdout, /CA SHA-256 fingerprint: +([0-9A-F]{2}:){31}[0-9A-F]{2}/);

    const listener = Deno.listenTls({
      hostname: "127.0.0.1",
      port: 0,
      cert: await Deno.readTextFile(`${dir}/cert.pem`),
      key: await Deno.readTextFile(`${dir}/key.pem`),
    });
    const served = (async () => {
      const conn = await listener.accept();
      try {
        const buffer = new Uint8Array(4);
        const n = await conn.read(buffer);
        await conn.write(
          new TextEncoder().encode(`pong:${new TextDecoder().decode(buffer.subarray(0, n ?? 0))}`),
        );
      } finally {
        conn.close();
      }
    })();
    try {
      const client = await Deno.connectTls({
        hostname: "127.0.0.1",
        port: listener.addr.port,
        caCerts: [await Deno.readTextFile(`${dir}/ca.pem`)],
      });
      try {
        await client.write(new TextEncoder().encode("ping"));
        const reply = new Uint8Array(9);
        let filled = 0;
        while (filled < reply.length) {
          const n = await client.read(reply.subarray(filled));
          if (n === null) break;
          filled += n;
        }
        assert.equal(new TextDecoder().decode(reply.subarray(0, filled)), "pong:ping");
      } finally {
        client.close();
      }
    } finally {
      listener.close();
      await served;
    }

    await Deno.writeTextFile(
      `${dir}/server.toml`,
      `[server]\nauth_key = "0123456789abcdef-key"\ncert_path = "${dir}/cert.pem"\nkey_path = "${dir}/key.pem"\n`,
    );
    const check = await cli(["check", "-c", `${dir}/server.toml`]);
    assert.equal(check.code, 0, check.stderr);
    assert.match(check.stdout, /TLS with .*cert\.pem/);
  });
});

Deno.test("version prints tls-tunnel, protocol and Deno versions", async () => {
  const result = await cli(["version"]);
  assert.equal(result.code, 0);
  assert.match(result.stdout, /^tls-tunnel \d+\.\d+\.\d+\S* \(protocol \d+, deno \d+\.\d+\.\d+\S*\)\n$/);
});

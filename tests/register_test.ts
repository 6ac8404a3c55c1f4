/**
 * `tls-tunnel register … --dry-run` run as a user runs it (the real CLI as a child process), its unit
 * checked by systemd's own `systemd-analyze verify` (Debian's systemd package; `.ci/run` installs it).
 * Nothing is installed or started: the tests never call systemctl.
 */

import assert from "node:assert/strict";
import { PROJECT_ROOT } from "../testing/helpers.ts";
import { SERVICE_PERMISSIONS } from "../lib/cli/register.ts";
import { verifyUnit } from "../testing/systemd.ts";

const KEY = "register-e2e-test-key-0123456789";

async function run(
  command: string,
  args: string[],
  options: { env?: Record<string, string>; cwd?: string } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const result = await new Deno.Command(command, {
    args,
    cwd: options.cwd ?? PROJECT_ROOT,
    env: { NO_COLOR: "1", ...options.env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code: result.code, stdout: decoder.decode(result.stdout), stderr: decoder.decode(result.stderr) };
}

/** `tls-tunnel register …` from main.ts with the permissions of `deno task server`. */
function register(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return run(Deno.execPath(), ["run", "--quiet", ...SERVICE_PERMISSIONS, "main.ts", "register", ...args]);
}

async function withDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "tls-tunnel-register-e2e-" });
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("register server --dry-run prints a unit that systemd-analyze verify accepts, without capabilities", async () => {
  await withDir(async (dir) => {
    const config = `${dir}/server.toml`;
    await Deno.writeTextFile(config, `[server]\nbind_port = 8443\nauth_key = "${KEY}"\n`, { mode: 0o600 });
    const result = await register(["server", "-c", config, "--dry-run"]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, /dry run: would write \/etc\/systemd\/system\/tls-tunnel-server\.service/);
    const unit = result.stdout;
    assert.match(unit, new RegExp(`^ExecStart=${Deno.execPath()} run .* server -c ${config}$`, "m"));
    for (
      const line of ["NoNewPrivileges=yes", "ProtectSystem=strict", "Restart=on-failure", "PrivateTmp=yes"]
    ) {
      assert.ok(unit.split("\n").includes(line), `missing ${line}`);
    }
    assert.match(unit, /^StateDirectory=tls-tunnel$/m);
    assert.match(unit, new RegExp(`^ReadOnlyPaths=${config}$`, "m"));
    assert.doesNotMatch(unit, /CAP_NET_BIND_SERVICE/);
    assert.deepEqual(await verifyUnit(dir, "tls-tunnel-server.service", unit), []);
  });
});

Deno.test("a server on port 443 gets CAP_NET_BIND_SERVICE, and its unit still verifies", async () => {
  await withDir(async (dir) => {
    const config = `${dir}/server.toml`;
    await Deno.writeTextFile(config, `[server]\nbind_port = 443\nauth_key = "${KEY}"\n`, { mode: 0o600 });
    const result = await register(["server", "-c", config, "--dry-run", "--run-as", "tls-tunnel"]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^AmbientCapabilities=CAP_NET_BIND_SERVICE$/m);
    assert.match(result.stdout, /^CapabilityBoundingSet=CAP_NET_BIND_SERVICE$/m);
    assert.match(result.stdout, /^# Ports below 1024: server\.bind_port = 443\.$/m);
    assert.match(result.stdout, /^User=tls-tunnel$/m);
    assert.deepEqual(await verifyUnit(dir, "tls-tunnel-server.service", result.stdout), []);
  });
});

Deno.test("register client --user --dry-run prints a user unit that verifies, trusting its CA file read-only", async () => {
  await withDir(async (dir) => {
    const config = `${dir}/my client.toml`;
    await Deno.writeTextFile(`${dir}/ca.pem`, "not read by register");
    await Deno.writeTextFile(
      config,
      `[client]\nserver_addr = "127.0.0.1"\nauth_key = "${KEY}"\nca_cert_path = "ca.pem"\n` +
        `[[proxies]]\nname = "web"\npublish_port = 80\nlocal_port = 3000\n`,
      { mode: 0o600 },
    );
    const result = await register(["client", "-c", config, "--user", "--dry-run", "--name", "edge-client"]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, /would write .*\/systemd\/user\/edge-client\.service/);
    assert.match(result.stdout, /^WantedBy=default\.target$/m);
    assert.match(result.stdout, new RegExp(`^ReadOnlyPaths=-${dir}/ca\\.pem$`, "m"));
    assert.match(result.stdout, new RegExp(`^ReadOnlyPaths="${dir}/my client\\.toml"$`, "m"));
    // publish_port 80 is bound by the server, not by the client.
    assert.doesNotMatch(result.stdout, /CAP_NET_BIND_SERVICE/);
    assert.deepEqual(await verifyUnit(dir, "edge-client.service", result.stdout, true), []);
  });
});

Deno.test("verify catches a broken unit (the check above can fail)", async () => {
  await withDir(async (dir) => {
    const problems = await verifyUnit(
      dir,
      "broken.service",
      "[Service]\nExecStart=/bin/true\nProtectSystem=very-strict\nNoSuchKey=1\n",
    );
    assert.ok(problems.length >= 2, problems.join("\n"));
  });
});

Deno.test("register refuses an invalid config and a config of the other role, listing why", async () => {
  await withDir(async (dir) => {
    const config = `${dir}/server.toml`;
    await Deno.writeTextFile(config, `[server]\nbind_port = "high"\n`);
    const invalid = await register(["server", "-c", config, "--dry-run"]);
    assert.equal(invalid.code, 1);
    assert.match(invalid.stderr, /bind_port/);
    assert.equal(invalid.stdout, "");
    await Deno.writeTextFile(config, `[server]\nbind_port = 8443\nauth_key = "${KEY}"\n`);
    const wrongRole = await register(["client", "-c", config, "--dry-run"]);
    assert.equal(wrongRole.code, 1);
    assert.match(wrongRole.stderr, /is a server config: run `tls-tunnel register server -c /);
  });
});

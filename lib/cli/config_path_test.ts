import assert from "node:assert/strict";
import { configPermissionWarning, expandHome, loadRoleConfig } from "./config_path.ts";
import { parseRemoteForward } from "./remote_forward.ts";
import { InvalidConfigError } from "../config/mod.ts";

const posix = Deno.build.os !== "windows";
const KEY = "a-key-of-at-least-16-chars";

async function tempDir(): Promise<{ dir: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "tls-tunnel-config-path-" });
  return { dir, [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }) };
}

Deno.test("expandHome expands a leading ~ and ~/ only", () => {
  assert.equal(expandHome("~", "/home/u"), "/home/u");
  assert.equal(expandHome("~/a/b.toml", "/home/u/"), "/home/u/a/b.toml");
  assert.equal(expandHome("~user/a", "/home/u"), "~user/a");
  assert.equal(expandHome("a/~/b", "/home/u"), "a/~/b");
  assert.equal(expandHome("~/a", ""), "~/a");
});

Deno.test("a config readable by group or others draws a warning naming the file and chmod 600", async () => {
  await using temp = await tempDir();
  const path = `${temp.dir}/client.toml`;
  await Deno.writeTextFile(path, "");
  if (!posix) return;
  await Deno.chmod(path, 0o600);
  assert.equal(await configPermissionWarning(path), null);
  for (const mode of [0o640, 0o604, 0o644]) {
    await Deno.chmod(path, mode);
    const warning = await configPermissionWarning(path) ?? "";
    assert.ok(warning.includes(`Config file ${path} is readable by group or others`), warning);
    assert.ok(warning.includes(`chmod 600 ${path}`), warning);
  }
  assert.equal(await configPermissionWarning(`${temp.dir}/missing.toml`), null);
});

Deno.test("flags override the file's keys, -R adds proxies after the file's, and ~ in ca_cert_path is expanded", async () => {
  await using temp = await tempDir();
  const path = `${temp.dir}/client.toml`;
  await Deno.writeTextFile(
    path,
    `[client]\nserver_addr = "file.example.com"\nserver_port = 1\nca_cert_path = "~/ca.pem"\n` +
      `auth_key = "${KEY}-from-file"\n\n[[proxies]]\nname = "tcp-any-3000"\npublish_port = 0\nlocal_port = 3000\n`,
  );
  const config = await loadRoleConfig("client", path, {
    table: { server_addr: "flag.example.com", server_port: 9443, auth_key: KEY },
    forwards: [parseRemoteForward("0:3000")],
  });
  assert.deepEqual([config.serverAddr, config.serverPort, config.authKey], ["flag.example.com", 9443, KEY]);
  assert.deepEqual(config.proxies.map((proxy) => proxy.name), ["tcp-any-3000", "tcp-any-3000-2"]);
  const home = Deno.env.get("HOME");
  if (home) assert.equal(config.caCertPath, `${home.replace(/\/+$/, "")}/ca.pem`);
});

Deno.test("without a file the flags alone make the config; a bad flag value is reported like a key", async () => {
  const config = await loadRoleConfig("server", null, { table: { bind_port: 9443, auth_key: KEY } });
  assert.deepEqual([config.bindPort, config.authKey], [9443, KEY]);
  await assert.rejects(
    loadRoleConfig("server", null, { table: { bind_addr: "not an address", auth_key: KEY } }),
    (error: unknown) => {
      assert.ok(error instanceof InvalidConfigError);
      assert.match(error.message, /Invalid config <command line>.*\n.*server\.bind_addr/);
      return true;
    },
  );
});

Deno.test("a file of the other role, a TOML syntax error and a missing file keep the loader's messages", async () => {
  await using temp = await tempDir();
  const server = `${temp.dir}/server.toml`;
  await Deno.writeTextFile(server, `[server]\nauth_key = "${KEY}"\n`);
  await assert.rejects(
    loadRoleConfig("client", server, { table: { auth_key: KEY } }),
    /this is a server config/,
  );
  const broken = `${temp.dir}/broken.toml`;
  await Deno.writeTextFile(broken, "[client\n");
  await assert.rejects(loadRoleConfig("client", broken, { table: {} }), /TOML syntax error/);
  await assert.rejects(
    loadRoleConfig("client", `${temp.dir}/missing.toml`, { table: {} }),
    /config file .*missing\.toml does not exist/,
  );
});

Deno.test("a file without flags loads as the loader reads it, with ~ expanded in its path keys", async () => {
  await using temp = await tempDir();
  const path = `${temp.dir}/server.toml`;
  await Deno.writeTextFile(
    path,
    `[server]\ncert_path = "~/cert.pem"\nkey_path = "/abs/key.pem"\nauth_key = "${KEY}"\n`,
  );
  const config = await loadRoleConfig("server", path, { table: {} });
  const home = Deno.env.get("HOME");
  if (home) assert.equal(config.certPath, `${home.replace(/\/+$/, "")}/cert.pem`);
  assert.equal(config.keyPath, "/abs/key.pem");
  assert.equal(config.authKey, KEY);
});

Deno.test("~ is expanded in every server's ca_cert_path, with and without flags", async () => {
  await using temp = await tempDir();
  const path = `${temp.dir}/client.toml`;
  await Deno.writeTextFile(
    path,
    `[client]\nca_cert_path = "~/shared.pem"\nauth_key = "${KEY}"\n` +
      `[[client.servers]]\nserver_addr = "a.example.com"\n` +
      `[[client.servers]]\nserver_addr = "b.example.com"\nca_cert_path = "~/b.pem"\n` +
      `[[proxies]]\nname = "web"\npublish_port = 8080\nlocal_port = 3000\n`,
  );
  const home = Deno.env.get("HOME")?.replace(/\/+$/, "");
  if (!home) return;
  for (const overrides of [{ table: {} }, { table: { client_id: "flagged" } }]) {
    const config = await loadRoleConfig("client", path, overrides);
    assert.deepEqual(config.servers.map((server) => server.caCertPath), [
      `${home}/shared.pem`,
      `${home}/b.pem`,
    ]);
    assert.equal(config.caCertPath, `${home}/shared.pem`);
  }
});

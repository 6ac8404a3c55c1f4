import assert from "node:assert/strict";
import {
  defaultStateDir,
  ensureStateDir,
  generateAuthKey,
  loadOrCreateAuthKey,
  loadOrCreateServerIdentity,
  STATE_AUTH_KEY_FILE,
  STATE_CERT_FILE,
  STATE_KEY_FILE,
  StateDirError,
} from "./state_dir.ts";
import { fingerprintSha256 } from "../pki/fingerprint.ts";

const posix = Deno.build.os !== "windows";

async function tempDir(): Promise<{ dir: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "tls-tunnel-state-" });
  return { dir, [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }) };
}

Deno.test("the default state directory is $XDG_STATE_HOME/tls-tunnel, else ~/.local/state/tls-tunnel", () => {
  const env = (vars: Record<string, string>) => (name: string) => vars[name];
  assert.equal(defaultStateDir(env({ XDG_STATE_HOME: "/x/state/", HOME: "/home/u" })), "/x/state/tls-tunnel");
  assert.equal(defaultStateDir(env({ HOME: "/home/u" })), "/home/u/.local/state/tls-tunnel");
  // The XDG spec: a relative value is ignored.
  assert.equal(
    defaultStateDir(env({ XDG_STATE_HOME: "rel", HOME: "/home/u" })),
    "/home/u/.local/state/tls-tunnel",
  );
  assert.throws(() => defaultStateDir(env({})), (error: unknown) => {
    assert.ok(error instanceof StateDirError);
    assert.match(error.message, /--state-dir DIR/);
    return true;
  });
});

Deno.test("the state directory is created 0700 with its parents; an open existing one draws a warning", async () => {
  await using temp = await tempDir();
  const dir = `${temp.dir}/a/b/tls-tunnel`;
  assert.equal(await ensureStateDir(dir), null);
  assert.ok((await Deno.stat(dir)).isDirectory);
  if (posix) {
    assert.equal((await Deno.stat(dir)).mode! & 0o777, 0o700);
    await Deno.chmod(dir, 0o755);
    assert.match((await ensureStateDir(dir)) ?? "", /open to group or others \(mode 755\).*chmod 700/);
  }
  await Deno.writeTextFile(`${temp.dir}/file`, "");
  await assert.rejects(ensureStateDir(`${temp.dir}/file`), /exists but is not a directory/);
});

Deno.test("a generated certificate and key are kept 0600 and give the same fingerprint on the next start", async () => {
  await using temp = await tempDir();
  const first = await loadOrCreateServerIdentity(temp.dir, ["tunnel.example.com", "not a name!"]);
  assert.equal(first.created, true);
  assert.match(first.fingerprint, /^[0-9A-F]{2}(:[0-9A-F]{2}){31}$/);
  assert.equal(first.fingerprint, await fingerprintSha256(await Deno.readTextFile(first.certPath)));
  if (posix) {
    for (const file of [STATE_CERT_FILE, STATE_KEY_FILE]) {
      assert.equal((await Deno.stat(`${temp.dir}/${file}`)).mode! & 0o777, 0o600, file);
    }
  }
  const second = await loadOrCreateServerIdentity(temp.dir);
  assert.deepEqual(second, { ...first, created: false });
});

Deno.test("a state directory with only one of certificate and key is refused, naming both files", async () => {
  await using temp = await tempDir();
  const identity = await loadOrCreateServerIdentity(temp.dir);
  await Deno.remove(identity.keyPath);
  await assert.rejects(loadOrCreateServerIdentity(temp.dir), (error: unknown) => {
    assert.ok(error instanceof StateDirError);
    assert.ok(error.message.includes(identity.certPath) && error.message.includes(identity.keyPath));
    return true;
  });
  await Deno.writeTextFile(identity.keyPath, "key");
  await Deno.writeTextFile(identity.certPath, "garbage");
  await assert.rejects(loadOrCreateServerIdentity(temp.dir), /is not a PEM certificate/);
});

Deno.test("a generated shared key is kept 0600 and read back; a bad key file is refused", async () => {
  await using temp = await tempDir();
  const first = await loadOrCreateAuthKey(temp.dir);
  assert.equal(first.created, true);
  assert.match(first.key, /^[A-Za-z0-9_-]{43}$/);
  if (posix) assert.equal((await Deno.stat(first.path)).mode! & 0o777, 0o600);
  assert.deepEqual(await loadOrCreateAuthKey(temp.dir), { ...first, created: false });
  for (const bad of ["short", "", "with space in the middle of it", "x".repeat(257)]) {
    await Deno.writeTextFile(`${temp.dir}/${STATE_AUTH_KEY_FILE}`, bad);
    await assert.rejects(loadOrCreateAuthKey(temp.dir), /16-256 printable characters/);
  }
  assert.notEqual(generateAuthKey(), generateAuthKey());
});

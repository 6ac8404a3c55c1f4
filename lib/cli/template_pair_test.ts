import assert from "node:assert/strict";
import { captureOutput } from "./_command_output.ts";
import { PAIR_FILES, templatePairCommand } from "./template_pair.ts";
import { loadClientConfig, loadServerConfig } from "../config/mod.ts";
import { fingerprintSha256 } from "../pki/fingerprint.ts";

const posix = Deno.build.os !== "windows";

Deno.test("template pair writes two valid configs sharing one key, with the certificate files they name", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tls-tunnel-pair-" });
  try {
    const io = captureOutput();
    const code = await templatePairCommand({
      outputDir: `${dir}/out`,
      port: "9443",
      remote: "0:127.0.0.1:3000",
    }, io);
    assert.equal(code, 0, io.stderr);
    const out = await Deno.realPath(`${dir}/out`);
    const server = await loadServerConfig(`${out}/server.toml`, { env: {} });
    const client = await loadClientConfig(`${out}/client.toml`, { env: {} });
    assert.equal(server.authKey, client.authKey);
    assert.match(server.authKey ?? "", /^[A-Za-z0-9_-]{43}$/);
    assert.deepEqual([server.bindAddr, server.bindPort], ["127.0.0.1", 9443]);
    assert.deepEqual([client.serverAddr, client.serverPort], ["localhost", 9443]);
    assert.deepEqual([server.certPath, server.keyPath, client.caCertPath], [
      `${out}/cert.pem`,
      `${out}/key.pem`,
      `${out}/ca.pem`,
    ]);
    const proxy = client.proxies[0];
    assert.deepEqual(
      [proxy?.publishAddr, proxy?.publishPort, proxy?.localAddr, proxy?.localPort],
      ["127.0.0.1", 0, "127.0.0.1", 3000],
    );
    // The commented pin is the certificate's.
    const fingerprint = (await fingerprintSha256(await Deno.readTextFile(`${out}/cert.pem`))).replaceAll(
      ":",
      "",
    );
    assert.ok((await Deno.readTextFile(`${out}/client.toml`)).includes(`SHA256:${fingerprint}`));
    assert.ok(io.stdout.includes(`tls-tunnel server -c ${out}/server.toml`), io.stdout);
    if (posix) {
      for (const file of ["server.toml", "client.toml", "key.pem"]) {
        assert.equal((await Deno.stat(`${out}/${file}`)).mode! & 0o777, 0o600, file);
      }
    }
    // A second run into the same folder overwrites nothing.
    const before = await Promise.all(PAIR_FILES.map((file) => Deno.readTextFile(`${out}/${file}`)));
    const again = captureOutput();
    assert.equal(await templatePairCommand({ outputDir: out }, again), 1);
    assert.match(again.stderr, /key\.pem already exists; not overwriting it/);
    assert.deepEqual(
      await Promise.all(PAIR_FILES.map((file) => Deno.readTextFile(`${out}/${file}`))),
      before,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("template pair for a named host listens on every address and has the client dial that name", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tls-tunnel-pair-" });
  try {
    const io = captureOutput();
    assert.equal(await templatePairCommand({ outputDir: dir, host: "tunnel.example.com" }, io), 0, io.stderr);
    const server = await loadServerConfig(`${dir}/server.toml`, { env: {} });
    const client = await loadClientConfig(`${dir}/client.toml`, { env: {} });
    assert.equal(server.bindAddr, "0.0.0.0");
    assert.equal(client.serverAddr, "tunnel.example.com");
    assert.deepEqual([client.proxies[0]?.publishPort, client.proxies[0]?.localPort], [8080, 3000]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("template pair refuses a bad port, -R or host with exit code 2 and writes nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tls-tunnel-pair-" });
  try {
    const cases: Array<[Parameters<typeof templatePairCommand>[0], RegExp]> = [
      [{ port: "0" }, /--port "0" is not a port number/],
      [{ port: "8443x" }, /--port "8443x"/],
      [{ remote: "8080" }, /-R "8080".*PORT:LOCALHOST:LOCALPORT/],
      [{ host: "bad host!" }, /--host: "bad host!" is neither a DNS name nor an IP address/],
    ];
    for (const [options, expected] of cases) {
      const io = captureOutput();
      assert.equal(await templatePairCommand({ ...options, outputDir: `${dir}/out` }, io), 2);
      assert.match(io.stderr, expected);
    }
    assert.deepEqual([...Deno.readDirSync(dir)], []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

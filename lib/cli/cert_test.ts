import assert from "node:assert/strict";
import { fingerprintSha256 } from "../pki/fingerprint.ts";
import { captureOutput } from "./_command_output.ts";
import { certCommand, type CertOptions } from "./cert.ts";

function options(dir: string, overrides: Partial<CertOptions> = {}): CertOptions {
  return {
    certOut: `${dir}/cert.pem`,
    keyOut: `${dir}/key.pem`,
    caOut: `${dir}/ca.pem`,
    commonName: "localhost",
    altNames: "",
    days: "30",
    ...overrides,
  };
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("cert writes chain, private key (0600) and CA, and says which config key takes each", async () => {
  await withTempDir(async (dir) => {
    const io = captureOutput();
    assert.equal(
      await certCommand(options(dir, { altNames: "tunnel.example.com, 127.0.0.1" }), io),
      0,
      io.stderr,
    );
    const [chain, key, ca] = await Promise.all(
      ["cert.pem", "key.pem", "ca.pem"].map((name) => Deno.readTextFile(`${dir}/${name}`)),
    );
    assert.equal(chain?.match(/-----BEGIN CERTIFICATE-----/g)?.length, 2);
    assert.match(key ?? "", /^-----BEGIN PRIVATE KEY-----/);
    assert.equal(ca?.match(/-----BEGIN CERTIFICATE-----/g)?.length, 1);
    if (Deno.build.os !== "windows") {
      assert.equal(((await Deno.stat(`${dir}/key.pem`)).mode ?? 0) & 0o777, 0o600);
    }

    assert.match(
      io.stdout,
      /cert\.pem +server certificate chain +-> server config: cert_path = ".*cert\.pem"/,
    );
    assert.match(
      io.stdout,
      /key\.pem +server private key \(0600\) -> server config: key_path = ".*key\.pem"/,
    );
    assert.match(io.stdout, /ca\.pem +CA certificate +-> client config: ca_cert_path = ".*ca\.pem"/);
    assert.match(io.stdout, /Names in the certificate: localhost, tunnel\.example\.com, 127\.0\.0\.1\n/);
    assert.ok(io.stdout.includes(`CA SHA-256 fingerprint:     ${await fingerprintSha256(ca ?? "")}`));
    assert.ok(io.stdout.includes(`Server SHA-256 fingerprint: ${await fingerprintSha256(chain ?? "")}`));
  });
});

Deno.test("cert never overwrites an existing file and writes nothing then", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/ca.pem`, "keep me");
    const io = captureOutput();
    assert.equal(await certCommand(options(dir), io), 1);
    assert.match(io.stderr, /ca\.pem already exists; not overwriting it/);
    assert.equal(await Deno.readTextFile(`${dir}/ca.pem`), "keep me");
    const names = [];
    for await (const entry of Deno.readDir(dir)) names.push(entry.name);
    assert.deepEqual(names, ["ca.pem"]);
  });
});

Deno.test("cert refuses bad days, bad names and repeated output paths as usage errors", async () => {
  await withTempDir(async (dir) => {
    for (
      const [overrides, message] of [
        [{ days: "ten" }, /--days "ten" is not a number of days/],
        [{ days: "0" }, /--days "0"/],
        [{ altNames: "good.example, bad name" }, /"bad name" is neither a DNS name nor an IP address/],
        [{ keyOut: `${dir}/cert.pem` }, /must be three different files/],
      ] as const
    ) {
      const io = captureOutput();
      assert.equal(await certCommand(options(dir, overrides), io), 2, JSON.stringify(overrides));
      assert.match(io.stderr, message);
    }
    let count = 0;
    for await (const _ of Deno.readDir(dir)) count++;
    assert.equal(count, 0);
  });
});

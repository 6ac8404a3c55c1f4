/**
 * Certificate problems through the real CLI (`deno run main.ts …`): `check` reads the files (parses them,
 * matches the key to the certificate, judges expiry), the server refuses a key that is not its
 * certificate's, and a client whose `ca_cert_path` does not match names the file and the fingerprints
 * on both sides (and asks to set `ca_cert_path` only when it is not set).
 */

import "../lib/pki/_reflect_metadata.ts";
import assert from "node:assert/strict";
import * as x509 from "@peculiar/x509";
import { generateCertificates } from "../lib/pki/cert.ts";
import { fingerprintSha256 } from "../lib/pki/fingerprint.ts";
import { CliProcess, freePort, makeWorkdir, testCertificates } from "../testing/helpers.ts";
import { FAST_RECONNECT, PROCESS_AUTH_KEY } from "../testing/process_tunnel.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const DAY_MS = 86_400_000;

/** Runs `tls-tunnel ARGS` (text logs) to the end. */
async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--quiet",
      "--allow-read",
      "--allow-env",
      "--allow-net",
      "--allow-sys",
      `${ROOT}main.ts`,
      ...args,
    ],
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code: output.code, stdout: decoder.decode(output.stdout), stderr: decoder.decode(output.stderr) };
}

/** A self-signed ECDSA certificate valid from `notBefore` to `notAfter`, and its PKCS#8 key. */
async function selfSigned(notBefore: Date, notAfter: Date): Promise<{ certPem: string; keyPem: string }> {
  x509.cryptoProvider.set(crypto);
  const algorithm = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const keys = await crypto.subtle.generateKey(algorithm, true, ["sign", "verify"]);
  const certificate = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "01",
    name: "CN=localhost",
    notBefore,
    notAfter,
    signingAlgorithm: algorithm,
    keys,
  });
  const pkcs8 = await crypto.subtle.exportKey("pkcs8", keys.privateKey);
  return {
    certPem: certificate.toString("pem") + "\n",
    keyPem: x509.PemConverter.encode(pkcs8, "PRIVATE KEY") + "\n",
  };
}

/** Writes a server config naming `certPath` and `keyPath`; returns its path. */
async function serverConfig(dir: string, name: string, certPath: string, keyPath: string): Promise<string> {
  const path = `${dir}/${name}.toml`;
  await Deno.writeTextFile(
    path,
    `[server]\nbind_addr = "127.0.0.1"\nbind_port = ${freePort()}\nauth_key = "${PROCESS_AUTH_KEY}"\n` +
      `cert_path = "${certPath}"\nkey_path = "${keyPath}"\n`,
    { mode: 0o600 },
  );
  return path;
}

/** Writes a client config for 127.0.0.1:`port` with `trust` lines; returns its path. */
async function clientConfig(dir: string, name: string, port: number, trust: string): Promise<string> {
  const path = `${dir}/${name}.toml`;
  await Deno.writeTextFile(
    path,
    `[client]\nserver_addr = "127.0.0.1"\nserver_port = ${port}\nserver_name = "localhost"\n${trust}\n` +
      `auth_key = "${PROCESS_AUTH_KEY}"\n\n[[proxies]]\nname = "web"\npublish_port = 0\nlocal_port = ${freePort()}\n`,
    { mode: 0o600 },
  );
  return path;
}

Deno.test("check reads the certificate files: expiry, a key of another certificate, an unparsable CA", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tls-tunnel-certs-" });
  try {
    const now = Date.now();
    const expired = await selfSigned(new Date(now - 10 * DAY_MS), new Date(now - DAY_MS));
    const soon = await generateCertificates({ validityDays: 10 });
    const other = await generateCertificates();
    const files: Record<string, string> = {
      "expired.pem": expired.certPem,
      "expired-key.pem": expired.keyPem,
      "soon.pem": soon.serverChainPem,
      "soon-key.pem": soon.serverKeyPem,
      "other-key.pem": other.serverKeyPem,
      "junk.pem": "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
      "other-ca.pem": other.caCertPem,
    };
    for (const [name, text] of Object.entries(files)) await Deno.writeTextFile(`${dir}/${name}`, text);

    const expiredCheck = await cli([
      "check",
      "-c",
      await serverConfig(dir, "a", `${dir}/expired.pem`, `${dir}/expired-key.pem`),
    ]);
    assert.equal(expiredCheck.code, 1, expiredCheck.stderr);
    assert.match(expiredCheck.stderr, /server\.cert_path: .*expired\.pem expired on \d{4}-\d\d-\d\d/);

    const mismatch = await cli([
      "check",
      "-c",
      await serverConfig(dir, "b", `${dir}/soon.pem`, `${dir}/other-key.pem`),
    ]);
    assert.equal(mismatch.code, 1, mismatch.stderr);
    assert.match(
      mismatch.stderr,
      /server\.key_path: .*other-key\.pem does not belong to the certificate in .*soon\.pem/,
    );

    const expiring = await cli([
      "check",
      "-c",
      await serverConfig(dir, "c", `${dir}/soon.pem`, `${dir}/soon-key.pem`),
    ]);
    assert.equal(expiring.code, 0, expiring.stderr);
    assert.match(expiring.stdout, /valid server config/);
    assert.match(
      expiring.stderr,
      /warning: server\.cert_path: .*soon\.pem \(certificate 1, CN=localhost\) expires in \d day/,
    );

    const junk = await cli([
      "check",
      "-c",
      await clientConfig(dir, "d", 8443, `ca_cert_path = "${dir}/junk.pem"`),
    ]);
    assert.equal(junk.code, 1, junk.stderr);
    assert.match(junk.stderr, /client\.ca_cert_path: .*junk\.pem certificate 1 of 1 does not parse/);

    const expiredCa = await cli([
      "check",
      "-c",
      await clientConfig(dir, "e", 8443, `ca_cert_path = "${dir}/expired.pem"`),
    ]);
    assert.equal(expiredCa.code, 1, expiredCa.stderr);
    assert.match(expiredCa.stderr, /client\.ca_cert_path: .*expired\.pem expired on/);

    const good = await cli([
      "check",
      "-c",
      await clientConfig(dir, "f", 8443, `ca_cert_path = "${dir}/other-ca.pem"`),
    ]);
    assert.equal(good.code, 0, good.stderr);
    assert.equal(good.stderr, "", "a CA valid for years draws no warning");

    const json = await cli(["check", "--format", "json", "-c", `${dir}/c.toml`]);
    const report = JSON.parse(json.stdout) as { valid: boolean; warnings: { path: string }[] };
    assert.deepEqual([report.valid, report.warnings.map((warning) => warning.path)], [true, [
      "server.cert_path",
      "server.cert_path",
    ]]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the server refuses to start with a key that is not its certificate's, naming both files", async () => {
  const work = await makeWorkdir();
  try {
    const other = await generateCertificates();
    await Deno.writeTextFile(`${work.dir}/other-key.pem`, other.serverKeyPem);
    const config = await serverConfig(work.dir, "server", work.certPath, `${work.dir}/other-key.pem`);
    const result = await cli(["server", "-c", config]);
    assert.equal(result.code, 1, result.stderr);
    assert.match(
      result.stderr,
      /^tls-tunnel: server\.key_path \S+other-key\.pem does not belong to the certificate in \S+cert\.pem: /m,
    );
    assert.ok(!/Listening for clients/.test(result.stderr), "it never listens");
  } finally {
    await work.cleanup();
  }
});

Deno.test("a client whose ca_cert_path does not match names the file and the fingerprints on both sides", async () => {
  const work = await makeWorkdir();
  const server = new CliProcess([
    "server",
    "-c",
    await serverConfig(work.dir, "server", work.certPath, work.keyPath),
  ]);
  const clients: CliProcess[] = [];
  try {
    const [, port] = await server.waitForLine(/Listening for clients on 127\.0\.0\.1:(\d+)/);
    const other = await generateCertificates();
    const otherCa = `${work.dir}/other-ca.pem`;
    await Deno.writeTextFile(otherCa, other.caCertPem);
    const wrongCa = new CliProcess(
      ["client", "-c", await clientConfig(work.dir, "wrong", Number(port), `ca_cert_path = "${otherCa}"`)],
      { env: FAST_RECONNECT },
    );
    clients.push(wrongCa);
    const [line] = await wrongCa.waitForLine(/^.*was not accepted.*$/);
    const leaf = await fingerprintSha256((await testCertificates()).serverCertPem);
    const issuer = (await testCertificates()).caFingerprintSha256;
    assert.ok(line.includes(`ca_cert_path ${otherCa}`), line);
    assert.ok(line.includes(`leaf ${leaf}`), `the server's leaf: ${line}`);
    assert.ok(line.includes(`issuer ${issuer}`), `the server's CA: ${line}`);
    assert.ok(line.includes(`${otherCa} holds ${other.caFingerprintSha256}`), `the file's CA: ${line}`);
    assert.ok(line.includes(`server_fingerprint = \\"SHA256:${leaf.replaceAll(":", "")}\\"`), line);
    assert.ok(!line.includes("set ca_cert_path"), "it is set already");

    // Without ca_cert_path (system roots), the message asks to set it.
    const systemRoots = new CliProcess(
      ["client", "-c", await clientConfig(work.dir, "roots", Number(port), "")],
      { env: FAST_RECONNECT },
    );
    clients.push(systemRoots);
    const [rootsLine] = await systemRoots.waitForLine(/^.*was not accepted.*$/);
    assert.match(rootsLine, /set ca_cert_path to the server's CA/);
  } finally {
    for (const client of clients) await client.stop();
    await server.stop();
    await work.cleanup();
  }
});

import assert from "node:assert/strict";
import { captureOutput } from "./_command_output.ts";
import { colonHex } from "../text.ts";
import { checkCommand, type CheckReport } from "./check.ts";

const ROOT = new URL("../../", import.meta.url);
const path = (relative: string) => new URL(relative, ROOT).pathname;

Deno.test("check accepts every example config and summarises it", async () => {
  for (const name of ["server.toml", "client.toml", "server-multi-client.toml"]) {
    const io = captureOutput();
    assert.equal(
      await checkCommand({ configPath: path(`examples/${name}`), format: "text" }, io),
      0,
      io.stderr,
    );
    assert.match(io.stdout, /: valid (server|client) config\n/);
  }
  const io = captureOutput();
  await checkCommand({ configPath: path("examples/client.toml"), format: "text" }, io);
  assert.match(io.stdout, /server: 127\.0\.0\.1:8443 \(certificate NOT verified: skip_verify = true\)/);
  assert.match(io.stdout, /web: server 127\.0\.0\.1:8080 -> local 127\.0\.0\.1:3000/);
});

Deno.test("check lists every problem of an invalid config, one line each, and exits 1", async () => {
  const io = captureOutput();
  const code = await checkCommand(
    { configPath: path("tests/testdata/config/invalid/many_problems_at_once.toml"), format: "text" },
    io,
  );
  assert.equal(code, 1);
  assert.equal(io.stdout, "");
  const lines = io.stderr.trimEnd().split("\n");
  assert.match(lines[0] ?? "", /many_problems_at_once\.toml: invalid server config \(4 problems\):$/);
  assert.deepEqual(lines.slice(1).map((line) => line.trim().split(":")[0]), [
    "server.auth_key",
    "server.bind_addr",
    "server.bind_port",
    "server.key_path",
  ]);
  for (const line of lines.slice(1)) assert.match(line, /^ {2}\S+: .+ \(.+\)$/);
});

Deno.test("check --format json reports validity, kind and issues on stdout", async () => {
  const invalid = captureOutput();
  const file = path("tests/testdata/config/invalid/duplicate_proxy_names.toml");
  assert.equal(await checkCommand({ configPath: file, format: "json" }, invalid), 1);
  const report = JSON.parse(invalid.stdout) as CheckReport;
  assert.equal(report.valid, false);
  assert.equal(report.kind, "client");
  assert.equal(report.file, file);
  assert.deepEqual(report.issues.map((i) => i.path), ["proxies[1].name"]);
  assert.ok((report.issues[0]?.hint ?? "").length > 0);

  const valid = captureOutput();
  assert.equal(await checkCommand({ configPath: path("examples/server.toml"), format: "json" }, valid), 0);
  const ok = JSON.parse(valid.stdout) as CheckReport;
  assert.deepEqual([ok.valid, ok.kind, ok.issues], [true, "server", []]);
  assert.ok(ok.summary.length > 0);
});

Deno.test("check reports a missing config file clearly and exits 1", async () => {
  const io = captureOutput();
  assert.equal(await checkCommand({ configPath: "/nonexistent/tls-tunnel.toml", format: "text" }, io), 1);
  assert.match(io.stderr, /config file \/nonexistent\/tls-tunnel\.toml does not exist/);

  const json = captureOutput();
  assert.equal(await checkCommand({ configPath: "/nonexistent/tls-tunnel.toml", format: "json" }, json), 1);
  const report = JSON.parse(json.stdout) as CheckReport;
  assert.deepEqual([report.valid, report.kind], [false, null]);
});

Deno.test("check reports certificate files that do not exist or hold no PEM", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/key.pem`, "not pem");
    await Deno.writeTextFile(
      `${dir}/server.toml`,
      `[server]\nauth_key = "0123456789abcdef-key"\ncert_path = "${dir}/missing.pem"\nkey_path = "${dir}/key.pem"\n`,
    );
    const io = captureOutput();
    assert.equal(await checkCommand({ configPath: `${dir}/server.toml`, format: "text" }, io), 1);
    assert.match(io.stderr, /server\.cert_path: .*missing\.pem does not exist/);
    assert.match(io.stderr, /server\.key_path: .*key\.pem holds no PEM private key/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("check accepts server_fingerprint as the cert command prints it and shows the pin", async () => {
  const fingerprint = colonHex(crypto.getRandomValues(new Uint8Array(32)));
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/client.toml`;
    const config = await Deno.readTextFile(path("examples/client.toml"));
    await Deno.writeTextFile(
      file,
      config.replace(
        "[client]\n",
        `[client]\nserver_fingerprint = "sha256:${fingerprint.replaceAll(":", "")}"\n`,
      ),
    );
    const io = captureOutput();
    assert.equal(await checkCommand({ configPath: file, format: "text" }, io), 0, io.stderr);
    assert.ok(io.stdout.includes(`server certificate pinned to SHA-256 ${fingerprint}`), io.stdout);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("check under --log-format json prints one record: the verdict as message, the report as fields", async () => {
  const io = captureOutput();
  const file = path("tests/testdata/config/invalid/many_problems_at_once.toml");
  assert.equal(await checkCommand({ configPath: file, format: "text", logFormat: "json" }, io), 1);
  assert.equal(io.stdout, "");
  const lines = io.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1);
  const record = JSON.parse(lines[0] ?? "");
  assert.equal(record.level, "error");
  assert.match(record.message, /many_problems_at_once\.toml: invalid server config \(4 problems\)$/);
  assert.equal(record.properties.issues.length, 4);

  const report = captureOutput();
  await checkCommand({ configPath: file, format: "json", logFormat: "json" }, report);
  assert.equal(report.stdout.trimEnd().split("\n").length, 1, "the --format json report takes one line");
});

Deno.test("check parses the certificates: a key of another certificate is an error, under 30 days a warning", async () => {
  const { generateCertificates } = await import("../pki/cert.ts");
  const [soon, other] = await Promise.all([
    generateCertificates({ validityDays: 5 }),
    generateCertificates(),
  ]);
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/cert.pem`, soon.serverChainPem);
    await Deno.writeTextFile(`${dir}/key.pem`, soon.serverKeyPem);
    await Deno.writeTextFile(`${dir}/other.pem`, other.serverKeyPem);
    const config = (key: string) =>
      `[server]\nauth_key = "0123456789abcdef-key"\ncert_path = "${dir}/cert.pem"\nkey_path = "${dir}/${key}"\n`;
    await Deno.writeTextFile(`${dir}/good.toml`, config("key.pem"));
    await Deno.writeTextFile(`${dir}/bad.toml`, config("other.pem"));
    const good = captureOutput();
    assert.equal(
      await checkCommand({ configPath: `${dir}/good.toml`, format: "json", logFormat: "text" }, good),
      0,
    );
    const report = JSON.parse(good.stdout) as CheckReport;
    assert.equal(report.warnings.length, 2, "the leaf and its CA both expire in 5 days");
    assert.match(
      report.warnings[0]?.message ?? "",
      /cert\.pem \(certificate 1, CN=localhost\) expires in [45] day/,
    );
    const bad = captureOutput();
    assert.equal(
      await checkCommand({ configPath: `${dir}/bad.toml`, format: "text", logFormat: "text" }, bad),
      1,
    );
    assert.match(
      bad.stderr,
      /server\.key_path: .*other\.pem does not belong to the certificate in .*cert\.pem/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("check notes what the Rust tool's proxy types mean here, without failing; allow_forward draws none", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const key = "0123456789abcdef-key";
    await Deno.writeTextFile(
      `${dir}/client.toml`,
      `[client]\nserver_addr = "127.0.0.1"\nauth_key = "${key}"\n[[proxies]]\nname = "ssh"\ntype = "ssh"\n` +
        `publish_port = 2222\nlocal_port = 22\n[[proxies]]\nname = "web"\nproxy_type = "http/1.1"\n` +
        `publish_port = 8080\nlocal_port = 80\n`,
    );
    await Deno.writeTextFile(`${dir}/server.toml`, `[server]\nauth_key = "${key}"\nallow_forward = true\n`);
    const text = captureOutput();
    assert.equal(
      await checkCommand({ configPath: `${dir}/client.toml`, format: "text", logFormat: "text" }, text),
      0,
    );
    assert.equal(text.stderr, "", "a note is neither a problem nor a warning");
    const notes = text.stdout.split("\n").filter((line) => line.startsWith("note: "));
    // The Rust examples' style (type, no publish_addr) also makes proxies[0] private, as there (issue 15).
    assert.deepEqual(notes.map((line) => line.split(":")[1]?.trim()), [
      "proxies[0].type",
      "proxies[0]",
      "proxies[1].proxy_type",
    ]);
    assert.match(text.stdout, /ssh: private \(visitors: ssh, publish_port 2222\) -> local/);
    assert.match(
      notes[2] ?? "",
      /proxy_type "http\/1\.1" is carried as a TCP proxy \("tcp"\) \(.*TCP_NODELAY/,
    );

    const json = captureOutput();
    assert.equal(
      await checkCommand({ configPath: `${dir}/server.toml`, format: "json", logFormat: "text" }, json),
      0,
    );
    const report = JSON.parse(json.stdout) as CheckReport;
    assert.deepEqual([report.valid, report.issues, report.warnings], [true, [], []]);
    // allow_forward means what it meant in the Rust tool (forwarders, issue 15): said in the summary, no note.
    assert.deepEqual(report.notes, []);
    assert.ok(report.summary.some((line) => line.startsWith("forwarding for clients' [[forwarders]]: on")));

    const record = captureOutput();
    assert.equal(
      await checkCommand({ configPath: `${dir}/server.toml`, format: "text", logFormat: "json" }, record),
      0,
    );
    const line = JSON.parse(record.stdout) as { level: string; properties: { notes: unknown[] } };
    assert.equal(line.level, "info");
    assert.equal(line.properties.notes.length, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

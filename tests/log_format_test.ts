/**
 * `--log-format json` through the real CLI (`deno run main.ts …` as child processes): every line each
 * command prints, on stdout and stderr, parses as one JSON record, on the happy path and on each failure
 * path (bad config, busy port, unreachable server, bad certificate); and `-vv` traces the yamux frames
 * and RPC messages of both roles without ever writing the key.
 */

import assert from "node:assert/strict";
import { CliProcess, freePort, type LogRecord, makeWorkdir, parseRecord } from "../testing/helpers.ts";
import {
  echoThrough,
  FAST_RECONNECT,
  PROCESS_AUTH_KEY,
  ProcessTunnel,
  proxyUp,
} from "../testing/process_tunnel.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const PERMISSIONS = [
  "--allow-net",
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-sys",
  "--allow-ffi",
];

/** One finished run of the CLI with `--log-format json`. */
interface JsonRun {
  code: number;
  stdout: LogRecord[];
  stderr: LogRecord[];
}

/** Asserts every line of `text` is a JSON log record and returns them. */
function recordsOf(text: string, what: string): LogRecord[] {
  const lines = text.split("\n").filter((line) => line !== "");
  return lines.map((line) => {
    const record = parseRecord(line);
    assert.ok(record !== null, `${what}: not a JSON record: ${line}`);
    assert.equal(typeof record.message, "string", `${what}: message: ${line}`);
    assert.ok(typeof record.time === "string" && typeof record.category === "string", `${what}: ${line}`);
    return record;
  });
}

/** Runs `tls-tunnel --log-format json ARGS` to the end and checks that every line is JSON. */
async function runJson(args: string[], cwd = ROOT): Promise<JsonRun> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", ...PERMISSIONS, `${ROOT}main.ts`, "--log-format", "json", ...args],
    cwd,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  const what = `tls-tunnel ${args.join(" ")}`;
  return {
    code: output.code,
    stdout: recordsOf(decoder.decode(output.stdout), `${what} (stdout)`),
    stderr: recordsOf(decoder.decode(output.stderr), `${what} (stderr)`),
  };
}

/** Writes a client config publishing the fixture's echo service as `web` on a server-chosen port. */
async function clientConfig(tunnel: ProcessTunnel, name: string): Promise<string> {
  const path = `${tunnel.dir}/${name}.toml`;
  await Deno.writeTextFile(
    path,
    `[client]\nserver_addr = "127.0.0.1"\nserver_port = ${tunnel.serverPort}\nserver_name = "localhost"\n` +
      `ca_cert_path = "${tunnel.caPath}"\nauth_key = "${PROCESS_AUTH_KEY}"\n\n` +
      `[[proxies]]\nname = "web"\npublish_addr = "127.0.0.1"\npublish_port = 0\nlocal_addr = "127.0.0.1"\nlocal_port = ${tunnel.echo.port}\n`,
    { mode: 0o600 },
  );
  return path;
}

/** Every stderr and stdout line of a long-running process, checked as JSON records. */
function allRecords(process: CliProcess, what: string): LogRecord[] {
  return [
    ...recordsOf(process.lines.join("\n"), `${what} (stderr)`),
    ...recordsOf(process.stdoutLines.join("\n"), `${what} (stdout)`),
  ];
}

Deno.test("every command prints only JSON records under --log-format json", async () => {
  const work = await makeWorkdir();
  try {
    const version = await runJson(["version"]);
    assert.equal(version.code, 0);
    assert.match(version.stdout[0]?.message ?? "", /^tls-tunnel \d+\.\d+\.\d+/);

    const help = await runJson(["--help"]);
    assert.equal(help.code, 0);
    assert.equal(help.stdout.length, 1, "help is one record");

    for (
      const args of [["bogus"], ["server", "--nope"], ["top", "--interval", "5"], ["cert", "--days", "x"]]
    ) {
      const usage = await runJson(args);
      assert.equal(usage.code, 2, args.join(" "));
      assert.deepEqual(usage.stderr.map((record) => record.level), ["error"], args.join(" "));
      assert.ok(!usage.stderr[0]?.message.startsWith("error:"), "the level says it, not the message");
    }

    const unreachableTop = await runJson(["top", "-u", `http://127.0.0.1:${freePort()}/`]);
    assert.equal(unreachableTop.code, 1);
    assert.match(unreachableTop.stderr[0]?.message ?? "", /Cannot reach the stats endpoint/);

    const template = await runJson(["template", "server"]);
    assert.equal(template.code, 0);
    assert.equal(template.stdout.length, 1, "the template is one record");
    assert.match(template.stdout[0]?.message ?? "", /\[server\]/);

    const written = await runJson(["template", "client", "-o", `${work.dir}/client.toml`]);
    assert.equal(written.code, 0);
    assert.equal(written.stderr.length, 1, "'wrote … check it with' is one record");

    await Deno.mkdir(`${work.dir}/cert`);
    const cert = await runJson(["cert"], `${work.dir}/cert`);
    assert.equal(cert.code, 0);
    assert.equal(cert.stdout.length, 1, "the cert report is one record");
    assert.match(cert.stdout[0]?.message ?? "", /CA SHA-256 fingerprint/);

    const pair = await runJson(["template", "pair", "-o", `${work.dir}/pair`]);
    assert.equal(pair.code, 0);
    assert.equal(pair.stdout.length, 1, "the pair report is one record");

    const check = await runJson(["check", "-c", `${work.dir}/pair/server.toml`]);
    assert.equal(check.code, 0);
    assert.deepEqual(
      [check.stdout.length, check.stdout[0]?.properties?.valid, check.stdout[0]?.properties?.kind],
      [1, true, "server"],
    );
    // --format json asks for the report itself: one JSON document on one line, not a log record.
    const report = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--quiet",
        ...PERMISSIONS,
        `${ROOT}main.ts`,
        "--log-format",
        "json",
        "check",
        "-c",
        `${work.dir}/pair/client.toml`,
        "--format",
        "json",
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(report.code, 0);
    const reportLines = new TextDecoder().decode(report.stdout).trimEnd().split("\n");
    assert.equal(reportLines.length, 1);
    assert.deepEqual([JSON.parse(reportLines[0] ?? "").valid, report.stderr.length], [true, 0]);
  } finally {
    await work.cleanup();
  }
});

Deno.test("an invalid config is one JSON record with every issue in its own field", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tls-tunnel-json-" });
  try {
    const file = `${dir}/server.toml`;
    await Deno.writeTextFile(file, `[server]\nauth_key = "short"\nbind_port = 99999\nbogus = 1\n`, {
      mode: 0o600,
    });
    for (const command of ["server", "check"]) {
      const run = await runJson([command, "-c", file]);
      assert.equal(run.code, 1, command);
      const errors = [...run.stdout, ...run.stderr].filter((record) => record.level === "error");
      assert.equal(errors.length, 1, `${command}: one error record`);
      const issues = errors[0]?.properties?.issues as { path: string; message: string }[];
      assert.deepEqual(issues.map((issue) => issue.path), [
        "server.auth_key",
        "server.bind_port",
        "server.bogus",
      ]);
      assert.ok(!errors[0]?.message.includes("\n"), `${command}: the message is one line`);
      assert.ok(!errors[0]?.message.includes("server.bogus"), `${command}: issues are not in the message`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a busy tunnel port is one JSON error record and exit code 1", async () => {
  const work = await makeWorkdir();
  const holder = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const file = `${work.dir}/server.toml`;
    await Deno.writeTextFile(
      file,
      `[server]\nbind_addr = "127.0.0.1"\nbind_port = ${holder.addr.port}\ncert_path = "${work.certPath}"\n` +
        `key_path = "${work.keyPath}"\nauth_key = "${PROCESS_AUTH_KEY}"\n`,
      { mode: 0o600 },
    );
    const run = await runJson(["server", "-c", file]);
    assert.equal(run.code, 1);
    const errors = run.stderr.filter((record) => record.level === "error");
    assert.equal(errors.length, 1, JSON.stringify(run.stderr));
    assert.match(
      errors[0]?.message ?? "",
      new RegExp(`Port ${holder.addr.port} on 127\\.0\\.0\\.1 is already in use`),
    );
    assert.ok(!run.stderr.some((record) => record.level === "trace"), "no trace records without -vv");
  } finally {
    holder.close();
    await work.cleanup();
  }
});

Deno.test("a bad certificate file stops the server with one JSON record naming the file", async () => {
  const work = await makeWorkdir();
  try {
    const file = `${work.dir}/server.toml`;
    await Deno.writeTextFile(`${work.dir}/junk.pem`, "not a certificate\n");
    await Deno.writeTextFile(
      file,
      `[server]\nbind_addr = "127.0.0.1"\nbind_port = ${freePort()}\ncert_path = "${work.dir}/junk.pem"\n` +
        `key_path = "${work.keyPath}"\nauth_key = "${PROCESS_AUTH_KEY}"\n`,
      { mode: 0o600 },
    );
    const run = await runJson(["server", "-c", file]);
    assert.equal(run.code, 1);
    assert.equal(run.stderr.length, 1, JSON.stringify(run.stderr));
    assert.equal(run.stderr[0]?.level, "error");
    assert.match(run.stderr[0]?.message ?? "", /server\.cert_path .*junk\.pem: no PEM certificate/);
  } finally {
    await work.cleanup();
  }
});

Deno.test("a client that cannot reach its server or trust its certificate logs JSON only", async () => {
  // Unreachable: nothing listens on the port.
  await using unreachable = await ProcessTunnel.create();
  const lonely = new CliProcess(
    ["client", "-c", await clientConfig(unreachable, "lonely")],
    { env: FAST_RECONNECT },
  );
  try {
    await lonely.waitForLine(/refused: is the server running on that port\?/);
    await lonely.waitForLine(/Reconnecting in/);
  } finally {
    await lonely.stop();
  }
  const retries = allRecords(lonely, "unreachable client").filter((record) =>
    /Reconnecting in/.test(record.message)
  );
  assert.ok(retries.length > 0);
  for (const record of retries) {
    // One record per failed attempt: why it failed and when the next one comes.
    assert.match(
      record.message,
      /^Attempt \d+ to reach 127\.0\.0\.1:\d+ failed: .*refused.*\. Reconnecting in/,
    );
    assert.equal(record.level, "warning");
  }

  // Untrusted: the server's certificate is not from the CA the client trusts.
  await using tunnel = await ProcessTunnel.create("", { generatedCertificate: true });
  const server = await tunnel.server();
  const client = new CliProcess([
    "client",
    "-c",
    await clientConfig(tunnel, "c"),
  ]);
  try {
    const [line] = await client.waitForLine(/^.*was not accepted.*$/);
    const record = parseRecord(line);
    assert.ok(record !== null);
    assert.equal(record.level, "warning");
  } finally {
    await client.stop();
  }
  allRecords(client, "untrusting client");
  await server.stop();
  allRecords(server, "server");
});

Deno.test("the happy path at -vv: JSON only, frames and RPC traced on both roles, never the key", async () => {
  const statsPort = freePort();
  await using tunnel = await ProcessTunnel.create(`stats_port = ${statsPort}\n`);
  const server = new CliProcess(["-vv", "server", "-c", tunnel.serverConfigPath]);
  let client: CliProcess | null = null;
  try {
    await server.waitForLine(/Listening for clients on/);
    client = new CliProcess([
      "-vv",
      "client",
      "-c",
      await clientConfig(tunnel, "c"),
    ]);
    const [, port] = await client.waitForLine(proxyUp("web"));
    assert.equal(await echoThrough(Number(port), "traced"), "traced");
    // The copy's frames reach the log a moment after the echo.
    await server.waitForLine(/"type":"DATA"/);
    await client.waitForLine(/"type":"DATA"/);
    // top prints the stats as one record, not the table.
    const top = await runJson(["top", "-u", `http://127.0.0.1:${statsPort}/`]);
    assert.equal(top.code, 0);
    assert.equal(top.stdout.length, 1);
    assert.equal((top.stdout[0]?.properties?.stats as { role?: string }).role, "server");
  } finally {
    await client?.stop();
    await server.stop();
  }
  for (const [what, process] of [["server", server], ["client", client]] as const) {
    assert.ok(process !== null);
    const records = allRecords(process, what);
    assert.ok(!process.output.includes(PROCESS_AUTH_KEY), `${what} wrote the key`);
    const frames = records.filter((record) =>
      record.category === "tls-tunnel.mux" && record.level === "trace"
    );
    for (const type of ["DATA", "WINDOW_UPDATE", "PING"]) {
      assert.ok(frames.some((record) => record.properties?.type === type), `${what}: a ${type} frame`);
    }
    for (const record of frames) {
      const { direction, flags, streamId, length } = record.properties ?? {};
      assert.ok(direction === "sent" || direction === "received", `${what}: ${JSON.stringify(record)}`);
      assert.equal(typeof flags, "string");
      assert.ok(Number.isInteger(streamId) && Number.isInteger(length), JSON.stringify(record));
      assert.equal(record.properties?.role, what);
    }
    const rpc = records.filter((record) => record.category === "tls-tunnel.rpc" && record.level === "trace");
    const authenticate = rpc.find((record) => record.properties?.method === "authenticate");
    assert.ok(authenticate, `${what}: the authenticate request is traced`);
    assert.equal(authenticate.properties?.direction, what === "client" ? "sent" : "received");
    assert.equal((authenticate.properties?.params as Record<string, unknown>).auth_key, "***");
    assert.ok(
      rpc.some((record) => record.properties?.method === "register_proxies"),
      `${what}: register_proxies`,
    );
    assert.ok(rpc.some((record) => record.properties?.kind === "response"), `${what}: a response`);
  }
});

Deno.test("a busy publish port is one warning on the client, with the retry's details in fields", async () => {
  await using tunnel = await ProcessTunnel.create(
    `[server.bind_retry]\nmax_retries = 100\ninitial_delay_secs = 0.2\nmax_delay_secs = 0.2\n`,
  );
  const holder = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const server = await tunnel.server();
  const path = await clientConfig(tunnel, "busy");
  await Deno.writeTextFile(
    path,
    (await Deno.readTextFile(path)).replace("publish_port = 0", `publish_port = ${holder.addr.port}`),
  );
  const client = new CliProcess(["client", "-c", path], { env: FAST_RECONNECT });
  try {
    await client.waitForLine(/"retry_count":1,/);
    await client.waitForLine(/"message":"web +unhealthy/);
    // The server repeats its warning only every few seconds; the rest of this event would be here by now.
    await new Promise((resolve) => setTimeout(resolve, 1000));
  } finally {
    await client.stop();
    holder.close();
  }
  const records = allRecords(client, "client");
  const about = records.filter((record) =>
    record.level !== "trace" && record.level !== "debug" &&
    JSON.stringify(record).includes(`:${holder.addr.port}`)
  );
  // Once: the server's PROXY_BIND_RETRY warning (details in `data`), and the status table's row.
  assert.deepEqual(about.map((record) => record.level), ["warning", "info"], JSON.stringify(about));
  const [warning, table] = about;
  assert.equal((warning?.properties?.data as { retry_count?: number }).retry_count, 1);
  assert.ok(
    !warning?.message.includes("proxy_name"),
    `the data stays out of the message: ${warning?.message}`,
  );
  assert.equal(table?.category, "tls-tunnel.cli");
  allRecords(server, "server");
});

Deno.test("demo prints its banner as one JSON record with the URLs in fields", async () => {
  const demo = new CliProcess(["demo"]);
  try {
    const deadline = Date.now() + 20_000;
    while (!demo.stdoutRecords.some((record) => record.properties?.publishedUrl !== undefined)) {
      assert.ok(!demo.exited && Date.now() < deadline, `no demo banner:\n${demo.output}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } finally {
    await demo.stop();
  }
  allRecords(demo, "demo");
  const [banner] = demo.stdoutRecords;
  assert.equal(demo.stdoutRecords.length, 1);
  assert.match(String(banner?.properties?.publishedUrl), /^http:\/\/127\.0\.0\.1:\d+\/$/);
  assert.equal(banner?.properties?.status, 200);
});

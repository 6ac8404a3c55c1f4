/**
 * One-line tunnels through the real CLI: a config-less server prints the client command, which run as
 * printed (with the user's -R) carries traffic and keeps working across a server restart; flags and a
 * config file combine with flags winning; `./server.toml` / `./client.toml` are the default configs, `~`
 * is expanded, and a config readable by others draws a warning; `template pair` writes configs that run as
 * written.
 */

import assert from "node:assert/strict";
import { CliProcess, EchoService, freePort, makeWorkdir, waitFor } from "../testing/helpers.ts";
import {
  echoThrough,
  FAST_RECONNECT,
  LISTENING,
  PROCESS_AUTH_KEY,
  proxyUp,
} from "../testing/process_tunnel.ts";

/** The permissions of a config-less server: it writes its state directory. */
const SERVER_PERMISSIONS = [
  "--allow-net",
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-sys=hostname",
  "--allow-ffi",
];

const posix = Deno.build.os !== "windows";

/** What `process` printed on stdout, with each JSON record (`--log-format json`) replaced by its message. */
function stdoutText(process: CliProcess): string {
  return process.stdout.split("\n").map((line) => {
    try {
      const record: unknown = JSON.parse(line);
      if (typeof record === "object" && record !== null && "message" in record) return String(record.message);
    } catch {
      // A plain line.
    }
    return line;
  }).join("\n");
}

/** Waits until `process` printed the client command on stdout; returns its arguments after `tls-tunnel`. */
async function printedClientCommand(process: CliProcess): Promise<string[]> {
  const command = /^ {2}tls-tunnel client (.*)$/m;
  await waitFor(() => command.test(stdoutText(process)), 15_000, "the printed client command");
  const line = command.exec(stdoutText(process))?.[1] ?? "";
  return ["client", ...line.split(" ")];
}

/** `args` with the value of its (single) `-R` replaced by `forwards`, one `-R` each. */
function withForwards(args: string[], forwards: string[]): string[] {
  const at = args.indexOf("-R");
  assert.ok(at > 0, `no -R in ${args.join(" ")}`);
  return [...args.slice(0, at), ...forwards.flatMap((forward) => ["-R", forward]), ...args.slice(at + 2)];
}

Deno.test("a config-less server prints the client command; run as printed it carries traffic, across a restart", async () => {
  const work = await makeWorkdir();
  const echo = new EchoService();
  const stateDir = `${work.dir}/state`;
  const serverPort = freePort();
  const publishPort = freePort();
  const serverArgs = ["server", "--port", `${serverPort}`, "--bind", "127.0.0.1", "--state-dir", stateDir];
  let server = new CliProcess(serverArgs, { permissions: SERVER_PERMISSIONS });
  let client: CliProcess | null = null;
  try {
    const printed = await printedClientCommand(server);
    const generated = /Generated a shared key, kept in .*auth_key and shown only now: (\S{43})/.exec(
      stdoutText(server),
    );
    assert.ok(generated, stdoutText(server));
    // The command carries the key as generated (a CI run once saw this client refused with a wrong key).
    assert.equal(printed[printed.indexOf("--key") + 1], generated[1], stdoutText(server));
    const fingerprint = printed[printed.indexOf("--fingerprint") + 1] ?? "";
    assert.match(fingerprint, /^SHA256:[0-9A-F]{64}$/);
    assert.equal(printed[printed.indexOf("--server") + 1], `127.0.0.1:${serverPort}`);
    if (posix) {
      assert.equal((await Deno.stat(stateDir)).mode! & 0o777, 0o700);
      for (const file of ["cert.pem", "key.pem", "auth_key"]) {
        assert.equal((await Deno.stat(`${stateDir}/${file}`)).mode! & 0o777, 0o600, file);
      }
    }

    // The printed command as it is, with this test's forwards: a fixed port and a server-chosen one.
    client = new CliProcess(
      withForwards(printed, [
        `127.0.0.1:${publishPort}:127.0.0.1:${echo.port}`,
        `127.0.0.1:0:127.0.0.1:${echo.port}`,
      ]),
      { env: FAST_RECONNECT },
    );
    await client.waitForLine(proxyUp(`tcp-${publishPort}-${echo.port}`));
    const chosen = Number((await client.waitForLine(proxyUp(`tcp-any-${echo.port}`)))[1]);
    assert.ok(chosen > 0 && chosen !== publishPort, `server-chosen port ${chosen}`);
    assert.equal(await echoThrough(publishPort, "through the fixed port"), "through the fixed port");
    assert.equal(await echoThrough(chosen, "through the chosen port"), "through the chosen port");
    assert.ok(!client.output.includes("NOT verified"), client.output);

    // Restart: same state directory, same fingerprint and key; the key is not printed again.
    await server.stop();
    server = new CliProcess(serverArgs, { permissions: SERVER_PERMISSIONS });
    const again = await printedClientCommand(server);
    assert.equal(again[again.indexOf("--fingerprint") + 1], fingerprint);
    assert.equal(again[again.indexOf("--key") + 1], "KEY");
    assert.match(stdoutText(server), /KEY: the shared key in .*auth_key/);
    assert.ok(
      !stdoutText(server).includes(printed[printed.indexOf("--key") + 1] ?? "?"),
      "key printed again",
    );
    await waitFor(
      () =>
        echoThrough(publishPort, "after the restart").then(
          (text) => text === "after the restart",
          () => false,
        ),
      15_000,
      "traffic after the restart",
      200,
    );
  } finally {
    await client?.stop();
    await server.stop();
    await echo.close();
    await work.cleanup();
  }
});

Deno.test("client flags and a config file combine: flags beat the file and TLS_TUNNEL_* variables, -R adds a proxy", async () => {
  const work = await makeWorkdir();
  const echo = new EchoService();
  const serverPort = freePort();
  const [filePort, flagPort] = [freePort(), freePort()];
  const serverConfig = `${work.dir}/server.toml`;
  await Deno.writeTextFile(
    serverConfig,
    `[server]\nbind_addr = "127.0.0.1"\nbind_port = ${serverPort}\ncert_path = "${work.certPath}"\n` +
      `key_path = "${work.keyPath}"\nauth_key = "${PROCESS_AUTH_KEY}"\n`,
    { mode: 0o600 },
  );
  const clientConfig = `${work.dir}/client.toml`;
  // Wrong port and key in the file: the flags must replace them.
  await Deno.writeTextFile(
    clientConfig,
    `[client]\nserver_addr = "127.0.0.1"\nserver_port = 1\nserver_name = "localhost"\n` +
      `ca_cert_path = "${work.caPath}"\nauth_key = "wrong-key-from-the-file-000"\n\n` +
      `[[proxies]]\nname = "from-file"\npublish_addr = "127.0.0.1"\npublish_port = ${filePort}\n` +
      `local_port = ${echo.port}\n`,
    { mode: 0o600 },
  );
  const server = new CliProcess(["server", "-c", serverConfig]);
  let client: CliProcess | null = null;
  try {
    await server.waitForLine(LISTENING);
    client = new CliProcess(
      [
        "client",
        "-c",
        clientConfig,
        "--server",
        `127.0.0.1:${serverPort}`,
        "--key",
        PROCESS_AUTH_KEY,
        "-R",
        `127.0.0.1:${flagPort}:127.0.0.1:${echo.port}`,
      ],
      {
        env: {
          ...FAST_RECONNECT,
          TLS_TUNNEL_AUTH_KEY: "wrong-key-from-the-env-0000",
          TLS_TUNNEL_SERVER_PORT: "2",
        },
      },
    );
    await client.waitForLine(proxyUp("from-file"));
    await client.waitForLine(proxyUp(`tcp-${flagPort}-${echo.port}`));
    assert.equal(await echoThrough(filePort, "file proxy"), "file proxy");
    assert.equal(await echoThrough(flagPort, "flag proxy"), "flag proxy");
    assert.ok(!server.output.includes("wrong auth_key"), server.output);
  } finally {
    await client?.stop();
    await server.stop();
    await echo.close();
    await work.cleanup();
  }
});

Deno.test("server and client default to ./server.toml and ./client.toml, expand ~, and warn about configs others can read", async () => {
  const work = await makeWorkdir();
  const echo = new EchoService();
  const serverPort = freePort();
  const publishPort = freePort();
  // HOME is the work folder: `~/cert.pem` and `-c ~/client.toml` must land there.
  const env = { ...FAST_RECONNECT, HOME: work.dir };
  await Deno.writeTextFile(
    `${work.dir}/server.toml`,
    `[server]\nbind_addr = "127.0.0.1"\nbind_port = ${serverPort}\ncert_path = "~/cert.pem"\n` +
      `key_path = "~/key.pem"\nauth_key = "${PROCESS_AUTH_KEY}"\n`,
  );
  if (posix) await Deno.chmod(`${work.dir}/server.toml`, 0o644);
  await Deno.mkdir(`${work.dir}/conf`);
  await Deno.writeTextFile(
    `${work.dir}/conf/client.toml`,
    `[client]\nserver_addr = "127.0.0.1"\nserver_port = ${serverPort}\nserver_name = "localhost"\n` +
      `ca_cert_path = "~/ca.pem"\nauth_key = "${PROCESS_AUTH_KEY}"\n\n[[proxies]]\nname = "web"\n` +
      `publish_addr = "127.0.0.1"\npublish_port = ${publishPort}\nlocal_port = ${echo.port}\n`,
    { mode: 0o600 },
  );
  if (posix) await Deno.chmod(`${work.dir}/conf/client.toml`, 0o600);
  const server = new CliProcess(["server"], { cwd: work.dir, env });
  let client: CliProcess | null = null;
  try {
    await server.waitForLine(LISTENING);
    if (posix) {
      const warning = await server.waitForLine(
        /Config file \.\/server\.toml is readable by group or others.*/,
      );
      assert.match(warning[0], /mode 644\).*chmod 600 \.\/server\.toml/);
    }
    assert.match(server.output, new RegExp(`Using certificate ${work.dir}/cert\\.pem`));
    client = new CliProcess(["client", "-c", "~/conf/client.toml"], { env });
    await client.waitForLine(proxyUp("web"));
    assert.equal(await echoThrough(publishPort, "config from ~"), "config from ~");
    assert.ok(!client.output.includes("readable by group or others"), client.output);
    await client.stop();
    // No -c: ./client.toml of the working directory.
    client = new CliProcess(["client"], { cwd: `${work.dir}/conf`, env });
    await client.waitForLine(proxyUp("web"));
    await waitFor(
      () => echoThrough(publishPort, "default config").then((text) => text === "default config", () => false),
      10_000,
      "traffic through the default client config",
      100,
    );
  } finally {
    await client?.stop();
    await server.stop();
    await echo.close();
    await work.cleanup();
  }
});

Deno.test("client usage errors name the flag, the bad value and the accepted forms (exit 2)", async () => {
  const work = await makeWorkdir();
  try {
    const cases: Array<[string[], RegExp]> = [
      [["client"], /no config file .* no --server HOST:PORT, --key KEY, -R PORT:LOCALPORT/],
      [
        ["client", "--server", "127.0.0.1:1", "--key", PROCESS_AUTH_KEY, "-R", "80:[::1:3000"],
        /-R "80:\[::1:3000".*PORT:LOCALHOST:LOCALPORT/,
      ],
      [[
        "client",
        "--server",
        "127.0.0.1:1",
        "--key",
        PROCESS_AUTH_KEY,
        "-R",
        "0:3000",
        "--fingerprint",
        "SHA256:zz",
      ], /--fingerprint "SHA256:zz" is not a SHA-256 fingerprint/],
      [
        ["client", "--server", "::1:8443", "--key", PROCESS_AUTH_KEY, "-R", "0:3000"],
        /--server "::1:8443" is an IPv6 address without brackets.*\[ADDR\]:PORT/,
      ],
      [
        ["server", "--port", "70000", "--state-dir", `${work.dir}/state`],
        /--port "70000" is not a port number/,
      ],
    ];
    for (const [args, expected] of cases) {
      const process = new CliProcess(args, { cwd: work.dir, permissions: SERVER_PERMISSIONS });
      let timer: ReturnType<typeof setTimeout> | undefined;
      const status = await Promise.race([
        process.status(),
        new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), 20_000))),
      ]);
      clearTimeout(timer);
      if (status === null) await process.stop();
      assert.equal(status?.code, 2, `${args.join(" ")}:\n${process.output}`);
      // With --log-format json the message is a JSON record's; plain lines are matched as they are.
      assert.match(
        [...process.records.map((record) => record.message), ...process.lines].join("\n"),
        expected,
      );
    }
  } finally {
    await work.cleanup();
  }
});

Deno.test("template pair writes configs that, started unchanged, carry traffic", async () => {
  const work = await makeWorkdir();
  const echo = new EchoService();
  const serverPort = freePort();
  const publishPort = freePort();
  const out = `${work.dir}/pair`;
  const processes: CliProcess[] = [];
  try {
    const template = new CliProcess(
      [
        "template",
        "pair",
        "-o",
        out,
        "--port",
        `${serverPort}`,
        "-R",
        `${publishPort}:127.0.0.1:${echo.port}`,
      ],
      { permissions: SERVER_PERMISSIONS },
    );
    assert.equal((await template.status()).code, 0, template.output);
    assert.match(stdoutText(template), /tls-tunnel server -c .*server\.toml/);
    const server = new CliProcess(["server", "-c", `${out}/server.toml`]);
    processes.push(server);
    await server.waitForLine(LISTENING);
    const client = new CliProcess(["client", "-c", `${out}/client.toml`], { env: FAST_RECONNECT });
    processes.push(client);
    await client.waitForLine(proxyUp("web"));
    assert.equal(await echoThrough(publishPort, "pair"), "pair");
    assert.ok(!/readable by group or others|NOT verified/.test(server.output + client.output));
  } finally {
    for (const process of processes.reverse()) await process.stop();
    await echo.close();
    await work.cleanup();
  }
});

Deno.test("a config file without a certificate and --state-dir: the server presents the kept certificate and prints the pin", async () => {
  const work = await makeWorkdir();
  const echo = new EchoService();
  const serverPort = freePort();
  const publishPort = freePort();
  const serverConfig = `${work.dir}/server.toml`;
  await Deno.writeTextFile(
    serverConfig,
    `[server]\nbind_addr = "127.0.0.1"\nbind_port = ${serverPort}\nauth_key = "${PROCESS_AUTH_KEY}"\n`,
    { mode: 0o600 },
  );
  const server = new CliProcess(["server", "-c", serverConfig, "--state-dir", `${work.dir}/state`], {
    permissions: SERVER_PERMISSIONS,
  });
  let client: CliProcess | null = null;
  try {
    const printed = await printedClientCommand(server);
    assert.equal(printed[printed.indexOf("--key") + 1], "KEY");
    assert.match(stdoutText(server), new RegExp(`KEY: auth_key in ${serverConfig}`));
    assert.ok(!stdoutText(server).includes(PROCESS_AUTH_KEY), "the file's key was printed");
    const keyAt = printed.indexOf("--key") + 1;
    const args = withForwards(
      [...printed.slice(0, keyAt), PROCESS_AUTH_KEY, ...printed.slice(keyAt + 1)],
      [`127.0.0.1:${publishPort}:127.0.0.1:${echo.port}`],
    );
    client = new CliProcess(args, { env: FAST_RECONNECT });
    await client.waitForLine(proxyUp(`tcp-${publishPort}-${echo.port}`));
    assert.equal(await echoThrough(publishPort, "state dir certificate"), "state dir certificate");
  } finally {
    await client?.stop();
    await server.stop();
    await echo.close();
    await work.cleanup();
  }
});

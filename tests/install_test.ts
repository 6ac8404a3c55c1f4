/**
 * scripts/install.sh as a user runs it, into a temporary prefix (Deno is already here, so nothing is
 * downloaded): then the installed `tls-tunnel` launcher prints its version, runs the demo, carries a real
 * server-and-client tunnel, and registers a unit that systemd-analyze accepts.
 */

import assert from "node:assert/strict";
import { EchoService, freePort, makeWorkdir, PROJECT_ROOT } from "../testing/helpers.ts";
import { echoThrough, LISTENING, PROCESS_AUTH_KEY, proxyUp } from "../testing/process_tunnel.ts";
import { verifyUnit } from "../testing/systemd.ts";

const decoder = new TextDecoder();

/** The installed launcher as a child process, its output collected line by line. */
class Launched implements AsyncDisposable {
  readonly child: Deno.ChildProcess;
  stdout = "";
  stderr = "";
  readonly #done: Promise<Deno.CommandStatus>;

  constructor(launcher: string, args: string[], cwd: string) {
    this.child = new Deno.Command(launcher, {
      args,
      cwd,
      env: { NO_COLOR: "1", TLS_TUNNEL_RECONNECT_DELAY_SECS: "0.2" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const pump = async (stream: ReadableStream<Uint8Array>, add: (text: string) => void) => {
      for await (const chunk of stream) add(decoder.decode(chunk, { stream: true }));
    };
    const pumps = Promise.all([
      pump(this.child.stdout, (text) => (this.stdout += text)),
      pump(this.child.stderr, (text) => (this.stderr += text)),
    ]);
    this.#done = this.child.status.then(async (status) => {
      await pumps;
      return status;
    });
  }

  /** Waits until stdout or stderr matches `pattern` (15 s at most); returns the match. */
  async waitFor(pattern: RegExp, timeoutMs = 15_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    let exited = false;
    this.#done.then(() => (exited = true));
    while (true) {
      const match = this.stdout.match(pattern) ?? this.stderr.match(pattern);
      if (match) return match;
      assert.ok(!exited, `exited before printing ${pattern}:\n${this.stdout}\n${this.stderr}`);
      assert.ok(
        Date.now() < deadline,
        `no ${pattern} within ${timeoutMs} ms:\n${this.stdout}\n${this.stderr}`,
      );
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** Sends `signal` to the process by its PID and waits for it to exit. */
  async stop(signal: Deno.Signal = "SIGTERM"): Promise<Deno.CommandStatus> {
    try {
      Deno.kill(this.child.pid, signal);
    } catch {
      // Already exited.
    }
    const timer = setTimeout(() => {
      try {
        Deno.kill(this.child.pid, "SIGKILL");
      } catch {
        // Exited meanwhile.
      }
    }, 5_000);
    try {
      return await this.#done;
    } finally {
      clearTimeout(timer);
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

async function install(args: string[]): Promise<{ code: number; log: string }> {
  const result = await new Deno.Command("sh", {
    args: [`${PROJECT_ROOT}scripts/install.sh`, ...args],
    cwd: PROJECT_ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: result.code, log: decoder.decode(result.stdout) + decoder.decode(result.stderr) };
}

async function launch(launcher: string, args: string[], cwd: string) {
  const result = await new Deno.Command(launcher, {
    args,
    cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  return { code: result.code, stdout: decoder.decode(result.stdout), stderr: decoder.decode(result.stderr) };
}

Deno.test("install.sh installs a tls-tunnel launcher that runs version, the demo and a real tunnel", async (t) => {
  const prefix = await Deno.makeTempDir({ prefix: "tls-tunnel-prefix-" });
  try {
    const installed = await install(["--prefix", prefix]);
    assert.equal(installed.code, 0, installed.log);
    assert.match(installed.log, /building the bundle from /);
    const launcher = `${prefix}/bin/tls-tunnel`;
    assert.ok(((await Deno.stat(launcher)).mode ?? 0) & 0o111, "the launcher is executable");
    assert.ok((await Deno.stat(`${prefix}/lib/tls-tunnel/tls-tunnel.js`)).isFile);

    await t.step("version, also from a folder whose deno.json would break a plain `deno run`", async () => {
      await Deno.writeTextFile(`${prefix}/deno.json`, "{ not json");
      const version = await launch(launcher, ["version"], prefix);
      assert.equal(version.code, 0, version.stderr);
      assert.match(version.stdout, /^tls-tunnel \d+\.\d+\.\d+ \(protocol \d+, deno \d+\.\d+\.\d+\)\n$/);
    });

    await t.step("demo prints a working tunnel and stops on SIGINT", async () => {
      await using demo = new Launched(launcher, ["demo"], prefix);
      const url = (await demo.waitFor(/Tunnel demo is up: (http:\/\/127\.0\.0\.1:\d+\/)/))[1] ?? "";
      await demo.waitFor(/Fetched through the tunnel: HTTP 200/);
      const page = await fetch(url);
      assert.match(await page.text(), /Hello from the local service behind the tunnel/);
      assert.equal((await demo.stop("SIGINT")).code, 0, demo.stderr);
    });

    await t.step("a server and a client run by the launcher carry bytes", async () => {
      const work = await makeWorkdir();
      const echo = new EchoService();
      try {
        const serverPort = freePort();
        const publishPort = freePort();
        await Deno.writeTextFile(
          `${work.dir}/server.toml`,
          `[server]\nbind_addr = "127.0.0.1"\nbind_port = ${serverPort}\ncert_path = "${work.certPath}"\n` +
            `key_path = "${work.keyPath}"\nauth_key = "${PROCESS_AUTH_KEY}"\n`,
          { mode: 0o600 },
        );
        await Deno.writeTextFile(
          `${work.dir}/client.toml`,
          `[client]\nserver_addr = "127.0.0.1"\nserver_port = ${serverPort}\nserver_name = "localhost"\n` +
            `ca_cert_path = "${work.caPath}"\nauth_key = "${PROCESS_AUTH_KEY}"\n\n[[proxies]]\nname = "echo"\n` +
            `publish_addr = "127.0.0.1"\npublish_port = ${publishPort}\nlocal_addr = "127.0.0.1"\n` +
            `local_port = ${echo.port}\n`,
          { mode: 0o600 },
        );
        await using server = new Launched(launcher, ["server", "-c", "server.toml"], work.dir);
        await server.waitFor(LISTENING);
        await using client = new Launched(launcher, ["client", "-c", "client.toml"], work.dir);
        await client.waitFor(proxyUp("echo"));
        assert.equal(
          await echoThrough(publishPort, "through the installed launcher"),
          "through the installed launcher",
        );
        await client.stop();
        await server.stop();
      } finally {
        await echo.close();
        await work.cleanup();
      }
    });

    await t.step(
      "one command per side: a config-less server and the pinned client command it prints",
      async () => {
        const echo = new EchoService();
        const work = await Deno.makeTempDir({ prefix: "tls-tunnel-one-line-" });
        try {
          const serverPort = freePort();
          const publishPort = freePort();
          // The server writes its generated certificate and key into the state directory: the launcher must
          // let it (--allow-write).
          const args = [
            "server",
            "--port",
            `${serverPort}`,
            "--bind",
            "127.0.0.1",
            "--state-dir",
            `${work}/state`,
          ];
          await using server = new Launched(launcher, args, work);
          const printed = await server.waitFor(
            /tls-tunnel client --server (127\.0\.0\.1:\d+) --key (\S+) --fingerprint (SHA256:\S+) -R /,
          );
          const [, address = "", quotedKey = "", fingerprint = ""] = printed;
          assert.equal(address, `127.0.0.1:${serverPort}`);
          await server.waitFor(LISTENING);
          const key = quotedKey.replace(/^'(.*)'$/, "$1");
          const forward = `127.0.0.1:${publishPort}:127.0.0.1:${echo.port}`;
          const clientArgs = [
            "client",
            "--server",
            address,
            "--key",
            key,
            "--fingerprint",
            fingerprint,
            "-R",
            forward,
          ];
          await using client = new Launched(launcher, clientArgs, work);
          await client.waitFor(new RegExp(`Proxy \\S+: 127\\.0\\.0\\.1:${publishPort}\\b`));
          assert.equal(await echoThrough(publishPort, "one line per side"), "one line per side");
          await client.stop();
          await server.stop();
          const kept = [...Deno.readDirSync(`${work}/state`)].map((entry) => entry.name);
          assert.ok(
            kept.includes("cert.pem") && kept.includes("key.pem"),
            `the state directory holds ${kept}`,
          );
        } finally {
          await echo.close();
          await Deno.remove(work, { recursive: true });
        }
      },
    );

    await t.step(
      "register --dry-run through the launcher starts the launcher, and systemd accepts the unit",
      async () => {
        const config = `${prefix}/server.toml`;
        await Deno.writeTextFile(config, `[server]\nbind_port = 8443\nauth_key = "${PROCESS_AUTH_KEY}"\n`, {
          mode: 0o600,
        });
        const result = await launch(launcher, ["register", "server", "-c", config, "--dry-run"], prefix);
        assert.equal(result.code, 0, result.stderr);
        assert.match(result.stdout, new RegExp(`^ExecStart=${launcher} server -c ${config}$`, "m"));
        assert.match(result.stdout, /^Environment=DENO_DIR=%C\/tls-tunnel\/deno$/m);
        // Deno, the bundle and the config are outside home folders here: homes are hidden from the service.
        assert.match(result.stdout, /^ProtectHome=yes$/m);
        assert.deepEqual(await verifyUnit(prefix, "tls-tunnel-server.service", result.stdout), []);
      },
    );

    await t.step("--bundle installs a given bundle without building one", async () => {
      const second = `${prefix}/second`;
      const copied = await install([
        "--prefix",
        second,
        "--bundle",
        `${prefix}/lib/tls-tunnel/tls-tunnel.js`,
      ]);
      assert.equal(copied.code, 0, copied.log);
      assert.doesNotMatch(copied.log, /building the bundle/);
      const version = await launch(`${second}/bin/tls-tunnel`, ["version"], prefix);
      assert.equal(version.code, 0, version.stderr);
      assert.match(version.stdout, /^tls-tunnel /);
    });

    await t.step("a bad argument or a missing bundle stops the installer with a message", async () => {
      const bad = await install(["--prefix", `${prefix}/third`, "--frobnicate"]);
      assert.equal(bad.code, 1);
      assert.match(bad.log, /unknown argument '--frobnicate'/);
      const missing = await install(["--prefix", `${prefix}/third`, "--bundle", `${prefix}/nope.js`]);
      assert.equal(missing.code, 1);
      assert.match(missing.log, /--bundle .*nope\.js is not a file/);
    });
  } finally {
    await Deno.remove(prefix, { recursive: true });
  }
});

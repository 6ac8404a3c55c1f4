/**
 * The ways the program is shipped and first run: `deno task demo` as a user runs it, and the single-file
 * bundle (`deno task bundle`). `deno compile` needs to download Deno's runtime, which CI cannot, so its
 * arguments are checked here and the executable is built by `deno task compile:all` where online.
 */

import assert from "node:assert/strict";
import { CliProcess, freePort, PROJECT_ROOT } from "../testing/helpers.ts";
import { echoThrough, ProcessTunnel, proxyUp } from "../testing/process_tunnel.ts";
import {
  buildBundle,
  bundleArgs,
  compileArgs,
  RUNTIME_PERMISSIONS,
  TARGETS,
} from "../scripts/compile_all.ts";

Deno.test("demo serves a page through the tunnel and stops cleanly on SIGINT", async () => {
  const demo = new CliProcess(["demo"]);
  try {
    const deadline = Date.now() + 20_000;
    while (!/Fetched through the tunnel: HTTP 200/.test(demo.stdout)) {
      assert.ok(!demo.exited, `demo exited early:\n${demo.output}`);
      assert.ok(Date.now() < deadline, `demo did not fetch through the tunnel:\n${demo.output}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const url = demo.stdout.match(/Tunnel demo is up: (http:\/\/127\.0\.0\.1:\d+\/)/)?.[1];
    assert.ok(url, demo.output);
    const response = await fetch(url);
    assert.match(await response.text(), /Hello from the local service behind the tunnel/);
    demo.kill("SIGINT");
    const status = await demo.status();
    assert.equal(status.code, 0, demo.output);
  } finally {
    await demo.stop();
  }
});

Deno.test("deno task bundle runs the bundle arguments the tests and the bench use", async () => {
  const config = JSON.parse(await Deno.readTextFile(`${PROJECT_ROOT}/deno.json`)) as {
    tasks: Record<string, string>;
  };
  assert.equal(config.tasks.bundle, `deno ${bundleArgs("dist/tls-tunnel.js").join(" ")}`);
});

Deno.test("the single-file bundle runs the CLI and carries a tunnel as server and client", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tls-tunnel-bundle-" });
  try {
    const bundlePath = `${dir}/tls-tunnel.js`;
    await buildBundle(bundlePath, PROJECT_ROOT);
    const run = (args: string[]) =>
      new Deno.Command(Deno.execPath(), {
        args: ["run", ...RUNTIME_PERMISSIONS, bundlePath, ...args],
        cwd: PROJECT_ROOT,
        stdout: "piped",
        stderr: "piped",
      }).output();
    const version = await run(["version"]);
    assert.ok(version.success);
    assert.match(new TextDecoder().decode(version.stdout), /^tls-tunnel \d+\.\d+\.\d+ \(protocol 1, deno /);
    const check = await run(["check", "-c", "examples/server.toml"]);
    assert.equal(
      check.code,
      0,
      new TextDecoder().decode(check.stderr) + new TextDecoder().decode(check.stdout),
    );

    // The bundle is the whole program: a server and a client both run from it carry traffic.
    await using tunnel = await ProcessTunnel.create("", { entry: bundlePath });
    const publishPort = freePort();
    await tunnel.server();
    const client = tunnel.client(await tunnel.clientConfig("client", [{ name: "web", publishPort }]));
    await client.waitForLine(proxyUp("web"));
    assert.equal(await echoThrough(publishPort, "through the bundle"), "through the bundle");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("compile targets cover Linux, macOS and Windows with the narrow permissions", () => {
  const targets = TARGETS.map((entry) => entry.target);
  for (const os of ["linux", "apple-darwin", "windows"]) {
    assert.ok(targets.some((target) => target.includes(os)), `no ${os} target`);
  }
  const args = compileArgs("x86_64-unknown-linux-gnu", "tls-tunnel-x86_64-linux");
  assert.deepEqual(args.slice(-5), [
    "--target",
    "x86_64-unknown-linux-gnu",
    "-o",
    "dist/tls-tunnel-x86_64-linux",
    "main.ts",
  ]);
  assert.ok(!args.includes("--allow-all") && !args.includes("-A"));
  assert.ok(!args.includes("--allow-run"), "the tunnel never runs programs");
});

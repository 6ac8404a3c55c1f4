/**
 * What cannot run here (GitHub Actions, Docker) is checked for agreement with what does: the workflows,
 * the Dockerfile, the compose example and the installer use the Deno version `.ci/run` pins, the targets and
 * permissions of scripts/compile_all.ts, the bundle arguments of `deno task bundle`, and the permissions
 * of `deno task server` / `deno task client`. The YAML files are read with a maintained parser (`yaml`).
 */

import assert from "node:assert/strict";
import { parse as parseYaml } from "yaml";
import { bundleArgs, compileArgs, RUNTIME_PERMISSIONS, TARGETS } from "../scripts/compile_all.ts";
import { parseConfigText } from "../lib/config/mod.ts";
import { SERVICE_PERMISSIONS } from "../lib/cli/register.ts";

type Yaml = Record<string, unknown>;

const PROJECT_ROOT = new URL("../", import.meta.url).pathname;

async function readText(path: string): Promise<string> {
  return await Deno.readTextFile(`${PROJECT_ROOT}${path}`);
}

async function readYaml(path: string): Promise<Yaml> {
  // `merge`: compose files share settings with `<<: *anchor`, as Docker Compose reads them.
  const document: unknown = parseYaml(await readText(path), { merge: true });
  assert.ok(isRecord(document), `${path} is not a YAML mapping`);
  return document;
}

function isRecord(value: unknown): value is Yaml {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function record(value: unknown, what: string): Yaml {
  assert.ok(isRecord(value), `${what} is not a mapping: ${JSON.stringify(value)}`);
  return value;
}

function list(value: unknown, what: string): unknown[] {
  assert.ok(Array.isArray(value), `${what} is not a list: ${JSON.stringify(value)}`);
  return value;
}

/** The Deno version .ci/run pins. */
async function pinnedDeno(): Promise<string> {
  const version = (await readText(".ci/run")).match(/^DENO_VERSION="([0-9.]+)"$/m)?.[1];
  assert.ok(version, ".ci/run pins no DENO_VERSION");
  return version;
}

async function tasks(): Promise<Record<string, string>> {
  const config = JSON.parse(await readText("deno.json")) as { tasks: Record<string, string> };
  return config.tasks;
}

/** The `--allow-*` flags of a command line, sorted. */
function permissionsOf(commandLine: string | string[]): string[] {
  const words = typeof commandLine === "string" ? commandLine.split(/\s+/) : commandLine;
  return words.filter((word) => word.startsWith("--allow-")).sort();
}

/** Every `run:` of a job's steps, with `${{ matrix.X }}` replaced from `matrix`. */
function runsOf(job: Yaml, matrix: Record<string, string> = {}): string[] {
  return list(job.steps, "steps").flatMap((step) => {
    const run = record(step, "step").run;
    if (typeof run !== "string") return [];
    return [
      run.replace(/\$\{\{\s*matrix\.(\w+)\s*\}\}/g, (_, key: string) => matrix[key] ?? `<no matrix.${key}>`)
        .replace(/\s+/g, " ").trim(),
    ];
  });
}

Deno.test("ci.yml runs .ci/run on pushes and pull requests with read-only permissions", async () => {
  const workflow = await readYaml(".github/workflows/ci.yml");
  const on = record(workflow.on, "on");
  assert.ok("push" in on && "pull_request" in on, "ci runs on push and pull_request");
  assert.deepEqual(workflow.permissions, { contents: "read" });
  const jobs = Object.values(record(workflow.jobs, "jobs")).map((job) => record(job, "job"));
  const runs = jobs.flatMap((job) => runsOf(job));
  assert.ok(runs.some((run) => /\bbash \.ci\/run$/.test(run)), `no step runs .ci/run: ${runs.join(" | ")}`);
  for (const job of jobs) {
    assert.ok(Number(job["timeout-minutes"]) <= 90, "a CI job must stop within CI's 90 minutes");
  }
});

Deno.test("release.yml builds every compile_all.ts target and the bundle, with sums, on tags", async () => {
  const workflow = await readYaml(".github/workflows/release.yml");
  const tags = list(record(record(workflow.on, "on").push, "on.push").tags, "on.push.tags");
  assert.deepEqual(tags, ["v*"]);
  assert.deepEqual(workflow.permissions, { contents: "read" }, "only the release job may write");
  assert.equal(record(workflow.env, "env").DENO_VERSION, await pinnedDeno());
  const jobs = record(workflow.jobs, "jobs");

  const compile = record(jobs.compile, "jobs.compile");
  const include = list(record(record(compile.strategy, "strategy").matrix, "matrix").include, "include")
    .map((entry) => record(entry, "matrix entry") as Record<string, string>);
  assert.deepEqual(
    include.map(({ target, output }) => ({ target, output })),
    TARGETS.map(({ target, output }) => ({ target, output })),
    "the matrix must list scripts/compile_all.ts's TARGETS",
  );
  for (const entry of include) {
    const runs = runsOf(compile, entry);
    const expected = `deno ${compileArgs(entry.target ?? "", entry.output ?? "").join(" ")}`;
    assert.ok(runs.includes(expected), `no step runs \`${expected}\`:\n${runs.join("\n")}`);
    assert.deepEqual(permissionsOf(expected), [...RUNTIME_PERMISSIONS].sort());
  }

  const bundle = record(jobs.bundle, "jobs.bundle");
  const bundleTask = (await tasks()).bundle;
  assert.equal(bundleTask, `deno ${bundleArgs("dist/tls-tunnel.js").join(" ")}`);
  const bundleRuns = runsOf(bundle);
  assert.ok(bundleRuns.includes(bundleTask), `the bundle job does not run \`${bundleTask}\``);
  const smoke = bundleRuns.find((run) => run.includes("dist/tls-tunnel.js version"));
  assert.ok(smoke, "the bundle job runs the bundle once");
  assert.deepEqual(permissionsOf(smoke), permissionsOf((await tasks()).server ?? ""));
  for (const job of [bundle, compile]) {
    assert.ok(runsOf(job).includes('npm install -g "deno@${DENO_VERSION}"'), "jobs install the pinned Deno");
  }

  const release = record(jobs.release, "jobs.release");
  assert.deepEqual(release.permissions, { contents: "write" });
  assert.deepEqual(release.needs, ["bundle", "compile"]);
  const releaseRuns = runsOf(release);
  assert.ok(
    releaseRuns.includes("sha256sum tls-tunnel.js tls-tunnel-* > SHA256SUMS && cat SHA256SUMS"),
    "SHA256SUMS covers the bundle and every executable",
  );
  assert.ok(releaseRuns.some((run) => run.startsWith('gh release create "$GITHUB_REF_NAME" dist/*')));
});

/** A Dockerfile's instructions, continuation lines joined, comments dropped. */
function dockerInstructions(text: string): Array<{ instruction: string; args: string; stage: string }> {
  const result: Array<{ instruction: string; args: string; stage: string }> = [];
  let stage = "";
  const logical = text.replace(/\\\n\s*/g, " ").split("\n").map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"));
  for (const line of logical) {
    const [instruction = "", ...rest] = line.split(/\s+/);
    const args = rest.join(" ");
    if (instruction.toUpperCase() === "FROM") stage = args.match(/\bAS\s+(\S+)$/i)?.[1] ?? "";
    result.push({ instruction: instruction.toUpperCase(), args, stage });
  }
  return result;
}

Deno.test("the Dockerfile bundles on the pinned Deno image and runs as non-root with the task permissions", async () => {
  const instructions = dockerInstructions(await readText("Dockerfile"));
  const pin = await pinnedDeno();
  assert.ok(instructions.some((i) => i.instruction === "ARG" && i.args === `DENO_VERSION=${pin}`));
  const froms = instructions.filter((i) => i.instruction === "FROM").map((i) => i.args.split(/\s+/)[0]);
  for (const image of froms) {
    assert.ok(
      image === "denoland/deno:${DENO_VERSION}" || image === "runtime",
      `${image} is not the official Deno image at the pinned version`,
    );
  }
  const bundleTask = (await tasks()).bundle ?? "";
  const bundleRun = instructions.find((i) => i.instruction === "RUN" && i.args.startsWith("deno bundle"));
  assert.equal(bundleRun?.args, bundleTask.replace("dist/tls-tunnel.js", "/tls-tunnel.js"));

  const runtime = instructions.filter((i) => i.stage === "runtime");
  assert.deepEqual(runtime.filter((i) => i.instruction === "USER").map((i) => i.args), ["deno"]);
  const entrypoint = runtime.find((i) => i.instruction === "ENTRYPOINT");
  assert.ok(entrypoint, "the runtime stage has an ENTRYPOINT");
  const words = JSON.parse(entrypoint.args) as string[];
  assert.deepEqual(words.slice(0, 2), ["deno", "run"]);
  assert.equal(words.at(-1), "/app/tls-tunnel.js");
  // The tasks' permissions, plus writing to the state directory only (a config-less server keeps its
  // certificate there): the one volume, $XDG_STATE_HOME/tls-tunnel.
  const stateDir = "/var/lib/tls-tunnel";
  const narrow = permissionsOf(words).filter((flag) => flag !== `--allow-write=${stateDir}`);
  assert.equal(
    narrow.length,
    permissionsOf(words).length - 1,
    "the entrypoint may write the state directory",
  );
  assert.deepEqual(narrow, permissionsOf((await tasks()).server ?? ""));
  assert.deepEqual(narrow, permissionsOf((await tasks()).client ?? ""));
  const env = runtime.filter((i) => i.instruction === "ENV").map((i) => i.args).join(" ");
  assert.match(env, /\bXDG_STATE_HOME=\/var\/lib\b/);
  assert.ok(runtime.some((i) => i.instruction === "VOLUME" && JSON.parse(i.args)[0] === stateDir));

  for (const role of ["server", "client"]) {
    const cmd = instructions.find((i) => i.stage === role && i.instruction === "CMD");
    assert.ok(cmd, `no ${role} stage with a CMD`);
    assert.deepEqual(JSON.parse(cmd.args), [role, "-c", `/etc/tls-tunnel/${role}.toml`]);
  }
  // `docker build .` without --target gives the server.
  assert.equal(instructions.at(-1)?.stage, "server");
});

Deno.test("the compose example's configs load and agree with its certificates, ports and images", async () => {
  const compose = await readYaml("compose.yaml");
  const services = record(compose.services, "services");
  for (const name of ["certs", "server", "client", "web"]) assert.ok(name in services, `no ${name} service`);
  const server = record(services.server, "server");
  const client = record(services.client, "client");
  assert.equal(record(server.build, "server.build").target, "server");
  assert.equal(record(client.build, "client.build").target, "client");
  assert.deepEqual(server.command, ["server", "-c", "/etc/tls-tunnel/server.toml"]);
  assert.deepEqual(client.command, ["client", "-c", "/etc/tls-tunnel/client.toml"]);

  const configs = record(compose.configs, "configs");
  const env = { TLS_TUNNEL_AUTH_KEY: "compose-test-key-0123456789" };
  const content = (name: string) => String(record(configs[name], `configs.${name}`).content);
  const serverConfig = parseConfigText(content("server"), { sourceName: "compose server", env });
  const clientConfig = parseConfigText(content("client"), { sourceName: "compose client", env });
  assert.ok(serverConfig.kind === "server" && clientConfig.kind === "client");
  assert.deepEqual(
    list(server.configs, "server.configs").map((entry) => record(entry, "config").target),
    ["/etc/tls-tunnel/server.toml"],
  );

  // The certs service writes exactly the files the configs name.
  const certs = list(record(services.certs, "certs").entrypoint, "certs.entrypoint").join(" ");
  assert.match(certs, new RegExp(`--cert-out ${serverConfig.config.certPath}\\b`));
  assert.match(certs, new RegExp(`--key-out ${serverConfig.config.keyPath}\\b`));
  assert.match(certs, new RegExp(`--ca-out ${clientConfig.config.caCertPath}\\b`));
  assert.match(certs, new RegExp(`--alt-names \\S*\\b${clientConfig.config.serverName}\\b`));
  assert.deepEqual(
    permissionsOf(certs.split(/\s+/)),
    permissionsOf([...((await tasks()).server ?? "").split(/\s+/), "--allow-write"])
      .filter((flag) => flag !== "--allow-net" && flag !== "--allow-ffi"),
  );

  // The client reaches the server's container and port, publishes a port the server allows and maps.
  assert.equal(clientConfig.config.serverAddr, "server");
  assert.equal(clientConfig.config.serverPort, serverConfig.config.bindPort);
  const ports = list(server.ports, "server.ports").map(String);
  const proxy = clientConfig.config.proxies[0];
  assert.ok(proxy, "the client publishes one proxy");
  assert.ok(
    ports.some((port) => port.endsWith(`:${proxy.publishPort}`)),
    `port ${proxy.publishPort} not mapped`,
  );
  assert.ok(ports.some((port) => port.endsWith(`:${serverConfig.config.bindPort}`)));
  assert.ok(
    serverConfig.config.allowPorts.some((r) => r.start <= proxy.publishPort && proxy.publishPort <= r.end),
    "the server must allow the published port",
  );
  assert.equal(proxy.localAddr, "web");
});

Deno.test("install.sh pins .ci/run's Deno, bundles as deno task bundle, and launches with the task permissions", async () => {
  const script = await readText("scripts/install.sh");
  assert.match(script, new RegExp(`^DENO_VERSION="${(await pinnedDeno()).replaceAll(".", "\\.")}"$`, "m"));
  const bundleLine = script.split("\n").find((line) => line.includes(" bundle --platform"));
  assert.ok(bundleLine, "install.sh builds a bundle");
  const bundleWords = bundleLine.replace(/.*"\$deno" /, "").replace(/\).*$/, "").replaceAll('"', "").split(
    /\s+/,
  );
  assert.deepEqual(bundleWords.slice(0, bundleArgs("OUT").length), bundleArgs("$staged"));
  const base = script.match(/^permissions="([^"$]+)"$/m)?.[1];
  assert.ok(base, "the launcher has a base permission set");
  assert.deepEqual(permissionsOf(base), permissionsOf((await tasks()).server ?? ""));
  assert.deepEqual(permissionsOf(base), permissionsOf((await tasks()).client ?? ""));
  assert.deepEqual(permissionsOf(base), [...SERVICE_PERMISSIONS].sort());
  // Only the commands that write files may write; only register/unregister may run a program.
  const extras = [...script.matchAll(/^ {2}([a-z|]+)\) permissions="\$permissions ([^"]+)" ;;$/gm)]
    .map((match) => [match[1], match[2]]);
  assert.deepEqual(extras, [
    ["server|cert|template", "--allow-write"],
    ["register|unregister", "--allow-write --allow-run=systemctl"],
  ]);
});

Deno.test("the Dockerfile's build stage bundles from exactly what it copies, and its entrypoint runs the result", async () => {
  // Docker is not here: replay the build stage's COPY and RUN in a temporary folder, then run the bundle
  // with the runtime stage's ENTRYPOINT (its `deno` being this one).
  const instructions = dockerInstructions(await readText("Dockerfile"));
  const build = instructions.filter((i) => i.stage === "build");
  const root = await Deno.makeTempDir({ prefix: "tls-tunnel-docker-build-" });
  try {
    const workdir = `${root}${build.find((i) => i.instruction === "WORKDIR")?.args ?? "/"}`;
    await Deno.mkdir(workdir, { recursive: true });
    for (const copy of build.filter((i) => i.instruction === "COPY")) {
      const words = copy.args.split(/\s+/);
      const destination = words.pop() ?? ".";
      for (const source of words) {
        const cp = await new Deno.Command("cp", {
          args: ["-R", `${PROJECT_ROOT}${source}`, destination],
          cwd: workdir,
        })
          .output();
        assert.ok(cp.success, `COPY ${source} ${destination}: ${new TextDecoder().decode(cp.stderr)}`);
      }
    }
    const run = build.find((i) => i.instruction === "RUN")?.args.split(/\s+/) ?? [];
    assert.equal(run[0], "deno");
    const output = `${root}/tls-tunnel.js`;
    const bundled = await new Deno.Command(Deno.execPath(), {
      args: [...run.slice(1).map((word) => word === "/tls-tunnel.js" ? output : word), "--quiet"],
      cwd: workdir,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(bundled.success, `the build stage's RUN failed: ${new TextDecoder().decode(bundled.stderr)}`);

    const entrypoint = JSON.parse(
      instructions.find((i) => i.instruction === "ENTRYPOINT")?.args ?? "[]",
    ) as string[];
    const args = entrypoint.slice(1).map((word) => word === "/app/tls-tunnel.js" ? output : word);
    const version = await new Deno.Command(Deno.execPath(), {
      args: [...args, "version"],
      cwd: root,
      stdout: "piped",
    })
      .output();
    assert.ok(version.success);
    assert.match(new TextDecoder().decode(version.stdout), /^tls-tunnel \d+\.\d+\.\d+ \(protocol/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

/**
 * README's "Try it" pair, run as written: the block that starts the local service, `deno task server`,
 * `deno task client` and the `curl` is read from README.md, each line runs through `sh` as a user would type
 * it (each long-running line as its own process), and the request must print what the README says it prints.
 * The example configs' fixed ports are used; only when the tunnel port (8443) is taken is it moved, through
 * the documented `TLS_TUNNEL_BIND_PORT` / `TLS_TUNNEL_SERVER_PORT` overrides. The service, published and stats
 * ports have no override: when one of them is taken on this machine the test is skipped and says which.
 *
 * docs/COMING_FROM.md maps other tools' commands and keys to ours: its tls-tunnel column may name only config
 * keys the schemas know, flags the CLI's `--help` lists, and `-R` values the client's parser accepts.
 */

import assert from "node:assert/strict";
import { parseRemoteForward } from "../lib/cli/remote_forward.ts";
import { KNOWN_KEYS } from "../lib/config/schema.ts";
import { canBind, freePort, PROJECT_ROOT, waitFor } from "../testing/helpers.ts";

/** One line of README's block: the command as typed and its trailing `# comment` (empty if none). */
interface ReadmeLine {
  command: string;
  comment: string;
}

/** The fenced `sh` block of README's "## Try it" section that runs `deno task server`. */
function tryItPairBlock(readme: string): ReadmeLine[] {
  const section = readme.split(/^## /m).find((part) => part.startsWith("Try it\n"));
  assert.ok(section, 'README.md has no "## Try it" section');
  const blocks = [...section.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((match) => match[1] ?? "");
  const block = blocks.find((text) => /^deno task server\b/m.test(text));
  assert.ok(block, '"## Try it" has no sh block running `deno task server`');
  return block.split("\n").filter((line) => line.trim() !== "").map((line) => {
    // A comment is set off by at least two spaces, so a `#` inside the command (in quotes) stays part of it.
    const split = line.match(/^(.*?\S)\s{2,}#\s?(.*)$/);
    return split
      ? { command: split[1] ?? "", comment: split[2] ?? "" }
      : { command: line.trim(), comment: "" };
  });
}

/** A README line running in `sh`, its output kept for failure messages. */
class ShellLine {
  readonly #child: Deno.ChildProcess;
  readonly #output: Promise<string>;
  readonly #status: Promise<Deno.CommandStatus>;
  exited = false;

  constructor(readonly command: string, env: Record<string, string>) {
    // `exec`: the signal that stops the line reaches the program itself (`deno task` passes it on).
    this.#child = new Deno.Command("sh", {
      args: ["-c", `exec ${command}`],
      cwd: PROJECT_ROOT,
      env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#status = this.#child.status.then((status) => {
      this.exited = true;
      return status;
    });
    this.#output = Promise.all([
      new Response(this.#child.stdout).text(),
      new Response(this.#child.stderr).text(),
    ]).then(([stdout, stderr]) => stdout + stderr);
  }

  /** SIGTERM, SIGKILL after `graceMs`; resolves with the exit status and everything the line printed. */
  async stop(graceMs = 8000): Promise<{ status: Deno.CommandStatus; output: string }> {
    if (!this.exited) {
      this.#child.kill("SIGTERM");
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([this.#status, new Promise((resolve) => (timer = setTimeout(resolve, graceMs)))]);
      clearTimeout(timer);
      if (!this.exited) this.#child.kill("SIGKILL");
    }
    return { status: await this.#status, output: await this.#output };
  }
}

/** Ports the example pair binds, with what binds them. */
const FIXED_PORTS: ReadonlyArray<[number, string]> = [
  [3000, "the README's local service"],
  [8080, "the port examples/client.toml publishes"],
  [9100, "examples/server.toml's stats_port"],
];
const EXAMPLE_TUNNEL_PORT = 8443;
const busy = FIXED_PORTS.filter(([port]) => !canBind(port));

Deno.test({
  name: "README's Try it pair works as written: local service, deno task server, deno task client, curl",
  ignore: busy.length > 0,
  async fn() {
    const lines = tryItPairBlock(await Deno.readTextFile(`${PROJECT_ROOT}README.md`));
    const request = lines.at(-1);
    assert.ok(
      request && /^curl /.test(request.command),
      `the block ends with a curl: ${JSON.stringify(lines)}`,
    );
    const expected = request.comment.match(/^prints: (.+)$/)?.[1];
    assert.ok(expected, `the curl line says what it prints ("# prints: …"): ${JSON.stringify(request)}`);
    const running = lines.slice(0, -1).map((line) => line.command);
    assert.deepEqual(running.slice(1), ["deno task server", "deno task client"]);

    // `deno` in the lines is this Deno; the tunnel port moves only if 8443 is taken here.
    const path = `${Deno.execPath().replace(/\/[^/]*$/, "")}:${Deno.env.get("PATH") ?? ""}`;
    const env: Record<string, string> = { PATH: path, NO_COLOR: "1" };
    if (!canBind(EXAMPLE_TUNNEL_PORT)) {
      const port = String(freePort());
      Object.assign(env, { TLS_TUNNEL_BIND_PORT: port, TLS_TUNNEL_SERVER_PORT: port });
    }

    const started: ShellLine[] = [];
    let passed = false;
    try {
      for (const command of running) started.push(new ShellLine(command, env));
      let body = "";
      // The client connects and registers on its own time: the request is repeated until it gets through.
      await waitFor(async () => (body = await get(request.command)) !== "", 30_000, request.command, 250);
      assert.equal(body.trimEnd(), expected);
      for (const line of started) assert.equal(line.exited, false, `${line.command} exited early`);
      passed = true;
    } finally {
      const stopped = await Promise.all(
        started.toReversed().map(async (line) => [line, await line.stop()] as const),
      );
      if (!passed) {
        for (const [line, { output }] of stopped) console.error(`--- ${line.command}\n${output}`);
      }
    }
    // Nothing the lines started outlives them: the tunnel, the published and the service port are free again.
    const tunnelPort = Number(env.TLS_TUNNEL_BIND_PORT ?? EXAMPLE_TUNNEL_PORT);
    for (const port of [tunnelPort, ...FIXED_PORTS.map(([port]) => port)]) {
      await waitFor(() => canBind(port), 5000, `port ${port} to be released`, 50);
    }
  },
});

if (busy.length > 0) {
  console.warn(
    `examples_test: skipped, taken on this machine: ${
      busy.map(([port, what]) => `${port} (${what})`).join(", ")
    }`,
  );
}

/**
 * Runs the README's curl line through `sh`; its output, or "" when it failed (nothing listening yet, or the
 * connection reset while the client was still registering). Without curl installed, the same GET by fetch.
 */
async function get(command: string): Promise<string> {
  if (await hasCurl()) {
    const result = await new Deno.Command("sh", {
      args: ["-c", `${command} --max-time 5`],
      cwd: PROJECT_ROOT,
    })
      .output();
    return result.success ? new TextDecoder().decode(result.stdout) : "";
  }
  const url = command.match(/\bhttps?:\/\/\S+/)?.[0];
  assert.ok(url, `no URL in ${command}`);
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(5000) });
    const text = await response.text();
    return response.ok ? text : "";
  } catch {
    return "";
  }
}

let curlFound: boolean | undefined;
async function hasCurl(): Promise<boolean> {
  curlFound ??=
    (await new Deno.Command("sh", { args: ["-c", "command -v curl"], stdout: "null" }).output()).success;
  return curlFound;
}

/** The tls-tunnel column (the second cell) of every table row in `markdown`, with `\\|` unescaped. */
function secondCells(markdown: string): string[] {
  return markdown.split("\n")
    .filter((line) => line.startsWith("|") && !/^\|\s*-+/.test(line))
    .map((line) => line.replaceAll("\\|", "\u0000").split("|")[2]?.replaceAll("\u0000", "|").trim() ?? "")
    .filter((cell) =>
      cell !== "" && cell !== "tls-tunnel" && !/^(server|client)\.toml|this tls-tunnel/.test(cell)
    );
}

/** Every `code span` of `text`. */
function codeSpans(text: string): string[] {
  return [...text.matchAll(/`([^`]+)`/g)].map((match) => match[1] ?? "");
}

Deno.test("docs/COMING_FROM.md maps to config keys, flags and -R forms that exist", async () => {
  const cells = secondCells(await Deno.readTextFile(`${PROJECT_ROOT}docs/COMING_FROM.md`));
  assert.ok(cells.length > 50, `only ${cells.length} table rows found`);
  const spans = cells.flatMap(codeSpans);

  // Config keys: every snake_case word in a code span is a key (or table) of one of the two schemas.
  const known = new Set<string>();
  for (const tables of Object.values(KNOWN_KEYS)) {
    for (const [table, keys] of Object.entries(tables)) {
      keys.forEach((key) => known.add(key));
      table.split(".").forEach((part) => known.add(part));
    }
  }
  const keys = [...new Set(spans.flatMap((span) => span.match(/\b[a-z]+(?:_[a-z]+)+\b/g) ?? []))];
  assert.ok(keys.length > 20, `only ${keys.length} keys found: ${keys.join(", ")}`);
  assert.deepEqual(keys.filter((key) => !known.has(key)), [], "keys the schemas do not know");

  // Flags: each appears in the --help of the program or of one of its commands.
  const commands = ["", "server", "client", "check", "template", "cert", "top", "register", "unregister"];
  const helps = await Promise.all(commands.map(async (command) => {
    const args = [
      "run",
      "--quiet",
      "--allow-all",
      `${PROJECT_ROOT}main.ts`,
      ...(command ? [command] : []),
      "--help",
    ];
    const output = await new Deno.Command(Deno.execPath(), { args, stdout: "piped", stderr: "piped" })
      .output();
    return new TextDecoder().decode(output.stdout);
  }));
  const help = helps.join("\n");
  const flags = [
    ...new Set(spans.flatMap((span) => span.match(/(?<![\w-])(?:--[a-z][a-z-]*|-[a-zA-Z])(?![\w-])/g) ?? [])),
  ];
  assert.ok(flags.includes("--fingerprint") && flags.includes("-R"), `flags found: ${flags.join(" ")}`);
  // Deno's own flags (UDP and QUIC need one) are Deno's --help's, not ours.
  const denoFlags = new Set(["--unstable-net"]);
  const unknownFlags = flags.filter((flag) =>
    !denoFlags.has(flag) && !new RegExp(`(^|[\\s,])${flag}([\\s,]|$)`, "m").test(help)
  );
  assert.deepEqual(unknownFlags, [], "flags no --help lists");

  // -R values: the client's own parser accepts each (… stands for the rest of a value and is skipped).
  const forwards = spans.flatMap((span) => [...span.matchAll(/-R (\S+)/g)].map((match) => match[1] ?? ""))
    .filter((value) => !value.includes("…"));
  assert.ok(forwards.length >= 8, `-R values found: ${forwards.join(" ")}`);
  for (const value of forwards) parseRemoteForward(value);
});

/**
 * Builds one executable per platform with `deno compile` into `dist/` (release artifacts), plus the
 * portable JavaScript bundle. `deno compile` downloads Deno's runtime for each target, so this needs
 * internet access; the bundle does not.
 *
 * Usage: deno run --allow-run --allow-read --allow-write scripts/compile_all.ts [--target TRIPLE ...]
 *
 * @module
 */

/** Targets `deno compile` supports, and the file each produces. */
export const TARGETS: ReadonlyArray<{ target: string; output: string }> = [
  { target: "x86_64-unknown-linux-gnu", output: "tls-tunnel-x86_64-linux" },
  { target: "aarch64-unknown-linux-gnu", output: "tls-tunnel-aarch64-linux" },
  { target: "x86_64-apple-darwin", output: "tls-tunnel-x86_64-macos" },
  { target: "aarch64-apple-darwin", output: "tls-tunnel-aarch64-macos" },
  { target: "x86_64-pc-windows-msvc", output: "tls-tunnel-x86_64-windows.exe" },
];

/**
 * Permissions baked into the executables: the narrowest set the server and client need. `--allow-ffi` is
 * for one call, the TCP reset of a cut outside connection (lib/net/tcp_reset.ts).
 */
export const RUNTIME_PERMISSIONS = [
  "--allow-net",
  "--allow-read",
  "--allow-env",
  "--allow-sys=hostname",
  "--allow-write",
  "--allow-ffi",
];

/**
 * The `deno bundle` arguments that write the single-file bundle to `output` (what `deno task bundle`
 * runs, with `dist/tls-tunnel.js`). Minified: it loads faster and the running server and client take less
 * memory (see docs/PERFORMANCE.md).
 */
export function bundleArgs(output: string): string[] {
  return ["bundle", "--platform", "deno", "--minify", "-o", output, "main.ts"];
}

/**
 * Builds the single-file bundle into `output` (run from the project folder `projectRoot`); throws with
 * deno's message when it fails.
 */
export async function buildBundle(output: string, projectRoot: string | URL = "."): Promise<void> {
  const result = await new Deno.Command(Deno.execPath(), {
    args: [...bundleArgs(output), "--quiet"],
    cwd: projectRoot,
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!result.success) {
    throw new Error(`deno bundle failed: ${new TextDecoder().decode(result.stderr).trim()}`);
  }
}

/** The `deno compile` arguments for one target. */
export function compileArgs(target: string, output: string): string[] {
  return ["compile", ...RUNTIME_PERMISSIONS, "--target", target, "-o", `dist/${output}`, "main.ts"];
}

async function run(args: string[]): Promise<boolean> {
  const status = await new Deno.Command(Deno.execPath(), { args, stdout: "inherit", stderr: "inherit" })
    .output();
  return status.success;
}

if (import.meta.main) {
  const wanted = Deno.args.flatMap((arg, index) => Deno.args[index - 1] === "--target" ? [arg] : []);
  const targets = wanted.length > 0 ? TARGETS.filter((entry) => wanted.includes(entry.target)) : TARGETS;
  await Deno.mkdir("dist", { recursive: true });
  let failed = 0;
  if (!(await run(bundleArgs("dist/tls-tunnel.js")))) failed++;
  for (const { target, output } of targets) {
    console.log(`compiling ${target} → dist/${output}`);
    if (!(await run(compileArgs(target, output)))) failed++;
  }
  if (failed > 0) {
    console.error(
      `${failed} build(s) failed (deno compile needs to download Deno's runtime for each target)`,
    );
    Deno.exit(1);
  }
}

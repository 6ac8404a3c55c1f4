/**
 * systemd's own check of a unit file, for the tests of `tls-tunnel register`: `systemd-analyze verify`
 * (Debian's systemd package; `.ci/run` installs it). Nothing is installed or started.
 *
 * @module
 */

/**
 * Writes `unit` as `name` into `dir` and runs `systemd-analyze verify` on it (`--user` for user units,
 * which need a runtime directory). Returns what systemd said about that file: empty when it is clean.
 * `verify` exits 0 on unknown keys and bad values but names the file in a warning, so either counts.
 *
 * @throws {Error} when systemd-analyze is not installed.
 */
export async function verifyUnit(dir: string, name: string, unit: string, user = false): Promise<string[]> {
  const path = `${dir}/${name}`;
  await Deno.writeTextFile(path, unit);
  const runtime = await Deno.makeTempDir({ dir, prefix: "runtime-" });
  await Deno.chmod(runtime, 0o700);
  let result: Deno.CommandOutput;
  try {
    result = await new Deno.Command("systemd-analyze", {
      args: [...(user ? ["--user"] : []), "verify", path],
      env: { XDG_RUNTIME_DIR: runtime, SYSTEMD_LOG_COLOR: "0" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (error) {
    throw new Error(
      `systemd-analyze is needed here (Debian package systemd; .ci/run installs it): ${String(error)}`,
    );
  }
  const decoder = new TextDecoder();
  const stderr = decoder.decode(result.stderr);
  const problems = (decoder.decode(result.stdout) + stderr).split("\n").filter((line) => line.includes(name));
  if (result.code !== 0) problems.push(`systemd-analyze exited ${result.code}: ${stderr}`);
  return problems;
}

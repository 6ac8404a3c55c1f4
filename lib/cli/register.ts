/**
 * `tls-tunnel register server|client -c FILE` and `unregister`: a hardened systemd unit that runs the
 * server or the client with that config, as the Rust tls-tunnel's `register` does, plus a sandbox: the unit
 * sees the file system read-only except its state and cache directories, gets no capability at all unless
 * the config binds a port below 1024 (then only `CAP_NET_BIND_SERVICE`), and restarts on failure.
 *
 * `--dry-run` prints the unit and what would be done; otherwise the unit is written to
 * `/etc/systemd/system` (or `~/.config/systemd/user` with `--user`) and `systemctl daemon-reload` and
 * `systemctl enable --now` run.
 *
 * @module
 */

import { ConfigError, loadConfig, type ParsedConfig, type PortRange } from "../config/mod.ts";
import { VERSION } from "../version.ts";
import { type CommandOutput, processOutput } from "./_command_output.ts";
import { errorMessage } from "../text.ts";

/** The role a unit runs. */
export type ServiceRole = "server" | "client";

/**
 * The permissions the unit passes to `deno run` when tls-tunnel runs from source or from a bundle without
 * the launcher: those of `deno task server` / `deno task client`.
 */
export const SERVICE_PERMISSIONS: readonly string[] = [
  "--allow-net",
  "--allow-read",
  "--allow-env",
  "--allow-sys=hostname",
  "--allow-ffi",
];

/** The environment variable the launcher `scripts/install.sh` writes sets to its own absolute path. */
export const LAUNCHER_ENV = "TLS_TUNNEL_LAUNCHER";

/** A problem that stops `register`/`unregister`, with what to do about it. */
export class RegisterError extends Error {
  /** @param message what failed, with the value and what to do. */
  constructor(message: string) {
    super(message);
    this.name = "RegisterError";
  }
}

/** Everything a unit is rendered from. */
export interface UnitSpec {
  /** Server or client. */
  role: ServiceRole;
  /** Absolute path of the config file. */
  configPath: string;
  /** A user unit (`systemctl --user`) rather than a system one. */
  user: boolean;
  /** The program and arguments that come before `server|client -c FILE`. */
  command: string[];
  /** System units: the account the service runs as; absent → root, with the capability set below. */
  runAs?: string;
  /** Why the service must bind a port below 1024 (config keys and values); empty → no capability. */
  lowPorts: string[];
  /** More files the service reads (certificates, keys), made read-only; missing ones are ignored. */
  readOnlyFiles: string[];
  /** "yes" hides /home, /root and /run/user; "read-only" when the program or a file lives there. */
  protectHome: "yes" | "read-only";
  /** Point Deno's cache at the unit's cache directory (not for source checkouts, whose npm cache is elsewhere). */
  ownDenoDir: boolean;
}

/** Ports below this need `CAP_NET_BIND_SERVICE` to bind. */
const FIRST_UNPRIVILEGED_PORT = 1024;

function lowRange(ranges: PortRange[]): PortRange | undefined {
  return ranges.find((range) => range.start < FIRST_UNPRIVILEGED_PORT);
}

function rangeText(range: PortRange): string {
  return range.start === range.end ? `${range.start}` : `${range.start}-${range.end}`;
}

/**
 * The ports below 1024 a config makes the process bind, as `key = value` texts: the server's tunnel port,
 * its stats port and the ports its clients may publish (the server binds those); the client's stats port.
 */
export function lowPortReasons(parsed: ParsedConfig): string[] {
  const reasons: string[] = [];
  const low = (port: number | undefined) => port !== undefined && port > 0 && port < FIRST_UNPRIVILEGED_PORT;
  if (parsed.kind === "server") {
    const config = parsed.config;
    if (low(config.bindPort)) reasons.push(`server.bind_port = ${config.bindPort}`);
    if (low(config.statsPort)) reasons.push(`server.stats_port = ${config.statsPort}`);
    const shared = lowRange(config.allowPorts);
    if (shared && config.authKey !== undefined) {
      reasons.push(`server.allow_ports includes ${rangeText(shared)}`);
    }
    for (const client of config.clients) {
      const range = lowRange(client.allowPorts);
      if (range) reasons.push(`server.clients "${client.name}" allow_ports includes ${rangeText(range)}`);
    }
  } else if (low(parsed.config.statsPort)) {
    reasons.push(`client.stats_port = ${parsed.config.statsPort}`);
  }
  return reasons;
}

/**
 * One word of a systemd command line or path list: specifiers (`%`) and variables (`$`) escaped, quoted
 * when it holds white space or quotes.
 *
 * @throws {RegisterError} for control characters, which no unit file can carry.
 */
export function systemdWord(word: string): string {
  // deno-lint-ignore no-control-regex
  if (/[\x00-\x1f\x7f]/.test(word)) {
    throw new RegisterError(
      `cannot put ${JSON.stringify(word)} into a systemd unit: it holds a control character; rename the file`,
    );
  }
  const escaped = word.replaceAll("%", "%%").replaceAll("$", "$$$$");
  if (escaped !== "" && !/[\s"'\\]/.test(escaped)) return escaped;
  return `"${escaped.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
}

/** The unit's name without `.service`: `tls-tunnel-server` or `tls-tunnel-client` unless `--name` says. */
export function unitName(role: ServiceRole, name?: string): string {
  const chosen = name ?? `tls-tunnel-${role}`;
  if (!/^[A-Za-z0-9:_.@-]{1,200}$/.test(chosen) || chosen.endsWith(".service")) {
    throw new RegisterError(
      `--name '${chosen}' is not a usable unit name: use letters, digits and ":_.@-", without ".service"`,
    );
  }
  return chosen;
}

/** Renders the unit file. */
export function renderUnit(spec: UnitSpec): string {
  const execStart = [...spec.command, spec.role, "-c", spec.configPath].map(systemdWord).join(" ");
  const workingDirectory = spec.configPath.slice(0, spec.configPath.lastIndexOf("/")) || "/";
  const lines = [
    `# tls-tunnel ${spec.role}, written by \`tls-tunnel register ${spec.role}\` (tls-tunnel ${VERSION}).`,
    `# Remove with \`tls-tunnel unregister ${spec.role}${spec.user ? " --user" : ""}\`.`,
    "[Unit]",
    `Description=tls-tunnel ${spec.role} (${spec.configPath.replaceAll("%", "%%")})`,
  ];
  // The user manager has no network-online.target of its own; a system unit waits for the network.
  if (!spec.user) lines.push("Wants=network-online.target", "After=network-online.target");
  lines.push(
    "StartLimitIntervalSec=300",
    "StartLimitBurst=10",
    "",
    "[Service]",
    "Type=exec",
    `ExecStart=${execStart}`,
    // `systemctl reload` applies a changed config without a restart (README "Reload").
    "ExecReload=/bin/kill -HUP $MAINPID",
    "Restart=on-failure",
    "RestartSec=5",
  );
  if (!spec.user && spec.runAs !== undefined) lines.push(`User=${systemdWord(spec.runAs)}`);
  lines.push(
    // Relative paths in the config (cert_path…) are resolved from the config's folder, as when run by hand
    // from there.
    `WorkingDirectory=${systemdWord(workingDirectory)}`,
    // The state directory keeps what the program generates (a server's certificate and key).
    "StateDirectory=tls-tunnel",
    "StateDirectoryMode=0700",
    "CacheDirectory=tls-tunnel",
    "Environment=XDG_STATE_HOME=%S",
    "Environment=DENO_NO_UPDATE_CHECK=1",
  );
  if (spec.ownDenoDir) lines.push("Environment=DENO_DIR=%C/tls-tunnel/deno");
  lines.push(
    "UMask=0077",
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    `ProtectHome=${spec.protectHome}`,
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectKernelLogs=yes",
    "ProtectControlGroups=yes",
    "ProtectClock=yes",
    "ProtectHostname=yes",
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces=yes",
    "RestrictRealtime=yes",
    "RestrictSUIDSGID=yes",
    "LockPersonality=yes",
    "SystemCallArchitectures=native",
    `ReadOnlyPaths=${systemdWord(spec.configPath)}`,
  );
  for (const file of spec.readOnlyFiles) lines.push(`ReadOnlyPaths=-${systemdWord(file)}`);
  if (spec.lowPorts.length > 0) {
    lines.push(
      `# Ports below 1024: ${spec.lowPorts.join("; ")}.`,
      "AmbientCapabilities=CAP_NET_BIND_SERVICE",
      "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
    );
  } else {
    lines.push("# No port below 1024 is configured: no capability at all.", "CapabilityBoundingSet=");
  }
  lines.push("", "[Install]", `WantedBy=${spec.user ? "default.target" : "multi-user.target"}`, "");
  return lines.join("\n");
}

/** Runs `systemctl` with these arguments; resolves to its exit code and error text. */
export type SystemctlRunner = (args: string[]) => Promise<{ code: number; stderr: string }>;

/** The real `systemctl` (needs `--allow-run=systemctl`). */
export const runSystemctl: SystemctlRunner = async (args) => {
  const result = await new Deno.Command("systemctl", { args, stdout: "null", stderr: "piped" }).output();
  return { code: result.code, stderr: new TextDecoder().decode(result.stderr).trim() };
};

/** Options of {@linkcode registerCommand}. */
export interface RegisterOptions {
  /** Server or client (checked: anything else is a usage error). */
  role: string;
  /** The config file (`-c`), relative to the current folder or starting with `~/`. */
  configPath: string;
  /** A user unit. */
  user?: boolean;
  /** Print instead of installing. */
  dryRun?: boolean;
  /** Unit name without `.service`. */
  name?: string;
  /** System units: the account to run as (default: the config file's owner; root keeps root). */
  runAs?: string;
  /** The tls-tunnel program to start (default: the launcher, the compiled executable, or deno + this module). */
  exec?: string;
  /** Where units go (default /etc/systemd/system or ~/.config/systemd/user); tests pass a temporary folder. */
  unitDirectory?: string;
  /** Runs systemctl; tests pass a recorder. */
  systemctl?: SystemctlRunner;
}

/** The options commander hands `register` (main.ts). */
export interface RegisterCliOptions {
  /** `-c, --config`. */
  config: string;
  /** `--user`. */
  user?: boolean;
  /** `--dry-run`. */
  dryRun?: boolean;
  /** `--name`. */
  name?: string;
  /** `--run-as`. */
  runAs?: string;
  /** `--exec`. */
  exec?: string;
}

function checkRole(role: string): ServiceRole {
  if (role === "server" || role === "client") return role;
  throw new RegisterError(`the role must be 'server' or 'client' (got '${role}')`);
}

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined; // Without --allow-env the defaults apply.
  }
}

function absolutePath(path: string): string {
  let expanded = path;
  if (path === "~" || path.startsWith("~/")) {
    const home = env("HOME");
    if (!home) {
      throw new RegisterError(`cannot expand '~' in ${path}: HOME is not set; give an absolute path`);
    }
    expanded = home + path.slice(1);
  }
  const joined = expanded.startsWith("/") ? expanded : `${Deno.cwd()}/${expanded}`;
  const parts: string[] = [];
  for (const part of joined.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") parts.pop();
    else parts.push(part);
  }
  return `/${parts.join("/")}`;
}

function unitDirectory(options: RegisterOptions): string {
  if (options.unitDirectory !== undefined) return options.unitDirectory;
  if (!options.user) return "/etc/systemd/system";
  const configHome = env("XDG_CONFIG_HOME") ?? (env("HOME") ? `${env("HOME")}/.config` : undefined);
  if (!configHome) {
    throw new RegisterError("--user needs HOME or XDG_CONFIG_HOME to find ~/.config/systemd/user");
  }
  return `${configHome}/systemd/user`;
}

/** The program the unit starts, up to (not including) `server|client`. */
async function serviceCommand(exec: string | undefined): Promise<{ command: string[]; fromSource: boolean }> {
  const launcher = exec ?? env(LAUNCHER_ENV);
  if (launcher !== undefined) {
    const path = absolutePath(launcher);
    const info = await Deno.stat(path).catch(() => null);
    if (!info?.isFile) {
      throw new RegisterError(
        `the program to start, ${path}, is not a file: pass --exec with a tls-tunnel path`,
      );
    }
    return { command: [path], fromSource: false };
  }
  if (Deno.build.standalone) return { command: [Deno.execPath()], fromSource: false };
  const main = new URL(Deno.mainModule);
  if (main.protocol !== "file:") {
    throw new RegisterError(`cannot start ${Deno.mainModule} from a unit: install tls-tunnel or pass --exec`);
  }
  const modulePath = decodeURIComponent(main.pathname);
  return {
    command: [Deno.execPath(), "run", ...SERVICE_PERMISSIONS, modulePath],
    fromSource: modulePath.endsWith(".ts"),
  };
}

/** The name of the account with this uid in /etc/passwd, or the number itself (systemd takes both). */
async function accountName(uid: number): Promise<string> {
  const passwd = await Deno.readTextFile("/etc/passwd").catch(() => "");
  for (const line of passwd.split("\n")) {
    const [name, , id] = line.split(":");
    if (name && id === String(uid)) return name;
  }
  return String(uid);
}

const HOME_TREES = ["/home/", "/root/", "/run/user/"];

/** Builds the unit for `options` (reads the config; writes nothing). */
export async function buildUnit(options: RegisterOptions): Promise<{ name: string; spec: UnitSpec }> {
  const role = checkRole(options.role);
  const name = unitName(role, options.name);
  const configPath = absolutePath(options.configPath);
  // The service will not see this shell's TLS_TUNNEL_* variables: read the file as it will.
  const parsed = await loadConfig(configPath, { env: {} });
  if (parsed.kind !== role) {
    throw new RegisterError(
      `${configPath} is a ${parsed.kind} config: run \`tls-tunnel register ${parsed.kind} -c ${configPath}\``,
    );
  }
  const configDir = configPath.slice(0, configPath.lastIndexOf("/")) || "/";
  const files = parsed.kind === "server"
    ? [parsed.config.certPath, parsed.config.keyPath]
    : [parsed.config.caCertPath];
  const readOnlyFiles = files.filter((file): file is string => file !== undefined)
    .map((file) => file.startsWith("/") ? file : absolutePath(`${configDir}/${file}`));
  const { command, fromSource } = await serviceCommand(options.exec);
  if (options.user && options.runAs !== undefined) {
    throw new RegisterError("--run-as is for system units; a --user unit runs as the user who registers it");
  }
  let runAs = options.runAs;
  if (!options.user && runAs === undefined) {
    const owner = (await Deno.stat(configPath)).uid;
    if (owner !== null && owner !== 0) runAs = await accountName(owner);
  }
  if (runAs === "nobody") {
    // systemd warns that "nobody" is shared by unrelated services: whatever one may touch, all may.
    throw new RegisterError(
      "--run-as nobody is shared by unrelated services: create an account for the tunnel " +
        "(`useradd --system --no-create-home tls-tunnel`) and pass --run-as tls-tunnel",
    );
  }
  // A source checkout reads Deno's npm cache from the home folder; a launcher runs this Deno and module,
  // which may live in one too (a user's ~/.deno, an install under ~/.local).
  const mainModule = new URL(Deno.mainModule);
  const programs = [
    ...command,
    Deno.execPath(),
    ...(mainModule.protocol === "file:" ? [decodeURIComponent(mainModule.pathname)] : []),
  ];
  const usesHome = options.user || fromSource ||
    [...programs, configPath, ...readOnlyFiles].some((path) =>
      HOME_TREES.some((tree) => path.startsWith(tree))
    );
  return {
    name,
    spec: {
      role,
      configPath,
      user: options.user ?? false,
      command,
      ...(runAs !== undefined ? { runAs } : {}),
      lowPorts: lowPortReasons(parsed),
      readOnlyFiles,
      protectHome: usesHome ? "read-only" : "yes",
      ownDenoDir: !fromSource,
    },
  };
}

function reportError(error: unknown, io: CommandOutput): number {
  if (error instanceof ConfigError || error instanceof RegisterError) {
    io.err(error instanceof RegisterError ? `tls-tunnel: ${error.message}` : error.message);
    return 1;
  }
  throw error;
}

async function systemctl(
  options: { user?: boolean; systemctl?: SystemctlRunner },
  args: string[],
  io: CommandOutput,
): Promise<boolean> {
  const full = options.user ? ["--user", ...args] : args;
  const result = await (options.systemctl ?? runSystemctl)(full).catch((error: unknown) => ({
    code: -1,
    stderr: errorMessage(error),
  }));
  if (result.code === 0) {
    io.err(`ran: systemctl ${full.join(" ")}`);
    return true;
  }
  io.err(`tls-tunnel: \`systemctl ${full.join(" ")}\` failed (exit ${result.code}): ${result.stderr}`);
  return false;
}

/**
 * `register`: prints (`--dry-run`) or installs and starts the unit.
 *
 * @returns 0 on success, 1 on an invalid config, a failed write or a failed systemctl, 2 on a bad role.
 */
export async function registerCommand(
  options: RegisterOptions,
  io: CommandOutput = processOutput,
): Promise<number> {
  if (options.role !== "server" && options.role !== "client") {
    io.err(`tls-tunnel: register takes 'server' or 'client' (got '${options.role}')`);
    return 2;
  }
  let unit: { name: string; spec: UnitSpec };
  let directory: string;
  try {
    unit = await buildUnit(options);
    directory = unitDirectory(options);
  } catch (error) {
    return reportError(error, io);
  }
  const text = renderUnit(unit.spec);
  const path = `${directory}/${unit.name}.service`;
  const ctl = options.user ? "systemctl --user" : "systemctl";
  if (options.dryRun) {
    io.out(text.trimEnd());
    io.err(
      `dry run: would write ${path}, then run \`${ctl} daemon-reload\` and \`${ctl} enable --now ${unit.name}\``,
    );
    return 0;
  }
  try {
    await Deno.mkdir(directory, { recursive: true });
    await Deno.writeTextFile(path, text, { mode: 0o644 });
  } catch (error) {
    const why = errorMessage(error);
    io.err(
      `tls-tunnel: cannot write ${path}: ${why}; ` +
        (options.user
          ? "check that folder's permissions"
          : "run as root (sudo), or pass --user for a user unit"),
    );
    return 1;
  }
  io.err(`wrote ${path}`);
  if (!await systemctl(options, ["daemon-reload"], io)) return 1;
  if (!await systemctl(options, ["enable", "--now", `${unit.name}.service`], io)) return 1;
  io.err(`${unit.name} is running; logs: journalctl ${options.user ? "--user-unit" : "-u"} ${unit.name} -f`);
  return 0;
}

/** Options of {@linkcode unregisterCommand}. */
export type UnregisterOptions = Pick<
  RegisterOptions,
  "role" | "user" | "dryRun" | "name" | "unitDirectory" | "systemctl"
>;

/**
 * `unregister`: stops and disables the unit, removes its file and reloads systemd.
 *
 * @returns 0 on success, 1 when the unit is not there or a step failed, 2 on a bad role.
 */
export async function unregisterCommand(
  options: UnregisterOptions,
  io: CommandOutput = processOutput,
): Promise<number> {
  if (options.role !== "server" && options.role !== "client") {
    io.err(`tls-tunnel: unregister takes 'server' or 'client' (got '${options.role}')`);
    return 2;
  }
  let name: string;
  let directory: string;
  try {
    name = unitName(options.role, options.name);
    directory = unitDirectory({ ...options, configPath: "" });
  } catch (error) {
    return reportError(error, io);
  }
  const path = `${directory}/${name}.service`;
  const exists = await Deno.stat(path).then((info) => info.isFile, () => false);
  if (!exists) {
    io.err(
      `tls-tunnel: ${path} does not exist: nothing to unregister` +
        (options.user ? "" : " (a user unit? add --user)"),
    );
    return 1;
  }
  const ctl = options.user ? "systemctl --user" : "systemctl";
  if (options.dryRun) {
    io.err(
      `dry run: would run \`${ctl} disable --now ${name}\`, remove ${path}, run \`${ctl} daemon-reload\``,
    );
    return 0;
  }
  if (!await systemctl(options, ["disable", "--now", `${name}.service`], io)) return 1;
  try {
    await Deno.remove(path);
  } catch (error) {
    io.err(`tls-tunnel: cannot remove ${path}: ${errorMessage(error)}`);
    return 1;
  }
  io.err(`removed ${path}`);
  return await systemctl(options, ["daemon-reload"], io) ? 0 : 1;
}

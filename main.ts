/**
 * tls-tunnel's command line: parses arguments and dispatches to `lib/cli/`. The only module that exits
 * the process. SIGINT/SIGTERM abort one `AbortSignal` that every command receives.
 *
 * Exit codes: 0 success, 1 failure (invalid config, fatal error), 2 usage error, 130 interrupted.
 *
 * @module
 */

import { Command, CommanderError, Option } from "commander";
import {
  type CertOptions,
  checkCommand,
  clientCommand,
  DEFAULT_TOP_URL,
  demoCommand,
  type LogFormat,
  type RegisterCliOptions,
  registerCommand,
  serverCommand,
  setupLogging,
  templateCommand,
  topCommand,
  unregisterCommand,
  versionCommand,
  writeOutput,
} from "./lib/cli/mod.ts";
import { VERSION } from "./lib/version.ts";
import {
  type ClientFlags,
  flagsFrom,
  type ParsedRoleOptions,
  type ServerFlags,
} from "./lib/cli/role_setup.ts";

const shutdown = new AbortController();
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  try {
    Deno.addSignalListener(signal, () => {
      // A second signal while the client lets its connections in flight finish: stop at once.
      if (shutdown.signal.aborted) Deno.exit(130);
      shutdown.abort(new Error(`received ${signal}`));
    });
  } catch {
    // Signals are not available on every platform (SIGTERM on Windows); Ctrl-C still ends the process.
  }
}

/**
 * `--log-format` as given, read before commander parses: usage errors and `--help` are printed during
 * parsing, before the preAction hook sets logging up, and must be JSON already when JSON was asked for.
 */
function logFormatFromArgs(args: readonly string[]): LogFormat {
  for (const [index, arg] of args.entries()) {
    if (arg === "--") break;
    const value = arg.startsWith("--log-format=")
      ? arg.slice("--log-format=".length)
      : arg === "--log-format"
      ? args[index + 1]
      : undefined;
    if (value === "json") return "json";
  }
  return "text";
}
await setupLogging({ verbosity: 0, format: logFormatFromArgs(Deno.args) });
if (logFormatFromArgs(Deno.args) === "json") {
  // An error nothing caught would otherwise reach Deno's own plain "error: Uncaught …" report.
  const fatal = (error: unknown) => {
    writeOutput("stderr", {
      level: "fatal",
      text: `tls-tunnel: ${error instanceof Error ? error.message : String(error)}`,
      ...(error instanceof Error ? { properties: { error } } : {}),
    });
    Deno.exit(1);
  };
  globalThis.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    fatal(event.reason);
  });
  globalThis.addEventListener("error", (event) => {
    event.preventDefault();
    fatal(event.error);
  });
}

/** Commander's own text (usage errors, help, version) as one output message each. */
function commanderOutput(stream: "stdout" | "stderr", text: string): void {
  const trimmed = text.trimEnd();
  const usage = /^error: /.test(trimmed);
  writeOutput(stream, {
    level: usage ? "error" : "info",
    text: trimmed,
    message: usage ? trimmed.replace(/^error: /, "") : trimmed,
  });
}

let exitCode = 0;
const program = new Command()
  .name("tls-tunnel")
  .description("A TLS reverse tunnel: publish services behind NAT on a public server's ports.")
  .version(VERSION, "-V, --version", "print the version")
  .option(
    "-v, --verbose",
    "more log detail (-vv for protocol traces)",
    (_value: string, previous: number) => previous + 1,
    0,
  )
  .addOption(new Option("--log-format <format>", "log line format").choices(["text", "json"]).default("text"))
  .exitOverride()
  .configureOutput({
    writeErr: (text) => commanderOutput("stderr", text),
    writeOut: (text) => commanderOutput("stdout", text),
  });

program.hook("preAction", async () => {
  const globals = program.opts<{ verbose: number; logFormat: LogFormat }>();
  await setupLogging({ verbosity: globals.verbose, format: globals.logFormat });
});

program.command("server")
  .description(
    "run the public server (no config file: a generated certificate and key, and the client command)",
  )
  .option("-c, --config <file>", "server config (TOML); default ./server.toml if it exists")
  .option("--port <port>", "tunnel port (bind_port, default 8443)")
  .option("--bind <addr>", "tunnel listener address (bind_addr, default 0.0.0.0)")
  .option("--key <key>", "shared key clients present (auth_key); generated and kept when not given")
  .option("--state-dir <dir>", "where a config-less server keeps its certificate and key")
  .action(async (options: ParsedRoleOptions) => {
    exitCode = await serverCommand({ ...flagsFrom<ServerFlags>(options), signal: shutdown.signal });
  });

program.command("client")
  .description("run the client next to the services it publishes (a config file, flags, or both: flags win)")
  .option("-c, --config <file>", "client config (TOML); default ./client.toml if it exists")
  .option("--server <host:port>", "the server (server_addr:server_port)")
  .option("--key <key>", "the key to present (auth_key; TLS_TUNNEL_AUTH_KEY keeps it out of `ps`)")
  .option("--fingerprint <SHA256:hex>", "pin the server's certificate (server_fingerprint)")
  .option(
    "-R, --remote <[addr:]port:localhost:localport>",
    "publish a local port on the server, as ssh -R (repeatable; port 0 = the server chooses)",
    (value: string, previous: string[]) => [...previous, value],
    [] as string[],
  )
  .action(async (options: ParsedRoleOptions) => {
    exitCode = await clientCommand({ ...flagsFrom<ClientFlags>(options), signal: shutdown.signal });
  });

program.command("check")
  .description("validate a server or client config and list every problem")
  .requiredOption("-c, --config <file>", "config file (TOML)")
  .addOption(new Option("--format <format>", "output format").choices(["text", "json"]).default("text"))
  .action(async (options: { config: string; format: "text" | "json" }) => {
    exitCode = await checkCommand({ configPath: options.config, format: options.format });
  });

program.command("template")
  .description("print a commented example config, or write a server/client pair that work together (pair)")
  .argument("<kind>", "server, client, or pair")
  .option("-o, --output <file>", "write to this file instead of stdout (pair: to this folder, default .)")
  .option("--host <name>", "pair: the name or address clients dial (default localhost)")
  .option("--port <port>", "pair: the tunnel port (default 8443)")
  .option("-R, --remote <spec>", "pair: the proxy, as the client's -R (default 8080:127.0.0.1:3000)")
  .action(
    async (kind: string, options: { output?: string; host?: string; port?: string; remote?: string }) => {
      if (kind === "pair") {
        const { templatePairCommand } = await import("./lib/cli/template_pair.ts");
        const { output, ...rest } = options;
        exitCode = await templatePairCommand({
          ...rest,
          ...(output !== undefined ? { outputDir: output } : {}),
        });
        return;
      }
      exitCode = await templateCommand({ kind, ...(options.output ? { outputPath: options.output } : {}) });
    },
  );

program.command("cert")
  .description("create a CA and a server certificate it signs, for the server's cert_path/key_path")
  .option("--cert-out <file>", "server certificate chain (PEM)", "cert.pem")
  .option("--key-out <file>", "server private key (PEM)", "key.pem")
  .option("--ca-out <file>", "CA certificate for the client's ca_cert_path (PEM)", "ca.pem")
  .option("--common-name <name>", "server name in the certificate", "localhost")
  .option("--alt-names <names>", "extra DNS names or IP addresses, comma-separated", "")
  .option("--days <days>", "validity in days", "825")
  .action(
    async (options: CertOptions) => {
      // Loaded on demand: the X.509 library is heavy and only `cert` needs it at start.
      const { certCommand } = await import("./lib/cli/cert.ts");
      exitCode = await certCommand(options);
    },
  );

program.command("demo")
  .description("start a server, a local web service and a client on loopback, and fetch through the tunnel")
  .action(async () => {
    exitCode = await demoCommand({ signal: shutdown.signal });
  });

program.command("top")
  .description("live terminal view of a server's or client's stats endpoint (a plain table when piped)")
  .option("-u, --url <url>", `stats endpoint (stats_addr:stats_port; default: ${DEFAULT_TOP_URL})`)
  .option("-c, --config <file>", "read the endpoint's URL and stats_token from a server or client config")
  .option(
    "--token <token>",
    "the endpoint's stats_token (default: $TLS_TUNNEL_STATS_TOKEN, kept out of `ps`)",
  )
  .option("--interval <ms>", "refresh interval in milliseconds", "1000")
  .action(async (options: { url?: string; config?: string; token?: string; interval: string }) => {
    const intervalMs = Number(options.interval);
    if (!Number.isFinite(intervalMs) || intervalMs < 100) {
      console.error(
        `tls-tunnel: --interval must be a number of milliseconds, at least 100 (got '${options.interval}')`,
      );
      exitCode = 2;
      return;
    }
    const token = options.token ?? Deno.env.get("TLS_TUNNEL_STATS_TOKEN");
    exitCode = await topCommand({
      ...(options.url !== undefined ? { url: options.url } : {}),
      ...(options.config !== undefined ? { config: options.config } : {}),
      ...(token !== undefined ? { token } : {}),
      intervalMs,
      signal: shutdown.signal,
    });
  });

program.command("reload")
  .description(
    "make a running server or client reload its config (through its stats endpoint; SIGHUP does the same)",
  )
  .option("-u, --url <url>", `stats endpoint (stats_addr:stats_port; default: ${DEFAULT_TOP_URL})`)
  .option(
    "-c, --config <file>",
    "read the endpoint's URL and stats_token from the server's or client's config",
  )
  .option(
    "--token <token>",
    "the endpoint's stats_token (default: $TLS_TUNNEL_STATS_TOKEN, kept out of `ps`)",
  )
  .action(async (options: { url?: string; config?: string; token?: string }) => {
    const { reloadCommand } = await import("./lib/cli/reload.ts");
    const token = options.token ?? Deno.env.get("TLS_TUNNEL_STATS_TOKEN");
    exitCode = await reloadCommand({
      ...(options.url !== undefined ? { url: options.url } : {}),
      ...(options.config !== undefined ? { config: options.config } : {}),
      ...(token !== undefined ? { token } : {}),
    });
  });

program.command("version")
  .description("print version information")
  .action(() => {
    exitCode = versionCommand();
  });

program.command("register")
  .description(
    "install a hardened systemd unit that runs the server or client with this config, and start it",
  )
  .argument("<role>", "server or client")
  .requiredOption("-c, --config <file>", "config file (TOML) the service runs with")
  .option("--user", "a user unit (systemctl --user) instead of a system one")
  .option("--dry-run", "print the unit and what would be done; change nothing")
  .option("--name <name>", "unit name without .service (default tls-tunnel-<role>)")
  .option("--run-as <user>", "system unit: the account to run as (default: the config file's owner)")
  .option("--exec <path>", "the tls-tunnel program the unit starts (default: this one)")
  .action(async (role: string, options: RegisterCliOptions) => {
    const { config, ...rest } = options;
    exitCode = await registerCommand({ role, configPath: config, ...rest });
  });

program.command("unregister")
  .description("stop, disable and remove the systemd unit that `register` installed")
  .argument("<role>", "server or client")
  .option("--user", "a user unit (systemctl --user)")
  .option("--dry-run", "print what would be done; change nothing")
  .option("--name <name>", "unit name without .service (default tls-tunnel-<role>)")
  .action(async (role: string, options: { user?: boolean; dryRun?: boolean; name?: string }) => {
    exitCode = await unregisterCommand({ role, ...options });
  });

try {
  await program.parseAsync(Deno.args, { from: "user" });
} catch (error) {
  if (error instanceof CommanderError) {
    // --help and --version end here with code 0; usage errors were already printed by commander.
    exitCode = error.exitCode === 0 ? 0 : 2;
  } else {
    writeOutput("stderr", {
      level: "fatal",
      text: `tls-tunnel: ${error instanceof Error ? error.message : String(error)}`,
      ...(error instanceof Error ? { properties: { error } } : {}),
    });
    exitCode = 1;
  }
}
Deno.exit(shutdown.signal.aborted && exitCode === 0 ? 0 : exitCode);

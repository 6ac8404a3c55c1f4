/**
 * `tls-tunnel template pair [-o DIR]`: a server config and a client config that work together as
 * written: one generated shared key in both, a generated CA and server certificate (the client trusts the
 * CA), absolute paths, and one proxy. Files: `server.toml`, `client.toml` (0600: they hold the key),
 * `cert.pem`, `key.pem` (0600), `ca.pem`. Existing files are never overwritten.
 *
 * @module
 */

import { isLoopback } from "../net/address.ts";
import { CertificateOptionsError, DEFAULT_ALT_NAMES, generateCertificates } from "../pki/cert.ts";
import { type CommandOutput, processOutput } from "./_command_output.ts";
import { parseRemoteForward, type RemoteForward, RemoteForwardError } from "./remote_forward.ts";
import { generateAuthKey } from "./state_dir.ts";
import { pathExists } from "./_files.ts";
import { errorMessage } from "../text.ts";

/** Options of {@linkcode templatePairCommand}, as the command line gives them (strings). */
export interface TemplatePairOptions {
  /** Folder to write into (created if missing; default the working directory). */
  outputDir?: string;
  /** Name or address clients dial (server_addr, and a name in the certificate); default localhost. */
  host?: string;
  /** The tunnel port (bind_port, server_port); default 8443. */
  port?: string;
  /** The proxy, in `-R` syntax; default `8080:127.0.0.1:3000`. */
  remote?: string;
}

/** The files a pair consists of, in the order they are written. */
export const PAIR_FILES = ["key.pem", "cert.pem", "ca.pem", "server.toml", "client.toml"] as const;

/** The proxy of a pair when `-R` is not given. */
export const DEFAULT_PAIR_FORWARD = "8080:127.0.0.1:3000";

/** The two configs' text for the given parts. */
export function pairConfigs(parts: {
  dir: string;
  host: string;
  port: number;
  authKey: string;
  forward: RemoteForward;
  fingerprint: string;
}): { server: string; client: string } {
  // A pair for this machine stays on loopback; one for a named host listens on every address.
  const local = isLoopback(parts.host);
  const bindAddr = local ? "127.0.0.1" : "0.0.0.0";
  const publishAddr = parts.forward.publishAddr ?? bindAddr;
  const q = JSON.stringify;
  const server = [
    "# tls-tunnel server: written by `tls-tunnel template pair` with client.toml; run",
    `#   tls-tunnel server -c ${parts.dir}/server.toml`,
    "# `tls-tunnel template server` shows every key with its default.",
    "[server]",
    `bind_addr = ${q(bindAddr)}`,
    `bind_port = ${parts.port}`,
    `cert_path = ${q(`${parts.dir}/cert.pem`)}`,
    `key_path = ${q(`${parts.dir}/key.pem`)}`,
    "# The shared key: the same in client.toml.",
    `auth_key = ${q(parts.authKey)}`,
    "",
  ].join("\n");
  const client = [
    "# tls-tunnel client: written by `tls-tunnel template pair` with server.toml; run",
    `#   tls-tunnel client -c ${parts.dir}/client.toml`,
    "# On another machine: copy this file and ca.pem there and fix ca_cert_path.",
    "[client]",
    `server_addr = ${q(parts.host)}`,
    `server_port = ${parts.port}`,
    "# The CA that signed the server's certificate (cert.pem).",
    `ca_cert_path = ${q(`${parts.dir}/ca.pem`)}`,
    "# Or pin the server's certificate instead (then the CA, names and expiry are not checked):",
    `# server_fingerprint = ${q(`SHA256:${parts.fingerprint.replaceAll(":", "")}`)}`,
    `auth_key = ${q(parts.authKey)}`,
    "",
    "# Outside connections to the server's publish_port reach local_addr:local_port here.",
    "[[proxies]]",
    `name = "web"`,
    `publish_addr = ${q(publishAddr)}`,
    `publish_port = ${parts.forward.publishPort}`,
    `local_addr = ${q(parts.forward.localAddr)}`,
    `local_port = ${parts.forward.localPort}`,
    "",
  ].join("\n");
  return { server, client };
}

/**
 * Generates the pair and writes it to `outputDir`, then prints the files and the two commands.
 *
 * @returns 0 on success, 1 when a file exists or cannot be written, 2 for invalid options.
 */
export async function templatePairCommand(
  options: TemplatePairOptions,
  io: CommandOutput = processOutput,
): Promise<number> {
  const port = options.port ?? "8443";
  if (!/^[0-9]{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) {
    io.err(`tls-tunnel: --port ${JSON.stringify(port)} is not a port number from 1 to 65535`);
    return 2;
  }
  let forward: RemoteForward;
  try {
    forward = parseRemoteForward(options.remote ?? DEFAULT_PAIR_FORWARD);
  } catch (error) {
    if (error instanceof RemoteForwardError) {
      io.err(`tls-tunnel: ${error.message}`);
      return 2;
    }
    throw error;
  }
  const host = options.host ?? "localhost";
  let certificates;
  try {
    certificates = await generateCertificates({
      commonName: host,
      altNames: [...DEFAULT_ALT_NAMES, host],
      validityDays: 825,
    });
  } catch (error) {
    if (error instanceof CertificateOptionsError) {
      io.err(`tls-tunnel: --host: ${error.message}`);
      return 2;
    }
    throw error;
  }

  const given = options.outputDir ?? ".";
  try {
    await Deno.mkdir(given, { recursive: true, mode: 0o700 });
  } catch (error) {
    io.err(`tls-tunnel: cannot create ${given}: ${errorMessage(error)}`);
    return 1;
  }
  // Absolute paths in the configs: they work from any working directory.
  const dir = await Deno.realPath(given);
  for (const file of PAIR_FILES) {
    if (await pathExists(`${dir}/${file}`)) {
      io.err(
        `tls-tunnel: ${dir}/${file} already exists; not overwriting it. Remove it or choose another -o DIR.`,
      );
      return 1;
    }
  }
  const authKey = generateAuthKey();
  const configs = pairConfigs({
    dir,
    host,
    port: Number(port),
    authKey,
    forward,
    fingerprint: certificates.serverFingerprintSha256,
  });
  const contents: Record<(typeof PAIR_FILES)[number], { text: string; mode: number }> = {
    "key.pem": { text: certificates.serverKeyPem, mode: 0o600 },
    "cert.pem": { text: certificates.serverChainPem, mode: 0o644 },
    "ca.pem": { text: certificates.caCertPem, mode: 0o644 },
    "server.toml": { text: configs.server, mode: 0o600 },
    "client.toml": { text: configs.client, mode: 0o600 },
  };
  const written: string[] = [];
  try {
    for (const file of PAIR_FILES) {
      const path = `${dir}/${file}`;
      await Deno.writeTextFile(path, contents[file].text, { createNew: true, mode: contents[file].mode });
      written.push(path);
    }
  } catch (error) {
    // Leave no half pair behind.
    for (const path of written) await Deno.remove(path).catch(() => {});
    io.err(`tls-tunnel: cannot write the pair: ${errorMessage(error)}`);
    return 1;
  }
  // One call, so that --log-format json prints the report as one record.
  const report: string[] = [];
  report.push(`Wrote a server and client config that work together, in ${dir}:`);
  report.push("  server.toml  server config (0600, holds the shared key)");
  report.push("  client.toml  client config (0600, holds the same key)");
  report.push("  cert.pem     server certificate chain, key.pem its private key (0600)");
  report.push("  ca.pem       the CA the client trusts (ca_cert_path)");
  report.push(
    `Server certificate SHA-256: SHA256:${certificates.serverFingerprintSha256.replaceAll(":", "")}`,
  );
  report.push("Run:");
  report.push(`  tls-tunnel server -c ${dir}/server.toml`);
  report.push(`  tls-tunnel client -c ${dir}/client.toml`);
  report.push(
    `Then port ${forward.publishPort} of ${host} reaches ${forward.localAddr}:${forward.localPort} on the client's ` +
      "machine.",
  );
  io.out(report.join("\n"));
  return 0;
}

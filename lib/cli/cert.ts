/**
 * `tls-tunnel cert`: creates a throw-away CA and a server certificate it signs, and writes the server's
 * certificate chain, its private key (mode 0600) and the CA certificate for clients. Existing files are
 * never overwritten.
 *
 * @module
 */

import { CertificateOptionsError, DEFAULT_ALT_NAMES, generateCertificates } from "../pki/cert.ts";
import { type CommandOutput, processOutput } from "./_command_output.ts";
import { pathExists } from "./_files.ts";
import { errorMessage } from "../text.ts";

/** Options of {@link certCommand}, as the command line gives them (strings). */
export interface CertOptions {
  /** Where to write the server's certificate chain (leaf + CA). */
  certOut: string;
  /** Where to write the server's private key (mode 0600). */
  keyOut: string;
  /** Where to write the CA certificate for clients. */
  caOut: string;
  /** The server's name, subject CN and first SAN entry. */
  commonName: string;
  /** More DNS names or IP addresses, comma-separated; empty means localhost, 127.0.0.1 and ::1. */
  altNames: string;
  /** Validity in days, as text (1-36500). */
  days: string;
}

/**
 * Generates and writes the files, then prints where each goes and the fingerprints.
 *
 * @returns 0 on success, 1 when a file exists or cannot be written, 2 for invalid options.
 */
export async function certCommand(options: CertOptions, io: CommandOutput = processOutput): Promise<number> {
  const days = options.days.trim();
  if (!/^\d+$/.test(days) || Number(days) < 1 || Number(days) > 36_500) {
    io.err(`tls-tunnel: --days "${options.days}" is not a number of days from 1 to 36500`);
    return 2;
  }
  const altNames = options.altNames.split(",").map((name) => name.trim()).filter((name) => name !== "");
  const outputs = [options.certOut, options.keyOut, options.caOut];
  if (new Set(outputs).size !== outputs.length) {
    io.err("tls-tunnel: --cert-out, --key-out and --ca-out must be three different files");
    return 2;
  }
  for (const path of outputs) {
    if (await pathExists(path)) {
      io.err(`tls-tunnel: ${path} already exists; not overwriting it. Remove it or choose another path.`);
      return 1;
    }
  }

  let certificates;
  try {
    certificates = await generateCertificates({
      commonName: options.commonName,
      altNames: altNames.length > 0 ? altNames : DEFAULT_ALT_NAMES,
      validityDays: Number(days),
    });
  } catch (error) {
    if (error instanceof CertificateOptionsError) {
      io.err(`tls-tunnel: ${error.message}`);
      return 2;
    }
    throw error;
  }

  const written: string[] = [];
  try {
    await Deno.writeTextFile(options.keyOut, certificates.serverKeyPem, { createNew: true, mode: 0o600 });
    written.push(options.keyOut);
    await Deno.writeTextFile(options.certOut, certificates.serverChainPem, { createNew: true, mode: 0o644 });
    written.push(options.certOut);
    await Deno.writeTextFile(options.caOut, certificates.caCertPem, { createNew: true, mode: 0o644 });
    written.push(options.caOut);
  } catch (error) {
    // Leave no half set behind: a key without its certificate is of no use.
    for (const path of written) await Deno.remove(path).catch(() => {});
    io.err(
      `tls-tunnel: cannot write the certificate files: ${errorMessage(error)}`,
    );
    return 1;
  }

  const width = Math.max(...outputs.map((p) => p.length));
  const pad = (path: string) => path.padEnd(width);
  // One call, so that --log-format json prints the report as one record.
  const report: string[] = [];
  report.push(
    `Created a CA and a server certificate it signs (ECDSA P-256, valid until ${
      certificates.notAfter.toISOString().slice(0, 10)
    }):`,
  );
  report.push(
    `  ${pad(options.certOut)}  server certificate chain  -> server config: cert_path = "${options.certOut}"`,
  );
  report.push(
    `  ${pad(options.keyOut)}  server private key (0600) -> server config: key_path = "${options.keyOut}"`,
  );
  report.push(
    `  ${pad(options.caOut)}  CA certificate            -> client config: ca_cert_path = "${options.caOut}"`,
  );
  report.push(`Names in the certificate: ${certificates.subjectAltNames.join(", ")}`);
  report.push(
    "  (the client's server_name, or server_addr when server_name is not set, must be one of them)",
  );
  report.push(`CA SHA-256 fingerprint:     ${certificates.caFingerprintSha256}`);
  report.push(`Server SHA-256 fingerprint: ${certificates.serverFingerprintSha256}`);
  report.push(
    "The CA's private key was not kept: to change names or renew, run `tls-tunnel cert` again and give " +
      "clients the new CA file.",
  );
  io.out(report.join("\n"));
  return 0;
}

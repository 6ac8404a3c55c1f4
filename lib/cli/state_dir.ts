/**
 * The server's state directory for config-less runs (`tls-tunnel server` without `-c`): a generated
 * certificate and private key, kept so that the fingerprint clients pin survives restarts, and a generated
 * shared key. The directory is created 0700 and every file 0600; all of it happens at start-up, never on
 * a connection's path.
 *
 * Where: `--state-dir`, else `$XDG_STATE_HOME/tls-tunnel`, else `~/.local/state/tls-tunnel`.
 *
 * @module
 */

import { fingerprintSha256 } from "../pki/fingerprint.ts";
import { isHost } from "../net/address.ts";
import { processEnv } from "../config/env.ts";
import { errorMessage } from "../text.ts";

/** Name of the state directory under `$XDG_STATE_HOME` or `~/.local/state`. */
export const STATE_DIR_NAME = "tls-tunnel";
/** The certificate chain (leaf first) the config-less server presents. */
export const STATE_CERT_FILE = "cert.pem";
/** Its private key. */
export const STATE_KEY_FILE = "key.pem";
/** The generated shared key, when `--key` was not given. */
export const STATE_AUTH_KEY_FILE = "auth_key";
/** Validity of a generated certificate: clients pin it, so it lives long (10 years). */
export const STATE_CERT_VALIDITY_DAYS = 3650;

/** The state directory cannot be used; the message names the path and what to do. */
export class StateDirError extends Error {
  /**
   * @param message what failed, with the path and the fix.
   * @param options the underlying error.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "StateDirError";
  }
}

function describe(error: unknown): string {
  return errorMessage(error);
}

/**
 * The default state directory: `$XDG_STATE_HOME/tls-tunnel` when that variable holds an absolute path
 * (the XDG spec ignores a relative one), else `$HOME/.local/state/tls-tunnel`.
 *
 * @param env reads an environment variable (the process environment by default).
 * @throws {StateDirError} when neither variable is usable.
 */
export function defaultStateDir(env: (name: string) => string | undefined = processEnv): string {
  const xdg = env("XDG_STATE_HOME");
  if (xdg !== undefined && xdg.startsWith("/")) return `${xdg.replace(/\/+$/, "")}/${STATE_DIR_NAME}`;
  const home = env("HOME");
  if (home !== undefined && home !== "") return `${home.replace(/\/+$/, "")}/.local/state/${STATE_DIR_NAME}`;
  throw new StateDirError(
    "Neither XDG_STATE_HOME nor HOME is set, so there is no default state directory; pass --state-dir DIR",
  );
}

/**
 * Creates the state directory (and its parents) if needed, mode 0700.
 *
 * @returns a warning when an existing directory is open to group or others, else null.
 * @throws {StateDirError} when it cannot be created or is not a directory.
 */
export async function ensureStateDir(dir: string): Promise<string | null> {
  let created = false;
  try {
    const info = await Deno.stat(dir);
    if (!info.isDirectory) throw new StateDirError(`State directory ${dir} exists but is not a directory`);
  } catch (error) {
    if (error instanceof StateDirError) throw error;
    if (!(error instanceof Deno.errors.NotFound)) {
      throw new StateDirError(`Cannot use state directory ${dir}: ${describe(error)}`, { cause: error });
    }
    try {
      await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
      created = true;
    } catch (mkdirError) {
      throw new StateDirError(
        `Cannot create state directory ${dir}: ${describe(mkdirError)}; pass --state-dir DIR to use another`,
        { cause: mkdirError },
      );
    }
  }
  if (Deno.build.os === "windows") return null;
  if (created) {
    // The umask may have widened nothing, but a restrictive mode is the point: set it explicitly.
    await Deno.chmod(dir, 0o700);
    return null;
  }
  const mode = (await Deno.stat(dir)).mode;
  if (mode !== null && (mode & 0o077) !== 0) {
    return `State directory ${dir} is open to group or others (mode ${(mode & 0o777).toString(8)}); ` +
      `it holds the server's private key: run \`chmod 700 ${dir}\``;
  }
  return null;
}

async function readIfExists(path: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw new StateDirError(`Cannot read ${path}: ${describe(error)}`, { cause: error });
  }
}

/** Writes a new file with mode 0600; fails if it exists (another server created it first). */
async function writeSecretFile(path: string, text: string): Promise<void> {
  try {
    await Deno.writeTextFile(path, text, { createNew: true, mode: 0o600 });
    if (Deno.build.os !== "windows") await Deno.chmod(path, 0o600);
  } catch (error) {
    const hint = error instanceof Deno.errors.AlreadyExists
      ? "another tls-tunnel server may be starting with the same state directory; start one at a time"
      : "check the state directory's permissions, or pass --state-dir DIR";
    throw new StateDirError(`Cannot write ${path}: ${describe(error)}; ${hint}`, { cause: error });
  }
}

/** The certificate and key the config-less server presents. */
export interface ServerIdentity {
  /** Path of the certificate chain (leaf first). */
  certPath: string;
  /** Path of the private key. */
  keyPath: string;
  /** SHA-256 of the leaf certificate's DER, colon-separated upper-case hex (what clients pin). */
  fingerprint: string;
  /** True when this call generated the pair (first start with this state directory). */
  created: boolean;
}

/**
 * Reads the certificate and key kept in `dir`, or generates and keeps a new pair when there is none.
 *
 * @param names DNS names and IP addresses to put in a generated certificate (invalid ones are left out;
 *   with a pin, clients check the fingerprint, not the names).
 * @throws {StateDirError} when only one of the two files exists, or a file cannot be read or written.
 */
export async function loadOrCreateServerIdentity(
  dir: string,
  names: readonly string[] = [],
): Promise<ServerIdentity> {
  const certPath = `${dir}/${STATE_CERT_FILE}`;
  const keyPath = `${dir}/${STATE_KEY_FILE}`;
  const [certPem, keyPem] = await Promise.all([readIfExists(certPath), readIfExists(keyPath)]);
  if (certPem !== null && keyPem !== null) {
    try {
      return { certPath, keyPath, fingerprint: await fingerprintSha256(certPem), created: false };
    } catch (error) {
      throw new StateDirError(
        `${certPath} is not a PEM certificate (${describe(error)}); remove ${certPath} and ${keyPath} ` +
          "to generate a new pair (clients will need the new fingerprint)",
        { cause: error },
      );
    }
  }
  if (certPem !== null || keyPem !== null) {
    const [present, missing] = certPem !== null ? [certPath, keyPath] : [keyPath, certPath];
    throw new StateDirError(
      `${present} exists but ${missing} does not; restore ${missing}, or remove ${present} to generate a ` +
        "new pair (clients will need the new fingerprint)",
    );
  }
  // Loaded only here: the X.509 library costs a running server about 17 MB it rarely needs.
  const { DEFAULT_ALT_NAMES, generateCertificates } = await import("../pki/cert.ts");
  const valid = [...new Set([...DEFAULT_ALT_NAMES, ...names])].filter((name) => isHost(name));
  const generated = await generateCertificates({
    commonName: valid.find((name) => !DEFAULT_ALT_NAMES.includes(name)) ?? "localhost",
    altNames: valid,
    validityDays: STATE_CERT_VALIDITY_DAYS,
  });
  // The key first: a certificate without its key would block every later start.
  await writeSecretFile(keyPath, generated.serverKeyPem);
  try {
    await writeSecretFile(certPath, generated.serverChainPem);
  } catch (error) {
    await Deno.remove(keyPath).catch(() => {});
    throw error;
  }
  return { certPath, keyPath, fingerprint: generated.serverFingerprintSha256, created: true };
}

/** The shared key of a config-less server started without `--key`. */
export interface StoredAuthKey {
  /** The key. */
  key: string;
  /** Where it is kept. */
  path: string;
  /** True when this call generated it. */
  created: boolean;
}

/** A generated key: 32 random bytes as base64url (43 characters, no padding). */
export function generateAuthKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

/**
 * Reads the shared key kept in `dir`, or generates and keeps one.
 *
 * @throws {StateDirError} when the file holds no usable key or cannot be read or written.
 */
export async function loadOrCreateAuthKey(dir: string): Promise<StoredAuthKey> {
  const path = `${dir}/${STATE_AUTH_KEY_FILE}`;
  const text = await readIfExists(path);
  if (text !== null) {
    const key = text.trim();
    if (!/^[\x21-\x7e]{16,256}$/.test(key)) {
      throw new StateDirError(
        `${path} does not hold a key of 16-256 printable characters; remove it to generate a new one, ` +
          "or pass --key KEY",
      );
    }
    return { key, path, created: false };
  }
  const key = generateAuthKey();
  await writeSecretFile(path, `${key}\n`);
  return { key, path, created: true };
}

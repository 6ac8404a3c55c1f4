/**
 * Certificates for the tunnel's TLS: a throw-away CA and a server certificate it signs, both ECDSA P-256.
 *
 * Why two certificates: Deno's TLS (rustls) refuses a self-signed certificate that is both a CA and the
 * server's end-entity certificate ("CaUsedAsEndEntity"). So the CA (CA=true, keyCertSign) only signs, and
 * the leaf (CA=false, digitalSignature, serverAuth, SAN with every name and IP) is what the server presents.
 * The CA's private key is discarded: clients trust `caCertPem`, and a new certificate means a new CA.
 *
 * @module
 */

import "./_reflect_metadata.ts";
import * as x509 from "@peculiar/x509";
import { colonHex, hex } from "../text.ts";
import { isHostname, isIpAddress } from "../net/address.ts";

x509.cryptoProvider.set(crypto);

const ALGORITHM: EcKeyGenParams & EcdsaParams = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
const DAY_MS = 86_400_000;
/** Backdating of `notBefore`, so that a peer whose clock is a little behind accepts a fresh certificate. */
const CLOCK_SKEW_MS = 3_600_000;

/** Names used when `altNames` is not given: every way a local test reaches the server. */
export const DEFAULT_ALT_NAMES: readonly string[] = ["localhost", "127.0.0.1", "::1"];
/** Validity used when `validityDays` is not given (825 days, the longest browsers accept). */
export const DEFAULT_VALIDITY_DAYS = 825;

/** What to put in the certificates. */
export interface CertificateOptions {
  /** Subject common name of the server certificate, also put in the SAN (default "localhost"). */
  commonName?: string;
  /**
   * DNS names and IP addresses the certificate is valid for, besides `commonName`; absent or empty means
   * {@link DEFAULT_ALT_NAMES}.
   */
  altNames?: readonly string[];
  /** Days from now until both certificates expire (default {@link DEFAULT_VALIDITY_DAYS}, 1-36500). */
  validityDays?: number;
}

/** The generated PEM files and their fingerprints. */
export interface GeneratedCertificates {
  /** The CA certificate: the client's `ca_cert_path`. */
  caCertPem: string;
  /** The server's leaf certificate alone. */
  serverCertPem: string;
  /** Leaf followed by the CA: the server's `cert_path`. */
  serverChainPem: string;
  /** The leaf's private key, PKCS#8: the server's `key_path`. */
  serverKeyPem: string;
  /** SHA-256 of the CA certificate, colon-separated upper-case hex. */
  caFingerprintSha256: string;
  /** SHA-256 of the leaf certificate, colon-separated upper-case hex. */
  serverFingerprintSha256: string;
  /** Every name in the leaf's SAN, common name first, without duplicates. */
  subjectAltNames: string[];
  /** When both certificates expire. */
  notAfter: Date;
}

/** Invalid certificate options (a name that is neither a DNS name nor an IP, a bad validity). */
export class CertificateOptionsError extends Error {
  /**
   * @param message what is wrong and what to do.
   */
  constructor(message: string) {
    super(message);
    this.name = "CertificateOptionsError";
  }
}

function isDnsName(name: string): boolean {
  return isHostname(name.startsWith("*.") ? name.slice(2) : name);
}

function serialNumber(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  // Positive and non-zero, as RFC 5280 requires.
  bytes[0] = ((bytes[0] ?? 0) & 0x7f) | 0x01;
  return hex(bytes);
}

function escapeDn(value: string): string {
  return value.replace(/([,+"\\<>;=#])/g, "\\$1");
}

function withNewline(pem: string): string {
  const normalized = pem.replace(/\r\n/g, "\n");
  return normalized.endsWith("\n") ? normalized : `${normalized}\n`;
}

/**
 * Generates a throw-away CA and a server certificate it signs, with a fresh P-256 key each.
 *
 * @throws {CertificateOptionsError} for a name that is neither a DNS name nor an IP address, or a
 *   validity outside 1-36500 days.
 */
export async function generateCertificates(options: CertificateOptions = {}): Promise<GeneratedCertificates> {
  const commonName = options.commonName ?? "localhost";
  const altNames = options.altNames !== undefined && options.altNames.length > 0
    ? options.altNames
    : DEFAULT_ALT_NAMES;
  const validityDays = options.validityDays ?? DEFAULT_VALIDITY_DAYS;
  if (!Number.isInteger(validityDays) || validityDays < 1 || validityDays > 36_500) {
    throw new CertificateOptionsError(
      `validity of ${validityDays} days is not possible; use 1 to 36500 days`,
    );
  }
  const names = [...new Set([commonName, ...altNames].map((n) => n.trim()).filter((n) => n !== ""))];
  if (names.length === 0) throw new CertificateOptionsError("the certificate needs at least one name");
  for (const name of names) {
    if (!isIpAddress(name) && !isDnsName(name)) {
      throw new CertificateOptionsError(
        `"${name}" is neither a DNS name nor an IP address; use names like tunnel.example.com or 203.0.113.7`,
      );
    }
  }

  const now = Date.now();
  const notBefore = new Date(now - CLOCK_SKEW_MS);
  const notAfter = new Date(now + validityDays * DAY_MS);

  const caKeys = await crypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"]);
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    name: `CN=${escapeDn(`tls-tunnel CA for ${commonName}`)}`,
    notBefore,
    notAfter,
    signingAlgorithm: ALGORITHM,
    keys: caKeys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });

  const serverKeys = await crypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"]);
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject: `CN=${escapeDn(commonName)}`,
    issuer: ca.subject,
    notBefore,
    notAfter,
    signingAlgorithm: ALGORITHM,
    publicKey: serverKeys.publicKey,
    signingKey: caKeys.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
      new x509.SubjectAlternativeNameExtension(
        names.map((name): x509.JsonGeneralName => ({ type: isIpAddress(name) ? "ip" : "dns", value: name })),
        false,
      ),
      await x509.AuthorityKeyIdentifierExtension.create(ca, false),
      await x509.SubjectKeyIdentifierExtension.create(serverKeys.publicKey),
    ],
  });

  const pkcs8 = await crypto.subtle.exportKey("pkcs8", serverKeys.privateKey);
  const caCertPem = withNewline(ca.toString("pem"));
  const serverCertPem = withNewline(leaf.toString("pem"));
  return {
    caCertPem,
    serverCertPem,
    serverChainPem: serverCertPem + caCertPem,
    serverKeyPem: withNewline(x509.PemConverter.encode(pkcs8, "PRIVATE KEY")),
    caFingerprintSha256: colonHex(await crypto.subtle.digest("SHA-256", ca.rawData)),
    serverFingerprintSha256: colonHex(await crypto.subtle.digest("SHA-256", leaf.rawData)),
    subjectAltNames: names,
    notAfter,
  };
}

/**
 * Reading certificate files the way `tls-tunnel check` judges them: every certificate in a PEM text
 * parsed (subject, issuer, validity, fingerprint), with the problems a role would only meet at its
 * first handshake named up front. Loads the X.509 library: import it only where that is wanted.
 *
 * ```ts
 * import { generateCertificates } from "./cert.ts";
 * import { readCertificates } from "./inspect.ts";
 *
 * const generated = await generateCertificates();
 * const [leaf] = await readCertificates(generated.serverChainPem);
 * console.log(leaf?.subject); // "CN=localhost"
 * ```
 *
 * @module
 */

import "./_reflect_metadata.ts";
import * as x509 from "@peculiar/x509";
import { colonHex, errorMessage } from "../text.ts";

x509.cryptoProvider.set(crypto);

/** One certificate of a PEM file. */
export interface CertificateSummary {
  /** Distinguished name of the subject, e.g. `CN=localhost`. */
  subject: string;
  /** Distinguished name of the issuer. */
  issuer: string;
  /** Start of validity. */
  notBefore: Date;
  /** End of validity. */
  notAfter: Date;
  /** SHA-256 of the DER bytes, colon-separated upper-case hex (the form `tls-tunnel cert` prints). */
  fingerprint: string;
}

/** A PEM text that holds no certificate, or one that does not parse. */
export class CertificateReadError extends Error {
  override name = "CertificateReadError";
}

/**
 * Parses every `CERTIFICATE` block of `pem`, in order.
 *
 * @throws {CertificateReadError} there is none, or one does not parse (the message says which)
 */
export async function readCertificates(pem: string): Promise<CertificateSummary[]> {
  const blocks = [...pem.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)];
  if (blocks.length === 0) {
    throw new CertificateReadError("holds no PEM certificate (-----BEGIN CERTIFICATE-----)");
  }
  const certificates: CertificateSummary[] = [];
  for (const [index, block] of blocks.entries()) {
    let certificate: x509.X509Certificate;
    try {
      certificate = new x509.X509Certificate(block[0]);
    } catch (error) {
      throw new CertificateReadError(
        `certificate ${index + 1} of ${blocks.length} does not parse: ${errorMessage(error)}`,
      );
    }
    certificates.push({
      subject: certificate.subject,
      issuer: certificate.issuer,
      notBefore: certificate.notBefore,
      notAfter: certificate.notAfter,
      fingerprint: colonHex(await crypto.subtle.digest("SHA-256", certificate.rawData)),
    });
  }
  return certificates;
}

/** Days under which an expiry draws a warning. */
export const EXPIRY_WARNING_DAYS = 30;

/** How a certificate's validity period stands at `nowMs`. */
export type ValidityVerdict =
  | { state: "valid"; daysLeft: number }
  | { state: "expiring"; daysLeft: number }
  | { state: "expired"; since: Date }
  | { state: "not-yet-valid"; from: Date };

/** Judges `certificate`'s validity at `nowMs`: expired, not yet valid, or under 30 days left. */
export function validityAt(certificate: CertificateSummary, nowMs: number = Date.now()): ValidityVerdict {
  if (certificate.notAfter.getTime() <= nowMs) return { state: "expired", since: certificate.notAfter };
  if (certificate.notBefore.getTime() > nowMs) return { state: "not-yet-valid", from: certificate.notBefore };
  const daysLeft = Math.floor((certificate.notAfter.getTime() - nowMs) / 86_400_000);
  return { state: daysLeft < EXPIRY_WARNING_DAYS ? "expiring" : "valid", daysLeft };
}

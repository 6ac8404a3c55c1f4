/**
 * Certificate fingerprints without a certificate library: the SHA-256 of the DER bytes inside a PEM
 * block. Kept apart from `cert.ts` so a running server does not load the X.509 library (about 17 MB of
 * memory) just to log its certificate's fingerprint.
 *
 * @module
 */

import { colonHex } from "../text.ts";

/** The SHA-256 fingerprint of the first certificate in `pem`, as colon-separated hex. */
export async function fingerprintSha256(pem: string): Promise<string> {
  const block = /-----BEGIN CERTIFICATE-----([\s\S]+?)-----END CERTIFICATE-----/.exec(pem);
  if (block === null) throw new Error("no PEM certificate (-----BEGIN CERTIFICATE-----) found in the text");
  let der: Uint8Array<ArrayBuffer>;
  try {
    der = Uint8Array.from(atob((block[1] ?? "").replace(/\s+/g, "")), (char) => char.charCodeAt(0));
  } catch {
    throw new Error("the PEM certificate's body is not valid base64");
  }
  return colonHex(await crypto.subtle.digest("SHA-256", der));
}

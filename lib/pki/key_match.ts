/**
 * Does a private key belong to a certificate? Answered with WebCrypto and a few lines of DER reading
 * (the certificate's SubjectPublicKeyInfo), without the X.509 library, so that a server can check its
 * `cert_path`/`key_path` pair at start for the cost of two key imports.
 *
 * ```ts
 * import { generateCertificates } from "./cert.ts";
 * import { keyMatchesCertificate } from "./key_match.ts";
 *
 * const generated = await generateCertificates();
 * console.log(await keyMatchesCertificate(generated.serverChainPem, generated.serverKeyPem)); // { match: true }
 * ```
 *
 * @module
 */

/** The answer of {@linkcode keyMatchesCertificate}. */
export type KeyMatch =
  | { match: true }
  | { match: false; reason: string }
  | { match: "unknown"; reason: string };

/** The DER bytes of each PEM block labelled `label` (`CERTIFICATE`, `PRIVATE KEY`…), in order. */
export function pemBlocks(pem: string, label: string): Uint8Array<ArrayBuffer>[] {
  const blocks: Uint8Array<ArrayBuffer>[] = [];
  const pattern = new RegExp(`-----BEGIN ${label}-----([\\s\\S]+?)-----END ${label}-----`, "g");
  for (const match of pem.matchAll(pattern)) {
    blocks.push(Uint8Array.from(atob((match[1] ?? "").replace(/\s+/g, "")), (char) => char.charCodeAt(0)));
  }
  return blocks;
}

/** One DER element: where its contents start and end, and where the whole element starts. */
interface DerElement {
  tag: number;
  start: number;
  contentStart: number;
  end: number;
}

function readElement(der: Uint8Array, offset: number): DerElement {
  const tag = der[offset];
  let length = der[offset + 1];
  if (tag === undefined || length === undefined) throw new RangeError("truncated DER");
  let contentStart = offset + 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    if (count === 0 || count > 4) throw new RangeError("unsupported DER length");
    length = 0;
    for (let index = 0; index < count; index++) length = length * 256 + (der[contentStart + index] ?? 0);
    contentStart += count;
  }
  const end = contentStart + length;
  if (end > der.length) throw new RangeError("truncated DER");
  return { tag, start: offset, contentStart, end };
}

/**
 * The SubjectPublicKeyInfo (whole DER element) of a certificate.
 *
 * @throws {RangeError} the bytes are not a certificate
 */
export function certificateSpki(der: Uint8Array): Uint8Array<ArrayBuffer> {
  const certificate = readElement(der, 0);
  const tbs = readElement(der, certificate.contentStart);
  if (certificate.tag !== 0x30 || tbs.tag !== 0x30) throw new RangeError("not a certificate");
  let offset = tbs.contentStart;
  // [0] version is optional; then serial, signature algorithm, issuer, validity, subject, SPKI.
  if (der[offset] === 0xa0) offset = readElement(der, offset).end;
  for (let field = 0; field < 5; field++) offset = readElement(der, offset).end;
  const spki = readElement(der, offset);
  if (spki.tag !== 0x30) throw new RangeError("not a certificate");
  return der.slice(spki.start, spki.end);
}

/** The key algorithms tried, in order (what `tls-tunnel cert` makes first). */
const ALGORITHMS: readonly (EcKeyImportParams | RsaHashedImportParams | Algorithm)[] = [
  { name: "ECDSA", namedCurve: "P-256" },
  { name: "ECDSA", namedCurve: "P-384" },
  { name: "ECDSA", namedCurve: "P-521" },
  { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
  { name: "Ed25519" },
];

/** The public parts of a JWK, as one comparable string. */
function publicParts(jwk: JsonWebKey): string {
  return JSON.stringify([jwk.kty, jwk.crv, jwk.x, jwk.y, jwk.n, jwk.e]);
}

/**
 * Whether the private key in `keyPem` (PKCS#8, `BEGIN PRIVATE KEY`) belongs to the first certificate in
 * `certPem`. `unknown` when it cannot be told (another key encoding or algorithm), with the reason.
 */
export async function keyMatchesCertificate(certPem: string, keyPem: string): Promise<KeyMatch> {
  let spki: Uint8Array<ArrayBuffer>;
  let key: Uint8Array<ArrayBuffer> | undefined;
  try {
    const certificate = pemBlocks(certPem, "CERTIFICATE")[0];
    if (certificate === undefined) return { match: "unknown", reason: "no certificate to compare with" };
    spki = certificateSpki(certificate);
    key = pemBlocks(keyPem, "PRIVATE KEY")[0];
  } catch (error) {
    return { match: "unknown", reason: `unreadable PEM: ${error instanceof Error ? error.message : error}` };
  }
  if (key === undefined) {
    return {
      match: "unknown",
      reason: "the key is not in PKCS#8 form (BEGIN PRIVATE KEY), so it was not compared",
    };
  }
  for (const algorithm of ALGORITHMS) {
    let publicKey: CryptoKey;
    try {
      publicKey = await crypto.subtle.importKey("spki", spki, algorithm, true, ["verify"]);
    } catch {
      continue; // the certificate's key is of another algorithm
    }
    let privateKey: CryptoKey;
    try {
      privateKey = await crypto.subtle.importKey("pkcs8", key, algorithm, true, ["sign"]);
    } catch {
      const name = "namedCurve" in algorithm ? `${algorithm.name} ${algorithm.namedCurve}` : algorithm.name;
      return { match: false, reason: `the certificate holds a ${name} key and the key file does not` };
    }
    const [certificateJwk, keyJwk] = await Promise.all([
      crypto.subtle.exportKey("jwk", publicKey),
      crypto.subtle.exportKey("jwk", privateKey),
    ]);
    return publicParts(certificateJwk) === publicParts(keyJwk)
      ? { match: true }
      : { match: false, reason: "the private key is not the one the certificate was issued for" };
  }
  return { match: "unknown", reason: "the certificate's key algorithm is not one this check knows" };
}

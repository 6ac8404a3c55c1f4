import assert from "node:assert/strict";
import { generateCertificates } from "./cert.ts";
import { readCertificates, validityAt } from "./inspect.ts";
import { keyMatchesCertificate } from "./key_match.ts";

Deno.test("a key matches its own certificate and no other", async () => {
  const [mine, other] = await Promise.all([generateCertificates(), generateCertificates()]);
  assert.deepEqual(await keyMatchesCertificate(mine.serverChainPem, mine.serverKeyPem), { match: true });
  const wrong = await keyMatchesCertificate(mine.serverChainPem, other.serverKeyPem);
  assert.equal(wrong.match, false);
});

Deno.test("a key the check cannot read is unknown, not a mismatch", async () => {
  const mine = await generateCertificates();
  const sec1 = "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n";
  assert.equal((await keyMatchesCertificate(mine.serverChainPem, sec1)).match, "unknown");
  assert.equal((await keyMatchesCertificate("no certificate", mine.serverKeyPem)).match, "unknown");
  const truncated = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
  assert.equal((await keyMatchesCertificate(truncated, mine.serverKeyPem)).match, "unknown");
});

Deno.test("validity: expired, not yet valid, under 30 days, fine", async () => {
  const [leaf] = await readCertificates((await generateCertificates({ validityDays: 40 })).serverChainPem);
  assert.ok(leaf);
  const day = 86_400_000;
  assert.equal(validityAt(leaf).state, "valid");
  assert.equal(validityAt(leaf, leaf.notAfter.getTime() - 10 * day).state, "expiring");
  assert.equal(validityAt(leaf, leaf.notAfter.getTime()).state, "expired");
  assert.equal(validityAt(leaf, leaf.notBefore.getTime() - day).state, "not-yet-valid");
});

import assert from "node:assert/strict";
import "./_reflect_metadata.ts";
import * as x509 from "@peculiar/x509";
import { CertificateOptionsError, generateCertificates, type GeneratedCertificates } from "./cert.ts";
import { fingerprintSha256 } from "./fingerprint.ts";

const FINGERPRINT = /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/;

/** Rejects when `promise` takes longer than `ms`, and leaves no timer behind. */
async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function readExactly(conn: Deno.Conn, length: number): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  let filled = 0;
  while (filled < length) {
    const n = await conn.read(out.subarray(filled));
    if (n === null) throw new Error(`connection closed after ${filled} of ${length} bytes`);
    filled += n;
  }
  return out;
}

/**
 * Serves `certs` on 127.0.0.1 with a server that answers every byte inverted, dials it with `dial`, sends
 * `message` and returns the answer.
 */
async function echoThroughTls(
  certs: GeneratedCertificates,
  dial: (port: number) => Promise<Deno.TlsConn>,
  message: Uint8Array,
): Promise<Uint8Array> {
  const listener = Deno.listenTls({
    hostname: "127.0.0.1",
    port: 0,
    cert: certs.serverChainPem,
    key: certs.serverKeyPem,
  });
  const serverSide = (async () => {
    const conn = await listener.accept();
    try {
      const received = await readExactly(conn, message.length);
      await conn.write(received.map((b) => b ^ 0xff));
    } finally {
      conn.close();
    }
  })();
  try {
    const client = await dial(listener.addr.port);
    try {
      await client.handshake();
      await client.write(message);
      return await readExactly(client, message.length);
    } finally {
      client.close();
    }
  } finally {
    listener.close();
    await serverSide.catch(() => {});
  }
}

Deno.test("a client trusting the generated CA completes a TLS handshake with 127.0.0.1 and exchanges bytes", async () => {
  const certs = await generateCertificates({
    commonName: "localhost",
    altNames: ["localhost", "127.0.0.1", "::1"],
  });
  const message = crypto.getRandomValues(new Uint8Array(4096));
  const answer = await withTimeout(
    echoThroughTls(
      certs,
      (port) => Deno.connectTls({ hostname: "127.0.0.1", port, caCerts: [certs.caCertPem] }),
      message,
    ),
    10_000,
    "TLS echo",
  );
  assert.deepEqual(answer, message.map((b) => b ^ 0xff));
});

Deno.test("the generated certificate is accepted for the DNS name localhost", async () => {
  const certs = await generateCertificates();
  const message = new TextEncoder().encode("hello localhost");
  const answer = await withTimeout(
    echoThroughTls(certs, async (port) => {
      // Dial the IPv4 loopback explicitly, but verify the certificate for the name "localhost".
      const tcp = await Deno.connect({ hostname: "127.0.0.1", port });
      return await Deno.startTls(tcp, { hostname: "localhost", caCerts: [certs.caCertPem] });
    }, message),
    10_000,
    "TLS echo for localhost",
  );
  assert.deepEqual(answer, message.map((b) => b ^ 0xff));
});

Deno.test("a client trusting another CA rejects the server's certificate", async () => {
  const certs = await generateCertificates();
  const stranger = await generateCertificates();
  await assert.rejects(
    withTimeout(
      echoThroughTls(
        certs,
        (port) => Deno.connectTls({ hostname: "127.0.0.1", port, caCerts: [stranger.caCertPem] }),
        new Uint8Array([1, 2, 3]),
      ),
      10_000,
      "TLS handshake with an untrusted CA",
    ),
    /certificate|UnknownIssuer|invalid peer/i,
  );
});

Deno.test("a name outside the certificate's SAN is rejected", async () => {
  const certs = await generateCertificates({ commonName: "tunnel.example.com", altNames: ["127.0.0.1"] });
  await assert.rejects(
    withTimeout(
      echoThroughTls(certs, async (port) => {
        const tcp = await Deno.connect({ hostname: "127.0.0.1", port });
        return await Deno.startTls(tcp, { hostname: "other.example.com", caCerts: [certs.caCertPem] });
      }, new Uint8Array([1])),
      10_000,
      "TLS handshake for a foreign name",
    ),
    /certificate|NotValidForName|invalid peer/i,
  );
});

Deno.test("the CA is a CA and the leaf is a server end-entity certificate carrying every name", async () => {
  const certs = await generateCertificates({
    commonName: "tunnel.example.com",
    altNames: ["203.0.113.7", "::1"],
  });
  const ca = new x509.X509Certificate(certs.caCertPem);
  const leaf = new x509.X509Certificate(certs.serverCertPem);

  assert.equal(ca.getExtension(x509.BasicConstraintsExtension)?.ca, true);
  assert.ok(((ca.getExtension(x509.KeyUsagesExtension)?.usages ?? 0) & x509.KeyUsageFlags.keyCertSign) !== 0);
  assert.equal(leaf.getExtension(x509.BasicConstraintsExtension)?.ca, false);
  assert.ok(
    ((leaf.getExtension(x509.KeyUsagesExtension)?.usages ?? 0) & x509.KeyUsageFlags.digitalSignature) !== 0,
  );
  assert.deepEqual([...(leaf.getExtension(x509.ExtendedKeyUsageExtension)?.usages ?? [])], [
    x509.ExtendedKeyUsage.serverAuth,
  ]);
  const san = leaf.getExtension(x509.SubjectAlternativeNameExtension)?.names.toJSON() ?? [];
  assert.deepEqual(san, [
    { type: "dns", value: "tunnel.example.com" },
    { type: "ip", value: "203.0.113.7" },
    { type: "ip", value: "::1" },
  ]);
  assert.equal(leaf.subject, "CN=tunnel.example.com");
  assert.equal(leaf.issuer, ca.subject);
  assert.ok(await leaf.verify({ publicKey: ca.publicKey, signatureOnly: true }));
  assert.deepEqual(certs.subjectAltNames, ["tunnel.example.com", "203.0.113.7", "::1"]);
  assert.equal(certs.serverChainPem, certs.serverCertPem + certs.caCertPem);
  assert.match(certs.serverKeyPem, /^-----BEGIN PRIVATE KEY-----\n/);
});

Deno.test("validity runs from just before now to the requested number of days", async () => {
  const before = Date.now();
  const certs = await generateCertificates({ validityDays: 30 });
  const leaf = new x509.X509Certificate(certs.serverCertPem);
  assert.ok(leaf.notBefore.getTime() <= before);
  const expectedEnd = before + 30 * 86_400_000;
  assert.ok(
    Math.abs(leaf.notAfter.getTime() - expectedEnd) < 60_000,
    `notAfter ${leaf.notAfter.toISOString()}`,
  );
  assert.ok(Math.abs(certs.notAfter.getTime() - leaf.notAfter.getTime()) < 1000);
});

Deno.test("fingerprints are colon-separated SHA-256 of each certificate and match fingerprintSha256", async () => {
  const certs = await generateCertificates();
  assert.match(certs.caFingerprintSha256, FINGERPRINT);
  assert.match(certs.serverFingerprintSha256, FINGERPRINT);
  assert.notEqual(certs.caFingerprintSha256, certs.serverFingerprintSha256);
  assert.equal(await fingerprintSha256(certs.caCertPem), certs.caFingerprintSha256);
  // A chain's fingerprint is its first certificate's.
  assert.equal(await fingerprintSha256(certs.serverChainPem), certs.serverFingerprintSha256);
  const der = new x509.X509Certificate(certs.caCertPem).rawData;
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", der));
  assert.equal(certs.caFingerprintSha256.split(":").map((h) => parseInt(h, 16)).join(","), digest.join(","));
  await assert.rejects(fingerprintSha256("not a certificate"), /no PEM certificate/);
});

Deno.test("an empty list of alternative names means the local defaults", async () => {
  const certs = await generateCertificates({ commonName: "127.0.0.1", altNames: [] });
  assert.deepEqual(certs.subjectAltNames, ["127.0.0.1", "localhost", "::1"]);
});

Deno.test("two generations produce different keys and serial numbers", async () => {
  const [a, b] = await Promise.all([generateCertificates(), generateCertificates()]);
  assert.notEqual(a.serverKeyPem, b.serverKeyPem);
  assert.notEqual(
    new x509.X509Certificate(a.serverCertPem).serialNumber,
    new x509.X509Certificate(b.serverCertPem).serialNumber,
  );
});

Deno.test("invalid names and validities are refused with a clear error", async () => {
  await assert.rejects(generateCertificates({ altNames: ["bad name!"] }), (error) => {
    assert.ok(error instanceof CertificateOptionsError);
    assert.match(error.message, /"bad name!" is neither a DNS name nor an IP address/);
    return true;
  });
  await assert.rejects(generateCertificates({ validityDays: 0 }), CertificateOptionsError);
  await assert.rejects(generateCertificates({ validityDays: 1.5 }), CertificateOptionsError);
  await assert.rejects(generateCertificates({ commonName: "", altNames: [" "] }), CertificateOptionsError);
});

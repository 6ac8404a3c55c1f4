/**
 * Certificate pinning over real TLS with the real CLI client: `server_fingerprint` / `--fingerprint`
 * accept exactly the server's leaf certificate (a self-signed one included, without `skip_verify` or a
 * CA), and refuse any other with both fingerprints shown, before a byte of the tunnel (the key) is sent.
 */

import assert from "node:assert/strict";
import "../lib/pki/_reflect_metadata.ts";
import * as x509 from "@peculiar/x509";
import {
  CliProcess,
  EchoService,
  freePort,
  makeWorkdir,
  testCertificates,
  waitFor,
} from "../testing/helpers.ts";
import {
  echoThrough,
  FAST_RECONNECT,
  LISTENING,
  PROCESS_AUTH_KEY,
  proxyUp,
} from "../testing/process_tunnel.ts";

/** A self-signed server certificate (not a CA) for localhost and 127.0.0.1, with its key and fingerprint. */
async function selfSignedCertificate(): Promise<{ certPem: string; keyPem: string; fingerprint: string }> {
  const algorithm = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const keys = await crypto.subtle.generateKey(algorithm, true, ["sign", "verify"]);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "01",
    name: "CN=localhost",
    notBefore: new Date(Date.now() - 3_600_000),
    notAfter: new Date(Date.now() + 86_400_000),
    signingAlgorithm: algorithm,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.SubjectAlternativeNameExtension([{ type: "dns", value: "localhost" }, {
        type: "ip",
        value: "127.0.0.1",
      }]),
    ],
  });
  const pkcs8 = await crypto.subtle.exportKey("pkcs8", keys.privateKey);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", cert.rawData));
  return {
    certPem: `${cert.toString("pem")}\n`,
    keyPem: `${x509.PemConverter.encode(pkcs8, "PRIVATE KEY")}\n`,
    fingerprint: Array.from(digest, (byte) => byte.toString(16).padStart(2, "0").toUpperCase()).join(":"),
  };
}

/** `AB:CD:…` → `SHA256:abcd…`, the other form the pin is written in. */
function sha256Form(colonHex: string): string {
  return `SHA256:${colonHex.replaceAll(":", "").toLowerCase()}`;
}

/** A client config for 127.0.0.1:`serverPort` that trusts no CA, with `extra` lines in [client]. */
async function writeClientConfig(
  path: string,
  serverPort: number,
  publishPort: number,
  localPort: number,
  extra: string,
): Promise<void> {
  await Deno.writeTextFile(
    path,
    `[client]\nserver_addr = "127.0.0.1"\nserver_port = ${serverPort}\nauth_key = "${PROCESS_AUTH_KEY}"\n` +
      `${extra}\n\n[[proxies]]\nname = "web"\npublish_addr = "127.0.0.1"\npublish_port = ${publishPort}\n` +
      `local_port = ${localPort}\n`,
    { mode: 0o600 },
  );
}

Deno.test("a pinned client accepts the server's self-signed certificate without skip_verify or a CA", async () => {
  const work = await makeWorkdir();
  const echo = new EchoService();
  const certs = await selfSignedCertificate();
  const serverPort = freePort();
  const publishPort = freePort();
  await Deno.writeTextFile(`${work.dir}/self-signed.pem`, certs.certPem);
  await Deno.writeTextFile(`${work.dir}/self-signed-key.pem`, certs.keyPem, { mode: 0o600 });
  await Deno.writeTextFile(
    `${work.dir}/server.toml`,
    `[server]\nbind_addr = "127.0.0.1"\nbind_port = ${serverPort}\ncert_path = "${work.dir}/self-signed.pem"\n` +
      `key_path = "${work.dir}/self-signed-key.pem"\nauth_key = "${PROCESS_AUTH_KEY}"\n`,
    { mode: 0o600 },
  );
  const unpinned = `${work.dir}/unpinned.toml`;
  const pinned = `${work.dir}/pinned.toml`;
  await writeClientConfig(unpinned, serverPort, publishPort, echo.port, "");
  await writeClientConfig(
    pinned,
    serverPort,
    publishPort,
    echo.port,
    `server_fingerprint = "${certs.fingerprint}"`,
  );
  const server = new CliProcess(["server", "-c", `${work.dir}/server.toml`]);
  const clients: CliProcess[] = [];
  try {
    await server.waitForLine(LISTENING);
    // Without the pin the certificate is refused: the pin is what makes the difference.
    const control = new CliProcess(["client", "-c", unpinned], { env: FAST_RECONNECT });
    clients.push(control);
    await control.waitForLine(/certificate of 127\.0\.0\.1:\d+ was not accepted/);
    await control.stop();

    const client = new CliProcess(["client", "-c", pinned], { env: FAST_RECONNECT });
    clients.push(client);
    await client.waitForLine(proxyUp("web"));
    assert.equal(await echoThrough(publishPort, "pinned"), "pinned");
    assert.ok(!client.output.includes("NOT verified"), client.output);

    // The flag pins too, in the SHA256:hex form, with no config file at all.
    await client.stop();
    const flagged = new CliProcess([
      "client",
      "--server",
      `127.0.0.1:${serverPort}`,
      "--key",
      PROCESS_AUTH_KEY,
      "--fingerprint",
      sha256Form(certs.fingerprint),
      "-R",
      `127.0.0.1:${publishPort}:127.0.0.1:${echo.port}`,
    ], { env: FAST_RECONNECT });
    clients.push(flagged);
    await flagged.waitForLine(proxyUp(`tcp-${publishPort}-${echo.port}`));
    await waitFor(
      () => echoThrough(publishPort, "flag pin").then((text) => text === "flag pin", () => false),
      10_000,
      "traffic through the flag-pinned client",
      100,
    );
  } finally {
    for (const client of clients) await client.stop();
    await server.stop();
    await echo.close();
    await work.cleanup();
  }
});

Deno.test("a wrong pin is refused with both fingerprints, even for a CA-valid certificate; the server sees no authenticate", async () => {
  const work = await makeWorkdir();
  const certs = await testCertificates();
  const serverPort = freePort();
  await Deno.writeTextFile(
    `${work.dir}/server.toml`,
    `[server]\nbind_addr = "127.0.0.1"\nbind_port = ${serverPort}\ncert_path = "${work.certPath}"\n` +
      `key_path = "${work.keyPath}"\nauth_key = "${PROCESS_AUTH_KEY}"\n`,
    { mode: 0o600 },
  );
  // The right key and a CA that validates the server: only the pin (the CA's fingerprint) is wrong.
  const wrongPin = certs.caFingerprintSha256;
  const config = `${work.dir}/client.toml`;
  await writeClientConfig(
    config,
    serverPort,
    freePort(),
    freePort(),
    `server_name = "localhost"\nca_cert_path = "${work.caPath}"\nserver_fingerprint = "${
      sha256Form(wrongPin)
    }"`,
  );
  const server = new CliProcess(["server", "-c", `${work.dir}/server.toml`, "-v"]);
  let client: CliProcess | null = null;
  try {
    await server.waitForLine(LISTENING);
    client = new CliProcess(["client", "-c", config], { env: FAST_RECONNECT });
    const refusal = await client.waitForLine(
      /presented a certificate with fingerprint .*refused before sending the key/,
    );
    assert.ok(refusal[0].includes(`fingerprint SHA256:${certs.serverFingerprintSha256}`), refusal[0]);
    assert.ok(refusal[0].includes(`pins SHA256:${wrongPin}`), refusal[0]);
    // A second attempt is refused the same way (the client keeps retrying; the server is never told the key).
    await client.waitForLine(/Attempt 2 to reach .* refused before sending the key/);
    await client.stop();
    await server.stop();
    assert.ok(
      !/Client \S+ connected|wrong auth_key|proxy_status|registered/i.test(server.output),
      server.output,
    );
  } finally {
    await client?.stop();
    await server.stop();
    await work.cleanup();
  }
});

/** A TLS listener that records how many bytes each client sends after the handshake. */
class CountingTlsServer {
  readonly listener: Deno.TlsListener;
  /** Application bytes received, per finished connection. */
  readonly received: number[] = [];
  readonly #loop: Promise<void>;
  readonly #conns = new Set<Deno.TlsConn>();

  constructor(certPem: string, keyPem: string) {
    this.listener = Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert: certPem, key: keyPem });
    this.#loop = this.#accept();
  }

  get port(): number {
    return this.listener.addr.port;
  }

  async #accept(): Promise<void> {
    const tasks: Promise<void>[] = [];
    for await (const conn of this.listener) {
      this.#conns.add(conn);
      tasks.push(this.#count(conn));
    }
    await Promise.all(tasks);
  }

  async #count(conn: Deno.TlsConn): Promise<void> {
    let bytes = 0;
    const buffer = new Uint8Array(16 * 1024);
    try {
      await conn.handshake();
      // Up to 2 s of whatever the client sends; a refusing client closes at once.
      const deadline = setTimeout(() => conn.close(), 2000);
      try {
        while (true) {
          const count = await conn.read(buffer);
          if (count === null) break;
          bytes += count;
        }
      } finally {
        clearTimeout(deadline);
      }
    } catch {
      // Closed by the client or by the deadline.
    } finally {
      this.#conns.delete(conn);
      try {
        conn.close();
      } catch {
        // Already closed.
      }
      this.received.push(bytes);
    }
  }

  async close(): Promise<void> {
    this.listener.close();
    for (const conn of this.#conns) {
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    }
    await this.#loop;
  }
}

Deno.test("with a wrong pin not one byte reaches the server after the handshake; with the right pin the session starts", async () => {
  const certs = await testCertificates();
  const listener = new CountingTlsServer(certs.serverChainPem, certs.serverKeyPem);
  const clientArgs = (pin: string) => [
    "client",
    "--server",
    `127.0.0.1:${listener.port}`,
    "--key",
    PROCESS_AUTH_KEY,
    "--fingerprint",
    pin,
    "-R",
    "127.0.0.1:0:127.0.0.1:9",
  ];
  let client: CliProcess | null = null;
  try {
    client = new CliProcess(clientArgs(sha256Form(certs.caFingerprintSha256)), { env: FAST_RECONNECT });
    await client.waitForLine(/refused before sending the key/);
    await waitFor(() => listener.received.length >= 1, 10_000, "the refused connection to end");
    await client.stop();
    assert.ok(listener.received.length >= 1);
    assert.deepEqual(listener.received.filter((bytes) => bytes > 0), [], `bytes sent: ${listener.received}`);

    // Control: the same listener sees the session's first bytes (yamux, authenticate) with the right pin.
    const before = listener.received.length;
    client = new CliProcess(clientArgs(certs.serverFingerprintSha256), { env: FAST_RECONNECT });
    await waitFor(() => listener.received.length > before, 15_000, "the pinned connection to end");
    assert.ok((listener.received[before] ?? 0) > 0, `bytes sent: ${listener.received}`);
  } finally {
    await client?.stop();
    await listener.close();
  }
});

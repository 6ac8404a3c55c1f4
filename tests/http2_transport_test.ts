/**
 * The `"http2"` transport's own cases (the real-process transfer, kill -9 and restart scenario every
 * transport shares is in `transport_process_test.ts`): hostile peers (wrong paths, a flood of streams, oversized headers, no preface) are
 * answered or closed within bounds while a real client keeps working (in-process server, real TLS).
 */

import assert from "node:assert/strict";
import * as nodeHttp2 from "node:http2";
import * as nodeTls from "node:tls";
import { withTimeout } from "../lib/_async.ts";
import { closeQuietly } from "../lib/transport/pipe.ts";
import { HTTP2_MAX_OTHER_STREAMS } from "../lib/transport/http2.ts";
import { patternBytes, roundTrip, sha256Hex, testCertificates } from "../testing/helpers.ts";
import { acceptedPort, TunnelFixture } from "../testing/tunnel.ts";

const HTTP2 = `transport = "http2"\n`;

/** An HTTP/2 session over TLS to the fixture's server, as any HTTP/2 client (curl, a browser) opens it. */
async function h2Session(port: number): Promise<nodeHttp2.ClientHttp2Session> {
  const certs = await testCertificates();
  const session = nodeHttp2.connect(`https://localhost:${port}`, {
    createConnection: () =>
      nodeTls.connect({
        host: "127.0.0.1",
        port,
        servername: "localhost",
        ca: certs.caCertPem,
        ALPNProtocols: ["h2"],
      }),
  });
  session.on("error", () => {});
  return session;
}

/** The status of one request (0 when the stream was reset or the session closed instead). */
function statusOf(
  session: nodeHttp2.ClientHttp2Session,
  headers: nodeHttp2.OutgoingHttpHeaders,
): Promise<number> {
  let stream: nodeHttp2.ClientHttp2Stream;
  try {
    stream = session.request(headers);
  } catch {
    return Promise.resolve(-1);
  }
  stream.on("error", () => {});
  stream.resume();
  return new Promise((resolve) => {
    stream.once("response", (answer) => resolve(Number(answer[":status"])));
    stream.once("close", () => resolve(0));
  });
}

async function http2Tunnel(fixture: TunnelFixture): Promise<number> {
  const echo = fixture.echo();
  const client = await fixture.client([{ name: "echo", publishPort: 0, localPort: echo.port }], {
    extra: HTTP2,
  });
  return acceptedPort(await client.registered, "echo");
}

Deno.test("http2: a wrong path, a GET on the tunnel path and a flood of streams get 404s, then the connection is closed; a real client works", async () => {
  await using fixture = await TunnelFixture.start(HTTP2);
  const publicPort = await http2Tunnel(fixture);
  const session = await h2Session(fixture.port);
  assert.equal(await statusOf(session, { ":method": "GET", ":path": "/" }), 404);
  assert.equal(await statusOf(session, { ":method": "GET", ":path": "/tunnel" }), 404);
  const flood = await Promise.all(
    Array.from(
      { length: HTTP2_MAX_OTHER_STREAMS + 16 },
      (_, i) => statusOf(session, { ":method": "GET", ":path": `/x${i}` }),
    ),
  );
  assert.ok(flood.filter((status) => status === 404).length <= HTTP2_MAX_OTHER_STREAMS, `statuses ${flood}`);
  assert.ok(flood.some((status) => status <= 0), "the flood was cut off");
  await withTimeout(
    new Promise((resolve) => session.closed ? resolve(null) : session.once("close", resolve)),
    5000,
    "the session closed",
  );
  session.destroy();
  const data = patternBytes(256 * 1024, 9);
  assert.equal(await sha256Hex(await roundTrip(publicPort, data)), await sha256Hex(data));
});

Deno.test("http2: oversized request headers are refused without harm; a client that never sends the preface is closed at handshake_timeout_secs", async () => {
  await using fixture = await TunnelFixture.start(`${HTTP2}handshake_timeout_secs = 1\n`);
  const publicPort = await http2Tunnel(fixture);
  const session = await h2Session(fixture.port);
  const status = await withTimeout(
    statusOf(session, { ":method": "POST", ":path": "/tunnel", "x-padding": "a".repeat(60_000) }),
    5000,
    "the oversized headers answered",
  );
  assert.equal(status, 431, "oversized headers are answered 431 (not the tunnel)");
  session.destroy();

  const certs = await testCertificates();
  const tcp = await Deno.connect({ hostname: "127.0.0.1", port: fixture.port });
  const silent = await Deno.startTls(tcp, { hostname: "localhost", caCerts: [certs.caCertPem] });
  await silent.handshake();
  const startedMs = performance.now();
  const buffer = new Uint8Array(1024);
  // The server's SETTINGS may come first; then the end (or a reset).
  while (await silent.read(buffer).catch(() => null) !== null) {
    if (performance.now() - startedMs > 5000) break;
  }
  const ms = performance.now() - startedMs;
  closeQuietly(silent);
  assert.ok(
    ms < 2500,
    `a client without the preface stayed open ${ms.toFixed(0)} ms with handshake_timeout_secs = 1`,
  );
  assert.equal(fixture.server.pendingConnections.pending, 0);
  const data = patternBytes(64 * 1024, 4);
  assert.equal(await sha256Hex(await roundTrip(publicPort, data)), await sha256Hex(data));
});

const hasCurl = await new Deno.Command("curl", { args: ["--version"], stdout: "null", stderr: "null" })
  .output()
  .then((out) => out.success, () => false);

Deno.test({
  name:
    "http2: curl (nghttp2) sees an ordinary HTTPS site answering 404 over HTTP/2 with ALPN h2, and h2c behind_proxy alike",
  ignore: !hasCurl,
  fn: async () => {
    const certs = await testCertificates();
    const caPath = await Deno.makeTempFile({ suffix: ".pem" });
    try {
      await Deno.writeTextFile(caPath, certs.caCertPem);
      const curl = async (args: string[]) => {
        const out = await new Deno.Command("curl", {
          args: [
            "-sS",
            "-v",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version}",
            ...args,
          ],
        }).output();
        return { answer: new TextDecoder().decode(out.stdout), log: new TextDecoder().decode(out.stderr) };
      };
      {
        await using fixture = await TunnelFixture.start(HTTP2);
        const { answer, log } = await curl([
          "--http2",
          "--cacert",
          caPath,
          "--resolve",
          `localhost:${fixture.port}:127.0.0.1`,
          `https://localhost:${fixture.port}/index.html`,
        ]);
        assert.equal(answer, "404 2", log);
        assert.match(log, /ALPN: server accepted h2|ALPN, server accepted to use h2/);
      }
      {
        await using fixture = await TunnelFixture.start(`${HTTP2}behind_proxy = true\n`);
        const { answer, log } = await curl(["--http2-prior-knowledge", `http://127.0.0.1:${fixture.port}/`]);
        assert.equal(answer, "404 2", log);
      }
    } finally {
      await Deno.remove(caPath);
    }
  },
});

Deno.test({
  name:
    "http2: curl --http1.1 (a browser's first request) gets an ordinary HTTP/1.1 404 over TLS and over h2c behind_proxy, and the tunnel keeps working",
  ignore: !hasCurl,
  fn: async () => {
    const certs = await testCertificates();
    const caPath = await Deno.makeTempFile({ suffix: ".pem" });
    try {
      await Deno.writeTextFile(caPath, certs.caCertPem);
      const curl = async (args: string[]) => {
        const out = await new Deno.Command("curl", {
          args: [
            "-sS",
            "-v",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version}",
            ...args,
          ],
        }).output();
        return { answer: new TextDecoder().decode(out.stdout), log: new TextDecoder().decode(out.stderr) };
      };
      {
        await using fixture = await TunnelFixture.start(HTTP2);
        const publicPort = await http2Tunnel(fixture);
        for (const path of ["/", "/tunnel"]) {
          const { answer, log } = await curl([
            "--http1.1",
            "--cacert",
            caPath,
            "--resolve",
            `localhost:${fixture.port}:127.0.0.1`,
            `https://localhost:${fixture.port}${path}`,
          ]);
          assert.equal(answer, "404 1.1", log);
          assert.match(log, /ALPN: server accepted http\/1\.1|ALPN, server accepted to use http\/1\.1/);
        }
        const data = patternBytes(64 * 1024, 5);
        assert.equal(await sha256Hex(await roundTrip(publicPort, data)), await sha256Hex(data));
      }
      {
        await using fixture = await TunnelFixture.start(`${HTTP2}behind_proxy = true\n`);
        const { answer, log } = await curl(["--http1.1", `http://127.0.0.1:${fixture.port}/tunnel`]);
        assert.equal(answer, "404 1.1", log);
      }
    } finally {
      await Deno.remove(caPath);
    }
  },
});

/**
 * HTTP and HTTPS virtual hosts end to end, with real processes and real tools: a server with
 * `vhost_http_port`/`vhost_https_port`, two clients publishing `http` proxies (and one `https` proxy) for
 * different host names, curl through the shared ports with Host headers and `--resolve`, a raw WebSocket
 * echo, a chunked upload, basic auth, a slow service (504), an unknown host (503), a client killed with
 * -9 (503), openssl's `s_client -servername` for SNI, and the counters in /api/stats and /metrics.
 * nginx serves one of the hosts when it is installed (a Deno HTTP server stands in otherwise); wrk runs
 * 2 s of keep-alive load through both vhosts when it is installed.
 *
 * @module
 */

import assert from "node:assert/strict";
import { connect as connectTls } from "node:tls";
import { CliProcess, freePort, makeWorkdir, sha256Hex, waitFor } from "../testing/helpers.ts";
import { installedNginx, NginxProcess } from "../testing/nginx.ts";
import { PROCESS_AUTH_KEY } from "../testing/process_tunnel.ts";
import { expositionProblems } from "../testing/exposition_lint.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function binary(...paths: string[]): string | undefined {
  return paths.find((path) => {
    try {
      return Deno.statSync(path).isFile;
    } catch {
      return false;
    }
  });
}

const NGINX = installedNginx();
const CURL = binary("/usr/bin/curl", "/usr/local/bin/curl");
const OPENSSL = binary("/usr/bin/openssl", "/usr/local/bin/openssl");
const WRK = binary("/usr/bin/wrk", "/usr/local/bin/wrk");

/** Runs a command, returns its stdout (and stderr) as text and its exit code. */
async function run(
  cmd: string,
  args: string[],
  stdin?: Uint8Array,
): Promise<{ code: number; out: string; err: string }> {
  const child = new Deno.Command(cmd, {
    args,
    stdin: stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin) {
    const writer = child.stdin.getWriter();
    await writer.write(stdin);
    await writer.close();
  }
  const output = await child.output();
  return { code: output.code, out: decoder.decode(output.stdout), err: decoder.decode(output.stderr) };
}

/** curl with `args`; returns status, headers and body (`-i` output split). */
async function curl(
  args: string[],
  stdin?: Uint8Array,
): Promise<{ status: number; head: string; body: string }> {
  assert.ok(CURL, "curl is needed");
  const result = await run(CURL, ["-sS", "-i", "--max-time", "10", ...args], stdin);
  assert.equal(result.code, 0, `curl ${args.join(" ")} failed: ${result.err}`);
  // Skip interim answers (100 Continue) to the final one.
  let text = result.out;
  while (/^HTTP\/1\.1 1\d\d /.test(text)) text = text.slice(text.indexOf("\r\n\r\n") + 4);
  const split = text.indexOf("\r\n\r\n");
  const head = text.slice(0, split);
  return { status: Number(head.split(" ")[1]), head, body: text.slice(split + 4) };
}

/** The test's local HTTP service: echoes what it saw as JSON; /ws echoes WebSocket messages; /slow stalls. */
function startBackend(name: string): { server: Deno.HttpServer<Deno.NetAddr>; port: number } {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (request) => {
    const url = new URL(request.url);
    if (url.pathname === "/ws") {
      const { socket, response } = Deno.upgradeWebSocket(request);
      socket.onmessage = (event) => socket.send(`echo:${event.data}`);
      return response;
    }
    if (url.pathname === "/slow") {
      await new Promise((resolve) => setTimeout(resolve, 5000));
      return new Response("late");
    }
    const body = new Uint8Array(await request.arrayBuffer());
    return Response.json({
      backend: name,
      method: request.method,
      path: url.pathname + url.search,
      host: request.headers.get("host"),
      forwardedFor: request.headers.get("x-forwarded-for"),
      forwardedProto: request.headers.get("x-forwarded-proto"),
      forwardedHost: request.headers.get("x-forwarded-host"),
      bodyBytes: body.length,
      bodySha256: await sha256Hex(body),
    });
  });
  return { server, port: server.addr.port };
}

/** nginx serving a static page on a free loopback port; null when nginx is not installed. */
async function startNginx(dir: string): Promise<NginxProcess | null> {
  if (!NGINX) return null;
  const root = `${dir}/nginx`;
  await Deno.mkdir(`${root}/html`, { recursive: true });
  await Deno.writeTextFile(`${root}/html/index.html`, "hello from nginx\n");
  // nginx's workers may run as another user (nobody, when the tests run as root): let them in.
  await Deno.chmod(dir, 0o711);
  await Deno.chmod(root, 0o755);
  await Deno.chmod(`${root}/html`, 0o755);
  await Deno.chmod(`${root}/html/index.html`, 0o644);
  return await NginxProcess.start(NGINX, {
    dir: root,
    workerConnections: 256,
    server: ({ port }) =>
      `server {
    listen 127.0.0.1:${port};
    root ${root}/html;
    keepalive_requests 100000;
  }`,
  });
}

/** A raw HTTP/1.1 exchange on an open connection: writes `request`, reads one response (Content-Length). */
async function exchange(conn: Deno.Conn, request: string): Promise<{ status: number; body: string }> {
  await conn.write(encoder.encode(request));
  let text = "";
  const buffer = new Uint8Array(65536);
  while (true) {
    const split = text.indexOf("\r\n\r\n");
    if (split !== -1) {
      const length = Number(/\r\ncontent-length: *(\d+)/i.exec(text.slice(0, split))?.[1] ?? "0");
      if (text.length >= split + 4 + length) {
        return { status: Number(text.split(" ")[1]), body: text.slice(split + 4, split + 4 + length) };
      }
    }
    const count = await conn.read(buffer);
    if (count === null) throw new Error(`connection ended after: ${text}`);
    text += decoder.decode(buffer.subarray(0, count));
  }
}

Deno.test({
  name:
    "vhosts: two clients serve their host names on one HTTP port and one HTTPS port; unknown hosts, dead " +
    "clients and slow services get 503/504 pages; WebSocket, chunked uploads, basic auth and SNI work",
  ignore: !CURL,
  async fn(t) {
    const work = await makeWorkdir();
    const backendA = startBackend("A");
    const backendB = startBackend("B");
    const nginx = await startNginx(work.dir);
    const tlsBackend = Deno.serve({
      hostname: "127.0.0.1",
      port: 0,
      cert: await Deno.readTextFile(work.certPath),
      key: await Deno.readTextFile(work.keyPath),
      onListen: () => {},
    }, () => new Response("hello over tls\n"));
    const httpPort = freePort();
    let httpsPort = freePort();
    while (httpsPort === httpPort) httpsPort = freePort();
    const serverPort = freePort();
    const statsPort = freePort();
    const processes: CliProcess[] = [];
    try {
      const serverConfig = `${work.dir}/server.toml`;
      await Deno.writeTextFile(
        serverConfig,
        `[server]\nbind_addr = "127.0.0.1"\nbind_port = ${serverPort}\ncert_path = "${work.certPath}"\n` +
          `key_path = "${work.keyPath}"\nauth_key = "${PROCESS_AUTH_KEY}"\nkeepalive_interval_secs = 1\n` +
          `keepalive_timeout_secs = 3\nstats_port = ${statsPort}\n` +
          `vhost_http_addr = "127.0.0.1"\nvhost_http_port = ${httpPort}\n` +
          `vhost_https_addr = "127.0.0.1"\nvhost_https_port = ${httpsPort}\n` +
          `subdomain_host = "tunnel.test"\nrequest_timeout_secs = 2\n`,
        { mode: 0o600 },
      );
      const clientConfig = async (name: string, proxies: string) => {
        const path = `${work.dir}/${name}.toml`;
        await Deno.writeTextFile(
          path,
          `[client]\nserver_addr = "127.0.0.1"\nserver_port = ${serverPort}\nserver_name = "localhost"\n` +
            `ca_cert_path = "${work.caPath}"\nauth_key = "${PROCESS_AUTH_KEY}"\nclient_id = "${name}"\n` +
            `keepalive_interval_secs = 1\nkeepalive_timeout_secs = 3\n\n${proxies}`,
          { mode: 0o600 },
        );
        return path;
      };
      const start = (args: string[]) => {
        const process = new CliProcess(args, { env: { TLS_TUNNEL_RECONNECT_DELAY_SECS: "0.2" } });
        processes.push(process);
        return process;
      };
      const server = start(["server", "-c", serverConfig]);
      await server.waitForLine(/Serving HTTPS vhosts/);
      const alpha = start([
        "client",
        "-c",
        await clientConfig(
          "alpha",
          `[[proxies]]\nname = "web"\nproxy_type = "http"\ncustom_domains = ["App.Example.com"]\n` +
            `local_port = ${backendA.port}\n\n` +
            `[[proxies]]\nname = "api"\nproxy_type = "http"\nsubdomain = "api"\nlocations = ["/v1"]\n` +
            `http_user = "ann"\nhttp_password = "s3cret-pass"\nhost_header_rewrite = "internal.local"\n` +
            `local_port = ${backendB.port}\n\n` +
            `[[proxies]]\nname = "secure"\nproxy_type = "https"\ncustom_domains = ["secure.example.com"]\n` +
            `local_port = ${tlsBackend.addr.port}\n`,
        ),
      ]);
      const beta = start([
        "client",
        "-c",
        await clientConfig(
          "beta",
          `[[proxies]]\nname = "blog"\nproxy_type = "http"\ncustom_domains = ["blog.example.com"]\n` +
            `local_port = ${nginx?.port ?? backendB.port}\n`,
        ),
      ]);
      for (const name of ["web", "api", "secure"]) await alpha.waitForLine(new RegExp(`Proxy ${name}: `));
      await beta.waitForLine(/Proxy blog: /);
      const base = `http://127.0.0.1:${httpPort}`;

      await t.step(
        "curl with a Host header reaches its client's service, with X-Forwarded-* added",
        async () => {
          const answer = await curl([
            "-H",
            "Host: app.example.com",
            "-H",
            "X-Forwarded-For: 6.6.6.6",
            `${base}/hi?x=1`,
          ]);
          assert.equal(answer.status, 200, answer.head);
          const seen = JSON.parse(answer.body);
          assert.equal(seen.backend, "A");
          assert.equal(seen.path, "/hi?x=1");
          assert.equal(seen.host, "app.example.com");
          assert.equal(seen.forwardedFor, "127.0.0.1", "the outside's own X-Forwarded-For is replaced");
          assert.equal(seen.forwardedProto, "http");
          assert.equal(seen.forwardedHost, "app.example.com");
        },
      );

      await t.step("curl --resolve reaches the other client's host (nginx when installed)", async () => {
        const answer = await curl([
          "--resolve",
          `blog.example.com:${httpPort}:127.0.0.1`,
          `http://blog.example.com:${httpPort}/`,
        ]);
        assert.equal(answer.status, 200, answer.head);
        if (nginx) assert.equal(answer.body, "hello from nginx\n");
        else assert.equal(JSON.parse(answer.body).host, `blog.example.com:${httpPort}`);
      });

      await t.step(
        "an unknown host gets a 503 naming it, plain or HTML, and the connection stays usable",
        async () => {
          const plain = await curl(["-H", "Host: nope.example.com", `${base}/`]);
          assert.equal(plain.status, 503);
          assert.equal(plain.body, "no tunnel is serving nope.example.com right now\n");
          const html = await curl([
            "-H",
            "Host: <b>x</b>.example.com",
            "-H",
            "Accept: text/html",
            `${base}/`,
          ]);
          assert.equal(html.status, 503);
          assert.match(html.head, /content-type: text\/html/i);
          assert.doesNotMatch(html.body, /<b>/, "the host is escaped");
          const conn = await Deno.connect({ hostname: "127.0.0.1", port: httpPort });
          try {
            const first = await exchange(conn, "GET / HTTP/1.1\r\nHost: nope.example.com\r\n\r\n");
            assert.equal(first.status, 503);
            const second = await exchange(conn, "GET /again HTTP/1.1\r\nHost: app.example.com\r\n\r\n");
            assert.equal(second.status, 200);
            assert.equal(JSON.parse(second.body).path, "/again");
          } finally {
            conn.close();
          }
        },
      );

      await t.step("keep-alive requests alternating between hosts each reach their own service", async () => {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: httpPort });
        try {
          for (let round = 0; round < 3; round++) {
            const a = await exchange(conn, `GET /a${round} HTTP/1.1\r\nHost: app.example.com\r\n\r\n`);
            assert.equal(JSON.parse(a.body).path, `/a${round}`);
            const b = await exchange(conn, `GET / HTTP/1.1\r\nHost: blog.example.com\r\n\r\n`);
            assert.equal(b.status, 200);
            if (nginx) assert.equal(b.body, "hello from nginx\n");
          }
        } finally {
          conn.close();
        }
      });

      await t.step(
        "basic auth: 401 with WWW-Authenticate without it, the service with it; locations route",
        async () => {
          const url = `${base}/v1/items`;
          const denied = await curl(["-H", "Host: api.tunnel.test", url]);
          assert.equal(denied.status, 401);
          assert.match(denied.head, /www-authenticate: Basic realm="api\.tunnel\.test"/i);
          const wrong = await curl(["-H", "Host: api.tunnel.test", "-u", "ann:wrong", url]);
          assert.equal(wrong.status, 401);
          const allowed = await curl(["-H", "Host: api.tunnel.test", "-u", "ann:s3cret-pass", url]);
          assert.equal(allowed.status, 200, allowed.head);
          const seen = JSON.parse(allowed.body);
          assert.equal(seen.backend, "B");
          assert.equal(seen.host, "internal.local", "host_header_rewrite");
          assert.equal(seen.forwardedHost, "api.tunnel.test");
          const elsewhere = await curl([
            "-H",
            "Host: api.tunnel.test",
            "-u",
            "ann:s3cret-pass",
            `${base}/v2`,
          ]);
          assert.equal(elsewhere.status, 503, "no location of api.tunnel.test matches /v2");
        },
      );

      await t.step("a chunked upload of 3 MiB streams through whole (sha256)", async () => {
        const upload = new Uint8Array(3 * 1024 * 1024).map((_, index) => (index * 31) & 0xff);
        const answer = await curl([
          "-H",
          "Host: app.example.com",
          "-H",
          "Transfer-Encoding: chunked",
          "--data-binary",
          "@-",
          `${base}/upload`,
        ], upload);
        assert.equal(answer.status, 200, answer.head);
        const seen = JSON.parse(answer.body);
        assert.equal(seen.method, "POST");
        assert.equal(seen.bodyBytes, upload.length);
        assert.equal(seen.bodySha256, await sha256Hex(upload));
      });

      await t.step("a WebSocket upgrade echoes through the vhost", async () => {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: httpPort });
        try {
          await conn.write(encoder.encode(
            "GET /ws HTTP/1.1\r\nHost: app.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
          ));
          // A masked text frame "ping" (mask 1,2,3,4).
          const payload = encoder.encode("ping");
          const mask = [1, 2, 3, 4];
          const frame = new Uint8Array([
            0x81,
            0x80 | payload.length,
            ...mask,
            ...payload.map((b, i) => b ^ mask[i % 4]!),
          ]);
          let text = "";
          const buffer = new Uint8Array(4096);
          let received = new Uint8Array(0);
          while (!text.includes("\r\n\r\n")) {
            const count = await conn.read(buffer);
            assert.ok(count !== null, "closed before the 101");
            received = new Uint8Array([...received, ...buffer.subarray(0, count)]);
            text = decoder.decode(received);
          }
          assert.match(text, /^HTTP\/1\.1 101 /);
          await conn.write(frame);
          let rest = received.subarray(text.indexOf("\r\n\r\n") + 4);
          while (rest.length < 2 || rest.length < 2 + (rest[1]! & 0x7f)) {
            const count = await conn.read(buffer);
            assert.ok(count !== null, "closed before the echo");
            rest = new Uint8Array([...rest, ...buffer.subarray(0, count)]);
          }
          assert.equal(rest[0], 0x81);
          assert.equal(decoder.decode(rest.subarray(2, 2 + (rest[1]! & 0x7f))), "echo:ping");
        } finally {
          conn.close();
        }
      });

      await t.step("a service slower than request_timeout_secs gets a 504", async () => {
        const started = performance.now();
        const answer = await curl(["-H", "Host: app.example.com", `${base}/slow`]);
        assert.equal(answer.status, 504);
        assert.match(answer.body, /did not answer within 2 s/);
        assert.ok(
          performance.now() - started < 4500,
          "answered at the timeout, not when the service answered",
        );
      });

      await t.step(
        "https: curl and openssl s_client reach the TLS service by SNI; an unknown SNI is closed",
        async () => {
          const answer = await curl([
            "-k",
            "--resolve",
            `secure.example.com:${httpsPort}:127.0.0.1`,
            `https://secure.example.com:${httpsPort}/`,
          ]);
          assert.equal(answer.status, 200);
          assert.equal(answer.body, "hello over tls\n");
          if (OPENSSL) {
            const known = await run(OPENSSL, [
              "s_client",
              "-connect",
              `127.0.0.1:${httpsPort}`,
              "-servername",
              "secure.example.com",
              "-brief",
            ], encoder.encode("Q\n"));
            assert.match(known.err + known.out, /CONNECTION ESTABLISHED|Protocol version/, known.err);
            const unknown = await run(OPENSSL, [
              "s_client",
              "-connect",
              `127.0.0.1:${httpsPort}`,
              "-servername",
              "unknown.example.com",
              "-brief",
            ], encoder.encode("Q\n"));
            assert.doesNotMatch(unknown.err + unknown.out, /CONNECTION ESTABLISHED/);
          }
          // node:tls with an unknown SNI: the server closes after the ClientHello, no certificate is seen.
          const outcome = await new Promise<string>((resolve) => {
            const socket = connectTls({
              host: "127.0.0.1",
              port: httpsPort,
              servername: "other.example.com",
              rejectUnauthorized: false,
            });
            socket.on("secureConnect", () => {
              socket.destroy();
              resolve("handshake completed");
            });
            socket.on("error", (error) => resolve(`error: ${error.message}`));
            socket.on("close", () => resolve("closed"));
          });
          assert.notEqual(outcome, "handshake completed");
        },
      );

      await t.step(
        "a third client asking for a served domain is refused with DOMAIN_IN_USE, for the shared port with RESERVED_PORT",
        async () => {
          const gamma = start([
            "client",
            "-c",
            await clientConfig(
              "gamma",
              `[[proxies]]\nname = "copy"\nproxy_type = "http"\ncustom_domains = ["app.example.com"]\n` +
                `local_port = ${backendB.port}\n\n` +
                `[[proxies]]\nname = "squatter"\npublish_addr = "127.0.0.1"\npublish_port = ${httpPort}\n` +
                `local_port = ${backendB.port}\n`,
            ),
          ]);
          await gamma.waitForLine(/DOMAIN_IN_USE/);
          // A tcp proxy cannot take the shared port either.
          await gamma.waitForLine(/squatter rejected \(RESERVED_PORT\).*vhost_http_port/);
          assert.equal(
            JSON.parse((await curl(["-H", "Host: app.example.com", `${base}/`])).body).backend,
            "A",
          );
          await gamma.stop();
        },
      );

      if (WRK) {
        await t.step("wrk: 2 s of keep-alive load through two vhosts at once, without errors", async () => {
          const runs = await Promise.all(
            ["app.example.com", "blog.example.com"].map((host) =>
              run(WRK, ["-t1", "-c8", "-d2s", "-H", `Host: ${host}`, `${base}/`])
            ),
          );
          for (const result of runs) {
            assert.equal(result.code, 0, result.err);
            assert.doesNotMatch(result.out, /Non-2xx|Socket errors/, result.out);
            console.log(result.out.split("\n").find((line) => line.startsWith("Requests/sec")));
          }
        });
      }

      await t.step(
        "a client killed with -9: its host gets the 503 page, the other client's host still works",
        async () => {
          beta.kill("SIGKILL");
          await waitFor(
            async () => (await curl(["-H", "Host: blog.example.com", `${base}/`])).status === 503,
            8000,
            "blog to be unserved",
          );
          const answer = await curl(["-H", "Host: blog.example.com", `${base}/`]);
          assert.equal(answer.body, "no tunnel is serving blog.example.com right now\n");
          assert.equal((await curl(["-H", "Host: app.example.com", `${base}/`])).status, 200);
        },
      );

      await t.step("/api/stats and /metrics count requests by vhost and status, 503s and 504s", async () => {
        const stats = await (await fetch(`http://127.0.0.1:${statsPort}/api/stats`)).json();
        const vhost = stats.vhost;
        assert.ok(vhost, JSON.stringify(stats).slice(0, 500));
        const count = (host: string, status: number) =>
          vhost.http_requests.find((entry: { host: string; status: number }) =>
            entry.host === host && entry.status === status
          )?.count ?? 0;
        assert.ok(count("app.example.com", 200) >= 5);
        assert.ok(count("", 503) >= 3);
        // At least the /slow one (a request slowed past 2 s by a loaded machine would be another).
        assert.ok(count("app.example.com", 504) >= 1);
        assert.ok(vhost.http_no_tunnel_total >= 4);
        assert.ok(vhost.http_timeouts_total >= count("app.example.com", 504));
        assert.ok(
          vhost.https_connections.some((entry: { host: string }) => entry.host === "secure.example.com"),
        );
        assert.ok(vhost.https_refused_total >= 1);
        const metrics = await (await fetch(`http://127.0.0.1:${statsPort}/metrics`)).text();
        assert.match(
          metrics,
          /tls_tunnel_vhost_http_requests_total\{vhost="app\.example\.com",status="200"\} \d+/,
        );
        assert.match(metrics, /tls_tunnel_vhost_http_timeouts_total [1-9]/);
        assert.deepEqual(expositionProblems(metrics), [], "the exposition with vhost series is well-formed");
      });
    } finally {
      for (const process of processes.reverse()) await process.stop();
      await nginx?.stop();
      await Promise.all([backendA.server.shutdown(), backendB.server.shutdown(), tlsBackend.shutdown()]);
      await work.cleanup();
    }
  },
});

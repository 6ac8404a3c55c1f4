/**
 * `proxy_protocol = "v1" | "v2"` end to end: Debian's nginx is the local service, listening with
 * `proxy_protocol`, answering `$proxy_protocol_addr`/`_port` and the server-side address it was told, and
 * logging `$proxy_protocol_addr`. Real `deno run main.ts` server and client; the outside peer's own
 * address and ephemeral port must come out of nginx. Skipped (with a note) where nginx is not installed.
 */

import assert from "node:assert/strict";
import { readAll } from "../testing/bytes.ts";
import { freePort, waitFor } from "../testing/helpers.ts";
import { installedNginx, NginxProcess } from "../testing/nginx.ts";
import { ProcessTunnel, proxyUp } from "../testing/process_tunnel.ts";

const NGINX = installedNginx();

/** nginx that takes the PROXY protocol on its port and logs `$proxy_protocol_addr`; stopped on dispose. */
function startProxyProtocolNginx(binary: string): Promise<NginxProcess> {
  return NginxProcess.start(binary, {
    tempPrefix: "tls-tunnel-nginx-pp-",
    workerConnections: 64,
    logging: ({ dir }) =>
      `log_format pp '$proxy_protocol_addr:$proxy_protocol_port $remote_addr "$request" $status';
  access_log ${dir}/access.log pp;`,
    server: ({ port }) =>
      `server {
    listen 127.0.0.1:${port} proxy_protocol;
    location / {
      default_type text/plain;
      return 200 "$proxy_protocol_addr $proxy_protocol_port $proxy_protocol_server_addr $proxy_protocol_server_port";
    }
  }`,
  });
}

/** nginx's access log so far. */
async function accessLog(nginx: NginxProcess): Promise<string> {
  try {
    return await Deno.readTextFile(`${nginx.dir}/access.log`);
  } catch {
    return "";
  }
}

/** One HTTP/1.0 GET through 127.0.0.1:`port`; returns the body and the local port it came from. */
async function getFrom(port: number): Promise<{ body: string; localPort: number; status: string }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const localPort = (conn.localAddr as Deno.NetAddr).port;
  const timer = setTimeout(() => conn.close(), 10_000);
  try {
    await conn.write(new TextEncoder().encode("GET / HTTP/1.0\r\nHost: pp.test\r\n\r\n"));
    const text = new TextDecoder().decode(await readAll(conn, 4096));
    const [head = "", body = ""] = text.split("\r\n\r\n");
    return { body, localPort, status: head.split("\r\n")[0] ?? "" };
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch {
      // Closed by the timer.
    }
  }
}

Deno.test({
  name: "proxy_protocol v1 and v2: nginx behind the tunnel sees the outside peer's address and port",
  ignore: NGINX === undefined,
  async fn() {
    await using nginx = await startProxyProtocolNginx(NGINX ?? "");
    await using tunnel = await ProcessTunnel.create();
    await tunnel.server();
    const v1Port = freePort();
    const v2Port = freePort();
    const plainPort = freePort();
    const client = tunnel.client(
      await tunnel.clientConfig("client", [
        { name: "ppv1", publishPort: v1Port, localPort: nginx.port, lines: `proxy_protocol = "v1"` },
        { name: "ppv2", publishPort: v2Port, localPort: nginx.port, lines: `proxy_protocol = "v2"` },
        { name: "plain", publishPort: plainPort, localPort: nginx.port },
      ]),
    );
    await client.waitForLine(proxyUp("ppv1"));
    await client.waitForLine(proxyUp("ppv2"));
    await client.waitForLine(proxyUp("plain"));

    for (const port of [v1Port, v2Port]) {
      const answer = await getFrom(port);
      assert.match(answer.status, / 200 /, `through ${port}: ${answer.status}`);
      // Source: this test's own connection; destination: the published address and port.
      assert.equal(answer.body, `127.0.0.1 ${answer.localPort} 127.0.0.1 ${port}`);
    }
    // Without the header nginx (listening with proxy_protocol) refuses the connection: the header is what
    // made the two above work.
    const plain = await getFrom(plainPort).catch(() => ({ body: "", localPort: 0, status: "" }));
    assert.doesNotMatch(plain.status, / 200 /);

    await waitFor(
      async () => (await accessLog(nginx)).split("\n").filter((line) => line).length >= 2,
      5000,
      "the log",
    );
    const log = await accessLog(nginx);
    assert.match(log, /^127\.0\.0\.1:\d+ 127\.0\.0\.1 "GET \/ HTTP\/1\.0" 200$/m);
  },
});

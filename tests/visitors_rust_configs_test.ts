/**
 * The Rust tls-tunnel's visitor examples run as they are written, only ports adjusted: its
 * standalone-server.toml, visitor-client-a.toml (a proxy without publish_addr: private, as there) and
 * visitor-client-b.toml (two visitors, one of them for that proxy) as real `deno run main.ts` processes.
 */

import assert from "node:assert/strict";
import {
  canBind,
  CliProcess,
  EchoService,
  freePort,
  makeWorkdir,
  PROJECT_ROOT,
  tryExchange,
} from "../testing/helpers.ts";
import { echoThrough } from "../testing/process_tunnel.ts";

const RUST = new URL("../shared/compat/rust-tls-tunnel-1.5.1/", `file://${PROJECT_ROOT}`).pathname;

Deno.test("the Rust tool's visitor examples run: client A's ssh-proxy is private, client B's visitor reaches it, its mysql visitor is told NOT_FOUND", async () => {
  const work = await makeWorkdir();
  const echo = new EchoService();
  const processes: CliProcess[] = [];
  try {
    const [serverPort, sshVisitorPort, mysqlVisitorPort] = [freePort(), freePort(), freePort()];
    // The server generates a throw-away certificate (its cert_path is commented out); the clients skip
    // verification, as the examples do.
    const serverText = (await Deno.readTextFile(`${RUST}standalone-server.toml`))
      .replace(/^bind_addr = .*$/m, `bind_addr = "127.0.0.1"`)
      .replace(/^bind_port = .*$/m, `bind_port = ${serverPort}`);
    const localhost = (text: string) =>
      text.replace(/^server_addr = .*$/m, `server_addr = "127.0.0.1"`)
        .replace(/^server_port = .*$/m, `server_port = ${serverPort}`);
    const clientA = localhost(await Deno.readTextFile(`${RUST}visitor-client-a.toml`))
      .replace(/^local_port = 22 .*$/m, `local_port = ${echo.port}`);
    const clientB = localhost(await Deno.readTextFile(`${RUST}visitor-client-b.toml`))
      .replace(/^bind_port = 3306$/m, `bind_port = ${mysqlVisitorPort}`)
      .replace(/^bind_port = 2223$/m, `bind_port = ${sshVisitorPort}`);
    assert.notEqual(
      clientA,
      localhost(await Deno.readTextFile(`${RUST}visitor-client-a.toml`)),
      "local_port",
    );
    await Deno.writeTextFile(`${work.dir}/server.toml`, serverText, { mode: 0o600 });
    await Deno.writeTextFile(`${work.dir}/a.toml`, clientA, { mode: 0o600 });
    await Deno.writeTextFile(`${work.dir}/b.toml`, clientB, { mode: 0o600 });

    const server = new CliProcess(["server", "-c", `${work.dir}/server.toml`]);
    processes.push(server);
    await server.waitForLine(/Listening for clients on/);
    const a = new CliProcess(["client", "-c", `${work.dir}/a.toml`]);
    const b = new CliProcess(["client", "-c", `${work.dir}/b.toml`]);
    processes.push(a, b);
    await a.waitForLine(/Proxy ssh-proxy: private \(visitors: name ssh-proxy, publish_port 2222\)/);
    await b.waitForLine(/Authenticated with/);
    // Private as in the Rust tool: 2222 is not bound on the server (it may be free or another program's).
    await server.waitForLine(/Proxy ssh-proxy of \S+ is private: visitors reach it as \(ssh-proxy, 2222\)/);
    assert.ok(!server.lines.some((line) => /listening on .*:2222/.test(line)), "the server bound 2222");
    assert.ok(
      !canBind(sshVisitorPort) && !canBind(mysqlVisitorPort),
      "client B listens on both visitor ports",
    );

    assert.equal(await echoThrough(sshVisitorPort, "SSH-2.0-test\r\n"), "SSH-2.0-test\r\n");
    const mysql = await tryExchange(mysqlVisitorPort, "SELECT 1;\n");
    assert.ok(mysql instanceof Error || mysql === "", `answered ${JSON.stringify(mysql)}`);
    await b.waitForLine(/Visitor 'mysql-proxy' \(publish_port 3306\): .*\(NOT_FOUND\)/, 5000);
  } finally {
    for (const process of processes.reverse()) await process.stop();
    await echo.close();
    await work.cleanup();
  }
});

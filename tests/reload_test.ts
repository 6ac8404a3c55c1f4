/**
 * Hot reload with the real CLI (`deno run main.ts` processes): a client reload adds and removes proxies
 * while a transfer through an untouched one goes on, on the same session; an invalid config is refused
 * with `check`'s messages; a server reload revokes a key, shrinks a client's allow_ports and swaps the
 * certificate. Triggers: SIGHUP, a change of the file, and `tls-tunnel reload`.
 */

import assert from "node:assert/strict";
import { connect as tlsConnect } from "node:tls";
import { generateCertificates } from "../lib/pki/cert.ts";
import { closeQuietly } from "../lib/transport/pipe.ts";
import { writeAll } from "../lib/net/conn.ts";
import { canBind, CliProcess, freePort, sha256Hex, waitFor } from "../testing/helpers.ts";
import { echoThrough, FAST_RECONNECT, ProcessTunnel, proxyUp } from "../testing/process_tunnel.ts";

const STATS_TOKEN = "reload-test-stats-token-0123";

/** The server's stats (`/api/stats`, no token: loopback). */
async function serverStats(statsPort: number): Promise<{ clients: { name: string; session_id: string }[] }> {
  const response = await fetch(`http://127.0.0.1:${statsPort}/api/stats`);
  return await response.json();
}

/** The client's stats, with its token. */
async function clientStats(
  statsPort: number,
): Promise<{ sessions_total: number; proxies: { name: string }[] }> {
  const response = await fetch(`http://127.0.0.1:${statsPort}/api/stats`, {
    headers: { authorization: `Bearer ${STATS_TOKEN}` },
  });
  return await response.json();
}

/**
 * Sends `chunks` chunks of 32 KiB through 127.0.0.1:`port` (an echo through the tunnel), one every
 * `intervalMs`, reading the echo as it comes; resolves with the SHA-256 of what was sent and received.
 */
async function slowEcho(
  port: number,
  chunks: number,
  intervalMs: number,
): Promise<{ sent: string; got: string }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const sentParts: Uint8Array[] = [];
  const gotParts: Uint8Array[] = [];
  try {
    const reading = (async () => {
      const buffer = new Uint8Array(64 * 1024);
      while (true) {
        const count = await conn.read(buffer);
        if (count === null) return;
        gotParts.push(buffer.slice(0, count));
      }
    })();
    for (let index = 0; index < chunks; index++) {
      const chunk = crypto.getRandomValues(new Uint8Array(32 * 1024));
      sentParts.push(chunk);
      await writeAll(conn, chunk);
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
    await conn.closeWrite();
    await reading;
  } finally {
    closeQuietly(conn);
  }
  const join = (parts: Uint8Array[]) => {
    const all = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
    let offset = 0;
    for (const part of parts) {
      all.set(part, offset);
      offset += part.length;
    }
    return all;
  };
  return { sent: await sha256Hex(join(sentParts)), got: await sha256Hex(join(gotParts)) };
}

Deno.test("a client reload adds and removes proxies on the live session; a transfer through an untouched proxy goes on", async () => {
  const serverStatsPort = freePort();
  await using tunnel = await ProcessTunnel.create(
    `stats_addr = "127.0.0.1"\nstats_port = ${serverStatsPort}\n`,
  );
  const clientStatsPort = freePort();
  const extra = `stats_addr = "127.0.0.1"\nstats_port = ${clientStatsPort}\nstats_token = "${STATS_TOKEN}"`;
  const [keepPort, dropPort, addPort] = [freePort(), freePort(), freePort()];
  const server = await tunnel.server();
  const configPath = await tunnel.clientConfig("client", [
    { name: "keep", publishPort: keepPort },
    { name: "drop", publishPort: dropPort },
  ], extra);
  const client = tunnel.client(configPath);
  await client.waitForLine(proxyUp("keep"));
  await client.waitForLine(proxyUp("drop"));
  const sessionBefore = (await serverStats(serverStatsPort)).clients[0]?.session_id;
  assert.ok(sessionBefore, "the server lists the client's session");

  // 60 chunks every 50 ms: about 3 s of transfer, across the reload.
  const transfer = slowEcho(keepPort, 60, 50);
  await new Promise((resolve) => setTimeout(resolve, 500));
  await tunnel.clientConfig("client", [
    { name: "keep", publishPort: keepPort },
    { name: "added", publishPort: addPort },
  ], extra);
  client.kill("SIGHUP");
  await client.waitForLine(/Config reloaded: added added; removed drop/);
  await waitFor(() => canBind(dropPort), 3000, "the removed proxy's port to be free");
  assert.equal(await echoThrough(addPort, "hello added"), "hello added");
  const { sent, got } = await transfer;
  assert.equal(got, sent, "the transfer through the untouched proxy came back whole");
  assert.equal((await serverStats(serverStatsPort)).clients[0]?.session_id, sessionBefore, "same session");
  const stats = await clientStats(clientStatsPort);
  assert.equal(stats.sessions_total, 1, "the client did not reconnect");
  assert.deepEqual(stats.proxies.map((proxy) => proxy.name).sort(), ["added", "keep"]);

  // An invalid config: refused with `check`'s lines, through `tls-tunnel reload -c FILE`; the old one serves.
  await Deno.writeTextFile(
    configPath,
    (await Deno.readTextFile(configPath)).replace(`publish_port = ${addPort}`, `publish_port = 70000`),
  );
  const check = new CliProcess(["check", "-c", configPath], { env: FAST_RECONNECT });
  assert.equal((await check.status()).code, 1);
  const checkIssues = [...check.records, ...check.stdoutRecords].find((record) => record.properties?.issues)
    ?.properties?.issues;
  assert.ok(
    Array.isArray(checkIssues) && checkIssues.length > 0,
    `check lists the problems:\n${check.output}`,
  );
  const reload = new CliProcess(["reload", "-c", configPath]);
  assert.equal((await reload.status()).code, 1, reload.output);
  const refusal = reload.records.find((record) => /reload refused/.test(record.message));
  assert.ok(refusal, `reload says it was refused:\n${reload.output}`);
  assert.deepEqual(refusal.properties?.issues, checkIssues, "reload lists the problems check lists");
  assert.match(refusal.message, /70000 is not a valid port/);
  // The file watch may have asked first: the request joins that reload.
  await client.waitForLine(/Reload \((tls-tunnel reload|config file change)\) refused/);
  assert.equal(await echoThrough(addPort, "still here"), "still here");
  assert.equal(await echoThrough(keepPort, "and here"), "and here");
  assert.equal((await clientStats(clientStatsPort)).sessions_total, 1);
  assert.ok(!client.exited && !server.exited);
});

/** A client config of its own key (a `[[server.clients]]` entry). */
async function namedClient(
  tunnel: ProcessTunnel,
  name: string,
  key: string,
  proxies: { name: string; port: number }[],
): Promise<string> {
  const path = `${tunnel.dir}/${name}.toml`;
  await Deno.writeTextFile(
    path,
    `[client]\nserver_addr = "127.0.0.1"\nserver_port = ${tunnel.serverPort}\nserver_name = "localhost"\n` +
      `ca_cert_path = "${tunnel.caPath}"\nauth_key = "${key}"\nclient_id = "${name}"\n` +
      `keepalive_interval_secs = 1\nkeepalive_timeout_secs = 3\n[client.reconnect]\nmax_delay_secs = 1\n\n` +
      proxies.map((proxy) =>
        `[[proxies]]\nname = "${proxy.name}"\npublish_addr = "127.0.0.1"\npublish_port = ${proxy.port}\n` +
        `local_addr = "127.0.0.1"\nlocal_port = ${tunnel.echo.port}\n`
      ).join("\n"),
    { mode: 0o600 },
  );
  return path;
}

/** The SHA-256 fingerprint (colon hex) of the certificate the server presents to a new connection. */
function presentedFingerprint(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({
      host: "127.0.0.1",
      port,
      servername: "localhost",
      rejectUnauthorized: false,
    });
    socket.once("secureConnect", () => {
      const fingerprint = socket.getPeerCertificate().fingerprint256;
      socket.destroy();
      resolve(fingerprint);
    });
    socket.once("error", (error) => {
      socket.destroy();
      reject(error);
    });
  });
}

Deno.test("a server reload disconnects a client whose key was removed, drops exactly the proxies outside a shrunk allow_ports, and swaps the certificate for new handshakes only", async () => {
  const statsPort = freePort();
  await using tunnel = await ProcessTunnel.create();
  const [inside, outside] = [freePort(), freePort()];
  const low = Math.min(inside, outside);
  const high = Math.max(inside, outside);
  const aliceKey = "alice-key-0123456789abcdef";
  const bobKey = "bob-key-0123456789abcdef01";
  const serverConfig = (bobPorts: string, withAlice: boolean, certDir = tunnel.dir) =>
    `[server]\nbind_addr = "127.0.0.1"\nbind_port = ${tunnel.serverPort}\n` +
    `cert_path = "${certDir}/cert.pem"\nkey_path = "${certDir}/key.pem"\n` +
    `keepalive_interval_secs = 1\nkeepalive_timeout_secs = 3\n` +
    `stats_addr = "127.0.0.1"\nstats_port = ${statsPort}\nstats_token = "${STATS_TOKEN}"\n\n` +
    (withAlice ? `[[server.clients]]\nname = "alice"\nauth_key = "${aliceKey}"\n\n` : "") +
    `[[server.clients]]\nname = "bob"\nauth_key = "${bobKey}"\nallow_ports = "${bobPorts}"\n`;
  await Deno.writeTextFile(tunnel.serverConfigPath, serverConfig(`${low}-${high}`, true), { mode: 0o600 });
  const server = await tunnel.server();
  const alice = tunnel.client(
    await namedClient(tunnel, "alice", aliceKey, [{ name: "a", port: freePort() }]),
  );
  const bob = tunnel.client(
    await namedClient(tunnel, "bob", bobKey, [{ name: "in", port: inside }, { name: "out", port: outside }]),
  );
  await alice.waitForLine(proxyUp("a"));
  await bob.waitForLine(proxyUp("in"));
  await bob.waitForLine(proxyUp("out"));
  const stats = async () => {
    const response = await fetch(`http://127.0.0.1:${statsPort}/api/stats`, {
      headers: { authorization: `Bearer ${STATS_TOKEN}` },
    });
    return (await response.json()) as { clients: { name: string; session_id: string }[] };
  };
  const bobSession = (await stats()).clients.find((client) => client.name === "bob")?.session_id;
  assert.ok(bobSession);

  // 1. alice's key removed (SIGHUP): told why, disconnected, and refused when it comes back.
  await Deno.writeTextFile(tunnel.serverConfigPath, serverConfig(`${low}-${high}`, false));
  server.kill("SIGHUP");
  await server.waitForLine(
    /Client alice disconnected: the server's reloaded config no longer accepts the key/,
  );
  await alice.waitForLine(/KEY_REVOKED/);
  assert.equal((await alice.status()).code, 1, "alice stops: its key is refused from now on");
  assert.match(alice.output, /auth_key is not accepted/);
  assert.deepEqual((await stats()).clients.map((client) => client.name), ["bob"]);

  // 2. bob's allow_ports shrunk to the inside port (`tls-tunnel reload`): exactly "out" is dropped.
  await Deno.writeTextFile(tunnel.serverConfigPath, serverConfig(`${inside}`, false));
  const reload = new CliProcess(["reload", "-c", tunnel.serverConfigPath]);
  assert.equal((await reload.status()).code, 0, reload.output);
  // The file watch may have reloaded first: then this reload found nothing left to do.
  assert.match(reload.stdout, /Reloaded: 1 client\(s\) connected/);
  await server.waitForLine(/Proxy out of bob stopped: port \d+ is outside this client's allow_ports/);
  await bob.waitForLine(/PROXY_REVOKED/);
  await bob.waitForLine(/Proxy out is closed/);
  assert.equal(canBind(outside), true, "the dropped proxy's port is free");
  assert.equal(await echoThrough(inside, "inside"), "inside");
  assert.equal((await stats()).clients.find((client) => client.name === "bob")?.session_id, bobSession);

  // 3. A new certificate (a change of the file alone): new handshakes see it; bob's session stays.
  const before = await presentedFingerprint(tunnel.serverPort);
  const renewed = await generateCertificates({ commonName: "localhost", altNames: [], validityDays: 2 });
  const certDir = `${tunnel.dir}/renewed`;
  await Deno.mkdir(certDir);
  await Deno.writeTextFile(`${certDir}/cert.pem`, renewed.serverChainPem);
  await Deno.writeTextFile(`${certDir}/key.pem`, renewed.serverKeyPem);
  await Deno.writeTextFile(tunnel.serverConfigPath, serverConfig(`${inside}`, false, certDir));
  // Every reload reads the certificate again: wait for the one naming the new certificate.
  await server.waitForLine(new RegExp(`present the certificate SHA-256 ${renewed.serverFingerprintSha256}`));
  const after = await presentedFingerprint(tunnel.serverPort);
  assert.notEqual(after, before);
  assert.equal(after, renewed.serverFingerprintSha256);
  assert.equal(await echoThrough(inside, "old session"), "old session");
  assert.equal((await stats()).clients.find((client) => client.name === "bob")?.session_id, bobSession);
  assert.ok(!bob.exited && !server.exited);
});

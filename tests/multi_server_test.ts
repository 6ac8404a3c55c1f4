/**
 * One client, several servers, with the real CLI: two `deno run main.ts server` processes on 127.0.0.2 and
 * 127.0.0.3 (each publishing on its own address through `default_publish_addr`) and one client with both
 * in `[[client.servers]]`. Killing one server with SIGKILL leaves the other serving; the client's stats
 * show the dead one down, and once it is restarted the client registers there again by itself.
 */

import assert from "node:assert/strict";
import { waitFor } from "../testing/helpers.ts";
import type { RegisterProxiesResult } from "../lib/protocol/control.ts";
import { RawClient } from "../testing/raw_client.ts";
import { startServer } from "../testing/tunnel.ts";
import { echoAt, echoesAt, freePortOnAll, SERVER_ADDRESSES, TwoServers } from "../testing/multi_server.ts";

const [ADDRESS_A, ADDRESS_B] = SERVER_ADDRESSES;

Deno.test("a client with two servers publishes on both; one server killed, the other serves; restarted, it is used again", async () => {
  await using fixture = await TwoServers.create();
  const { publishPort } = fixture;
  await fixture.startServer(0);
  await fixture.startServer(1);
  const client = fixture.startClient();
  // Each server publishes the proxy on its own default_publish_addr, the same port.
  await client.waitForLine(new RegExp(`Proxy web: 127\\.0\\.0\\.2:${publishPort}`));
  await client.waitForLine(new RegExp(`Proxy web: 127\\.0\\.0\\.3:${publishPort}`));
  assert.equal(await echoAt(ADDRESS_A, publishPort, "via a"), "via a");
  assert.equal(await echoAt(ADDRESS_B, publishPort, "via b"), "via b");
  // The wildcard is not bound by either server: nothing answers on 127.0.0.1.
  await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port: publishPort }));

  const stats = await fixture.clientStats();
  assert.equal(stats.state, "connected");
  assert.deepEqual(stats.servers?.map((server) => [server.name, server.state]), [
    ["a", "connected"],
    ["b", "connected"],
  ]);
  assert.equal(stats.proxies.length, 1, "the proxy appears once at the top level, merged over the servers");
  assert.equal(stats.servers?.[0]?.proxies[0]?.publish_addr, ADDRESS_A);
  assert.equal(stats.servers?.[1]?.proxies[0]?.publish_addr, ADDRESS_B);
  // One client_id for the config: both servers were told the same one.
  const ids = fixture.servers.map((server) => /Client (\S+) connected from/.exec(server?.output ?? "")?.[1]);
  assert.ok(ids[0] !== undefined && ids[0] === ids[1], `client ids on the servers: ${ids.join(", ")}`);
  const metrics = await fixture.clientMetrics();
  assert.match(metrics, /tls_tunnel_client_server_connected\{server="a"\} 1/);
  assert.match(metrics, /tls_tunnel_proxy_up\{server="b",proxy="web"\} 1/);

  await fixture.killServer(0);
  // The other server keeps serving, right away.
  assert.equal(await echoAt(ADDRESS_B, publishPort, "still b"), "still b");
  await waitFor(
    async () => (await fixture.serverState("a")) !== "connected",
    6000,
    "server a shown down",
    100,
  );
  // The status table printed for server a says its proxy is no longer published there.
  await client.waitForLine(/"message":"\[a\] web +pending +127\.0\.0\.2:/);
  const down = await fixture.clientStats();
  assert.equal(down.state, "connected", "the client stays connected through server b");
  assert.equal(down.servers?.find((server) => server.name === "b")?.state, "connected");
  assert.equal(await echoAt(ADDRESS_B, publishPort, "b again"), "b again");

  // Restarted on the same port, server a gets the client back without any action.
  await fixture.startServer(0);
  await waitFor(() => echoesAt(ADDRESS_A, publishPort), 15_000, "the proxy on 127.0.0.2 again", 100);
  await waitFor(async () => (await fixture.serverState("a")) === "connected", 5000, "server a shown up", 100);
  const back = await fixture.clientStats();
  assert.ok((back.servers?.[0]?.sessions_total ?? 0) >= 2, "server a's session is a new one");
  assert.equal(back.servers?.[1]?.sessions_total, 1, "server b's session was never touched");
});

Deno.test("a reload (SIGHUP) that adds a proxy publishes it on both servers, without a new session to either", async () => {
  await using fixture = await TwoServers.create();
  const { publishPort } = fixture;
  await fixture.startServer(0);
  await fixture.startServer(1);
  const client = fixture.startClient();
  for (const address of SERVER_ADDRESSES) {
    await waitFor(() => echoesAt(address, publishPort), 15_000, `the proxy on ${address}`, 50);
  }
  const addedPort = freePortOnAll();
  const config = await Deno.readTextFile(fixture.clientConfigPath);
  await Deno.writeTextFile(
    fixture.clientConfigPath,
    `${config}\n[[proxies]]\nname = "web2"\npublish_port = ${addedPort}\n` +
      `local_addr = "127.0.0.1"\nlocal_port = ${fixture.echo.port}\n`,
  );
  client.kill("SIGHUP");
  for (const address of SERVER_ADDRESSES) {
    await waitFor(() => echoesAt(address, addedPort), 10_000, `the added proxy on ${address}`, 50);
    assert.equal(await echoAt(address, publishPort, "untouched"), "untouched");
  }
  const stats = await fixture.clientStats();
  assert.deepEqual(stats.servers?.map((server) => server.sessions_total), [1, 1], "no session was renewed");
  assert.deepEqual(stats.servers?.map((server) => server.proxies.map((proxy) => proxy.name).sort()), [
    ["web", "web2"],
    ["web", "web2"],
  ]);
});

Deno.test("a proxy without publish_addr is published on the server's default_publish_addr; a malformed one is refused", async () => {
  const server = await startServer(`default_publish_addr = "127.0.0.1"\n`);
  const raw = await RawClient.dial(server.port, { clientId: "default-addr" });
  try {
    await raw.authenticate();
    const port = freePortOnAll();
    const base = { proxy_type: "tcp", local_addr: "127.0.0.1", local_port: 9 };
    const answer = await raw.rpc.request<RegisterProxiesResult>("register_proxies", {
      proxies: [
        { ...base, name: "plain", publish_port: port },
        { ...base, name: "null-addr", publish_addr: null, publish_port: 0 },
        { ...base, name: "number-addr", publish_addr: 5, publish_port: 0 },
        { ...base, name: "empty-addr", publish_addr: "", publish_port: 0 },
        { ...base, name: "name-addr", publish_addr: "localhost", publish_port: 0 },
        { ...base, name: "long-addr", publish_addr: "1".repeat(300), publish_port: 0 },
      ],
    });
    const [plain, ...bad] = answer.proxies;
    assert.deepEqual([plain?.status, plain?.publish_addr, plain?.publish_port], [
      "accepted",
      "127.0.0.1",
      port,
    ]);
    // Published on the default address only: 127.0.0.2 (same port) is not bound by this server.
    (await Deno.connect({ hostname: "127.0.0.1", port })).close();
    await assert.rejects(Deno.connect({ hostname: "127.0.0.2", port }));
    assert.deepEqual(
      bad.map((entry) => [entry.name, entry.status, entry.status === "rejected" && entry.code]),
      [
        ["null-addr", "rejected", "INVALID_PROXY"],
        ["number-addr", "rejected", "INVALID_PROXY"],
        ["empty-addr", "rejected", "INVALID_PROXY"],
        ["name-addr", "rejected", "INVALID_PROXY"],
        ["long-addr", "rejected", "INVALID_PROXY"],
      ],
    );
  } finally {
    await raw.close();
    await server.stop();
  }
});

Deno.test("a client with two servers forwards through the first server that has a session: through b once a is killed", async () => {
  await using fixture = await TwoServers.create("allow_forward = true\nforward_allow_private = true\n");
  const web = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (request) => new Response(`hello ${new URL(request.url).pathname}\n`),
  );
  const forwarderPort = freePortOnAll();
  const viaForwarder = Deno.createHttpClient({ proxy: { url: `http://127.0.0.1:${forwarderPort}` } });
  /** GET `path` on the web server through the client's forwarder: the body, or the status when not 200. */
  const get = async (path: string): Promise<string> => {
    const response = await fetch(`http://127.0.0.1:${web.addr.port}${path}`, { client: viaForwarder });
    const body = await response.text();
    return response.status === 200 ? body : `${response.status} ${body}`;
  };
  try {
    await Deno.writeTextFile(
      fixture.clientConfigPath,
      `\n[[forwarders]]\nname = "web-http"\nproxy_type = "http"\nbind_addr = "127.0.0.1"\nbind_port = ${forwarderPort}\n`,
      { append: true },
    );
    await fixture.startServer(0);
    await fixture.startServer(1);
    const client = fixture.startClient();
    await client.waitForLine(/Forwarder web-http: HTTP proxy on 127\.0\.0\.1:\d+/);
    await waitFor(
      async () => (await fixture.serverState("a")) === "connected",
      10_000,
      "server a connected",
      100,
    );
    await waitFor(
      async () => (await fixture.serverState("b")) === "connected",
      10_000,
      "server b connected",
      100,
    );
    assert.equal(await get("/first"), "hello /first\n");

    await fixture.killServer(0);
    await waitFor(
      async () => (await fixture.serverState("a")) !== "connected",
      6000,
      "server a shown down",
      100,
    );
    // Server a's session is gone: the forwarder's next connection goes through b.
    assert.equal(await get("/second"), "hello /second\n", client.output);
    const stats = await fixture.clientStats();
    assert.equal(stats.forwarders?.length, 1, "the forwarder appears once, not per server");
    assert.equal(stats.forwarders?.[0]?.results.proxy?.ok, 2);
  } finally {
    viaForwarder.close();
    await web.shutdown();
  }
});

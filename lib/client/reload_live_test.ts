import assert from "node:assert/strict";
import { canBind, freePort, testCertificates, waitFor } from "../../testing/helpers.ts";
import { echoThrough } from "../../testing/process_tunnel.ts";
import { clientConfig, TunnelFixture } from "../../testing/tunnel.ts";
import { closeQuietly } from "../transport/pipe.ts";
import { TunnelClient } from "./client.ts";

/** One echo round on an open connection. */
async function echoOn(conn: Deno.Conn, text: string): Promise<string> {
  await conn.write(new TextEncoder().encode(text));
  const buffer = new Uint8Array(64);
  const count = await conn.read(buffer);
  return new TextDecoder().decode(buffer.subarray(0, count ?? 0));
}

Deno.test("applyConfig re-registers a changed proxy on its new port; an untouched proxy keeps its open connection", async () => {
  await using fixture = await TunnelFixture.start();
  const echo = fixture.echo();
  const [keepPort, oldPort, newPort] = [freePort(), freePort(), freePort()];
  const started = await fixture.client([
    { name: "keep", publishPort: keepPort, localPort: echo.port },
    { name: "edit", publishPort: oldPort, localPort: echo.port },
  ]);
  await started.registered;
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: keepPort });
  try {
    assert.equal(await echoOn(conn, "before"), "before");
    const result = await started.client.applyConfig(clientConfig(fixture.port, [
      { name: "keep", publishPort: keepPort, localPort: echo.port },
      { name: "edit", publishPort: newPort, localPort: echo.port },
    ]));
    assert.deepEqual(result.changed, ["edit"]);
    assert.deepEqual(result.unchanged, ["keep"]);
    assert.equal(result.offline, false);
    assert.deepEqual(result.unregistrations, [{ name: "edit", status: "removed", released_port: oldPort }]);
    assert.equal(result.registrations[0]?.status, "accepted");
    assert.equal(canBind(oldPort), true, "the old port is free when applyConfig resolves");
    assert.equal(await echoThrough(newPort, "moved"), "moved");
    assert.equal(await echoOn(conn, "after"), "after", "the untouched proxy's connection goes on");
    assert.equal(started.client.sessionsEstablished, 1, "no reconnect");
    assert.equal(started.client.proxies.get("edit")?.config.publishPort, newPort);
  } finally {
    closeQuietly(conn);
  }
});

Deno.test("applyConfig between sessions changes the state only; the next session registers the new set", async () => {
  await using fixture = await TunnelFixture.start();
  const echo = fixture.echo();
  const [firstPort, secondPort] = [freePort(), freePort()];
  const stop = new AbortController();
  const client = new TunnelClient({
    config: clientConfig(fixture.port, [{ name: "first", publishPort: firstPort, localPort: echo.port }]),
    caCertPem: (await testCertificates()).caCertPem,
    signal: stop.signal,
  });
  const result = await client.applyConfig(
    clientConfig(fixture.port, [{ name: "second", publishPort: secondPort, localPort: echo.port }]),
  );
  assert.equal(result.offline, true);
  assert.deepEqual([...client.proxies.keys()], ["second"]);
  const running = client.run();
  try {
    await waitFor(() => client.proxies.get("second")?.registration?.status === "accepted", 10_000, "second");
    assert.equal(await echoThrough(secondPort, "new set"), "new set");
    assert.equal(canBind(firstPort), true, "the removed proxy was never registered");
  } finally {
    stop.abort();
    await running;
  }
});

import assert from "node:assert/strict";
import { parseConfigText } from "../config/load.ts";
import type { ClientConfig } from "../config/types.ts";
import { testCertificates, waitFor } from "../../testing/helpers.ts";
import { serverWithKey } from "../../testing/multi_server.ts";
import { AUTH_KEY } from "../../testing/tunnel.ts";
import { FatalClientError } from "./client.ts";
import { MultiServerClient } from "./multi_server.ts";

async function client(ports: number[], signal: AbortSignal, extra = ""): Promise<MultiServerClient> {
  const config = parseConfigText(
    `[client]\nserver_name = "localhost"\nca_cert_path = "ca.pem"\nauth_key = "${AUTH_KEY}"\n` +
      `servers = [${ports.map((port) => `"127.0.0.1:${port}"`).join(", ")}]\n` +
      `[client.reconnect]\ninitial_delay_secs = 0.2\nmax_delay_secs = 1\n` +
      `[[proxies]]\nname = "web"\npublish_addr = "127.0.0.1"\npublish_port = 0\nlocal_port = 9\n${extra}`,
    { env: {} },
  ).config as ClientConfig;
  const certs = await testCertificates();
  return new MultiServerClient({ config, caCertPems: new Map([["ca.pem", certs.caCertPem]]), signal });
}

Deno.test("a server that refuses the client's key stops only its own session; the other keeps it registered", async () => {
  await using good = await serverWithKey(AUTH_KEY);
  await using refusing = await serverWithKey("another-key-0123456789");
  const stop = new AbortController();
  const multi = await client([good.port, refusing.port], stop.signal);
  const running = multi.run();
  try {
    await waitFor(
      () => {
        const servers = multi.snapshot().servers ?? [];
        return servers[0]?.state === "connected" && servers[1]?.state === "refused";
      },
      10_000,
      "one server connected, the other refused",
    );
    const snapshot = multi.snapshot();
    assert.equal(snapshot.state, "connected");
    assert.match(snapshot.servers?.[1]?.last_error ?? "", /auth_key is not accepted/);
    assert.equal(snapshot.proxies[0]?.status, "healthy");
  } finally {
    stop.abort();
    await running;
  }
});

Deno.test("a client every server refuses ends with the first refusal", async () => {
  await using first = await serverWithKey("another-key-0123456789");
  await using second = await serverWithKey("yet-another-key-0123456789");
  const stop = new AbortController();
  const multi = await client([first.port, second.port], stop.signal);
  try {
    await assert.rejects(multi.run(), FatalClientError);
    assert.deepEqual(multi.snapshot().servers?.map((server) => server.state), ["refused", "refused"]);
    assert.equal(multi.snapshot().state, "stopped");
  } finally {
    stop.abort();
  }
});

Deno.test("a visitor stays bound when the first server refuses the client for good, and asks the others", async () => {
  await using refusing = await serverWithKey("another-key-0123456789");
  await using good = await serverWithKey(AUTH_KEY);
  const stop = new AbortController();
  const multi = await client(
    [refusing.port, good.port],
    stop.signal,
    `[[visitors]]\nname = "db"\npublish_port = 5432\nbind_port = 0\n`,
  );
  const running = multi.run();
  try {
    await waitFor(
      () => {
        const servers = multi.snapshot().servers ?? [];
        return servers[0]?.state === "refused" && servers[1]?.state === "connected";
      },
      10_000,
      "the first server refused, the second connected",
    );
    const listenAddr = multi.snapshot().visitors?.[0]?.listen_addr ?? "";
    const port = Number(/:(\d+)$/.exec(listenAddr)?.[1]);
    assert.ok(port > 0, `the visitor listens: ${listenAddr}`);
    // Still accepting: the connection is taken, asked of the second server (no owner there) and reset.
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.read(new Uint8Array(16)).catch(() => null);
    conn.close();
    await waitFor(() => multi.snapshot().visitors?.[0]?.refused.not_found === 1, 5000, "the visit refused");
    assert.deepEqual(multi.snapshot().visitors?.[0]?.servers, [
      { name: `127.0.0.1:${good.port}`, visits: 0, refused: { not_found: 1 } },
    ]);
    assert.match(multi.snapshot().visitors?.[0]?.last_error ?? "", /127\.0\.0\.1:\d+: not connected/);
  } finally {
    stop.abort();
    await running;
  }
});

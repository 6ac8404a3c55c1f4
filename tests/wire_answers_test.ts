/**
 * The client checks what a server sends against the same schemas the server's answers are built from:
 * the real client against a hand-driven server (our TLS, yamux and JSON-RPC layers, no server code)
 * that answers in shapes of its own.
 */

import assert from "node:assert/strict";
import type { RpcPeer } from "../lib/rpc/mod.ts";
import { FatalClientError, MalformedServerAnswerError, TunnelClient } from "../lib/client/client.ts";
import { testCertificates, waitFor } from "../testing/helpers.ts";
import { clientConfig } from "../testing/tunnel.ts";
import { RawServer } from "../testing/raw_client.ts";

async function runClient(port: number, onClient?: (client: TunnelClient) => Promise<void>) {
  const certs = await testCertificates();
  const stop = new AbortController();
  const client = new TunnelClient({
    config: clientConfig(port, [{ name: "web", publishPort: 0, localPort: 9 }]),
    caCertPem: certs.caCertPem,
    signal: stop.signal,
  });
  const running = client.run();
  try {
    await onClient?.(client);
  } finally {
    if (onClient) stop.abort();
  }
  return await running;
}

Deno.test("a server answering authenticate in another shape stops the client with a clear error", async () => {
  await using server = await RawServer.listen((rpc) => {
    rpc.handle("authenticate", () => ({ ok: true, name: "laptop" }));
  });
  const error = await runClient(server.port).then(() => null, (error: unknown) => error);
  assert.ok(error instanceof MalformedServerAnswerError, String(error));
  assert.ok(error instanceof FatalClientError, "the CLI exits 1 with the message");
  assert.match(error.message, /answered authenticate in an unexpected shape \(client_id: missing\)/);
  assert.match(error.message, /tls-tunnel server of a compatible version/);
  assert.doesNotMatch(error.message, /undefined/);
});

Deno.test("a malformed register_proxies answer stops the client; malformed notifications are ignored", async () => {
  await using broken = await RawServer.listen((rpc) => {
    rpc.handle("authenticate", () => authenticated());
    rpc.handle("register_proxies", () => ({ proxies: [{ name: "web", status: "great" }] }));
  });
  const error = await runClient(broken.port).then(() => null, (error: unknown) => error);
  assert.ok(error instanceof MalformedServerAnswerError, String(error));
  assert.match(error.message, /answered register_proxies in an unexpected shape \(proxies\.0\.status/);

  let control: RpcPeer | null = null;
  await using working = await RawServer.listen((rpc) => {
    control = rpc;
    rpc.handle("authenticate", () => authenticated());
    rpc.handle("register_proxies", () => ({
      proxies: [{ name: "web", status: "accepted", publish_addr: "127.0.0.1", publish_port: 20001 }],
    }));
  });
  await runClient(working.port, async (client) => {
    await waitFor(() => client.proxies.get("web")?.stats.status === "healthy", 3000, "registration");
    const status = (extra: Record<string, unknown>) =>
      control?.notify("proxy_status", {
        proxy_name: "web",
        status: "unhealthy",
        publish_addr: "127.0.0.1",
        publish_port: 20001,
        error_message: "down",
        retry_after_seconds: null,
        ...extra,
      });
    await status({ status: "on fire" });
    await status({ publish_port: "20001" });
    await status({ error_message: "x".repeat(10_000) });
    await control?.notify("push_exception", { level: "panic", message: "m", code: "X" });
    await status({ error_message: "a real one" });
    await waitFor(() => client.proxies.get("web")?.stats.status === "unhealthy", 3000, "the valid status");
    assert.equal(client.proxies.get("web")?.stats.lastError, "a real one");
    assert.equal(client.events.recent().filter((event) => event.code === "X").length, 0);
  });
});

function authenticated() {
  return {
    client_id: "c",
    client_name: "c",
    protocol_version: 1,
    server_version: "fake",
    session_id: "s1",
  };
}

import assert from "node:assert/strict";
import { memorySessions } from "../../testing/mux.ts";
import type { ProxySpec } from "../protocol/control.ts";
import { RpcPeer } from "../rpc/mod.ts";
import { ConnectedClient } from "./connected_client.ts";
import { PublishedProxy } from "./published_proxy.ts";

/** A ConnectedClient over an in-memory session, as the server holds one after `authenticate`. */
async function connectedClient() {
  const sessions = memorySessions({ keepaliveIntervalMs: 0 });
  const [, control] = await Promise.all([sessions.client.open(), sessions.server.accept()]);
  assert.ok(control);
  const rpc = new RpcPeer(control);
  const client = new ConnectedClient(
    "id",
    "name",
    "s1",
    "127.0.0.1:1",
    { entryName: null, allowPorts: [{ start: 1024, end: 65535 }], maxProxies: 8 },
    sessions.server,
    rpc,
  );
  return {
    client,
    async [Symbol.asyncDispose]() {
      await client.close("test over");
      rpc.close();
      await sessions.close();
      await rpc.closed;
    },
  };
}

function proxy(name: string, port = 0): PublishedProxy {
  const spec: ProxySpec = {
    name,
    proxy_type: "tcp",
    publish_addr: "127.0.0.1",
    publish_port: port,
    local_addr: "127.0.0.1",
    local_port: 9,
  };
  return new PublishedProxy(spec, "name", () => Promise.reject(new Error("no streams in this test")));
}

function listen(): Deno.TcpListener {
  return Deno.listen({ hostname: "127.0.0.1", port: 0 });
}

function bindable(port: number): boolean {
  try {
    Deno.listen({ hostname: "127.0.0.1", port }).close();
    return true;
  } catch {
    return false;
  }
}

Deno.test("a claimed name is taken until its proxy is published or discarded, and counts as a proxy", async () => {
  await using fixture = await connectedClient();
  const { client } = fixture;
  const first = proxy("web");
  assert.equal(client.claim(first), null);
  assert.ok(client.hasName("web"));
  assert.equal(client.proxyCount, 1);
  assert.equal(client.proxies.size, 0, "a claim is not published yet");
  const second = proxy("web");
  assert.equal(client.claim(second), "duplicate_name");
  assert.ok(second.stopped, "a refused proxy is stopped");
  assert.ok(client.publish(first));
  assert.equal(client.proxies.get("web"), first);
  assert.equal(client.claim(proxy("web")), "duplicate_name", "a published name is taken too");
  await client.discard(second);
  assert.equal(client.proxies.get("web"), first, "discarding another proxy of the name leaves the entry");
  await client.discard(first);
  assert.ok(!client.hasName("web"));
  assert.equal(client.proxyCount, 0);
});

Deno.test("publishing a proxy that holds no claim is refused and stops it", async () => {
  await using fixture = await connectedClient();
  const stray = proxy("stray");
  assert.equal(fixture.client.publish(stray), false);
  assert.ok(stray.stopped);
  assert.equal(fixture.client.proxies.size, 0);
});

Deno.test("ending the session closes the listeners of published and claimed proxies, and any bound later", async () => {
  await using fixture = await connectedClient();
  const { client } = fixture;
  const published = proxy("published");
  const claimed = proxy("claimed");
  assert.equal(client.claim(published), null);
  assert.ok(client.publish(published));
  const listener = listen();
  const port = listener.addr.port;
  assert.ok(published.attach(listener));
  assert.equal(client.claim(claimed), null);
  await client.close("test");
  assert.ok(bindable(port), "the published proxy's port is free");
  assert.ok(claimed.stopped, "the claimed proxy is stopped");
  // A registration still in flight binds afterwards: its listener is closed at once, never kept.
  const late = listen();
  const latePort = late.addr.port;
  assert.equal(claimed.attach(late), false);
  assert.ok(bindable(latePort), "the late listener was closed");
  assert.equal(client.publish(claimed), false, "nothing is published after the end");
  const after = proxy("after");
  assert.equal(client.claim(after), "session_closing");
  assert.ok(after.stopped);
});

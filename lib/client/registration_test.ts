import assert from "node:assert/strict";
import { memoryPair } from "../net/memory_pair.ts";
import { RpcError, RpcPeer } from "../rpc/mod.ts";
import { ControlErrorCode, type ProxyStatusParams, type PushExceptionParams } from "../protocol/control.ts";
import { unsafeCharacter } from "../text.ts";
import { withLogRecords } from "../../testing/log.ts";
import { clientConfig } from "../../testing/tunnel.ts";
import { FatalClientError, MalformedServerAnswerError } from "./errors.ts";
import { authenticate, registerProxies, serveServer } from "./registration.ts";

const CONFIG = clientConfig(1, [{ name: "web", publishPort: 0, localPort: 9 }]);
const STATUS = {
  proxy_name: "web",
  status: "unhealthy",
  publish_addr: "127.0.0.1",
  publish_port: 20001,
  error_message: "down",
  retry_after_seconds: null,
};

/** A client peer and a hand-driven server peer over memory; both closed when `body` ends. */
async function withPeers(body: (client: RpcPeer, server: RpcPeer) => Promise<void>): Promise<void> {
  const [a, b] = memoryPair();
  const client = new RpcPeer(a);
  const server = new RpcPeer(b);
  try {
    await body(client, server);
  } finally {
    client.close();
    server.close();
    await Promise.all([client.closed, server.closed]);
  }
}

/** Resolves once `check` holds, polling every 5 ms for up to 2 s. */
async function until(check: () => boolean, what: string): Promise<void> {
  for (let waitedMs = 0; !check(); waitedMs += 5) {
    if (waitedMs > 2000) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

Deno.test("a malformed server notification is dropped with a warning naming the field; valid ones arrive", async () => {
  await withLogRecords(async (records) => {
    await withPeers(async (client, server) => {
      const statuses: ProxyStatusParams[] = [];
      const notices: PushExceptionParams[] = [];
      serveServer(client, {
        onProxyStatus: (params) => void statuses.push(params),
        onPushException: (params) => void notices.push(params),
      });
      await server.notify("proxy_status", { ...STATUS, status: "on fire" });
      await server.notify("proxy_status", { ...STATUS, publish_port: "20001" });
      await server.notify("push_exception", { level: "warning", code: "PROXY_BIND_RETRY", message: "m" });
      await server.notify("proxy_status", { ...STATUS, error_message: "a real one\x1b[2J" });
      await until(() => statuses.length === 1, "the valid proxy_status");
      assert.equal(statuses[0]?.error_message, "a real one\\u001b[2J");
      assert.deepEqual(notices, []);

      const dropped = records.filter((record) => String(record.rawMessage).startsWith("Ignoring a {method}"));
      assert.deepEqual(
        dropped.map((record) => [record.level, record.properties.method, record.properties.issue]),
        [
          ["warning", "proxy_status", dropped[0]?.properties.issue],
          ["debug", "proxy_status", dropped[1]?.properties.issue],
          ["warning", "push_exception", "data.proxy_name: missing (a PROXY_BIND_RETRY notice carries it)"],
        ],
        "the first of each method warns, later ones are at debug",
      );
      assert.match(String(dropped[0]?.properties.issue), /^status: /);
      assert.match(String(dropped[1]?.properties.issue), /^publish_port: /);
    });
  });
});

Deno.test("the client answers the server's heartbeat with the clock it sent, or its own for a bad one", async () => {
  await withPeers(async (client, server) => {
    serveServer(client, { onProxyStatus: () => {}, onPushException: () => {} });
    assert.deepEqual(await server.request("heartbeat", { time_ms: 42 }), { time_ms: 42 });
    const before = Date.now();
    const answer = await server.request("heartbeat", { time_ms: "soon" }) as { time_ms: number };
    assert.ok(answer.time_ms >= before, JSON.stringify(answer));
  });
});

Deno.test("an authenticate answer in another shape is a MalformedServerAnswerError naming the field", async () => {
  await withPeers(async (client, server) => {
    server.handle("authenticate", () => ({
      client_id: "c",
      client_name: "c\u202e",
      protocol_version: 1,
      server_version: "x",
      session_id: "s1",
    }));
    const error = await authenticate(client, CONFIG, "c", "127.0.0.1:1").then(() => null, (error) => error);
    assert.ok(error instanceof MalformedServerAnswerError, String(error));
    assert.equal(error.issue.split(":")[0], "client_name");
    assert.equal(unsafeCharacter(error.message), null, error.message);
  });
});

Deno.test("DUPLICATE_CLIENT is fatal and names the other address only when it is a safe, bounded string", async () => {
  for (
    const [data, shown] of [
      [{ other_remote_addr: "127.0.0.2:51234" }, "(from 127.0.0.2:51234)"],
      [{ other_remote_addr: "1.2.3.4:5\x1b]0;pwned\x07" }, null],
      [{ other_remote_addr: "x".repeat(10_000) }, null],
      [{ other_remote_addr: 7 }, null],
      ["not an object", null],
    ] as const
  ) {
    await withPeers(async (client, server) => {
      server.handle("authenticate", () => {
        throw new RpcError(ControlErrorCode.duplicateClient, "in use", data);
      });
      const error = await authenticate(client, CONFIG, "twin", "127.0.0.1:1").then(
        () => null,
        (error) => error,
      );
      assert.ok(error instanceof FatalClientError, String(error));
      assert.equal(error.code, ControlErrorCode.duplicateClient);
      assert.match(error.message, /give each copy its own client_id/);
      assert.equal(unsafeCharacter(error.message), null, error.message);
      assert.ok(error.message.length < 300, error.message);
      if (shown) assert.ok(error.message.includes(shown), error.message);
      else assert.doesNotMatch(error.message, /\(from /);
    });
  }
});

Deno.test("register_proxies sends the config's proxies in wire form and returns the checked answer", async () => {
  await withPeers(async (client, server) => {
    let asked: unknown = null;
    server.handle("register_proxies", (params) => {
      asked = params;
      return {
        proxies: [{ name: "web", status: "accepted", publish_addr: "127.0.0.1", publish_port: 20001, x: 1 }],
      };
    });
    const answer = await registerProxies(client, CONFIG, "127.0.0.1:1");
    assert.deepEqual(answer, [{
      name: "web",
      status: "accepted",
      publish_addr: "127.0.0.1",
      publish_port: 20001,
    }]);
    assert.deepEqual(asked, {
      proxies: [{
        name: "web",
        proxy_type: "tcp",
        publish_addr: "127.0.0.1",
        publish_port: 0,
        local_addr: "127.0.0.1",
        local_port: 9,
      }],
    });
  });
});

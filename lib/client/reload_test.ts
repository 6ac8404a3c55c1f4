import assert from "node:assert/strict";
import { clientConfig } from "../../testing/tunnel.ts";
import type { RpcPeer } from "../rpc/mod.ts";
import { MalformedServerAnswerError } from "./errors.ts";
import { describeReload, Exclusive, planClientReload, unregisterProxies } from "./reload.ts";

/** A control channel whose every request is answered with `answer`. */
function answering(answer: unknown): RpcPeer {
  return { request: () => Promise.resolve(answer) } as unknown as RpcPeer;
}

Deno.test("planClientReload sorts proxies into added, removed, changed and untouched", () => {
  const running = clientConfig(8443, [
    { name: "keep", publishPort: 9001, localPort: 3001 },
    { name: "drop", publishPort: 9002, localPort: 3002 },
    { name: "edit", publishPort: 9003, localPort: 3003 },
  ]);
  const next = clientConfig(8443, [
    { name: "keep", publishPort: 9001, localPort: 3001 },
    { name: "edit", publishPort: 9003, localPort: 4003 },
    { name: "new", publishPort: 9004, localPort: 3004 },
  ]);
  const plan = planClientReload(running, next);
  assert.deepEqual(plan.added.map((proxy) => proxy.name), ["new"]);
  assert.deepEqual(plan.removed, ["drop"]);
  assert.deepEqual(plan.changed.map((proxy) => proxy.name), ["edit"]);
  assert.deepEqual(plan.unchanged, ["keep"]);
  assert.deepEqual(plan.restartKeys, []);
  assert.equal(plan.config.proxies.length, 3);
});

Deno.test("planClientReload keeps the running server settings and lists them as needing a restart", () => {
  const running = clientConfig(8443, [{ name: "a", publishPort: 9001, localPort: 3001 }]);
  const next = clientConfig(9443, [{ name: "a", publishPort: 9001, localPort: 3001 }], {
    authKey: "another-key-0123456789abcdef",
    extra: "[client.bind_retry]\nmax_retries = 1",
  });
  const plan = planClientReload(running, next);
  for (const key of ["auth_key", "server_port"]) {
    assert.ok(plan.restartKeys.includes(key), plan.restartKeys.join());
  }
  assert.ok(!plan.restartKeys.includes("bind_retry") && !plan.restartKeys.includes("proxies"));
  assert.equal(plan.config.serverPort, 8443, "server_port keeps its running value");
  assert.equal(plan.config.authKey, running.authKey);
  assert.equal(plan.config.bindRetry?.maxRetries, 1, "the bind retry asked for applies live");
  assert.deepEqual(plan.unchanged, ["a"]);
});

Deno.test("Exclusive runs tasks one at a time in order, past a failing one", async () => {
  const exclusive = new Exclusive();
  const order: string[] = [];
  const slow = exclusive.run(async () => {
    await new Promise((resolve) => setTimeout(resolve, 20));
    order.push("slow");
  });
  const failing = exclusive.run(() => Promise.reject(new Error("boom")));
  const fast = exclusive.run(() => {
    order.push("fast");
    return Promise.resolve(1);
  });
  await slow;
  await assert.rejects(failing, /boom/);
  assert.equal(await fast, 1);
  assert.deepEqual(order, ["slow", "fast"]);
});

Deno.test("describeReload says what changed in one line", () => {
  const text = describeReload({
    added: ["b"],
    removed: ["c"],
    changed: [],
    unchanged: ["a"],
    restartKeys: [],
    registrations: [],
    unregistrations: [],
    offline: false,
  });
  assert.equal(text, "added b; removed c; 1 proxy(ies) untouched");
});

Deno.test("unregisterProxies checks the server's answer: another shape is a MalformedServerAnswerError", async () => {
  const good = {
    proxies: [{ name: "web", status: "removed", released_port: 8080 }, { name: "x", status: "not_found" }],
  };
  assert.deepEqual(await unregisterProxies(answering(good), ["web", "x"], "s:1"), good.proxies);
  assert.deepEqual(await unregisterProxies(answering(null), [], "s:1"), [], "nothing to remove: no call");
  for (
    const bad of [
      null,
      { proxies: "web" },
      { proxies: [{ name: "web", status: "gone" }] },
      { proxies: [{ name: "web", status: "removed", released_port: 70000 }] },
      { proxies: [{ name: "x".repeat(2000), status: "invalid" }] },
      { proxies: Array.from({ length: 1025 }, () => ({ name: "a", status: "not_found" })) },
    ]
  ) {
    await assert.rejects(
      unregisterProxies(answering(bad), ["web"], "s:1"),
      MalformedServerAnswerError,
      JSON.stringify(bad).slice(0, 80),
    );
  }
});

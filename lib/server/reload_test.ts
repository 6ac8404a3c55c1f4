import assert from "node:assert/strict";
import { ControlErrorCode, type UnregisterProxiesResult } from "../protocol/control.ts";
import { INVALID_PARAMS } from "../rpc/mod.ts";
import { canBind, freePort } from "../../testing/helpers.ts";
import { RawClient, rejectsWithCode } from "../../testing/raw_client.ts";
import { serverConfig, TunnelFixture } from "../../testing/tunnel.ts";
import { changedKeys } from "./reload.ts";

function unregister(client: RawClient, names: unknown): Promise<UnregisterProxiesResult> {
  return client.rpc.request<UnregisterProxiesResult>("unregister_proxies", { names }, { timeoutMs: 10_000 });
}

async function authenticated(port: number, clientId: string): Promise<RawClient> {
  const client = await RawClient.dial(port, { clientId });
  await client.authenticate();
  return client;
}

Deno.test("unregister_proxies releases the port at once and leaves the session's other proxies alone", async () => {
  await using fixture = await TunnelFixture.start();
  const client = await authenticated(fixture.port, "unreg-basic");
  try {
    const [kept, removed] = [freePort(), freePort()];
    const answer = await client.register([{ name: "kept", publish_port: kept }, {
      name: "gone",
      publish_port: removed,
    }]);
    assert.deepEqual(answer.proxies.map((entry) => entry.status), ["accepted", "accepted"]);
    assert.equal(canBind(removed), false);
    const result = await unregister(client, ["gone"]);
    assert.deepEqual(result.proxies, [{ name: "gone", status: "removed", released_port: removed }]);
    // Free when the answer arrives, not some time later.
    assert.equal(canBind(removed), true, "the unregistered port is free when the answer arrives");
    assert.equal(canBind(kept), false, "the other proxy still holds its port");
    const snapshot = fixture.server.snapshot().clients.find((entry) => entry.client_id === "unreg-basic");
    assert.deepEqual(snapshot?.proxies.map((proxy) => proxy.name), ["kept"]);
  } finally {
    await client.close();
  }
});

Deno.test("unregister_proxies answers per name: unknown, invalid and repeated names do not stop the others", async () => {
  await using fixture = await TunnelFixture.start();
  const client = await authenticated(fixture.port, "unreg-hostile");
  try {
    const port = freePort();
    await client.register([{ name: "web", publish_port: port }]);
    const result = await unregister(client, ["nope", 42, "bad name\u001b[31m", "web", "web", null]);
    assert.deepEqual(result.proxies.map((entry) => [entry.name, entry.status]), [
      ["nope", "not_found"],
      ["?", "invalid"],
      ["bad name\\u001b[31m", "invalid"],
      ["web", "removed"],
      ["web", "not_found"],
      ["?", "invalid"],
    ]);
    assert.equal(canBind(port), true);
    // The session goes on: a new registration of the name works.
    const again = await client.register([{ name: "web", publish_port: port }]);
    assert.equal(again.proxies[0]?.status, "accepted");
  } finally {
    await client.close();
  }
});

Deno.test("unregister_proxies refuses malformed and oversized params with -32602 and keeps the session", async () => {
  await using fixture = await TunnelFixture.start();
  const client = await authenticated(fixture.port, "unreg-params");
  try {
    await rejectsWithCode(unregister(client, []), INVALID_PARAMS, "empty list");
    await rejectsWithCode(unregister(client, "web"), INVALID_PARAMS, "not a list");
    await rejectsWithCode(
      unregister(client, Array.from({ length: 1025 }, (_, index) => `p${index}`)),
      INVALID_PARAMS,
      "1025 names",
    );
    await rejectsWithCode(
      client.rpc.request("unregister_proxies", ["web"], { timeoutMs: 5000 }),
      INVALID_PARAMS,
      "positional params",
    );
    // 1024 unknown names is within bounds: answered per name.
    const many = await unregister(client, Array.from({ length: 1024 }, (_, index) => `p${index}`));
    assert.equal(many.proxies.length, 1024);
    assert.ok(many.proxies.every((entry) => entry.status === "not_found"));
  } finally {
    await client.close();
  }
});

Deno.test("unregister_proxies before authenticate is refused with NOT_AUTHENTICATED", async () => {
  await using fixture = await TunnelFixture.start();
  const client = await RawClient.dial(fixture.port);
  try {
    await rejectsWithCode(unregister(client, ["web"]), ControlErrorCode.notAuthenticated);
  } finally {
    await client.close();
  }
});

Deno.test("pipelined register, unregister and register of one name run in arrival order", async () => {
  await using fixture = await TunnelFixture.start();
  const client = await authenticated(fixture.port, "unreg-pipelined");
  try {
    const port = freePort();
    // All sent before any answer: the session's queue runs them one at a time, in order.
    const [first, removed, second, removedAgain, third] = await Promise.all([
      client.register([{ name: "web", publish_port: port }]),
      unregister(client, ["web"]),
      client.register([{ name: "web", publish_port: port }]),
      unregister(client, ["web", "web"]),
      client.register([{ name: "web", publish_port: port }]),
    ]);
    assert.equal(first.proxies[0]?.status, "accepted");
    assert.deepEqual(removed.proxies[0], { name: "web", status: "removed", released_port: port });
    assert.equal(second.proxies[0]?.status, "accepted");
    assert.deepEqual(removedAgain.proxies.map((entry) => entry.status), ["removed", "not_found"]);
    assert.equal(third.proxies[0]?.status, "accepted");
    assert.equal(canBind(port), false, "the last registration holds the port");
    // An unregister sent before the register of its name finds nothing.
    const other = freePort();
    const [early, late] = await Promise.all([
      unregister(client, ["late"]),
      client.register([{ name: "late", publish_port: other }]),
    ]);
    assert.equal(early.proxies[0]?.status, "not_found");
    assert.equal(late.proxies[0]?.status, "accepted");
  } finally {
    await client.close();
  }
});

Deno.test("a flood of pipelined unregister_proxies calls is bounded by the registration queue", async () => {
  await using fixture = await TunnelFixture.start();
  const client = await authenticated(fixture.port, "unreg-flood");
  try {
    const calls = Array.from({ length: 40 }, () =>
      unregister(client, ["x"]).then(
        () => "answered",
        (error: { code?: number }) => error.code === ControlErrorCode.tooManyPending ? "too_many" : "other",
      ));
    const outcomes = await Promise.all(calls);
    assert.ok(!outcomes.includes("other"), outcomes.join(","));
    assert.ok(outcomes.includes("answered"));
    assert.ok(outcomes.includes("too_many"), "40 pipelined calls exceed the queue of 8");
    // Afterwards the session still answers.
    const after = await unregister(client, ["x"]);
    assert.equal(after.proxies[0]?.status, "not_found");
  } finally {
    await client.close();
  }
});

Deno.test("changedKeys lists the changed keys in TOML spelling, except the live ones", () => {
  const before = { bindPort: 1, authKey: "a", statsToken: "t", clients: [] };
  const after = { bindPort: 2, authKey: "b", statsToken: "t", clients: [{}] };
  assert.deepEqual(changedKeys(before, after, new Set(["authKey", "clients"])), ["bind_port"]);
});

Deno.test("applyConfig: new limits count from the next registration; keys that need a restart keep their values", async () => {
  await using fixture = await TunnelFixture.start("max_proxies_per_client = 5");
  const client = await authenticated(fixture.port, "limits");
  try {
    const first = await client.register([{ name: "a", publish_port: freePort() }, {
      name: "b",
      publish_port: freePort(),
    }]);
    assert.deepEqual(first.proxies.map((entry) => entry.status), ["accepted", "accepted"]);
    const report = await fixture.server.applyConfig(
      serverConfig('max_proxies_per_client = 2\nmax_pending_per_ip = 3\nstats_addr = "127.0.0.2"'),
    );
    assert.deepEqual(report.restartKeys, ["stats_addr"]);
    assert.deepEqual(report.disconnected, []);
    assert.equal(fixture.server.pendingConnections.limits.maxPendingPerIp, 3);
    const third = await client.register([{ name: "c", publish_port: freePort() }]);
    assert.equal(third.proxies[0]?.status, "rejected");
    assert.equal(third.proxies[0]?.status === "rejected" ? third.proxies[0].code : "", "TOO_MANY_PROXIES");
    // The proxies already published stay: a lower limit is not a reason to drop them.
    assert.equal(fixture.server.snapshot().clients[0]?.proxies.length, 2);
  } finally {
    await client.close();
  }
});

/**
 * `register_proxies` calls that overlap on one session (pipelined, or pending when the session ends)
 * against the real server over real TLS: one answer per name, no listener without an owner, and every
 * port a session bound free again when it ends.
 */

import assert from "node:assert/strict";
import { ControlErrorCode, type ProxyRegistration } from "../lib/protocol/control.ts";
import { RpcError } from "../lib/rpc/mod.ts";
import { MAX_PENDING_REGISTRATIONS } from "../lib/server/connected_client.ts";
import { canBind, freePort, freePortRange, waitFor } from "../testing/helpers.ts";
import { FreezableRelay, RawClient, type RawProxy } from "../testing/raw_client.ts";
import { TunnelFixture } from "../testing/tunnel.ts";

function only(result: { proxies: ProxyRegistration[] }): ProxyRegistration {
  assert.equal(result.proxies.length, 1, JSON.stringify(result));
  const [entry] = result.proxies;
  assert.ok(entry);
  return entry;
}

/**
 * A client "holder" publishing `port` through a relay, then frozen: it is connected but answers no
 * ping, so the next client that wants `port` waits the server's whole liveness ping (2 s) for it.
 */
async function frozenHolder(tunnel: TunnelFixture, port: number) {
  const relay = new FreezableRelay(tunnel.port);
  const holder = await RawClient.dial(relay.port);
  await holder.authenticate("holder");
  assert.equal(only(await holder.register([{ name: "held", publish_port: port }])).status, "accepted");
  relay.freeze();
  return {
    async close() {
      await relay.close();
      await holder.close();
    },
  };
}

for (
  const second of [
    { label: "the same port", proxy: (port: number): RawProxy => ({ name: "web", publish_port: port }) },
    { label: "a system-picked port", proxy: (): RawProxy => ({ name: "web", publish_port: 0 }) },
  ]
) {
  Deno.test(
    `two pipelined registrations of one name while the first waits on a liveness ping: one accepted, ` +
      `one DUPLICATE_NAME (second asks for ${second.label}), and no port stays bound`,
    async () => {
      await using tunnel = await TunnelFixture.start();
      const port = freePort();
      const holder = await frozenHolder(tunnel, port);
      const contender = await RawClient.dial(tunnel.port);
      const acceptedPorts = new Set([port]);
      try {
        await contender.authenticate("contender");
        const startedMs = performance.now();
        const firstCall = contender.register([{ name: "web", publish_port: port }]);
        const secondCall = contender.register([second.proxy(port)]);
        const [first, secondEntry] = [only(await firstCall), only(await secondCall)];
        const elapsedMs = performance.now() - startedMs;
        for (const entry of [first, secondEntry]) {
          if (entry.status === "accepted") acceptedPorts.add(entry.publish_port);
        }
        assert.ok(elapsedMs >= 1500, `the first call waited on the holder's ping (${elapsedMs} ms)`);
        assert.deepEqual(
          { status: first.status, port: first.publish_port },
          { status: "accepted", port },
          JSON.stringify(first),
        );
        assert.equal(secondEntry.status, "rejected", JSON.stringify(secondEntry));
        assert.equal(secondEntry.status === "rejected" && secondEntry.code, "DUPLICATE_NAME");
        assert.ok(!tunnel.server.clients.has("holder"), "the silent holder was disconnected");
        const entries = [...(tunnel.server.clients.get("contender")?.proxies.values() ?? [])];
        assert.deepEqual(entries.map((proxy) => [proxy.spec.name, proxy.boundPort]), [["web", port]]);
      } finally {
        await contender.close();
        await holder.close();
      }
      await waitFor(() => tunnel.server.clients.size === 0, 5000, "both sessions to end on the server");
      for (const bound of acceptedPorts) {
        assert.ok(canBind(bound), `port ${bound} is free after both clients left`);
      }
    },
  );
}

Deno.test("a session that ends while its registration waits on a liveness ping leaves no port bound", async () => {
  await using tunnel = await TunnelFixture.start();
  const port = freePort();
  const holder = await frozenHolder(tunnel, port);
  const contender = await RawClient.dial(tunnel.port);
  try {
    await contender.authenticate("contender");
    const pending = contender.register([{ name: "web", publish_port: port }]).catch((error) => error);
    const queued = contender.register([{ name: "other", publish_port: 0 }]).catch((error) => error);
    // Leave while the server still waits for the holder's answer (2 s).
    await new Promise((resolve) => setTimeout(resolve, 300));
    await contender.close();
    assert.ok((await pending) instanceof Error, "the pending call is not answered: the session is gone");
    assert.ok((await queued) instanceof Error);
    await waitFor(() => !tunnel.server.clients.has("contender"), 5000, "the contender to be forgotten");
    // The ping times out and the holder is dropped; nothing may bind for the session that left.
    await waitFor(() => !tunnel.server.clients.has("holder"), 5000, "the silent holder to be dropped");
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.ok(canBind(port), `port ${port} is free: the ended session's registration bound nothing`);
  } finally {
    await holder.close();
  }
  await waitFor(() => tunnel.server.clients.size === 0, 5000, "every session to end on the server");
  assert.ok(canBind(port));
});

Deno.test("a bind retry that would succeed after its session ended binds nothing", async () => {
  await using tunnel = await TunnelFixture.start();
  const port = freePort();
  const blocker = Deno.listen({ hostname: "127.0.0.1", port });
  const client = await RawClient.dial(tunnel.port);
  let blocked = true;
  try {
    await client.authenticate("retrier");
    const entry = only(
      await client.register([{ name: "web", publish_port: port }], {
        max_retries: 5,
        initial_delay_secs: 0.2,
        max_delay_secs: 0.2,
      }),
    );
    assert.equal(entry.status, "retrying", JSON.stringify(entry));
    await client.close();
    await waitFor(() => !tunnel.server.clients.has("retrier"), 5000, "the session to end on the server");
    blocker.close();
    blocked = false;
    // Past several retry delays: a retry still running would have bound the port by now.
    await new Promise((resolve) => setTimeout(resolve, 700));
    assert.ok(canBind(port), `port ${port} stayed free after the session ended`);
  } finally {
    if (blocked) blocker.close();
  }
});

Deno.test(
  `a flood of pipelined register_proxies on one session: beyond ${MAX_PENDING_REGISTRATIONS} pending, ` +
    `calls are refused with TOO_MANY_PENDING and the rest are answered in order`,
  async () => {
    await using tunnel = await TunnelFixture.start();
    const client = await RawClient.dial(tunnel.port);
    try {
      await client.authenticate("flooder");
      const calls = Array.from(
        { length: 40 },
        (_, index) =>
          client.register([{ name: `p${index % 5}`, publish_port: 0 }]).then(
            (result) => ({ ok: true as const, entry: only(result) }),
            (error: unknown) => ({ ok: false as const, error }),
          ),
      );
      const outcomes = await Promise.all(calls);
      const refused = outcomes.flatMap((outcome) => outcome.ok ? [] : [outcome.error]);
      for (const error of refused) {
        assert.ok(error instanceof RpcError, String(error));
        assert.equal(error.code, ControlErrorCode.tooManyPending, error.message);
        assert.deepEqual(error.data, { limit: MAX_PENDING_REGISTRATIONS });
      }
      assert.ok(refused.length > 0, "some of 40 pipelined calls were refused");
      const answered = outcomes.flatMap((outcome) => outcome.ok ? [outcome.entry] : []);
      assert.ok(answered.length >= MAX_PENDING_REGISTRATIONS, `${answered.length} answered`);
      // Each name is accepted once, by its first call; later calls of the name are duplicates.
      const accepted = answered.filter((entry) => entry.status === "accepted").map((entry) => entry.name);
      assert.equal(new Set(accepted).size, accepted.length, `accepted once per name: ${accepted}`);
      for (const entry of answered) {
        if (entry.status !== "accepted") {
          assert.equal(entry.status === "rejected" && entry.code, "DUPLICATE_NAME");
        }
      }
      const proxies = [...(tunnel.server.clients.get("flooder")?.proxies.values() ?? [])];
      assert.deepEqual(proxies.map((proxy) => proxy.spec.name).sort(), [...accepted].sort());
      // The session still works once the flood is answered.
      const later = only(await client.register([{ name: "later", publish_port: 0 }]));
      assert.equal(later.status, "accepted", JSON.stringify(later));
      const ports = [...(tunnel.server.clients.get("flooder")?.proxies.values() ?? [])].map((proxy) =>
        proxy.boundPort ?? 0
      );
      await client.close();
      await waitFor(() => tunnel.server.clients.size === 0, 5000, "the session to end on the server");
      for (const port of ports) assert.ok(canBind(port), `port ${port} free after the session ended`);
    } finally {
      await client.close();
    }
  },
);

Deno.test("a register_proxies call that scans 256 ranges of 4096 taken ports does not hold up other sessions", async () => {
  const base = freePortRange(2);
  await using tunnel = await TunnelFixture.start(`allow_ports = "${base}-${base + 1}"\n`);
  const blockers = [base, base + 1].map((port) => Deno.listen({ hostname: "127.0.0.1", port }));
  const canary = await RawClient.dial(tunnel.port);
  const scanner = await RawClient.dial(tunnel.port);
  try {
    await canary.authenticate("canary");
    await scanner.authenticate("scanner");
    const range = { start: base, end: base + 4095 };
    let done = false;
    const call = scanner.register(
      Array.from(
        { length: 256 },
        (_, index) => ({ name: `p${index}`, publish_port: 0, publish_port_range: range }),
      ),
      { max_retries: 0 },
    ).finally(() => done = true);
    let slowestMs = 0;
    let rounds = 0;
    while (!done) {
      const startedMs = performance.now();
      await canary.rpc.request("heartbeat", { time_ms: rounds++ });
      slowestMs = Math.max(slowestMs, performance.now() - startedMs);
    }
    const result = await call;
    assert.equal(result.proxies.length, 256);
    for (const entry of result.proxies) {
      assert.equal(entry.status === "rejected" && entry.code, "ADDRESS_IN_USE", JSON.stringify(entry));
    }
    // Done in one piece, the scan held every session for about 0.9 s.
    assert.ok(slowestMs < 500, `slowest heartbeat of ${rounds} during the scan: ${slowestMs.toFixed(0)} ms`);
    assert.ok(rounds > 1, "heartbeats were answered while the scan ran");
  } finally {
    await scanner.close();
    await canary.close();
    for (const blocker of blockers) blocker.close();
  }
});

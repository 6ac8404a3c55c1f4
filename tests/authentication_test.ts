/**
 * Authentication against the real server over real TLS, driven by hand (our yamux and JSON-RPC layers,
 * no tunnel client code): the throttle under concurrency, one authenticate per session, errors that end
 * the session, and methods called too early.
 */

import assert from "node:assert/strict";
import type { Session } from "../lib/mux/mod.ts";
import { RpcClosedError, RpcError } from "../lib/rpc/mod.ts";
import { RawClient, rejectsWithCode } from "../testing/raw_client.ts";
import { AUTH_KEY, TunnelFixture } from "../testing/tunnel.ts";

const WRONG_KEY = "a-wrong-key-0123456789";

/**
 * Dials the server over TLS and opens the control stream. With `fromAddress` (a 127.0.0.0/8 address), the
 * connection comes from that address, so the server sees another client address than 127.0.0.1.
 */
function dial(port: number, fromAddress?: string): Promise<RawClient> {
  return RawClient.dial(port, { fromAddress, clientId: "authentication-test" });
}

/** Milliseconds until `session` is closed by the server, failing the test after `limitMs`. */
async function closedWithin(session: Session, limitMs: number): Promise<number> {
  const started = performance.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const closed = await Promise.race([
    session.closed.then(() => true),
    new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), limitMs))),
  ]);
  clearTimeout(timer);
  assert.ok(closed, `the server did not close the session within ${limitMs} ms`);
  return performance.now() - started;
}

Deno.test("20 connections × 64 pipelined wrong keys get at most 10 keys checked, and another address still gets in", async () => {
  await using tunnel = await TunnelFixture.start();
  const attackers = await Promise.all(Array.from({ length: 20 }, () => dial(tunnel.port)));
  try {
    const answers = await Promise.all(
      attackers.map((attacker) =>
        Promise.allSettled(Array.from({ length: 64 }, () => attacker.authenticate(undefined, WRONG_KEY)))
      ),
    );
    const codes = new Map<string, number>();
    for (const answer of answers.flat()) {
      const key = answer.status === "fulfilled"
        ? "accepted"
        : answer.reason instanceof RpcError
        ? String(answer.reason.code)
        : answer.reason instanceof RpcClosedError
        ? "closed"
        : String(answer.reason);
      codes.set(key, (codes.get(key) ?? 0) + 1);
    }
    const summary = JSON.stringify(Object.fromEntries(codes));
    assert.ok(tunnel.server.authKeyChecksTotal <= 10, `${tunnel.server.authKeyChecksTotal} keys checked`);
    assert.equal(codes.get("-32001"), tunnel.server.authKeyChecksTotal, summary);
    assert.equal(codes.get("accepted"), undefined, summary);
    assert.ok((codes.get("-32003") ?? 0) >= 10, `every connection past the limit is throttled: ${summary}`);
    assert.ok(
      [...codes.keys()].every((code) => ["-32001", "-32003", "-32005", "closed"].includes(code)),
      summary,
    );
    // Every one of those sessions is closed by the server.
    await Promise.all(attackers.map((attacker) => closedWithin(attacker.session, 3000)));
    // The address stays blocked, even for the right key ...
    const blocked = await dial(tunnel.port);
    await rejectsWithCode(blocked.authenticate(), -32003);
    await blocked.close();
    // ... while another address authenticates at once.
    const checksBefore = tunnel.server.authKeyChecksTotal;
    const other = await dial(tunnel.port, "127.0.0.2");
    try {
      const result = await other.authenticate("from-elsewhere");
      assert.equal(result.client_id, "from-elsewhere");
      assert.equal(tunnel.server.clients.get("from-elsewhere")?.remoteAddr.split(":")[0], "127.0.0.2");
      assert.equal(tunnel.server.authKeyChecksTotal, checksBefore + 1);
    } finally {
      await other.close();
    }
  } finally {
    await Promise.all(attackers.map((attacker) => attacker.close()));
  }
});

Deno.test("a client that reconnects often is never locked out by its own successes", async () => {
  await using tunnel = await TunnelFixture.start();
  // Nine failures leave the address one attempt in flight at a time.
  for (let attempt = 0; attempt < 9; attempt++) {
    const client = await dial(tunnel.port);
    await rejectsWithCode(client.authenticate(undefined, WRONG_KEY), -32001);
    await client.close();
  }
  for (let reconnect = 0; reconnect < 25; reconnect++) {
    const client = await dial(tunnel.port);
    await client.authenticate("reconnecting");
    await client.close();
  }
  // Many at once from the same address: they wait for each other instead of being refused.
  const burst = await Promise.all(Array.from({ length: 15 }, (_, index) =>
    dial(tunnel.port)
      .then(async (client) => {
        try {
          return await client.authenticate(`burst-${index}`);
        } finally {
          await client.close();
        }
      })));
  assert.equal(burst.length, 15);
  assert.equal(tunnel.server.authFailuresTotal, 9);
});

Deno.test("a second authenticate on a session is refused without a key check", async () => {
  await using tunnel = await TunnelFixture.start();
  const client = await dial(tunnel.port);
  try {
    const [first, second] = await Promise.allSettled([client.authenticate(), client.authenticate()]);
    assert.equal(first.status, "fulfilled");
    assert.ok(second.status === "rejected" && second.reason instanceof RpcError);
    assert.equal(second.reason.code, -32005);
    assert.equal(tunnel.server.authKeyChecksTotal, 1);
    assert.equal(
      (await client.rpc.request("heartbeat", { time_ms: 5 }) as { time_ms: number }).time_ms,
      5,
      "the authenticated session goes on",
    );
  } finally {
    await client.close();
  }
});

Deno.test("any method before authenticate is answered -32004 NOT_AUTHENTICATED and the session goes on", async () => {
  await using tunnel = await TunnelFixture.start();
  const client = await dial(tunnel.port);
  try {
    await rejectsWithCode(client.rpc.request("heartbeat", { time_ms: 1 }), -32004);
    await rejectsWithCode(client.rpc.request("register_proxies", { proxies: [] }), -32004);
    await rejectsWithCode(client.rpc.request("no_such_method", {}), -32004);
    await client.authenticate();
    await rejectsWithCode(client.rpc.request("no_such_method", {}), -32601, "once authenticated");
    assert.equal((await client.rpc.request("heartbeat", { time_ms: 2 }) as { time_ms: number }).time_ms, 2);
  } finally {
    await client.close();
  }
});

Deno.test("every authenticate error closes the session about 100 ms after the answer", async () => {
  await using tunnel = await TunnelFixture.start("handshake_timeout_secs = 30\n");
  const cases: Array<{ what: string; params: Record<string, unknown>; code: number }> = [
    { what: "bad params", params: { auth_key: AUTH_KEY, protocol_version: 1 }, code: -32602 },
    {
      what: "a 1 MB key",
      params: { auth_key: "k".repeat(1_000_000), protocol_version: 1, client_id: "huge" },
      code: -32602,
    },
    {
      what: "a client_id over 64 characters",
      params: { auth_key: AUTH_KEY, protocol_version: 1, client_id: "c".repeat(65) },
      code: -32602,
    },
    {
      what: "a wrong version",
      params: { auth_key: AUTH_KEY, protocol_version: 99, client_id: "v" },
      code: -32002,
    },
    ...Array.from({ length: 10 }, () => ({
      what: "a wrong key",
      params: { auth_key: WRONG_KEY, protocol_version: 1, client_id: "w" },
      code: -32001,
    })),
    {
      what: "a throttled address",
      params: { auth_key: AUTH_KEY, protocol_version: 1, client_id: "t" },
      code: -32003,
    },
  ];
  for (const { what, params, code } of cases) {
    const client = await dial(tunnel.port);
    try {
      await rejectsWithCode(client.rpc.request("authenticate", params, { timeoutMs: 10_000 }), code, what);
      const closedAfterMs = await closedWithin(client.session, 2000);
      assert.ok(closedAfterMs < 1000, `${what}: closed ${closedAfterMs.toFixed(0)} ms after the answer`);
    } finally {
      await client.close();
    }
  }
  assert.equal(tunnel.server.authKeyChecksTotal, 10, "only the wrong keys were checked");
});

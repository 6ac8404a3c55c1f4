/**
 * Names and other strings from the wire (issue 10, item 7), sent by a hand-driven client over real
 * TLS: escape sequences, bidi overrides, lone surrogates and oversized values are refused where they
 * enter (INVALID_PARAMS for `authenticate`, INVALID_PROXY per proxy), the refusal quotes them escaped,
 * and free text a peer reports is stored escaped.
 */

import assert from "node:assert/strict";
import { Method, type RegisterProxiesResult } from "../lib/protocol/control.ts";
import { INVALID_PARAMS } from "../lib/rpc/messages.ts";
import { unsafeCharacter } from "../lib/text.ts";
import { waitFor } from "../testing/helpers.ts";
import { RawClient, rejectsWithCode } from "../testing/raw_client.ts";
import { AUTH_KEY, TunnelFixture } from "../testing/tunnel.ts";

const TITLE = "evil\x1b]0;pwned\x07";
const BIDI = "\u202eevil";
const ISOLATE = "ev\u2066il";
const SURROGATE = "evil\ud800";
const C1 = "evil\x9b31m";
const LONG = "a".repeat(65);

Deno.test("authenticate with a hostile client_id, key or version is refused with INVALID_PARAMS naming the field", async () => {
  await using tunnel = await TunnelFixture.start();
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ client_id: TITLE }, /client_id: "evil\\u001b\]0;pwned\\u0007" is not a valid name/],
    [{ client_id: BIDI }, /client_id: "\\u202eevil" is not a valid name/],
    [{ client_id: SURROGATE }, /client_id: "evil\\ud800" is not a valid name/],
    [{ client_id: LONG }, /client_id: "a{65}" is not a valid name: use 1-64 letters/],
    [{ client_version: "0.1\x1b[2J" }, /client_version: must be 1-64 printable ASCII/],
    [{ auth_key: `${AUTH_KEY}\u202e` }, /auth_key: contains U\+202E \(a bidi control\)/],
  ];
  for (const [fields, reason] of cases) {
    const raw = await RawClient.dial(tunnel.port);
    try {
      const error = await rejectsWithCode(
        raw.rpc.request(Method.authenticate, {
          auth_key: AUTH_KEY,
          protocol_version: 1,
          client_id: "fine",
          ...fields,
        }, { timeoutMs: 5000 }),
        INVALID_PARAMS,
      );
      assert.match(error.message, reason);
      assert.equal(unsafeCharacter(error.message), null, `raw in ${JSON.stringify(error.message)}`);
    } finally {
      await raw.close();
    }
  }
  assert.equal(tunnel.server.snapshot().clients.length, 0, "no hostile client got in");
});

Deno.test("register_proxies with hostile names, local addresses or a host-name publish_addr rejects each with INVALID_PROXY and binds nothing", async () => {
  await using tunnel = await TunnelFixture.start();
  const raw = await RawClient.dial(tunnel.port);
  try {
    await raw.authenticate("names");
    const proxy = (fields: Record<string, unknown>) => ({
      name: "ok",
      proxy_type: "tcp",
      publish_addr: "127.0.0.1",
      publish_port: 0,
      local_addr: "127.0.0.1",
      local_port: 9,
      ...fields,
    });
    const hostile = [
      proxy({ name: TITLE }),
      proxy({ name: BIDI }),
      proxy({ name: ISOLATE }),
      proxy({ name: SURROGATE }),
      proxy({ name: C1 }),
      proxy({ name: LONG }),
      proxy({ name: "local-title", local_addr: TITLE }),
      proxy({ name: "local-bidi", local_addr: `db${BIDI}` }),
      proxy({ name: "named", publish_addr: "slow.example" }),
      proxy({ name: "mutated", publish_addr: "127.0.0.:22943" }),
    ];
    const startedMs = performance.now();
    const answer = await raw.rpc.request<RegisterProxiesResult>(
      Method.registerProxies,
      { proxies: [...hostile, proxy({ name: "fine" })] },
      { timeoutMs: 5000 },
    );
    assert.ok(performance.now() - startedMs < 1000, "answered at once");
    const results = answer.proxies;
    assert.equal(results.length, hostile.length + 1);
    const expectedReasons = [
      /^Invalid proxy: name: "evil\\u001b\]0;pwned\\u0007" is not a valid name: use 1-64 letters/,
      /^Invalid proxy: name: "\\u202eevil" is not a valid name/,
      /^Invalid proxy: name: "ev\\u2066il" is not a valid name/,
      /^Invalid proxy: name: "evil\\ud800" is not a valid name/,
      /^Invalid proxy: name: "evil\\u009b31m" is not a valid name/,
      /^Invalid proxy: name: "a{65}" is not a valid name/,
      /^Invalid proxy: local_addr: "evil\\u001b\]0;pwned\\u0007" is not an IP address or host name/,
      /^Invalid proxy: local_addr: "db\\u202eevil" is not an IP address or host name/,
      /^Invalid proxy: publish_addr: "slow\.example" is not an IP address.*use an IP address such as 0\.0\.0\.0 or 127\.0\.0\.1/,
      /^Invalid proxy: publish_addr: "127\.0\.0\.:22943" is not an IP address/,
    ];
    expectedReasons.forEach((reason, index) => {
      const entry = results[index];
      assert.ok(entry?.status === "rejected", JSON.stringify(entry));
      assert.equal(entry.code, "INVALID_PROXY");
      assert.match(entry.reason, reason);
    });
    assert.equal(results.at(-1)?.status, "accepted", "a good proxy in the same request is unaffected");
    // Nothing the server answers carries the hostile characters back raw, names included.
    assert.equal(unsafeCharacter(JSON.stringify(results)), null);
    for (const entry of results.slice(0, hostile.length)) assert.equal(unsafeCharacter(entry.name), null);
    const client = tunnel.server.snapshot().clients[0];
    assert.deepEqual(client?.proxies.map((registered) => registered.name), ["fine"]);
  } finally {
    await raw.close();
  }
});

Deno.test("an error a client reports in proxy_health is stored escaped and cut to its bound", async () => {
  await using tunnel = await TunnelFixture.start();
  const raw = await RawClient.dial(tunnel.port);
  try {
    await raw.authenticate("reporter");
    const answer = await raw.register([{ name: "web", publish_port: 0 }]);
    assert.equal(answer.proxies[0]?.status, "accepted");
    await raw.rpc.notify(Method.proxyHealth, {
      proxy_name: "web",
      healthy: false,
      error: `down\x1b[2J\u202e${"x".repeat(3000)}`,
    });
    const lastErrorOf = () => tunnel.server.snapshot().clients[0]?.proxies[0]?.last_error ?? null;
    await waitFor(() => lastErrorOf()?.startsWith("down") ?? false, 5000, "the reported error");
    const lastError = lastErrorOf() ?? "";
    assert.ok(lastError.startsWith("down\\u001b[2J\\u202exxx"), lastError);
    assert.equal(unsafeCharacter(lastError), null);
    assert.ok(lastError.length <= 1024 + 20, `${lastError.length} characters kept`);
    // A notification naming a proxy with a hostile name is dropped; the session goes on.
    await raw.rpc.notify(Method.proxyHealth, { proxy_name: TITLE, healthy: true });
    const heartbeat = await raw.rpc.request<{ time_ms: number }>(Method.heartbeat, { time_ms: 1 });
    assert.equal(heartbeat.time_ms, 1);
  } finally {
    await raw.close();
  }
});

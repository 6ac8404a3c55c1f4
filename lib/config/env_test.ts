import assert from "node:assert/strict";
import { applyEnvOverrides, ENV_OVERRIDES } from "./env.ts";
import { KNOWN_KEYS } from "./schema.ts";

Deno.test("every documented override names a TLS_TUNNEL_ variable and existing keys", () => {
  const names = new Set<string>();
  for (const override of ENV_OVERRIDES) {
    assert.match(override.name, /^TLS_TUNNEL_[A-Z_]+$/);
    assert.ok(!names.has(override.name), `${override.name} is listed twice`);
    names.add(override.name);
    assert.ok(override.description.length > 10);
    for (const keyPath of override.keys) {
      const segments = keyPath.split(".");
      const role = segments[0] as "server" | "client";
      const table = segments.slice(0, -1).join(".");
      const key = segments[segments.length - 1] ?? "";
      assert.ok(KNOWN_KEYS[role]?.[table]?.includes(key), `${override.name}: ${keyPath} is not a known key`);
    }
  }
  for (
    const required of ["TLS_TUNNEL_RECONNECT_DELAY_SECS", "TLS_TUNNEL_AUTH_KEY", "TLS_TUNNEL_SERVER_ADDR"]
  ) {
    assert.ok(names.has(required), required);
  }
});

Deno.test("overrides touch only the loaded role and report what they set", () => {
  const document: Record<string, unknown> = { client: { server_addr: "a" } };
  const applied = applyEnvOverrides(document, "client", {
    TLS_TUNNEL_AUTH_KEY: "k",
    TLS_TUNNEL_BIND_PORT: "1",
    TLS_TUNNEL_RECONNECT_DELAY_SECS: " 3 ",
  });
  assert.deepEqual(document, {
    client: { server_addr: "a", auth_key: "k", reconnect: { initial_delay_secs: 3 } },
  });
  assert.deepEqual([...applied], [
    ["client.auth_key", "TLS_TUNNEL_AUTH_KEY"],
    ["client.reconnect.initial_delay_secs", "TLS_TUNNEL_RECONNECT_DELAY_SECS"],
  ]);
});

Deno.test("an override has no effect when its table is malformed", () => {
  const document: Record<string, unknown> = { client: { reconnect: 5 } };
  applyEnvOverrides(document, "client", { TLS_TUNNEL_RECONNECT_DELAY_SECS: "3" });
  assert.deepEqual(document, { client: { reconnect: 5 } });
});

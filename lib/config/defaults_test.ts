import assert from "node:assert/strict";
import { DEFAULTS } from "./defaults.ts";
import { ENV_OVERRIDES } from "./env.ts";

const README = new URL("../../README.md", import.meta.url);

/** The DEFAULTS entry at a TOML key path (`client.reconnect.initial_delay_secs`). */
function defaultAt(keyPath: string): unknown {
  let value: unknown = DEFAULTS;
  for (const segment of keyPath.split(".")) value = (value as Record<string, unknown>)[segment];
  return value;
}

Deno.test("the defaults README's environment table states are the values in DEFAULTS", async () => {
  const readme = await Deno.readTextFile(README);
  let stated = 0;
  for (const override of ENV_OVERRIDES) {
    const row = readme.split("\n").find((line) => line.startsWith(`| \`${override.name}\``));
    assert.ok(row !== undefined, `README's environment table has no row for ${override.name}`);
    const figure = /\(default ([^)]+)\)/.exec(row)?.[1];
    if (figure === undefined) continue;
    for (const keyPath of override.keys) {
      assert.equal(figure, String(defaultAt(keyPath)), `README says ${keyPath} defaults to ${figure}`);
      stated++;
    }
  }
  assert.ok(stated >= 3, `only ${stated} defaults found in README's environment table`);
});

Deno.test("the defaults README's prose states are the values in DEFAULTS", async () => {
  const readme = (await Deno.readTextFile(README)).replace(/\n\s*/g, " ");
  const stated: [string, string][] = [];
  // "`unhealthy_after_failures` (`[server]`, default 3)"
  for (const match of readme.matchAll(/`([a-z_]+)` \(`\[([a-z_.]+)\]`, default ([^)]+)\)/g)) {
    stated.push([`${match[2]}.${match[1]}`, match[3] ?? ""]);
  }
  // Two sentences that state a default in their own words (checked while they say it this way).
  const lbPolicy = /by `lb_policy`: `"([a-z_]+)"` \(default/.exec(readme)?.[1];
  if (lbPolicy !== undefined) stated.push(["proxy.lb_policy", lbPolicy]);
  const webhookTimeout = /with `timeout_secs` \((\d+)\) each/.exec(readme)?.[1];
  if (webhookTimeout !== undefined) stated.push(["server.notify.timeout_secs", webhookTimeout]);
  assert.ok(stated.length >= 1, "no default found in README's prose");
  for (const [keyPath, figure] of stated) {
    assert.equal(figure, String(defaultAt(keyPath)), `README says ${keyPath} defaults to ${figure}`);
  }
});

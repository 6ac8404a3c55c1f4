/**
 * Nothing a peer sends makes the server look a name up on its only thread (issue 10, item 1): a host
 * name as `publish_addr` is refused with INVALID_PROXY at once, while another client's round trips
 * stay fast, even where name lookups hang.
 *
 * The scenario (`_resolver_stall_scenario.ts`) runs in a network namespace of its own whose resolver
 * never answers (`unshare -rnm`: needs root or unprivileged user namespaces, plus `ip` and `mount`).
 * Where that cannot be set up, it runs in this process instead, with the system's resolver.
 */

import assert from "node:assert/strict";
import { ProxyRejectCode } from "../lib/protocol/control.ts";
import { PROJECT_ROOT } from "../testing/helpers.ts";
import {
  HOSTILE_PUBLISH_ADDRS,
  type ResolverStallResult,
  resolverStallScenario,
  SILENT_RESOLVER_ADDR,
} from "../testing/resolver_stall_scenario.ts";

/** Canary round trips and timer lateness allowed while the hostile registration runs. */
const CANARY_MAX_MS = 100;
/** The registration's answer is due well inside the raw client's request timeout. */
const REGISTRATION_MAX_MS = 1000;

async function commandWorks(command: string, args: string[]): Promise<boolean> {
  try {
    const { success } = await new Deno.Command(command, { args, stdout: "null", stderr: "null" }).output();
    return success;
  } catch {
    return false;
  }
}

/** Runs the scenario as a program in a namespace with a silent resolver, or null when that cannot be done. */
async function runInSilentNamespace(): Promise<ResolverStallResult | null> {
  if (Deno.build.os !== "linux" || !(await commandWorks("unshare", ["-rnm", "true"]))) return null;
  const resolvConf = await Deno.makeTempFile({ prefix: "tls-tunnel-resolv-" });
  try {
    await Deno.writeTextFile(
      resolvConf,
      `nameserver ${SILENT_RESOLVER_ADDR}\noptions timeout:2 attempts:1\n`,
    );
    const script = [
      "set -e",
      "ip link set lo up",
      `mount --bind "$1" /etc/resolv.conf`,
      `shift`,
      `exec "$@"`,
    ].join("\n");
    const child = new Deno.Command("unshare", {
      args: [
        "-rnm",
        "sh",
        "-c",
        script,
        "sh",
        resolvConf,
        Deno.execPath(),
        "run",
        "--allow-net",
        "--allow-read",
        "--allow-write",
        "--allow-env",
        "--allow-sys",
        "--allow-run",
        `${PROJECT_ROOT}testing/resolver_stall_scenario.ts`,
        "--silent-resolver",
      ],
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(60_000),
    });
    const output = await child.output();
    const stdout = new TextDecoder().decode(output.stdout);
    const stderr = new TextDecoder().decode(output.stderr);
    if (!output.success && /ip: not found|Operation not permitted|cannot open|mount:/.test(stderr)) {
      return null; // the namespace could not be set up here
    }
    assert.ok(output.success, `the scenario failed:\n${stderr}`);
    const line = stdout.trim().split("\n").at(-1) ?? "";
    return JSON.parse(line) as ResolverStallResult;
  } finally {
    await Deno.remove(resolvConf);
  }
}

Deno.test("a host name as publish_addr is refused at once and never stalls other clients, even when lookups hang", async () => {
  const isolated = await runInSilentNamespace();
  const result = isolated ?? await resolverStallScenario();
  console.log(
    `resolver_stall_test: ${isolated ? "silent resolver" : "system resolver"}: ${
      JSON.stringify({
        ...result,
        registrations: result.registrations.map((entry) =>
          entry.status === "rejected" ? entry.code : entry.status
        ),
      })
    }`,
  );
  if (isolated) {
    assert.ok(result.resolverSilent, "inside the namespace a lookup must hang, or the test proves nothing");
  } else console.warn("resolver_stall_test: no network namespace here; ran with the system resolver");

  assert.equal(result.registrations.length, HOSTILE_PUBLISH_ADDRS.length);
  HOSTILE_PUBLISH_ADDRS.forEach((addr, index) => {
    const entry = result.registrations[index];
    assert.ok(entry, `no answer for ${addr}`);
    assert.equal(entry.status, "rejected", JSON.stringify(entry));
    if (entry.status !== "rejected") return;
    assert.equal(entry.code, ProxyRejectCode.invalidProxy);
    assert.ok(entry.reason.includes(`publish_addr: "${addr}" is not an IP address`), entry.reason);
    assert.match(entry.reason, /use an IP address such as 0\.0\.0\.0 or 127\.0\.0\.1/);
  });
  assert.ok(
    result.registrationMs <= REGISTRATION_MAX_MS,
    `registration answered after ${result.registrationMs} ms`,
  );
  assert.equal(result.listenGuardKind, "invalid_address", "listenTcp refuses a name itself");
  assert.ok(result.listenGuardMs < 50, `listenTcp took ${result.listenGuardMs} ms to refuse a name`);
  if (isolated) {
    // The client really looked the local service's name up (the connection lived through the
    // resolver's 2 s timeout) while the canary below stayed fast: Deno.connect resolves off the loop.
    assert.ok(
      result.namedLocalClosedAfterMs !== null && result.namedLocalClosedAfterMs >= 1500 &&
        result.namedLocalClosedAfterMs < 8000,
      `the connection to a named local service lived ${result.namedLocalClosedAfterMs} ms`,
    );
  }
  assert.ok(result.canaryRoundTrips >= 10, `only ${result.canaryRoundTrips} canary round trips`);
  assert.ok(result.canaryMaxMs <= CANARY_MAX_MS, `canary round trip took ${result.canaryMaxMs} ms`);
  assert.ok(result.lagMaxMs <= CANARY_MAX_MS, `the event loop lagged ${result.lagMaxMs} ms`);
});

import assert from "node:assert/strict";
import { AuthenticateParams, describeParamsError, ProxyHealthParams, ProxySpec } from "./control.ts";
import { unsafeCharacter } from "../text.ts";

const GOOD_PROXY = {
  name: "web",
  proxy_type: "tcp",
  publish_addr: "0.0.0.0",
  publish_port: 8080,
  local_addr: "127.0.0.1",
  local_port: 3000,
};
const GOOD_AUTH = {
  auth_key: "k".repeat(32),
  protocol_version: 1,
  client_id: "office",
  client_version: "0.1.0",
};

/** Strings no field may carry: escape sequences, bidi overrides and isolates, lone surrogates, C1, DEL. */
const HOSTILE_TEXT = [
  "web\x1b]0;pwned\x07",
  "web\n",
  "\u202eweb",
  "web\u2066",
  "web\u200f",
  "web\u061c",
  "web\ud800",
  "web\x9b",
  "web\x7f",
];

function refusal(result: { success: boolean; error?: import("zod").ZodError }): string {
  assert.equal(result.success, false, "should be refused");
  assert.ok(result.error);
  return describeParamsError(result.error);
}

Deno.test("ProxySpec takes a well-formed proxy, IPv6 publish addresses and host-name local addresses", () => {
  assert.ok(ProxySpec.safeParse(GOOD_PROXY).success);
  assert.ok(ProxySpec.safeParse({ ...GOOD_PROXY, publish_addr: "::" }).success);
  assert.ok(ProxySpec.safeParse({ ...GOOD_PROXY, local_addr: "db.internal" }).success);
  assert.ok(ProxySpec.safeParse({ ...GOOD_PROXY, name: "a".repeat(64) }).success);
});

Deno.test("ProxySpec refuses a host name as publish_addr, naming the value and what to use", () => {
  for (const publishAddr of ["slow.example", "127.0.0.:22943", "localhost", "", "1.2.3.4.5"]) {
    const reason = refusal(ProxySpec.safeParse({ ...GOOD_PROXY, publish_addr: publishAddr }));
    assert.match(reason, /^publish_addr: /);
    assert.ok(reason.includes(JSON.stringify(publishAddr)), reason);
    assert.match(reason, /not an IP address.*use an IP address such as 0\.0\.0\.0 or 127\.0\.0\.1/);
  }
});

Deno.test("ProxySpec refuses hostile or oversized names and local addresses, quoting them escaped", () => {
  for (const text of [...HOSTILE_TEXT, "", "a".repeat(65), "-web", "we b"]) {
    const reason = refusal(ProxySpec.safeParse({ ...GOOD_PROXY, name: text }));
    assert.match(reason, /^name: .* is not a valid name: use 1-64 letters/);
    assert.equal(unsafeCharacter(reason), null, "the refused name is quoted escaped");
    assert.match(refusal(ProxySpec.safeParse({ ...GOOD_PROXY, local_addr: text })), /^local_addr: /);
  }
  assert.match(
    refusal(ProxySpec.safeParse({ ...GOOD_PROXY, local_addr: "h".repeat(254) })),
    /not an IP address or host name/,
  );
});

Deno.test("AuthenticateParams refuses hostile client ids, keys and versions, and bounds every field", () => {
  assert.ok(AuthenticateParams.safeParse(GOOD_AUTH).success);
  for (const text of HOSTILE_TEXT) {
    assert.match(refusal(AuthenticateParams.safeParse({ ...GOOD_AUTH, client_id: text })), /^client_id: /);
    assert.match(
      refusal(AuthenticateParams.safeParse({ ...GOOD_AUTH, auth_key: `${"k".repeat(20)}${text}` })),
      /^auth_key: contains U\+[0-9A-F]{4} \(a (control character|bidi control|lone surrogate)\)/,
    );
    assert.match(
      refusal(AuthenticateParams.safeParse({ ...GOOD_AUTH, client_version: text })),
      /^client_version/,
    );
  }
  assert.match(
    refusal(AuthenticateParams.safeParse({ ...GOOD_AUTH, client_id: "x".repeat(65) })),
    /^client_id/,
  );
  assert.match(
    refusal(AuthenticateParams.safeParse({ ...GOOD_AUTH, auth_key: "k".repeat(4097) })),
    /^auth_key/,
  );
  assert.match(
    refusal(AuthenticateParams.safeParse({ ...GOOD_AUTH, protocol_version: 2 ** 40 })),
    /^protocol_version/,
  );
});

Deno.test("a refused auth_key is never quoted back", () => {
  const key = "secret-key-0123456789\x1b";
  const reason = refusal(AuthenticateParams.safeParse({ ...GOOD_AUTH, auth_key: key }));
  assert.ok(!reason.includes("secret-key"), reason);
});

Deno.test("proxy_health keeps a reported error, cut to a bound and escaped; its proxy name is a name", () => {
  const parsed = ProxyHealthParams.parse({ proxy_name: "web", healthy: false, error: "down\x1b[2J\u202e" });
  assert.equal(parsed.error, "down\\u001b[2J\\u202e");
  const long = ProxyHealthParams.parse({ proxy_name: "web", healthy: false, error: "e".repeat(5000) });
  assert.equal(long.error?.length, 1025);
  assert.equal(ProxyHealthParams.safeParse({ proxy_name: "web\x1b", healthy: true }).success, false);
});

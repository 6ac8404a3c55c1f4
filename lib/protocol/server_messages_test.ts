/**
 * What the server sends the client, against the schemas the client checks it with: the shapes the real
 * server builds pass, and malformed, oversized, mistyped and hostile ones are refused with the field
 * named (or, for free text, kept bounded and escaped); unknown fields are dropped.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import {
  AuthenticateResult,
  describeMessageError,
  DuplicateClientData,
  HeartbeatParams,
  NoticeCode,
  ProtocolVersionMismatchData,
  ProxyStatusParams,
  PushExceptionParams,
  RegisterProxiesResult,
  TooManyAttemptsData,
  TooManyPendingData,
} from "./control.ts";
import { PROXY_STATUSES } from "./proxy_status.ts";
import { unsafeCharacter } from "../text.ts";

/** Strings no identifier may carry: escape sequences, bidi overrides and isolates, lone surrogates, C1, DEL. */
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

const AUTH = {
  client_id: "laptop-1a2b",
  client_name: "laptop",
  protocol_version: 1,
  server_version: "0.1.0",
  session_id: "s1",
};
const ACCEPTED = { name: "web", status: "accepted", publish_addr: "0.0.0.0", publish_port: 8080 };
const RETRYING = {
  name: "web",
  status: "retrying",
  publish_addr: "127.0.0.1",
  publish_port: 8080,
  code: "ADDRESS_IN_USE",
  reason: "Address already in use (os error 98)",
  retry_after_seconds: 2,
};
const REJECTED = {
  name: "evil\\u001b]0;x",
  status: "rejected",
  publish_addr: "",
  publish_port: 0,
  code: "INVALID_PROXY",
  reason: 'Invalid proxy: name: "evil\\u001b]0;x" is not a valid name',
};
const STATUS = {
  proxy_name: "web",
  status: "unhealthy",
  publish_addr: "127.0.0.1",
  publish_port: 8080,
  error_message: "Address already in use (os error 98)",
  retry_after_seconds: 4,
};
const BIND_RETRY = {
  level: "warning",
  code: NoticeCode.bindRetry,
  message: "Proxy 'web' bind failed (attempt 1/10): Address already in use. Retrying in 2 s",
  data: {
    proxy_name: "web",
    publish_addr: "127.0.0.1",
    publish_port: 8080,
    retry_count: 1,
    max_retries: 10,
    retry_delay_secs: 2,
    error: "Address already in use",
    repeat_count: 1,
  },
};

/** The refusal of `result`, as the client words it (`field.path: what is wrong`). */
function refusal(result: { success: boolean; error?: import("zod").ZodError }): string {
  assert.equal(result.success, false, "should be refused");
  assert.ok(result.error);
  return describeMessageError(result.error);
}

Deno.test("the authenticate result the server sends passes; unknown fields are dropped", () => {
  assert.deepEqual(AuthenticateResult.parse(AUTH), AUTH);
  assert.deepEqual(AuthenticateResult.parse({ ...AUTH, motd: "hello", admin: true }), AUTH);
});

Deno.test("an authenticate result with a missing, mistyped, oversized or hostile field is refused, naming it", () => {
  const { client_id: _, ...withoutId } = AUTH;
  assert.equal(refusal(AuthenticateResult.safeParse(withoutId)), "client_id: missing");
  assert.match(
    refusal(AuthenticateResult.safeParse({ ...AUTH, protocol_version: "1" })),
    /^protocol_version: /,
  );
  assert.match(
    refusal(AuthenticateResult.safeParse({ ...AUTH, protocol_version: 0 })),
    /^protocol_version: /,
  );
  assert.match(
    refusal(AuthenticateResult.safeParse({ ...AUTH, protocol_version: 2 ** 40 })),
    /^protocol_version/,
  );
  assert.match(
    refusal(AuthenticateResult.safeParse({ ...AUTH, session_id: "s".repeat(65) })),
    /^session_id: /,
  );
  assert.match(refusal(AuthenticateResult.safeParse({ ...AUTH, session_id: "s 1" })), /^session_id: /);
  assert.match(refusal(AuthenticateResult.safeParse({ ...AUTH, server_version: "" })), /^server_version: /);
  assert.match(
    refusal(AuthenticateResult.safeParse({ ...AUTH, client_name: "x".repeat(65) })),
    /^client_name: /,
  );
  for (const text of HOSTILE_TEXT) {
    for (const field of ["client_id", "client_name", "server_version", "session_id"]) {
      const reason = refusal(AuthenticateResult.safeParse({ ...AUTH, [field]: text }));
      assert.ok(reason.startsWith(`${field}: `), reason);
      assert.equal(unsafeCharacter(reason), null, `the refusal quotes the value escaped: ${reason}`);
    }
  }
  for (const answer of [null, [], "ok", 1, { ok: true, name: "laptop" }]) {
    assert.equal(AuthenticateResult.safeParse(answer).success, false, JSON.stringify(answer));
  }
});

Deno.test("register_proxies results of each status pass; rejected entries keep their escaped echoes", () => {
  const parsed = RegisterProxiesResult.parse({
    proxies: [{ ...ACCEPTED, requested_port: 8000 }, RETRYING, REJECTED],
    extra: 1,
  });
  assert.deepEqual(parsed, { proxies: [{ ...ACCEPTED, requested_port: 8000 }, RETRYING, REJECTED] });
});

Deno.test("a register_proxies result with an unknown status, wrong types or hostile fields is refused, naming the field", () => {
  const entry = (fields: Record<string, unknown>, base: Record<string, unknown> = ACCEPTED) =>
    RegisterProxiesResult.safeParse({ proxies: [ACCEPTED, { ...base, ...fields }] });
  assert.match(refusal(entry({ status: "great" })), /^proxies\.1\.status: /);
  assert.match(refusal(entry({ publish_port: "8080" })), /^proxies\.1\.publish_port: /);
  assert.match(refusal(entry({ publish_port: 65536 })), /^proxies\.1\.publish_port: /);
  assert.match(
    refusal(entry({ publish_addr: "tunnel.example.com" })),
    /^proxies\.1\.publish_addr: .* not an IP/,
  );
  assert.match(refusal(entry({ code: "ON_FIRE" }, RETRYING)), /^proxies\.1\.code: /);
  assert.match(refusal(entry({ retry_after_seconds: -1 }, RETRYING)), /^proxies\.1\.retry_after_seconds: /);
  assert.match(refusal(entry({ retry_after_seconds: 1e9 }, RETRYING)), /^proxies\.1\.retry_after_seconds: /);
  assert.match(refusal(entry({ reason: "r".repeat(2049) }, REJECTED)), /^proxies\.1\.reason: /);
  assert.match(refusal(entry({ name: "n".repeat(1025) }, REJECTED)), /^proxies\.1\.name: /);
  for (const text of HOSTILE_TEXT) {
    assert.match(refusal(entry({ name: text })), /^proxies\.1\.name: /);
    assert.match(refusal(entry({ name: text }, REJECTED)), /^proxies\.1\.name: contains U\+/);
    assert.match(refusal(entry({ publish_addr: text }, REJECTED)), /^proxies\.1\.publish_addr: contains U\+/);
  }
  assert.match(
    refusal(RegisterProxiesResult.safeParse({ proxies: Array.from({ length: 1025 }, () => ACCEPTED) })),
    /^proxies: /,
  );
  assert.match(refusal(RegisterProxiesResult.safeParse({ proxies: {} })), /^proxies: /);
  assert.equal(refusal(RegisterProxiesResult.safeParse({})), "proxies: missing");
});

Deno.test("a reason with control characters is kept escaped, never raw", () => {
  const parsed = RegisterProxiesResult.parse({
    proxies: [{ ...RETRYING, reason: "busy\x1b[2J\u202e\n" }],
  });
  const [entry] = parsed.proxies;
  assert.ok(entry?.status === "retrying");
  assert.equal(entry.reason, "busy\\u001b[2J\\u202e\\n");
});

Deno.test("proxy_status passes for every status of PROXY_STATUSES; its extra fields are dropped", () => {
  for (const status of PROXY_STATUSES) {
    assert.deepEqual(ProxyStatusParams.parse({ ...STATUS, status, repeat_count: 3 }), { ...STATUS, status });
  }
  const healthy = { ...STATUS, status: "healthy", error_message: null, retry_after_seconds: null };
  assert.deepEqual(ProxyStatusParams.parse(healthy), healthy);
});

Deno.test("a malformed, oversized or hostile proxy_status is refused, naming the field", () => {
  assert.match(refusal(ProxyStatusParams.safeParse({ ...STATUS, status: "on fire" })), /^status: /);
  assert.match(refusal(ProxyStatusParams.safeParse({ ...STATUS, publish_port: "20001" })), /^publish_port: /);
  assert.match(
    refusal(ProxyStatusParams.safeParse({ ...STATUS, error_message: "x".repeat(10_000) })),
    /^error_message/,
  );
  assert.match(
    refusal(ProxyStatusParams.safeParse({ ...STATUS, retry_after_seconds: "soon" })),
    /^retry_after/,
  );
  assert.match(
    refusal(ProxyStatusParams.safeParse({ ...STATUS, publish_addr: "x".repeat(300) })),
    /^publish_addr/,
  );
  const { error_message: _, ...withoutError } = STATUS;
  assert.equal(refusal(ProxyStatusParams.safeParse(withoutError)), "error_message: missing");
  for (const text of HOSTILE_TEXT) {
    const reason = refusal(ProxyStatusParams.safeParse({ ...STATUS, proxy_name: text }));
    assert.match(reason, /^proxy_name: /);
    assert.equal(unsafeCharacter(reason), null, reason);
  }
  assert.equal(
    ProxyStatusParams.parse({ ...STATUS, error_message: "down\x1b]0;x\x07" }).error_message,
    "down\\u001b]0;x\\u0007",
  );
});

Deno.test("push_exception of every known code passes with the data the server sends", () => {
  const notices = [
    BIND_RETRY,
    {
      level: "error",
      code: NoticeCode.bindFailed,
      message: "Proxy 'web' could not be published: Permission denied",
      data: {
        proxy_name: "web",
        publish_addr: "0.0.0.0",
        publish_port: 80,
        max_retries: 0,
        final_error: "Permission denied",
        repeat_count: 2,
      },
    },
    {
      level: "info",
      code: NoticeCode.bindRecovered,
      message: "Proxy 'web' is listening on 127.0.0.1:8080 after 3 retries",
      data: { proxy_name: "web", publish_addr: "127.0.0.1", publish_port: 8080, retries: 3, repeat_count: 1 },
    },
    {
      level: "warning",
      code: NoticeCode.portChanged,
      message: "Proxy 'web' is published on port 8081 instead of 8080: port 8080 was not available",
      data: {
        proxy_name: "web",
        requested_port: 8080,
        publish_port: 8081,
        reason: "port 8080 was not available",
        repeat_count: 1,
      },
    },
  ];
  for (const notice of notices) assert.deepEqual(PushExceptionParams.parse(notice), notice);
});

Deno.test("a known push_exception missing a field of its code, or with a mistyped one, is refused, naming it", () => {
  const { retry_count: _, ...data } = BIND_RETRY.data;
  assert.equal(
    refusal(PushExceptionParams.safeParse({ ...BIND_RETRY, data })),
    "data.retry_count: missing (a PROXY_BIND_RETRY notice carries it)",
  );
  assert.match(
    refusal(PushExceptionParams.safeParse({ ...BIND_RETRY, data: undefined })),
    /^data\.proxy_name: missing/,
  );
  const mistyped = (fields: Record<string, unknown>) =>
    PushExceptionParams.safeParse({ ...BIND_RETRY, data: { ...BIND_RETRY.data, ...fields } });
  assert.match(refusal(mistyped({ retry_count: "1" })), /^data\.retry_count: /);
  assert.match(refusal(mistyped({ retry_count: -1 })), /^data\.retry_count: /);
  assert.match(refusal(mistyped({ max_retries: 1.5 })), /^data\.max_retries: /);
  assert.match(refusal(mistyped({ repeat_count: 0 })), /^data\.repeat_count: /);
  assert.match(refusal(mistyped({ error: "e".repeat(2049) })), /^data\.error: /);
  assert.match(refusal(mistyped({ publish_addr: "evil.example" })), /^data\.publish_addr: /);
  for (const text of HOSTILE_TEXT) {
    assert.match(refusal(mistyped({ proxy_name: text })), /^data\.proxy_name: /);
  }
  assert.equal(mistyped({ error: "in use\x1b[31m" }).data?.data?.error, "in use\\u001b[31m");
});

Deno.test("a push_exception with a bad level, code or message is refused; one of an unknown code keeps its known fields", () => {
  assert.match(refusal(PushExceptionParams.safeParse({ ...BIND_RETRY, level: "panic" })), /^level: /);
  assert.match(
    refusal(PushExceptionParams.safeParse({ ...BIND_RETRY, code: "proxy_bind_retry" })),
    /^code: /,
  );
  assert.match(refusal(PushExceptionParams.safeParse({ ...BIND_RETRY, code: "X".repeat(65) })), /^code: /);
  assert.match(refusal(PushExceptionParams.safeParse({ ...BIND_RETRY, code: "A\x1b" })), /^code: /);
  assert.match(
    refusal(PushExceptionParams.safeParse({ ...BIND_RETRY, message: "m".repeat(4097) })),
    /^message: /,
  );
  assert.match(refusal(PushExceptionParams.safeParse({ ...BIND_RETRY, data: [1, 2] })), /^data: /);
  assert.equal(PushExceptionParams.parse({ ...BIND_RETRY, message: "a\nb" }).message, "a\\nb");

  const future = PushExceptionParams.parse({
    level: "info",
    code: "PROXY_RENAMED",
    message: "m",
    data: { proxy_name: "web", new_name: "web2", nested: { deep: [1, 2, 3] } },
    extra: true,
  });
  assert.deepEqual(future, {
    level: "info",
    code: "PROXY_RENAMED",
    message: "m",
    data: { proxy_name: "web" },
  });
});

Deno.test("free text from the server never comes out with an unsafe character, whatever it holds", () => {
  fc.assert(
    fc.property(fc.string({ unit: "binary", maxLength: 300 }), (text) => {
      const status = ProxyStatusParams.safeParse({ ...STATUS, error_message: text });
      const notice = PushExceptionParams.safeParse({
        ...BIND_RETRY,
        message: text,
        data: { ...BIND_RETRY.data, error: text },
      });
      const answer = RegisterProxiesResult.safeParse({ proxies: [{ ...RETRYING, reason: text }] });
      assert.ok(status.success && notice.success && answer.success, "text within its bound is kept");
      assert.equal(unsafeCharacter(status.data.error_message ?? ""), null);
      assert.equal(unsafeCharacter(notice.data.message), null);
      assert.equal(unsafeCharacter(notice.data.data?.error ?? ""), null);
      const [entry] = answer.data.proxies;
      assert.equal(unsafeCharacter(entry?.status === "retrying" ? entry.reason : ""), null);
    }),
    { numRuns: 100 },
  );
});

Deno.test("the data of each refusal the client reads is checked: hostile or mistyped data is refused", () => {
  assert.deepEqual(DuplicateClientData.parse({ other_remote_addr: "127.0.0.1:51234", more: 1 }), {
    other_remote_addr: "127.0.0.1:51234",
  });
  for (const value of [...HOSTILE_TEXT, "", "a".repeat(65), 7, null]) {
    assert.match(refusal(DuplicateClientData.safeParse({ other_remote_addr: value })), /^other_remote_addr/);
  }
  assert.equal(refusal(DuplicateClientData.safeParse(undefined)), "missing");
  assert.deepEqual(TooManyAttemptsData.parse({ retry_after_secs: 42 }), { retry_after_secs: 42 });
  assert.match(refusal(TooManyAttemptsData.safeParse({ retry_after_secs: -1 })), /^retry_after_secs/);
  assert.match(refusal(TooManyAttemptsData.safeParse({ retry_after_secs: "42" })), /^retry_after_secs/);
  assert.deepEqual(TooManyPendingData.parse({ limit: 8 }), { limit: 8 });
  assert.match(refusal(TooManyPendingData.safeParse({ limit: 0 })), /^limit/);
  assert.deepEqual(ProtocolVersionMismatchData.parse({ server_protocol_version: 1 }), {
    server_protocol_version: 1,
  });
  assert.match(
    refusal(ProtocolVersionMismatchData.safeParse({ server_protocol_version: "1" })),
    /^server_protocol/,
  );
});

Deno.test("heartbeat takes a clock in ms and refuses non-numbers and unbounded ones", () => {
  assert.deepEqual(HeartbeatParams.parse({ time_ms: 1_700_000_000_000, x: 1 }), {
    time_ms: 1_700_000_000_000,
  });
  for (const value of ["1", null, Infinity, NaN, 2 ** 60, -(2 ** 60)]) {
    assert.match(refusal(HeartbeatParams.safeParse({ time_ms: value })), /^time_ms/, String(value));
  }
});

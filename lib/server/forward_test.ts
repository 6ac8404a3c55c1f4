import assert from "node:assert/strict";
import { memoryPair } from "../net/memory_pair.ts";
import type { Stream } from "../mux/mod.ts";
import type { ForwardRequest } from "../protocol/open_request.ts";
import type { ClientStreamContext, ClientStreamOutcome } from "./client_streams.ts";
import type { ConnectedClient } from "./connected_client.ts";
import { ForwardService, type ForwardSettings } from "./forward.ts";
import { KeyedRateLimiter } from "./rate_limit.ts";

const SETTINGS: ForwardSettings = {
  allowForward: true,
  forwardAllowPrivate: true,
  maxForwardsPerClient: 2,
  forwardConnectTimeoutSecs: 2,
};

function context(name = "laptop"): ClientStreamContext {
  const client = { name, signal: new AbortController().signal } as unknown as ConnectedClient;
  return { client, streamId: 3 };
}

function request(port: number, host = "127.0.0.1"): ForwardRequest {
  return { kind: "forward", forwarder: "web", host, port };
}

function refusal(outcome: ClientStreamOutcome): string {
  assert.ok(!outcome.ok, "expected a refusal");
  return `${outcome.code}: ${outcome.reason}`;
}

Deno.test("allow_forward = false refuses every forward with DISABLED, counted", async () => {
  const service = new ForwardService(() => ({ ...SETTINGS, allowForward: false }));
  assert.match(refusal(await service.handle(request(80), context())), /^DISABLED: .*allow_forward = false/);
  assert.deepEqual(service.counts(), [{ client: "laptop", forwarder: "web", result: "disabled", count: 1 }]);
});

Deno.test("a private destination is FORBIDDEN_DESTINATION unless forward_allow_private", async () => {
  const service = new ForwardService(() => ({ ...SETTINGS, forwardAllowPrivate: false }));
  for (const host of ["127.0.0.1", "10.1.2.3", "::1", "::ffff:192.168.0.1", "169.254.169.254", "localhost"]) {
    assert.match(
      refusal(await service.handle(request(80, host), context())),
      /^FORBIDDEN_DESTINATION: /,
      host,
    );
  }
  assert.equal(service.activeTotal, 0, "refusals hold no slot");
});

Deno.test("a forward reaches its destination and carries bytes; the per-client limit answers LIMIT", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const service = new ForwardService(() => SETTINGS);
  const carried: Promise<void>[] = [];
  const accepted: Deno.Conn[] = [];
  try {
    const acceptor = (async () => {
      for (let index = 0; index < 2; index++) accepted.push(await listener.accept());
    })();
    const pairs = [];
    for (let index = 0; index < 2; index++) {
      const outcome = await service.handle(request(listener.addr.port), context());
      assert.ok(outcome.ok);
      const [ours, theirs] = memoryPair();
      carried.push(outcome.carry(ours as unknown as Stream));
      pairs.push(theirs);
    }
    await acceptor;
    assert.equal(service.activeTotal, 2);
    assert.match(refusal(await service.handle(request(listener.addr.port), context())), /^LIMIT: /);
    // Another client has its own allowance.
    const other = await service.handle(request(listener.addr.port), context("desktop"));
    assert.ok(other.ok);
    other.abandon();
    // Bytes go through: the client's side writes, the destination reads.
    const [first] = pairs;
    assert.ok(first !== undefined);
    await first.write(new TextEncoder().encode("ping"));
    const buffer = new Uint8Array(4);
    assert.equal(await accepted[0]?.read(buffer), 4);
    assert.equal(new TextDecoder().decode(buffer), "ping");
    for (const pair of pairs) pair.close();
    for (const conn of accepted) conn.close();
    await Promise.all(carried);
    assert.equal(service.activeTotal, 0, "slots are released when the connections end");
    const ok = service.counts().filter((count) => count.result === "ok");
    assert.deepEqual(ok.map((count) => [count.client, count.count]), [["desktop", 1], ["laptop", 2]]);
  } finally {
    listener.close();
  }
});

Deno.test("a closed port is UNREACHABLE with 'refused the connection'; the rate limit answers RATE_LIMITED", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  const limiter = new KeyedRateLimiter({ requestsPerSecond: 0.001, burstSize: 1 }, "outside connections");
  const service = new ForwardService(() => SETTINGS, limiter);
  assert.match(
    refusal(await service.handle(request(port), context())),
    /^UNREACHABLE: .*refused the connection$/,
  );
  assert.match(refusal(await service.handle(request(port), context())), /^RATE_LIMITED: /);
  assert.equal(limiter.refusedTotal, 1);
});

Deno.test("a reload applies the forwarding keys at once; [server.rate_limit] needs a restart", async () => {
  const { parseConfigText } = await import("../config/load.ts");
  const { serverRestartKeys } = await import("./reload.ts");
  const parse = (extra: string) => {
    const parsed = parseConfigText(`[server]\nauth_key = "0123456789abcdef-key"\n${extra}`, { env: {} });
    assert.ok(parsed.kind === "server");
    return parsed.config;
  };
  const before = parse("");
  const after = parse(
    "allow_forward = true\nforward_allow_private = true\nmax_forwards_per_client = 3\n" +
      "forward_connect_timeout_secs = 2\n",
  );
  assert.deepEqual(serverRestartKeys(before, after), []);
  assert.deepEqual(serverRestartKeys(before, parse("[server.rate_limit]\nburst_size = 5\n")), ["rate_limit"]);
});

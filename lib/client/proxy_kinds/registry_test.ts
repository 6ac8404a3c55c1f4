import assert from "node:assert/strict";
import { DuplicateNameError, UnknownNameError } from "../../registry.ts";
import { UnknownProxyKindError } from "./kind.ts";
import { clientProxyKindFor, clientProxyKindNames, registerClientProxyKind } from "./registry.ts";
import { tcpClientKind } from "./tcp.ts";
import { httpClientKind, httpsClientKind } from "./http.ts";

Deno.test("the client's proxy kinds are registered under their names", () => {
  assert.equal(clientProxyKindFor("tcp"), tcpClientKind);
  assert.equal(clientProxyKindFor("http"), httpClientKind);
  assert.equal(clientProxyKindFor("https"), httpsClientKind);
  for (const name of ["tcp", "http", "https"]) assert.ok(clientProxyKindNames().includes(name), name);
});

Deno.test("an unknown client proxy kind fails with a typed error naming the known kinds", () => {
  assert.throws(() => clientProxyKindFor("quic"), (error: unknown) => {
    assert.ok(error instanceof UnknownProxyKindError);
    assert.ok(error instanceof UnknownNameError);
    assert.deepEqual(error.known, clientProxyKindNames());
    assert.match(error.message, /^Unknown proxy kind "quic": .*"tcp"/);
    return true;
  });
});

Deno.test("a client proxy kind registered for a test is found until removed; a taken name is refused", () => {
  const kind = { ...tcpClientKind, name: "registry-test" };
  const unregister = registerClientProxyKind(kind);
  try {
    assert.equal(clientProxyKindFor("registry-test"), kind);
    assert.throws(() => registerClientProxyKind({ ...tcpClientKind }), DuplicateNameError);
  } finally {
    unregister();
  }
  assert.throws(() => clientProxyKindFor("registry-test"), UnknownProxyKindError);
});

Deno.test("the tcp kind's dial reaches a local TCP service and fails when nothing listens", async () => {
  const service = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = service.addr.port;
  const conn = await tcpClientKind.dial({ host: "127.0.0.1", port });
  const accepted = await service.accept();
  conn.close();
  accepted.close();
  service.close();
  await assert.rejects(tcpClientKind.dial({ host: "127.0.0.1", port }), Deno.errors.ConnectionRefused);
});

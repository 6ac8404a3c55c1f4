import assert from "node:assert/strict";
import { DuplicateNameError, UnknownNameError } from "../../registry.ts";
import { decodeStreamHeaderBody, STREAM_HEADER_PREFIX_BYTES } from "../../protocol/stream_header.ts";
import { BindError } from "../../net/tcp.ts";
import { closeQuietly } from "../../transport/pipe.ts";
import { UnknownProxyKindError } from "./kind.ts";
import { registerServerProxyKind, serverProxyKindFor, serverProxyKindNames } from "./registry.ts";
import { tcpServerKind } from "./tcp.ts";
import { httpServerKind, httpsServerKind } from "./http.ts";

Deno.test("the server's proxy kinds are registered under their names", () => {
  assert.equal(serverProxyKindFor("tcp"), tcpServerKind);
  assert.equal(serverProxyKindFor("http"), httpServerKind);
  assert.equal(serverProxyKindFor("https"), httpsServerKind);
  for (const name of ["tcp", "http", "https"]) assert.ok(serverProxyKindNames().includes(name), name);
  assert.equal(httpServerKind.vhost, "http");
  assert.equal(httpsServerKind.vhost, "https");
  assert.equal(tcpServerKind.vhost, undefined);
});

Deno.test("an unknown server proxy kind fails with a typed error naming the known kinds", () => {
  assert.throws(() => serverProxyKindFor("quic"), (error: unknown) => {
    assert.ok(error instanceof UnknownProxyKindError);
    assert.ok(error instanceof UnknownNameError);
    assert.deepEqual(error.known, serverProxyKindNames());
    assert.match(error.message, /^Unknown proxy kind "quic": the proxy kinds known are .*"tcp"/);
    return true;
  });
});

Deno.test("a server proxy kind registered for a test is found until removed; a taken name is refused", () => {
  const kind = { ...tcpServerKind, name: "registry-test" };
  const unregister = registerServerProxyKind(kind);
  try {
    assert.equal(serverProxyKindFor("registry-test"), kind);
    assert.throws(() => registerServerProxyKind({ ...tcpServerKind }), DuplicateNameError);
  } finally {
    unregister();
  }
  assert.throws(() => serverProxyKindFor("registry-test"), UnknownProxyKindError);
});

Deno.test("the tcp kind publishes a port that yields its outside connections and frees it on close", async () => {
  const listener = tcpServerKind.bind("127.0.0.1", 0);
  const port = listener.addr.port;
  assert.throws(() => tcpServerKind.bind("127.0.0.1", port), (error: unknown) => {
    assert.ok(error instanceof BindError);
    assert.equal(error.kind, "address_in_use");
    return true;
  });
  const outside = await Deno.connect({ hostname: "127.0.0.1", port });
  const accepted = await listener.accept();
  assert.equal((accepted.remoteAddr as Deno.NetAddr).port, (outside.localAddr as Deno.NetAddr).port);
  closeQuietly(accepted);
  closeQuietly(outside);
  listener.close();
  await assert.rejects(listener.accept(), Deno.errors.BadResource);
  const again = tcpServerKind.bind("127.0.0.1", port);
  again.close();
});

Deno.test("the tcp kind's stream header names the proxy, the outside peer and the connection", () => {
  const bytes = tcpServerKind.streamHeader(
    {
      name: "web",
      proxy_type: "tcp",
      publish_addr: "127.0.0.1",
      publish_port: 8080,
      local_addr: "127.0.0.1",
      local_port: 80,
    },
    "203.0.113.7:50000",
    42,
  );
  assert.deepEqual(decodeStreamHeaderBody(bytes.subarray(STREAM_HEADER_PREFIX_BYTES)), {
    proxy: "web",
    peer_addr: "203.0.113.7:50000",
    conn_id: 42,
  });
});

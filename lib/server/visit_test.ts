import assert from "node:assert/strict";
import { memorySessions, within } from "../../testing/mux.ts";
import { writeAll } from "../net/conn.ts";
import type { ProxySpec } from "../protocol/control.ts";
import type { VisitRequest } from "../protocol/open_request.ts";
import { readStreamHeader } from "../protocol/stream_header.ts";
import { RpcPeer } from "../rpc/mod.ts";
import type { ClientStreamOutcome } from "./client_streams.ts";
import { ConnectedClient } from "./connected_client.ts";
import { PublishedProxy } from "./published_proxy.ts";
import { registerPrivate, visitHandler } from "./visit.ts";

/** A ConnectedClient over an in-memory session; `peer` is the client's end of it. */
async function connected(name: string, entryName: string | null, remote = "127.0.0.1:1") {
  const sessions = memorySessions({ keepaliveIntervalMs: 0 });
  const [, control] = await Promise.all([sessions.client.open(), sessions.server.accept()]);
  assert.ok(control);
  const rpc = new RpcPeer(control);
  const client = new ConnectedClient(
    name,
    name,
    `s-${name}`,
    remote,
    { entryName, allowPorts: [{ start: 1024, end: 65535 }], maxProxies: 8 },
    sessions.server,
    rpc,
  );
  return {
    client,
    peer: sessions.client,
    async close() {
      await client.close("test over");
      rpc.close();
      await sessions.close();
      await rpc.closed;
    },
  };
}

/** Registers a private (or `visibility`) proxy `name` on `client` the way the registrar does. */
function addProxy(
  client: ConnectedClient,
  name: string,
  publishPort: number,
  extra: Partial<ProxySpec> = {},
): PublishedProxy {
  const spec: ProxySpec = {
    name,
    proxy_type: "tcp",
    publish_addr: "0.0.0.0",
    publish_port: publishPort,
    local_addr: "127.0.0.1",
    local_port: 22,
    visibility: "private",
    ...extra,
  };
  const proxy = new PublishedProxy(spec, client.name, (firstBytes) => client.session.open(firstBytes));
  assert.equal(client.claim(proxy), null);
  if (spec.visibility === "private") {
    const answer = registerPrivate(client, proxy);
    assert.ok(answer.status === "accepted" && answer.visibility === "private", JSON.stringify(answer));
  } else {
    assert.ok(client.publish(proxy));
  }
  return proxy;
}

function visit(name: string, publishPort: number, extra: Partial<VisitRequest> = {}): VisitRequest {
  return { kind: "visit", name, publish_port: publishPort, ...extra };
}

function refusal(outcome: ClientStreamOutcome): string {
  assert.ok(!outcome.ok, "expected a refusal");
  return `${outcome.code}: ${outcome.reason}`;
}

Deno.test("a visit finds a private (or both) proxy by name and publish_port among clients of the same key; public and other ports are not found", async () => {
  const office = await connected("office", null);
  const laptop = await connected("laptop", null);
  try {
    addProxy(office.client, "ssh", 2222);
    addProxy(office.client, "web", 8080, { visibility: "public" });
    addProxy(office.client, "api", 9000, { visibility: "both" });
    const handler = visitHandler({
      clients: () => [office.client, laptop.client],
      allowVisit: () => undefined,
    });
    const context = { client: laptop.client, streamId: 3 };
    const found = await handler(visit("ssh", 2222), context);
    assert.ok(found.ok);
    found.abandon();
    const both = await handler(visit("api", 9000), context);
    assert.ok(both.ok, "a proxy visible to both the outside and visitors is found");
    both.abandon();
    assert.match(refusal(await handler(visit("ssh", 2223), context)), /^NOT_FOUND: no connected client/);
    assert.match(refusal(await handler(visit("web", 8080), context)), /^NOT_FOUND: /);
    assert.match(refusal(await handler(visit("nope", 1), context)), /^NOT_FOUND: /);
  } finally {
    await Promise.all([office.close(), laptop.close()]);
  }
});

Deno.test("a proxy's secret_key must be presented and equal; allow_visit and the same-key rule decide the rest", async () => {
  const office = await connected("office", "office");
  const laptop = await connected("laptop", "laptop");
  const mate = await connected("mate", "office");
  try {
    addProxy(office.client, "db", 5432, { secret_key: "open sesame" });
    addProxy(office.client, "ssh", 22);
    let allow: readonly string[] | undefined = ["office"];
    const handler = visitHandler({
      clients: () => [office.client, laptop.client, mate.client],
      allowVisit: (client) => client === laptop.client ? allow : undefined,
    });
    const asLaptop = { client: laptop.client, streamId: 3 };
    assert.match(refusal(await handler(visit("db", 5432), asLaptop)), /^DENIED: .*needs a secret_key/);
    assert.match(
      refusal(await handler(visit("db", 5432, { secret_key: "open sesame!" }), asLaptop)),
      /^DENIED: the secret_key does not match proxy 'db' of office$/,
    );
    const opened = await handler(visit("db", 5432, { secret_key: "open sesame" }), asLaptop);
    assert.ok(opened.ok);
    opened.abandon();
    // allow_visit is read on every visit: a change applies to the next one.
    allow = ["someone-else"];
    assert.match(
      refusal(await handler(visit("ssh", 22), asLaptop)),
      /^DENIED: client laptop may visit only someone-else \(allow_visit/,
    );
    allow = ["*"];
    assert.ok((await handler(visit("ssh", 22), asLaptop)).ok);
    // No allow_visit: only the same key. mate shares office's entry; laptop does not.
    allow = undefined;
    assert.match(refusal(await handler(visit("ssh", 22), asLaptop)), /^DENIED: .*use different keys/);
    assert.ok((await handler(visit("ssh", 22), { client: mate.client, streamId: 3 })).ok);
  } finally {
    await Promise.all([office.close(), laptop.close(), mate.close()]);
  }
});

Deno.test("several owners of one name and port need client to choose; a closing owner or a service reported down is not visited", async () => {
  const a = await connected("a", null);
  const b = await connected("b", null);
  const visitor = await connected("v", null);
  try {
    addProxy(a.client, "ssh", 22);
    const onB = addProxy(b.client, "ssh", 22);
    const handler = visitHandler({
      clients: () => [a.client, b.client, visitor.client],
      allowVisit: () => undefined,
    });
    const context = { client: visitor.client, streamId: 3 };
    assert.match(
      refusal(await handler(visit("ssh", 22), context)),
      /^NOT_FOUND: several clients have a proxy 'ssh' \(publish_port 22\): a, b; set client/,
    );
    assert.ok((await handler(visit("ssh", 22, { client: "b" }), context)).ok);
    onB.refuseConnections = true;
    assert.match(
      refusal(await handler(visit("ssh", 22, { client: "b" }), context)),
      /^UNREACHABLE: the local service .* is reported down/,
    );
    await a.client.close("gone");
    assert.match(refusal(await handler(visit("ssh", 22, { client: "a" }), context)), /^NOT_FOUND: /);
  } finally {
    await Promise.all([a.close(), b.close(), visitor.close()]);
  }
});

Deno.test("an accepted visit reaches the owner as a data stream: the proxy's header, the visitor's address as peer, bytes both ways", async () => {
  const office = await connected("office", null);
  const laptop = await connected("laptop", null, "[2001:db8::7]:40000");
  try {
    const proxy = addProxy(office.client, "ssh", 2222);
    const handler = visitHandler({ clients: () => [office.client], allowVisit: () => undefined });
    const outcome = await handler(visit("ssh", 2222), { client: laptop.client, streamId: 3 });
    assert.ok(outcome.ok);
    // The visitor's stream as the server holds it, and the visitor's end of it.
    const [visitorEnd, serverEnd] = await Promise.all([laptop.peer.open(), laptop.client.session.accept()]);
    assert.ok(serverEnd);
    const carried = outcome.carry(serverEnd);
    const ownerEnd = await within(office.peer.accept(), 5000, "the owner's data stream");
    assert.ok(ownerEnd);
    const header = await readStreamHeader(ownerEnd);
    assert.deepEqual(header, { proxy: "ssh", peer_addr: "[2001:db8::7]:40000", conn_id: 1 });
    await writeAll(visitorEnd, new TextEncoder().encode("ping"));
    const buffer = new Uint8Array(16);
    const count = await ownerEnd.read(buffer);
    assert.equal(new TextDecoder().decode(buffer.subarray(0, count ?? 0)), "ping");
    assert.equal(proxy.stats.totalConnections, 1);
    assert.equal(proxy.openConnections, 1);
    // The owner's proxy stops (its session ends): the visit is reset, not ended cleanly.
    await proxy.stop();
    await within(carried, 5000, "the visit to end");
    await assert.rejects(visitorEnd.read(buffer));
  } finally {
    await Promise.all([office.close(), laptop.close()]);
  }
});

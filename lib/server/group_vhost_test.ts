import assert from "node:assert/strict";
import { memoryPair } from "../net/memory_pair.ts";
import type { ProxySpec } from "../protocol/control.ts";
import { ProxyStats } from "../stats/proxy_stats.ts";
import { VhostGroups, VhostGroupTarget } from "./group_vhost.ts";
import { VhostRouter } from "./vhost/router.ts";
import type { RoutedProxy, VhostProxyTarget } from "./vhost/target.ts";
import { VhostPublication } from "./vhost/target.ts";

const ADDR: Deno.NetAddr = { transport: "tcp", hostname: "127.0.0.1", port: 18081 };
const KEY = "vhost-group-key-0123";

function spec(overrides: Partial<ProxySpec> = {}): ProxySpec {
  return {
    name: "site",
    proxy_type: "http",
    publish_addr: "0.0.0.0",
    publish_port: 0,
    local_addr: "127.0.0.1",
    local_port: 80,
    custom_domains: ["app.example.com"],
    group: "web",
    group_key: KEY,
    ...overrides,
  };
}

/** A routed proxy that records which one was asked for a stream. */
function routed(label: string, asked: string[], overrides: Partial<ProxySpec> = {}): RoutedProxy {
  const stats = new ProxyStats();
  stats.setStatus("healthy");
  return {
    spec: spec(overrides),
    stats,
    stopped: false,
    refuseConnections: false,
    openRoutedStream: () => {
      asked.push(label);
      const [a, b] = memoryPair();
      b.close();
      return Promise.resolve({ stream: a, done: () => {} });
    },
  };
}

Deno.test("vhost group: members share one route, requests alternate, the route goes with the last member", async () => {
  const router = new VhostRouter<VhostProxyTarget>();
  const groups = new VhostGroups();
  const asked: string[] = [];
  const hosts = ["app.example.com"];
  const first = groups.publish(routed("a", asked), "http", { clientId: "a", name: "a" }, hosts, router, ADDR);
  const second = groups.publish(
    routed("b", asked),
    "http",
    { clientId: "b", name: "b" },
    hosts,
    router,
    ADDR,
  );
  assert.ok(first instanceof VhostPublication && second instanceof VhostPublication);
  assert.equal(router.size, 1);
  const target = router.match("app.example.com")?.target;
  assert.ok(target instanceof VhostGroupTarget);
  for (let index = 0; index < 4; index++) (await target.openRoutedStream("192.0.2.1:5000")).stream.close();
  assert.deepEqual(asked, ["a", "b", "a", "b"]);
  const snapshot = groups.snapshot()[0];
  assert.equal(snapshot?.kind, "http");
  assert.deepEqual(snapshot?.members.map((member) => member.client), ["a", "b"]);
  assert.equal(snapshot?.connections_total, 4);

  first.close();
  assert.equal(router.size, 1, "one member left: the route stays");
  (await target.openRoutedStream("192.0.2.1:5000")).stream.close();
  assert.equal(asked.at(-1), "b");
  second.close();
  assert.equal(router.size, 0);
  assert.deepEqual(groups.snapshot(), []);
  await assert.rejects(target.openRoutedStream("192.0.2.1:5000"), /no member of group 'web'/);
});

Deno.test("vhost group: a wrong key, other routing, or a host another proxy holds is refused with DOMAIN_IN_USE naming the group", () => {
  const router = new VhostRouter<VhostProxyTarget>();
  const groups = new VhostGroups();
  const asked: string[] = [];
  const hosts = ["app.example.com"];
  const first = groups.publish(routed("a", asked), "http", { clientId: "a", name: "a" }, hosts, router, ADDR);
  assert.ok(first instanceof VhostPublication);
  const wrongKey = groups.publish(
    routed("b", asked, { group_key: "another-key" }),
    "http",
    { clientId: "b", name: "b" },
    hosts,
    router,
    ADDR,
  );
  assert.ok(!(wrongKey instanceof VhostPublication));
  assert.equal(wrongKey.code, "DOMAIN_IN_USE");
  assert.match(wrongKey.reason, /group_key does not match http group 'web'/);
  const otherRouting = groups.publish(
    routed("c", asked, { locations: ["/api"] }),
    "http",
    { clientId: "c", name: "c" },
    hosts,
    router,
    ADDR,
  );
  assert.ok(!(otherRouting instanceof VhostPublication));
  assert.match(otherRouting.reason, /every member must ask for the same/);

  // A proxy outside the group holding another host: a new group asking for it is refused.
  const plain = new VhostPublication(routed("p", asked, {}), "p", "p", ADDR, () => {});
  assert.equal(router.add(plain, ["other.example.com"], []), null);
  const clash = groups.publish(
    routed("d", asked, { group: "api" }),
    "http",
    { clientId: "d", name: "d" },
    ["other.example.com"],
    router,
    ADDR,
  );
  assert.ok(!(clash instanceof VhostPublication));
  assert.match(clash.reason, /not in group 'api'/);
  // And the group's host, asked for by a proxy outside it, reports the group (the router's conflict).
  const conflict = router.add(plain, hosts, []);
  assert.ok(conflict && conflict !== "full");
  assert.equal(conflict.group, "web");
  first.close();
});

Deno.test("https vhost group: connections go to members in turn and are refused when none is left", () => {
  const router = new VhostRouter<VhostProxyTarget>();
  const groups = new VhostGroups();
  const asked: string[] = [];
  const a = groups.publish(
    routed("a", asked, { proxy_type: "https" }),
    "https",
    { clientId: "a", name: "a" },
    [
      "tls.example.com",
    ],
    router,
    ADDR,
  );
  const b = groups.publish(
    routed("b", asked, { proxy_type: "https" }),
    "https",
    { clientId: "b", name: "b" },
    [
      "tls.example.com",
    ],
    router,
    ADDR,
  );
  assert.ok(a instanceof VhostPublication && b instanceof VhostPublication);
  const target = router.match("tls.example.com")?.target;
  assert.ok(target);
  const conn = () => {
    const [outside, other] = memoryPair();
    other.close();
    return Object.assign(outside, {
      remoteAddr: { transport: "tcp", hostname: "192.0.2.9", port: 1 } as Deno.Addr,
    });
  };
  assert.equal(target.deliver(conn()), true);
  assert.equal(target.deliver(conn()), true);
  a.close();
  b.close();
  assert.equal(router.size, 0);
  assert.equal(target.deliver(conn()), false);
});

Deno.test("vhost group: a member marked unhealthy by failed requests gets one probe per interval, else is skipped", async () => {
  const router = new VhostRouter<VhostProxyTarget>();
  const groups = new VhostGroups();
  const asked: string[] = [];
  const hosts = ["probe.example.com"];
  const sick = routed("sick", asked);
  const a = groups.publish(routed("well", asked), "http", { clientId: "a", name: "a" }, hosts, router, ADDR);
  const b = groups.publish(sick, "http", { clientId: "b", name: "b" }, hosts, router, ADDR);
  assert.ok(a instanceof VhostPublication && b instanceof VhostPublication);
  sick.stats.setStatus("unhealthy", "failed");
  sick.stats.statusSinceMs = Date.now() - 60_000; // marked long ago: a probe is due
  const target = router.match("probe.example.com")?.target;
  assert.ok(target);
  for (let index = 0; index < 4; index++) (await target.openRoutedStream("192.0.2.1:5000")).stream.close();
  assert.deepEqual(asked, ["sick", "well", "well", "well"]);
  a.close();
  b.close();
});

import assert from "node:assert/strict";
import { type ProxySpec, ProxySpecRequest } from "../protocol/control.ts";
import { ProxyStats } from "../stats/proxy_stats.ts";
import {
  GROUP_PROBE_INTERVAL_MS,
  type GroupMemberProxy,
  type GroupMembership,
  GroupRegistry,
  groupSpecProblem,
} from "./groups.ts";
import type { OutsideConn, PublishedListener } from "./proxy_kinds/kind.ts";

const KEY = "group-key-0123456789";

/** An outside connection that only records how it ended. */
class FakeConn implements OutsideConn {
  ended: "open" | "closed" | "reset" = "open";
  constructor(readonly remoteAddr: Deno.NetAddr) {}
  read(): Promise<number | null> {
    return Promise.resolve(null);
  }
  write(data: Uint8Array): Promise<number> {
    return Promise.resolve(data.length);
  }
  closeWrite(): Promise<void> {
    return Promise.resolve();
  }
  close(): void {
    if (this.ended === "open") this.ended = "closed";
  }
  reset(): void {
    this.ended = "reset";
  }
}

function peer(host: string, port = 40000): FakeConn {
  return new FakeConn({ transport: "tcp", hostname: host, port });
}

/** A listener the test feeds by hand. */
class FakeListener implements PublishedListener {
  readonly addr: Deno.NetAddr = { transport: "tcp", hostname: "127.0.0.1", port: 18080 };
  readonly #queue: OutsideConn[] = [];
  #waiting: { resolve: (conn: OutsideConn) => void; reject: (error: Error) => void } | null = null;
  closed = false;

  push(conn: OutsideConn): void {
    if (this.#waiting) {
      this.#waiting.resolve(conn);
      this.#waiting = null;
    } else this.#queue.push(conn);
  }

  accept(): Promise<OutsideConn> {
    const next = this.#queue.shift();
    if (next) return Promise.resolve(next);
    if (this.closed) return Promise.reject(new Deno.errors.BadResource("closed"));
    return new Promise((resolve, reject) => {
      this.#waiting = { resolve, reject };
    });
  }

  close(): void {
    this.closed = true;
    this.#waiting?.reject(new Deno.errors.BadResource("closed"));
    this.#waiting = null;
  }
}

function spec(overrides: Partial<ProxySpec> = {}): ProxySpec {
  return {
    name: "web",
    proxy_type: "tcp",
    publish_addr: "127.0.0.1",
    publish_port: 18080,
    local_addr: "127.0.0.1",
    local_port: 80,
    group: "web",
    group_key: KEY,
    ...overrides,
  };
}

function member(clientName: string, overrides: Partial<ProxySpec> = {}): GroupMemberProxy & {
  refuseConnections: boolean;
  stopped: boolean;
} {
  const stats = new ProxyStats();
  stats.setStatus("healthy");
  return { spec: spec(overrides), stats, clientName, stopped: false, refuseConnections: false };
}

/** Takes the connections a membership was handed so far (its accept loop, by hand). */
async function drain(membership: GroupMembership, count: number): Promise<OutsideConn[]> {
  const taken: OutsideConn[] = [];
  for (let index = 0; index < count; index++) taken.push(await membership.accept());
  return taken;
}

/** Lets the group's accept loop hand on what the listener has. */
const turn = () => new Promise((resolve) => setTimeout(resolve, 0));

Deno.test("a group spreads connections round robin, skips an unhealthy member, and frees the port with its last member", async () => {
  const registry = new GroupRegistry();
  const listener = new FakeListener();
  const group = registry.create(spec(), listener);
  const a = member("a");
  const b = member("b");
  const c = member("c");
  const [ma, mb, mc] = [group.join(a), group.join(b), group.join(c)];
  assert.ok(ma && mb && mc);
  for (let index = 0; index < 6; index++) listener.push(peer("192.0.2.1", 40000 + index));
  await turn();
  assert.equal((await drain(ma, 2)).length, 2);
  assert.equal((await drain(mb, 2)).length, 2);
  assert.equal((await drain(mc, 2)).length, 2);

  // b reported its local service down: it is skipped while the others are healthy.
  b.refuseConnections = true;
  for (let index = 0; index < 4; index++) listener.push(peer("192.0.2.1"));
  await turn();
  assert.equal(group.snapshot().members.find((entry) => entry.client === "b")?.healthy, false);
  assert.equal((await drain(ma, 2)).length + (await drain(mc, 2)).length, 4);

  assert.equal(registry.at("0.0.0.0", 18080), group, "a wildcard overlaps the group's binding");
  ma.close();
  mb.close();
  assert.equal(listener.closed, false, "one member is left: the port stays open");
  const waiting = mc.accept();
  mc.close();
  await assert.rejects(waiting, Deno.errors.BadResource);
  assert.equal(listener.closed, true);
  assert.equal(registry.at("127.0.0.1", 18080), null);
  assert.equal(registry.size, 0);
});

Deno.test("when every member is unhealthy the group still hands connections to live ones (they refuse them themselves)", async () => {
  const registry = new GroupRegistry();
  const listener = new FakeListener();
  const group = registry.create(spec(), listener);
  const a = member("a");
  a.stats.setStatus("unhealthy");
  const ma = group.join(a);
  listener.push(peer("192.0.2.1"));
  await turn();
  assert.equal((await drain(ma, 1)).length, 1);
  ma.close();
});

Deno.test("ip_hash sends one peer address to one member; least_connections picks the idle one", () => {
  const registry = new GroupRegistry();
  const listener = new FakeListener();
  const group = registry.create(spec({ lb_policy: "ip_hash" }), listener);
  const memberships = [group.join(member("a")), group.join(member("b")), group.join(member("c"))];
  const picks = new Set<GroupMembership | null>();
  for (let index = 0; index < 10; index++) picks.add(group.pick("198.51.100.7"));
  assert.equal(picks.size, 1);
  for (const membership of memberships) membership.close();

  const listener2 = new FakeListener();
  const least = registry.create(spec({ lb_policy: "least_connections" }), listener2);
  const busy = member("busy");
  busy.stats.activeConnections = 5;
  const idle = member("idle");
  const mBusy = least.join(busy);
  const mIdle = least.join(idle);
  for (let index = 0; index < 3; index++) assert.equal(least.pick("192.0.2.1"), mIdle);
  mBusy.close();
  mIdle.close();
});

Deno.test("a member that leaves hands its queued connections to the others; with none left they are reset", async () => {
  const registry = new GroupRegistry();
  const listener = new FakeListener();
  const group = registry.create(spec(), listener);
  const ma = group.join(member("a"));
  const mb = group.join(member("b"));
  const conns = [peer("192.0.2.1"), peer("192.0.2.2"), peer("192.0.2.3"), peer("192.0.2.4")];
  for (const conn of conns) listener.push(conn);
  await turn();
  // a holds two queued connections it never took; it leaves: b gets them.
  ma.close();
  assert.equal((await drain(mb, 4)).length, 4);
  listener.push(peer("192.0.2.5"));
  await turn();
  const last = peer("192.0.2.6");
  mb.close();
  // The port is closed now: nothing more is accepted, and what b held queued was reset.
  assert.equal(listener.closed, true);
  assert.equal(group.dispatch(last), undefined);
  assert.equal(last.ended, "reset");
  assert.equal(group.snapshot().refused_total >= 1, true);
});

Deno.test("a flood of connections beyond every member's queue is reset and counted, never held", async () => {
  const registry = new GroupRegistry();
  const listener = new FakeListener();
  const group = registry.create(spec(), listener);
  const ma = group.join(member("a"));
  const conns = Array.from({ length: 300 }, (_, index) => peer("192.0.2.1", 20000 + index));
  for (const conn of conns) listener.push(conn);
  await turn();
  const reset = conns.filter((conn) => conn.ended === "reset").length;
  assert.equal(reset, 300 - 256);
  assert.equal(group.snapshot().refused_total, 300 - 256);
  assert.equal(group.snapshot().connections_total, 300);
  ma.close();
});

Deno.test("joining needs the group's name, its key (constant-time compare) and its publish_addr; refusals name the group", () => {
  const registry = new GroupRegistry();
  const group = registry.create(spec(), new FakeListener());
  assert.equal(group.refusal(spec({ name: "other" })), null);
  assert.match(group.refusal(spec({ group_key: "wrong-key" })) ?? "", /group_key does not match group 'web'/);
  assert.match(group.refusal(spec({ group_key: `${KEY}x` })) ?? "", /does not match/);
  assert.match(group.refusal(spec({ group: "api" })) ?? "", /served by group 'web', not 'api'/);
  const { group: _g, group_key: _k, ...plain } = spec();
  assert.match(group.refusal(plain) ?? "", /served by group 'web'; to join it set group = "web"/);
  assert.match(group.refusal(spec({ publish_addr: "0.0.0.0" })) ?? "", /must use publish_addr = "127.0.0.1"/);
  group.join(member("a")).close();
});

Deno.test("groupSpecProblem: key without group, group without key, udp, private, port 0 or a range", () => {
  assert.equal(groupSpecProblem(spec()), null);
  const { group: _g, ...keyOnly } = spec();
  assert.match(groupSpecProblem(keyOnly) ?? "", /group_key needs group/);
  const { group_key: _k, ...groupOnly } = spec();
  assert.match(groupSpecProblem(groupOnly) ?? "", /needs group_key/);
  assert.match(groupSpecProblem(spec({ proxy_type: "udp" })) ?? "", /udp/);
  assert.match(groupSpecProblem(spec({ visibility: "private" })) ?? "", /private/);
  assert.match(groupSpecProblem(spec({ publish_port: 0 })) ?? "", /explicit publish_port/);
  assert.match(
    groupSpecProblem(spec({ publish_port_range: { start: 1, end: 2 } })) ?? "",
    /explicit publish_port/,
  );
  assert.equal(
    groupSpecProblem(spec({ proxy_type: "http", publish_port: 0, custom_domains: ["a.test"] })),
    null,
  );
});

Deno.test("the wire refuses hostile group fields: an oversized key, a name that is not a name, an unknown policy, max_connections out of range", () => {
  const base = { ...spec() };
  assert.ok(ProxySpecRequest.safeParse(base).success);
  for (
    const bad of [
      { group_key: "k".repeat(1025) },
      { group_key: "" },
      { group: "../etc" },
      { group: "a".repeat(65) },
      { group: "web\r\nX: y" },
      { lb_policy: "random" },
      { max_connections: 0 },
      { max_connections: 1_000_001 },
      { max_connections: 1.5 },
    ]
  ) {
    assert.equal(
      ProxySpecRequest.safeParse({ ...base, ...bad }).success,
      false,
      JSON.stringify(bad).slice(0, 80),
    );
  }
});

Deno.test("a member marked unhealthy by failed connections gets one probe connection per interval, then rejoins when healthy", () => {
  let now = 1_000_000;
  const registry = new GroupRegistry(() => now);
  const group = registry.create(spec(), new FakeListener());
  const a = member("a");
  const b = member("b");
  const ma = group.join(a);
  const mb = group.join(b);
  b.stats.setStatus("unhealthy", "3 connections in a row could not reach the local service");
  b.stats.statusSinceMs = now;
  // Within the interval: never b.
  for (let index = 0; index < 5; index++) assert.equal(group.pick("192.0.2.1"), ma);
  now += GROUP_PROBE_INTERVAL_MS;
  assert.equal(group.pick("192.0.2.1"), mb, "one probe after the interval");
  assert.equal(group.pick("192.0.2.1"), ma);
  assert.equal(group.pick("192.0.2.1"), ma);
  now += GROUP_PROBE_INTERVAL_MS;
  assert.equal(group.pick("192.0.2.1"), mb, "the next probe an interval later");
  // A member whose client reports its service down (health check) is never probed: it reports recovery.
  b.refuseConnections = true;
  now += GROUP_PROBE_INTERVAL_MS * 2;
  for (let index = 0; index < 5; index++) assert.equal(group.pick("192.0.2.1"), ma);
  // Healthy again: back in the rotation.
  b.refuseConnections = false;
  b.stats.setStatus("healthy");
  const picks = new Set([group.pick("192.0.2.1"), group.pick("192.0.2.1")]);
  assert.equal(picks.size, 2);
  ma.close();
  mb.close();
});

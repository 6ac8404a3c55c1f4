import assert from "node:assert/strict";
import fc from "fast-check";
import {
  type Backend,
  BackendPool,
  formatBackend,
  NoBackendAvailableError,
  type PooledConnection,
  stableHash,
} from "./load_balancer.ts";

const BACKENDS: Backend[] = [
  { host: "127.0.0.1", port: 3000 },
  { host: "127.0.0.1", port: 3001 },
  { host: "127.0.0.1", port: 3002 },
];
const NO_RETRY = { attempts: 1, retryDelayMs: 0 };

/** A dial that accepts the ports in `up`, and remembers every port it was asked for. */
function fakeDial(up: Set<number>) {
  const dialed: number[] = [];
  const dial = (backend: Backend): Promise<number> => {
    dialed.push(backend.port);
    return up.has(backend.port)
      ? Promise.resolve(backend.port)
      : Promise.reject(new Error(`connection refused by ${backend.port}`));
  };
  return { dial, dialed };
}

function allUp(): Set<number> {
  return new Set(BACKENDS.map((backend) => backend.port));
}

function fakeClock(startMs = 1_000_000) {
  const clock = { now: startMs };
  return { clock, nowMs: () => clock.now };
}

Deno.test("round_robin spreads connections over the backends in turn", async () => {
  const pool = new BackendPool(BACKENDS, { policy: "round_robin" });
  const { dial } = fakeDial(allUp());
  const ports: number[] = [];
  for (let i = 0; i < 9; i++) {
    const pooled = await pool.connect(`10.0.0.${i}:5000`, dial, NO_RETRY);
    ports.push(pooled.conn);
    pooled.release();
  }
  assert.deepEqual(ports, [3000, 3001, 3002, 3000, 3001, 3002, 3000, 3001, 3002]);
  assert.deepEqual(pool.stats().map((s) => [s.successes, s.failures, s.activeConnections]), [
    [3, 0, 0],
    [3, 0, 0],
    [3, 0, 0],
  ]);
});

Deno.test("least_connections sends new connections to the backend with the fewest open ones", async () => {
  const pool = new BackendPool(BACKENDS, { policy: "least_connections" });
  const { dial } = fakeDial(allUp());
  const open: PooledConnection<number>[] = [];
  for (let i = 0; i < 6; i++) open.push(await pool.connect("10.0.0.1:5000", dial, NO_RETRY));
  assert.deepEqual(pool.stats().map((s) => s.activeConnections), [2, 2, 2]);
  // Backend 3001 finishes its two connections: the next two go there, not to the busy ones.
  for (const pooled of open.filter((p) => p.conn === 3001)) pooled.release();
  const next = [
    await pool.connect("10.0.0.1:5000", dial, NO_RETRY),
    await pool.connect("10.0.0.1:5000", dial, NO_RETRY),
  ];
  assert.deepEqual(next.map((p) => p.conn), [3001, 3001]);
  assert.deepEqual(pool.stats().map((s) => s.activeConnections), [2, 2, 2]);
  // Under a long-lived load on one backend, short connections avoid it.
  for (const pooled of [...open, ...next]) pooled.release();
  const longLived = [];
  for (let i = 0; i < 3; i++) longLived.push(await pool.connect("10.0.0.1:5000", dial, NO_RETRY));
  for (const pooled of longLived.filter((p) => p.conn !== 3000)) pooled.release();
  for (let i = 0; i < 10; i++) {
    const pooled = await pool.connect("10.0.0.1:5000", dial, NO_RETRY);
    assert.notEqual(pooled.conn, 3000, `connection ${i} went to the busy backend`);
    pooled.release();
  }
  for (const pooled of longLived) pooled.release();
  assert.deepEqual(pool.stats().map((s) => s.activeConnections), [0, 0, 0]);
});

Deno.test("ip_hash keeps one outside host on one backend and spreads many hosts", async () => {
  const pool = new BackendPool(BACKENDS, { policy: "ip_hash" });
  const { dial } = fakeDial(allUp());
  const chosen = new Set<number>();
  for (let port = 40000; port < 40020; port++) {
    const pooled = await pool.connect(`192.0.2.7:${port}`, dial, NO_RETRY);
    chosen.add(pooled.conn);
    pooled.release();
  }
  assert.equal(chosen.size, 1);
  const ipv6 = new Set<number>();
  for (const addr of ["[2001:db8::1]:1000", "[2001:db8::1]:2000"]) {
    const pooled = await pool.connect(addr, dial, NO_RETRY);
    ipv6.add(pooled.conn);
    pooled.release();
  }
  assert.equal(ipv6.size, 1);
  const counts = new Map<number, number>();
  for (let host = 0; host < 300; host++) {
    const pooled = await pool.connect(`10.1.${host >> 8}.${host & 255}:5000`, dial, NO_RETRY);
    counts.set(pooled.conn, (counts.get(pooled.conn) ?? 0) + 1);
    pooled.release();
  }
  assert.equal(counts.size, 3);
  for (const [port, count] of counts) assert.ok(count >= 60, `backend ${port} got only ${count} of 300`);
});

Deno.test("a failed backend fails over to the next ones in the policy's order", async () => {
  const pool = new BackendPool(BACKENDS, { policy: "round_robin" });
  const { dial, dialed } = fakeDial(new Set([3002]));
  const pooled = await pool.connect("10.0.0.1:5000", dial, NO_RETRY);
  assert.equal(pooled.conn, 3002);
  assert.deepEqual(dialed, [3000, 3001, 3002]);
  assert.deepEqual(pool.stats().map((s) => [s.successes, s.failures]), [[0, 1], [0, 1], [1, 0]]);
  pooled.release();
  pooled.release();
  assert.equal(pool.stats()[2]?.activeConnections, 0);
});

Deno.test("every backend is tried once per round, for local_connect_retries rounds, then it gives up", async () => {
  const pool = new BackendPool(BACKENDS, { policy: "round_robin" });
  const { dial, dialed } = fakeDial(new Set());
  const error = await pool.connect("10.0.0.1:5000", dial, { attempts: 2, retryDelayMs: 1 }).then(
    () => assert.fail("connected although every backend is down"),
    (error: unknown) => error,
  );
  assert.ok(error instanceof NoBackendAvailableError);
  assert.equal(error.attempts, 2);
  assert.match(error.message, /127\.0\.0\.1:3000, 127\.0\.0\.1:3001, 127\.0\.0\.1:3002 after 2 round/);
  assert.match(error.message, /connection refused by 3002/);
  // Every backend is cooling down after round one, and all are tried again rather than none.
  assert.deepEqual(dialed, [3000, 3001, 3002, 3000, 3001, 3002]);
  assert.deepEqual(pool.stats().map((s) => s.failures), [2, 2, 2]);
});

Deno.test("a single backend keeps the local_addr/local_port wording and retry behaviour", async () => {
  const pool = new BackendPool([{ host: "::1", port: 4000 }], { policy: "round_robin" });
  const { dial, dialed } = fakeDial(new Set());
  const error = await pool.connect("10.0.0.1:5000", dial, { attempts: 3, retryDelayMs: 1 }).catch((e) => e);
  assert.ok(error instanceof NoBackendAvailableError);
  assert.match(error.message, /local service at \[::1\]:4000 after 3 attempt\(s\).*local_addr\/local_port/);
  assert.deepEqual(dialed, [4000, 4000, 4000]);
});

Deno.test("a backend that failed is skipped during its cool-down, then tried again", async () => {
  const { clock, nowMs } = fakeClock();
  const pool = new BackendPool(BACKENDS, { policy: "ip_hash", coolDownMs: 5_000, nowMs });
  const peer = "198.51.100.9:6000";
  const up = allUp();
  const { dial, dialed } = fakeDial(up);
  const home = (await pool.connect(peer, dial, NO_RETRY)).conn;
  up.delete(home);
  dialed.length = 0;
  const failedOver = (await pool.connect(peer, dial, NO_RETRY)).conn;
  assert.notEqual(failedOver, home);
  assert.deepEqual(dialed, [home, failedOver]);
  assert.ok((pool.stats().find((s) => s.port === home)?.coolDownUntilMs ?? 0) > clock.now);
  // During the cool-down the home backend is not even tried, although it is back.
  up.add(home);
  dialed.length = 0;
  clock.now += 4_999;
  assert.equal((await pool.connect(peer, dial, NO_RETRY)).conn, failedOver);
  assert.deepEqual(dialed, [failedOver]);
  // After it, the outside host is back on its own backend.
  clock.now += 2;
  assert.equal((await pool.connect(peer, dial, NO_RETRY)).conn, home);
  assert.equal(pool.stats().find((s) => s.port === home)?.coolDownUntilMs, 0);
});

Deno.test("an aborted connect stops before dialing", async () => {
  const pool = new BackendPool(BACKENDS, { policy: "round_robin" });
  const { dial, dialed } = fakeDial(allUp());
  const controller = new AbortController();
  controller.abort(new Error("stopping"));
  await assert.rejects(
    pool.connect("10.0.0.1:5000", dial, { ...NO_RETRY, signal: controller.signal }),
    /stopping/,
  );
  assert.deepEqual(dialed, []);
});

Deno.test("every plan tries every backend exactly once, the policy's pick first", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 8 }),
      fc.constantFrom("round_robin" as const, "least_connections" as const, "ip_hash" as const),
      fc.ipV4(),
      fc.integer({ min: 0, max: 20 }),
      (count, policy, ip, warmUp) => {
        const backends = Array.from({ length: count }, (_, i) => ({ host: "127.0.0.1", port: 3000 + i }));
        const pool = new BackendPool(backends, { policy });
        for (let i = 0; i < warmUp; i++) pool.plan(`${ip}:1`);
        const plan = pool.plan(`${ip}:1`);
        assert.deepEqual([...plan].sort((a, b) => a - b), backends.map((_, i) => i));
        if (policy === "ip_hash") assert.equal(plan[0], stableHash(ip) % count);
      },
    ),
  );
});

// The peer-address rows moved to lib/net/address_test.ts with the function (peerIp, now hostOfHostPort).
Deno.test("backends are printed back as host:port", () => {
  assert.equal(formatBackend({ host: "::1", port: 3000 }), "[::1]:3000");
  assert.equal(formatBackend({ host: "localhost", port: 3000 }), "localhost:3000");
  assert.equal(stableHash("127.0.0.1"), stableHash("127.0.0.1"));
  assert.notEqual(stableHash("127.0.0.1"), stableHash("127.0.0.2"));
  assert.throws(() => new BackendPool([], { policy: "round_robin" }), RangeError);
});

import assert from "node:assert/strict";
import { checkAnyTcp, checkTcp, monitorHealth } from "./health_check.ts";

Deno.test("health check sees a listening service as healthy and a closed port as not", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepting = listener.accept().then((conn) => conn.close()).catch(() => {});
  assert.deepEqual(await checkTcp("127.0.0.1", listener.addr.port, 1000), { healthy: true, error: null });
  await accepting;
  const port = listener.addr.port;
  listener.close();
  const down = await checkTcp("127.0.0.1", port, 1000);
  assert.equal(down.healthy, false);
  assert.match(down.error ?? "", new RegExp(`127\\.0\\.0\\.1:${port} is not accepting connections`));
});

Deno.test("health monitor reports only changes of state", async () => {
  let listener: Deno.TcpListener | null = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  const drain = async (current: Deno.TcpListener) => {
    for await (const conn of current) conn.close();
  };
  let draining = drain(listener).catch(() => {});
  const controller = new AbortController();
  const changes: boolean[] = [];
  const monitoring = monitorHealth(
    { hostname: "127.0.0.1", port },
    { intervalSecs: 0.02, timeoutSecs: 0.5 },
    controller.signal,
    (result) => {
      changes.push(result.healthy);
    },
  );
  const waitForChanges = async (count: number) => {
    for (let i = 0; i < 200 && changes.length < count; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  };
  await waitForChanges(1);
  listener.close();
  await draining;
  listener = null;
  await waitForChanges(2);
  listener = Deno.listen({ hostname: "127.0.0.1", port });
  draining = drain(listener).catch(() => {});
  await waitForChanges(3);
  controller.abort();
  await monitoring;
  listener.close();
  await draining;
  assert.deepEqual(changes, [true, false, true]);
});

Deno.test("several backends are healthy while any one accepts, and down only when all are", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const up = { hostname: "127.0.0.1", port: listener.addr.port };
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const down = { hostname: "127.0.0.1", port: probe.addr.port };
  probe.close();
  const accepting = listener.accept().then((conn) => conn.close()).catch(() => {});
  assert.deepEqual(await checkAnyTcp([down, up], 1000), { healthy: true, error: null });
  await accepting;
  listener.close();
  const result = await checkAnyTcp([down, up], 1000);
  assert.equal(result.healthy, false);
  assert.match(
    result.error ?? "",
    new RegExp(`:${down.port} is not accepting.*; .*:${up.port} is not accepting`),
  );
});

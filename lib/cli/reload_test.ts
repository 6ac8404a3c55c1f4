import assert from "node:assert/strict";
import { EventLog } from "../stats/event_log.ts";
import { startStatsServer } from "../stats/http.ts";
import { serverSnapshot } from "../../testing/stats_fixtures.ts";
import { Reloader, type ReloadOutcome } from "./reload.ts";

const TOKEN = "reload-endpoint-token-0123";

/** A stats endpoint whose reload counts its calls. */
function endpoint(token: string | null = TOKEN) {
  let reloads = 0;
  const reloader = new Reloader(() => {
    reloads++;
    return Promise.resolve({ ok: true, summary: "added web", restartKeys: ["bind_port"] });
  });
  const stats = startStatsServer({
    hostname: "127.0.0.1",
    port: 0,
    ...(token !== null ? { token } : {}),
    snapshot: serverSnapshot,
    events: new EventLog(),
    reload: () => reloader.httpAnswer(),
  });
  return { stats, url: `http://127.0.0.1:${stats.addr.port}/api/reload`, reloads: () => reloads };
}

Deno.test("POST /api/reload needs the stats token, refuses another web origin, and answers what changed", async () => {
  const { stats, url, reloads } = endpoint();
  try {
    const bare = await fetch(url, { method: "POST" });
    assert.equal(bare.status, 401);
    await bare.body?.cancel();
    const wrong = await fetch(url, {
      method: "POST",
      headers: { authorization: "Bearer not-the-token-at-all" },
    });
    assert.equal(wrong.status, 401);
    await wrong.body?.cancel();
    const foreign = await fetch(url, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, origin: "https://evil.example" },
    });
    assert.equal(foreign.status, 403);
    await foreign.body?.cancel();
    assert.equal(reloads(), 0, "no refused request reloaded anything");
    const get = await fetch(url, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(get.status, 404, "GET does not reload");
    await get.body?.cancel();
    const ok = await fetch(url, { method: "POST", headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(ok.status, 200);
    assert.deepEqual(await ok.json(), { ok: true, summary: "added web", restart_needed: ["bind_port"] });
    assert.equal(reloads(), 1);
  } finally {
    await stats.shutdown();
  }
});

Deno.test("POST /api/reload without a token answers on loopback but not under a DNS name (rebinding)", async () => {
  const { stats, url, reloads } = endpoint(null);
  try {
    // fetch sets Host itself: a raw request, as a page reaching loopback by a rebound DNS name sends it.
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: stats.addr.port });
    await conn.write(new TextEncoder().encode(
      `POST /api/reload HTTP/1.1\r\nhost: evil.example:${stats.addr.port}\r\ncontent-length: 0\r\n` +
        "connection: close\r\n\r\n",
    ));
    const answer = new TextDecoder().decode((await new Response(conn.readable).bytes()).subarray(0, 12));
    assert.equal(answer, "HTTP/1.1 403");
    assert.equal(reloads(), 0);
    const ok = await fetch(url, { method: "POST" });
    assert.equal(ok.status, 200);
    await ok.body?.cancel();
    assert.equal(reloads(), 1);
  } finally {
    await stats.shutdown();
  }
});

Deno.test("Reloader runs reloads one at a time, joins a burst into one waiting reload, and turns a failure into a refused outcome", async () => {
  const order: string[] = [];
  let calls = 0;
  const reloader = new Reloader(async (source): Promise<ReloadOutcome> => {
    calls++;
    order.push(`start ${source}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
    order.push(`end ${source}`);
    if (source === "bad") throw new Error("disk on fire");
    return { ok: true, summary: source, restartKeys: [] };
  });
  const first = reloader.run("SIGHUP");
  assert.equal(reloader.run("joined"), first, "asked before it started: the same reload");
  await new Promise((resolve) => setTimeout(resolve, 0)); // the first has started
  const burst = Array.from({ length: 50 }, () => reloader.run("bad"));
  const outcomes = await Promise.all([first, ...burst]);
  assert.equal(calls, 2, "one running, the burst joined into one waiting reload");
  assert.deepEqual(order, ["start SIGHUP", "end SIGHUP", "start bad", "end bad"]);
  assert.equal(outcomes[0]?.ok, true);
  assert.ok(
    outcomes.slice(1).every((outcome) => outcome.ok === false && /disk on fire/.test(outcome.summary)),
  );
  const third = await reloader.run("file");
  assert.equal(third.ok, true);
  assert.equal(calls, 3);
  const answer = await reloader.httpAnswer();
  assert.equal(answer.status, 200);
});

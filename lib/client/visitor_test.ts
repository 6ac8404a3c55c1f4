import assert from "node:assert/strict";
import { memorySessions, within } from "../../testing/mux.ts";
import { tryExchange } from "../../testing/helpers.ts";
import type { VisitorConfig } from "../config/types.ts";
import type { Session } from "../mux/mod.ts";
import { writeAll } from "../net/conn.ts";
import { encodeOpenReply, readOpenRequest } from "../protocol/open_request.ts";
import { Visitor, VisitorBindError } from "./visitor.ts";

function config(bindPort = 0): VisitorConfig {
  return { name: "db", publishPort: 5432, bindAddr: "127.0.0.1", bindPort, secretKey: "open sesame" };
}

Deno.test("a visitor whose port is taken fails with a message naming the address and what to do", () => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const visitor = new Visitor(config(taken.addr.port), () => null);
    assert.throws(
      () => visitor.listen(),
      (error: unknown) =>
        error instanceof VisitorBindError &&
        error.message.includes(`127.0.0.1:${taken.addr.port}`) &&
        /pick another bind_port/.test(error.message),
    );
  } finally {
    taken.close();
  }
});

Deno.test("without a session a visitor resets each connection and keeps listening; with one it sends the visit and carries the bytes", async () => {
  const sessions = memorySessions({ keepaliveIntervalMs: 0 });
  let session: Session | null = null;
  const visitor = new Visitor(config(), () => session);
  const addr = visitor.listen();
  try {
    const offline = await tryExchange(addr.port, "anyone?");
    assert.ok(offline instanceof Error || offline === "", `answered ${JSON.stringify(offline)}`);
    assert.deepEqual(visitor.counters.refused, { no_session: 1 });
    assert.match(visitor.counters.lastError ?? "", /not connected to the server/);

    session = sessions.client;
    // The server's side: read the visit, answer ok, echo in upper case.
    const serving = (async () => {
      const stream = await within(sessions.server.accept(), 5000, "the visit stream");
      assert.ok(stream);
      assert.deepEqual(await readOpenRequest(stream), {
        kind: "visit",
        name: "db",
        publish_port: 5432,
        secret_key: "open sesame",
      });
      await writeAll(stream, encodeOpenReply({ ok: true }));
      const buffer = new Uint8Array(64);
      const count = await stream.read(buffer);
      await writeAll(
        stream,
        new TextEncoder().encode(new TextDecoder().decode(buffer.subarray(0, count ?? 0)).toUpperCase()),
      );
      await stream.closeWrite();
      stream.close();
    })();
    assert.equal(await tryExchange(addr.port, "hello"), "HELLO");
    await serving;

    // A refusal: the application's connection fails, and the reason is kept.
    const refusing = (async () => {
      const stream = await within(sessions.server.accept(), 5000, "the visit stream");
      assert.ok(stream);
      await readOpenRequest(stream);
      await writeAll(
        stream,
        encodeOpenReply({ ok: false, code: "DENIED", reason: "secret_key does not match" }),
      );
      await stream.closeWrite();
      stream.close();
    })();
    const denied = await tryExchange(addr.port, "let me in");
    assert.ok(denied instanceof Error || denied === "", `answered ${JSON.stringify(denied)}`);
    await refusing;
    assert.deepEqual(visitor.counters.refused, { no_session: 1, denied: 1 });
    assert.match(visitor.counters.lastError ?? "", /\(DENIED\): secret_key does not match/);
    assert.equal(visitor.snapshot().total_connections, 3);
  } finally {
    await visitor.close();
    await sessions.close();
  }
});

/** A server side that answers each visit stream on `session` with `refusal` (or ok and an echo in upper case). */
function answerVisits(
  session: Session,
  refusal: { code: "NOT_FOUND" | "DENIED" | "UNREACHABLE"; reason: string } | null,
): Promise<void> {
  return (async () => {
    for (;;) {
      const stream = await session.accept();
      if (stream === null) return;
      await readOpenRequest(stream);
      if (refusal !== null) {
        await writeAll(stream, encodeOpenReply({ ok: false, ...refusal }));
        await stream.closeWrite();
        stream.close();
        continue;
      }
      await writeAll(stream, encodeOpenReply({ ok: true }));
      const buffer = new Uint8Array(64);
      const count = await stream.read(buffer);
      await writeAll(
        stream,
        new TextEncoder().encode(new TextDecoder().decode(buffer.subarray(0, count ?? 0)).toUpperCase()),
      );
      await stream.closeWrite();
      stream.close();
    }
  })();
}

Deno.test("a visitor with several servers is carried by the first that has the target; a server that refused goes last for a while; all refusing resets the connection and names each", async () => {
  const one = memorySessions({ keepaliveIntervalMs: 0 });
  const two = memorySessions({ keepaliveIntervalMs: 0 });
  let twoSession: Session | null = two.client;
  const visitor = new Visitor(config(), () => [
    { server: "a", session: one.client },
    { server: "b", session: twoSession },
    { server: "c", session: null },
  ]);
  const servingOne = answerVisits(one.server, { code: "NOT_FOUND", reason: "no such proxy here" });
  const servingTwo = answerVisits(two.server, null);
  const addr = visitor.listen();
  try {
    assert.equal(await tryExchange(addr.port, "first"), "FIRST");
    // a refused a moment ago: b is asked first now, a is not asked at all.
    assert.equal(await tryExchange(addr.port, "second"), "SECOND");
    assert.deepEqual(visitor.snapshot().servers, [
      { name: "a", visits: 0, refused: { not_found: 1 } },
      { name: "b", visits: 2, refused: {} },
    ]);
    assert.deepEqual(visitor.counters.refused, {});

    // b gone too: a is asked again and refuses; the connection is reset, each server's answer logged.
    twoSession = null;
    const refused = await tryExchange(addr.port, "third");
    assert.ok(refused instanceof Error || refused === "", `answered ${JSON.stringify(refused)}`);
    assert.deepEqual(visitor.counters.refused, { not_found: 1 });
    const message = visitor.counters.lastError ?? "";
    assert.match(message, /no server carried the connection/);
    assert.match(message, /a: refused \(NOT_FOUND\): no such proxy here/);
    assert.match(message, /b: not connected/);
    assert.match(message, /c: not connected/);
  } finally {
    await visitor.close();
    await one.close();
    await two.close();
    await servingOne;
    await servingTwo;
  }
});

Deno.test("a visitor with several servers and no session anywhere resets the connection as not connected", async () => {
  const visitor = new Visitor(
    config(),
    () => [{ server: "a", session: null }, { server: "b", session: null }],
  );
  const addr = visitor.listen();
  try {
    const offline = await tryExchange(addr.port, "anyone?");
    assert.ok(offline instanceof Error || offline === "", `answered ${JSON.stringify(offline)}`);
    assert.deepEqual(visitor.counters.refused, { no_session: 1 });
    assert.match(
      visitor.counters.lastError ?? "",
      /not connected to any server \(a: not connected; b: not connected\)/,
    );
    assert.equal(visitor.snapshot().servers, undefined);
  } finally {
    await visitor.close();
  }
});

Deno.test("a visitor with several servers tries the next when one resets the visit stream, and counts it failed there", async () => {
  const one = memorySessions({ keepaliveIntervalMs: 0 });
  const two = memorySessions({ keepaliveIntervalMs: 0 });
  const visitor = new Visitor(config(), () => [
    { server: "a", session: one.client },
    { server: "b", session: two.client },
  ]);
  // Server a: the stream dies under the visit (what a server going away looks like before the session ends).
  const resetting = (async () => {
    for (;;) {
      const stream = await one.server.accept();
      if (stream === null) return;
      await readOpenRequest(stream);
      stream.reset();
    }
  })();
  const servingTwo = answerVisits(two.server, null);
  const addr = visitor.listen();
  try {
    assert.equal(await tryExchange(addr.port, "carried"), "CARRIED");
    assert.deepEqual(visitor.snapshot().servers, [
      { name: "a", visits: 0, refused: { failed: 1 } },
      { name: "b", visits: 1, refused: {} },
    ]);
    assert.deepEqual(visitor.counters.refused, {});
  } finally {
    await visitor.close();
    await one.close();
    await two.close();
    await resetting;
    await servingTwo;
  }
});

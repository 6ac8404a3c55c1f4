/**
 * Interop of our yamux (lib/mux) with hashicorp's Go yamux, the reference implementation, in both roles,
 * over TCP on 127.0.0.1. The Go peer is `tests/interop/go/yamux_peer.go`, built offline at test time
 * from Debian's golang-go and golang-github-hashicorp-yamux-dev. Without them these tests fail and say
 * what to install: they are the independent check of our wire format, so they must not be skipped.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { writeAll } from "../lib/net/conn.ts";
import { Session, type Stream } from "../lib/mux/mod.ts";
import { RemoteGoAwayError } from "../lib/mux/errors.ts";
import { buildGoPeer, GoPeer, type GoPeerBuild, type PeerEvent } from "./interop/_go_peer.ts";

const STREAM_COUNT = 100;
const BYTES_PER_STREAM = 1024 * 1024;
const READ_BUFFER_BYTES = 64 * 1024;
/** Generous bound for one step; the whole file takes a few seconds on 2 cores. */
const STEP_TIMEOUT_MS = 20_000;

/** Random bytes every stream sends, each rotated by its own offset, so streams carry different data. */
const BASE_PAYLOAD = (() => {
  const bytes = new Uint8Array(BYTES_PER_STREAM);
  for (let offset = 0; offset < bytes.length; offset += 65_536) {
    crypto.getRandomValues(bytes.subarray(offset, offset + 65_536));
  }
  return bytes;
})();

function rotationOf(streamIndex: number): number {
  return (streamIndex * 10_007) % BYTES_PER_STREAM;
}

/** Rejects with a message naming `what` when `promise` takes longer than `timeoutMs`. */
async function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`${what} did not finish within ${timeoutMs} ms`)),
          timeoutMs,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Reads `stream` to its end; returns the byte count and SHA-256 of what was read. */
async function readToEnd(stream: Stream): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash("sha256");
  const buffer = new Uint8Array(READ_BUFFER_BYTES);
  let bytes = 0;
  while (true) {
    const count = await stream.read(buffer);
    if (count === null) return { bytes, sha256: hash.digest("hex") };
    hash.update(buffer.subarray(0, count));
    bytes += count;
  }
}

/** Sends this stream's megabyte, half-closes, and reads the whole echo back, concurrently. */
async function echoRoundTrip(stream: Stream, streamIndex: number) {
  const rotation = rotationOf(streamIndex);
  const first = BASE_PAYLOAD.subarray(rotation);
  const second = BASE_PAYLOAD.subarray(0, rotation);
  const sentSha256 = createHash("sha256").update(first).update(second).digest("hex");
  const [, echo] = await Promise.all([
    (async () => {
      await writeAll(stream, first);
      await writeAll(stream, second);
      await stream.closeWrite();
    })(),
    readToEnd(stream),
  ]);
  return { streamIndex, sentSha256, echoSha256: echo.sha256, echoBytes: echo.bytes };
}

/** Echoes `stream` back to its sender until its end, then half-closes; returns the bytes echoed. */
async function echoStream(stream: Stream): Promise<number> {
  const buffer = new Uint8Array(READ_BUFFER_BYTES);
  let total = 0;
  try {
    while (true) {
      const count = await stream.read(buffer);
      if (count === null) break;
      await writeAll(stream, buffer.subarray(0, count));
      total += count;
    }
    // The Go client reads a fixed length and needs no FIN; it may close the whole session first.
    await stream.closeWrite().catch(() => {});
  } finally {
    stream.close();
  }
  return total;
}

/**
 * Stops `peer` and reports: the body's failure first (with the peer's stderr attached), otherwise a
 * non-zero exit of the peer.
 */
async function finishPeer(
  peer: GoPeer,
  role: string,
  outcome: { failed: boolean; error: unknown },
): Promise<void> {
  const status = await peer.stop();
  const stderr = (await peer.stderr()).trim();
  if (outcome.failed) {
    if (outcome.error instanceof Error && stderr !== "") {
      outcome.error.message += `\n--- yamux_peer ${role} stderr ---\n${stderr}`;
    }
    throw outcome.error;
  }
  if (!status.success) {
    throw new Error(`yamux_peer ${role} exited with code ${status.code}; stderr:\n${stderr}`);
  }
}

/** Runs `body` against the Go yamux server, through our client session; cleans everything up. */
async function withGoServer(
  build: GoPeerBuild,
  body: (session: Session, peer: GoPeer) => Promise<void>,
): Promise<void> {
  const peer = new GoPeer(build.binary, ["server"]);
  let session: Session | null = null;
  const outcome = { failed: false, error: undefined as unknown };
  try {
    const listening = await peer.expectEvent("listening");
    const port = listening.port;
    assert.equal(typeof port, "number", `yamux_peer printed no port: ${JSON.stringify(listening)}`);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: port as number, transport: "tcp" });
    session = new Session(conn, { role: "client" });
    await withTimeout(body(session, peer), STEP_TIMEOUT_MS, "the exchange with the Go yamux server");
  } catch (error) {
    outcome.failed = true;
    outcome.error = error;
  }
  await session?.close();
  await finishPeer(peer, "server", outcome);
}

/** Runs the Go client with `args` against our server session; `body` drives our side. */
async function withGoClient(
  build: GoPeerBuild,
  args: readonly string[],
  body: (session: Session, peer: GoPeer) => Promise<void>,
): Promise<void> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0, transport: "tcp" });
  const peer = new GoPeer(build.binary, [...args, "-port", String(listener.addr.port)]);
  let session: Session | null = null;
  const outcome = { failed: false, error: undefined as unknown };
  try {
    const conn = await withTimeout(listener.accept(), 10_000, "the Go yamux client's TCP connection");
    session = new Session(conn, { role: "server", acceptBacklog: STREAM_COUNT * 2 });
    await withTimeout(body(session, peer), STEP_TIMEOUT_MS, "the exchange with the Go yamux client");
  } catch (error) {
    outcome.failed = true;
    outcome.error = error;
  }
  listener.close();
  await session?.close();
  await finishPeer(peer, "client", outcome);
}

function numberField(event: PeerEvent, field: string): number {
  const value = event[field];
  assert.equal(typeof value, "number", `yamux_peer event lacks number "${field}": ${JSON.stringify(event)}`);
  return value as number;
}

Deno.test("yamux interop with hashicorp's Go yamux", async (t) => {
  const build = await buildGoPeer();
  try {
    await t.step("our client's 100 streams of 1 MiB come back intact from the Go server's echo", async () => {
      await withGoServer(build, async (session, peer) => {
        const results = await Promise.all(
          Array.from(
            { length: STREAM_COUNT },
            async (_, index) => echoRoundTrip(await session.open(), index),
          ),
        );
        for (const result of results) {
          assert.equal(result.echoBytes, BYTES_PER_STREAM, `stream #${result.streamIndex} echo length`);
          assert.equal(result.echoSha256, result.sentSha256, `stream #${result.streamIndex} echo SHA-256`);
        }
        await peer.command("stats");
        const stats = await peer.expectEvent("stats");
        assert.equal(numberField(stats, "streamsEchoed"), STREAM_COUNT);
        assert.equal(numberField(stats, "bytesEchoed"), STREAM_COUNT * BYTES_PER_STREAM);
      });
    });

    await t.step("pings are answered both ways between our client and the Go server", async () => {
      await withGoServer(build, async (session, peer) => {
        for (let attempt = 0; attempt < 3; attempt++) {
          const rttMs = await session.ping();
          assert.ok(Number.isFinite(rttMs) && rttMs >= 0 && rttMs < 5_000, `our ping RTT ${rttMs} ms`);
          await peer.command("ping");
          const answer = await peer.expectEvent("ping");
          const goRttMs = numberField(answer, "rttMs");
          assert.ok(goRttMs >= 0 && goRttMs < 5_000, `Go ping RTT ${goRttMs} ms`);
        }
      });
    });

    await t.step(
      "a GoAway from the Go server makes our open() reject with code 0 while open streams keep working",
      async () => {
        await withGoServer(build, async (session, peer) => {
          const stream = await session.open();
          // Echo a first part so the Go side has surely accepted the stream before its GoAway.
          const first = BASE_PAYLOAD.subarray(0, 1024);
          await writeAll(stream, first);
          const firstEcho = new Uint8Array(first.length);
          let received = 0;
          while (received < first.length) {
            const count = await stream.read(firstEcho.subarray(received));
            assert.notEqual(count, null, "the Go server ended the stream before echoing the first part");
            received += count ?? 0;
          }
          assert.deepEqual(firstEcho, first);

          await peer.command("goaway");
          await peer.expectEvent("goaway");
          // The ping answer travels behind the GoAway on the same connection, so once it is back our
          // session has processed the GoAway.
          await session.ping();
          await assert.rejects(session.open(), (error: unknown) => {
            assert.ok(error instanceof RemoteGoAwayError, `expected RemoteGoAwayError, got ${String(error)}`);
            assert.equal(error.code, 0);
            return true;
          });

          const second = BASE_PAYLOAD.subarray(1024, 64 * 1024);
          const [, rest] = await Promise.all([
            (async () => {
              await writeAll(stream, second);
              await stream.closeWrite();
            })(),
            readToEnd(stream),
          ]);
          assert.equal(rest.bytes, second.length, "echo after the GoAway");
          assert.equal(rest.sha256, createHash("sha256").update(second).digest("hex"));
          stream.close();
        });
      },
    );

    await t.step(
      "the Go client's 100 streams of 1 MiB come back intact from our server, with pings answered both ways",
      async () => {
        await withGoClient(
          build,
          ["client", "-streams", String(STREAM_COUNT), "-bytes", String(BYTES_PER_STREAM), "-pings", "3"],
          async (session, peer) => {
            const echoes: Promise<number>[] = [];
            const acceptLoop = (async () => {
              for await (const stream of session) {
                const echo = echoStream(stream);
                // Awaited below; if an assertion fails first, the session's end must not surface as unhandled.
                echo.catch(() => {});
                echoes.push(echo);
              }
            })();
            // Our server pings the Go client while the echo traffic flows; Go answers automatically.
            const ourRttMs = await session.ping();
            assert.ok(
              Number.isFinite(ourRttMs) && ourRttMs >= 0 && ourRttMs < 5_000,
              `our ping RTT ${ourRttMs} ms`,
            );
            const result = await peer.expectEvent("result", STEP_TIMEOUT_MS);
            const failures = Array.isArray(result.failures) ? result.failures : [];
            assert.equal(
              numberField(result, "verified"),
              STREAM_COUNT,
              `the Go client verified ${result.verified} of ${STREAM_COUNT} echoes; ${failures.length} failed, ` +
                `first ones: ${JSON.stringify(failures.slice(0, 3))}`,
            );
            assert.equal(failures.length, 0);
            assert.deepEqual(result.pingErrors, []);
            assert.ok(Array.isArray(result.pingRttMs) && result.pingRttMs.length === 3, "Go client pings");
            // The Go client closes its session after reporting, which ends our accept loop.
            await acceptLoop;
            const echoed = await Promise.all(echoes);
            assert.equal(echoed.length, STREAM_COUNT);
            assert.equal(echoed.reduce((sum, bytes) => sum + bytes, 0), STREAM_COUNT * BYTES_PER_STREAM);
          },
        );
      },
    );

    await t.step("our goAway() makes the Go client's next Open fail with ErrRemoteGoAway", async () => {
      await withGoClient(build, ["client-goaway"], async (session, peer) => {
        const probe = await session.accept();
        assert.ok(probe !== null, "the Go client opened no stream");
        await session.goAway();
        // Echo the probe byte only after the GoAway, so the Go client has it before it opens again.
        const byte = new Uint8Array(1);
        assert.equal(await probe.read(byte), 1);
        await writeAll(probe, byte);
        const result = await peer.expectEvent("goaway-result");
        assert.equal(
          result.remoteGoAway,
          true,
          `the Go client's Open after our GoAway returned ${JSON.stringify(result.openError)}`,
        );
        assert.equal(result.openError, "remote end is not accepting connections");
        probe.close();
        assert.equal(await session.accept(), null, "no stream may arrive after the GoAway");
      });
    });
  } finally {
    await build.remove();
  }
});

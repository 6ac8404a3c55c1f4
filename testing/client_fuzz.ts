/**
 * Live fuzz of the client's side of the data streams: a hand-driven server (our yamux and JSON-RPC, over
 * real TLS on loopback) accepts a real `deno run main.ts client` with the lag probe, answers its
 * `authenticate` and `register_proxies`, and then opens data streams that start with mutated stream
 * headers (wrong version, lying length, broken JSON, unknown or hostile proxy names, hostile `peer_addr`
 * and `conn_id`) followed by random bytes, while a canary stream with a valid header round-trips through
 * the client to its local echo service every 100 ms.
 *
 * Invariants: the client process never exits and never reconnects (a bad stream costs that stream, not
 * the session); no event-loop stall over the limit; the canary never fails; its descriptors come back.
 *
 * @module
 */

import fc from "fast-check";
import type { Session, Stream } from "../lib/mux/mod.ts";
import { encodeStreamHeader } from "../lib/protocol/mod.ts";
import { writeAll } from "../lib/net/conn.ts";
import { readAll } from "./bytes.ts";
import { EchoService, makeWorkdir } from "./helpers.ts";
import { streamHeader } from "./fuzz_cases.ts";
import { within } from "./fuzz_scripts.ts";
import type { Invariant } from "./fuzz_run.ts";
import { formatTable, LiveProcess, round1 } from "./live_tunnel.ts";
import { RawServer } from "./raw_client.ts";

/** What a client fuzz run found. */
export interface ClientFuzzReport {
  seed: number;
  cases: number;
  durationMs: number;
  invariants: Invariant[];
  ok: boolean;
  outcomes: Record<string, number>;
  client: Record<string, unknown>;
  canary: { rounds: number; errors: number; maxLatencyMs: number; errorSamples: string[] };
  replay: string;
}

const PROXY = "web";

/** Runs `cases` hostile data streams against a real client; see the module documentation. */
export async function runClientFuzz(
  options: { seed: number; cases: number; concurrency?: number; stallLimitMs?: number },
): Promise<ClientFuzzReport> {
  const started = performance.now();
  const stallLimitMs = options.stallLimitMs ?? 100;
  const work = await makeWorkdir();
  const echo = new EchoService();
  const server = await RawServer.listen((rpc, _session, count) => {
    rpc.handle("authenticate", (params) => ({
      client_id: (params as { client_id: string }).client_id,
      client_name: "fuzzed",
      protocol_version: 1,
      server_version: "fuzz",
      session_id: `s${count}`,
    }));
    rpc.handle("register_proxies", () => ({
      proxies: [{ name: PROXY, status: "accepted", publish_addr: "127.0.0.1", publish_port: 40999 }],
    }));
    rpc.handle("heartbeat", (params) => params);
    rpc.handleOtherMethods(() => ({}));
  }, { keepaliveIntervalMs: 1000, keepaliveTimeoutMs: 5000 });
  const configPath = `${work.dir}/client.toml`;
  await Deno.writeTextFile(
    configPath,
    `[client]\nserver_addr = "127.0.0.1"\nserver_port = ${server.port}\nserver_name = "localhost"\n` +
      `ca_cert_path = "${work.caPath}"\nauth_key = "client-fuzz-key-0123456789"\nclient_id = "fuzzed"\n` +
      `keepalive_interval_secs = 1\nkeepalive_timeout_secs = 5\nlocal_connect_retries = 1\n` +
      `[client.reconnect]\ninitial_delay_secs = 0.2\nmax_delay_secs = 1\n\n` +
      `[[proxies]]\nname = "${PROXY}"\npublish_addr = "127.0.0.1"\npublish_port = 0\n` +
      `local_addr = "127.0.0.1"\nlocal_port = ${echo.port}\n`,
  );
  const client = new LiveProcess("client", ["client", "-c", configPath]);
  const outcomes = new Map<string, number>();
  const count = (key: string) => outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
  const canary = { rounds: 0, errors: 0, maxLatencyMs: 0, errorSamples: [] as string[] };
  let casesRun = 0;
  try {
    await client.waitForLine(new RegExp(`Proxy ${PROXY}: `));
    const session = server.sessions[0] as Session;
    await new Promise((resolve) => setTimeout(resolve, 1000));
    client.watch.before = await client.watch.fresh();
    const fuzzStartMs = Date.now();
    let stop = false;
    let connId = 1;
    const canaryLoop = (async () => {
      const payload = new TextEncoder().encode("canary through the client");
      while (!stop) {
        const roundStarted = performance.now();
        try {
          const stream = await session.open();
          await writeAll(
            stream,
            encodeStreamHeader({ proxy: PROXY, peer_addr: "127.0.0.1:1", conn_id: connId++ }),
          );
          await writeAll(stream, payload);
          await stream.closeWrite();
          const echoed = await within(readAll(stream), 5000, null);
          if (echoed === null || new TextDecoder().decode(echoed) !== "canary through the client") {
            throw new Error(
              `canary stream echoed ${echoed === null ? "nothing within 5 s" : `${echoed.length} bytes`}`,
            );
          }
          canary.maxLatencyMs = Math.max(canary.maxLatencyMs, performance.now() - roundStarted);
        } catch (error) {
          canary.errors++;
          if (canary.errorSamples.length < 5) canary.errorSamples.push(String(error));
        }
        canary.rounds++;
        await new Promise((resolve) =>
          setTimeout(resolve, Math.max(0, 100 - (performance.now() - roundStarted)))
        );
      }
    })();
    const headers = fc.sample(
      fc.tuple(streamHeader(PROXY), fc.uint8Array({ maxLength: 2048 }), fc.boolean()),
      { seed: options.seed, numRuns: options.cases },
    );
    let next = 0;
    const worker = async () => {
      while (next < headers.length && !client.exited) {
        const [header, tail, finish] = headers[next++] as [Uint8Array, Uint8Array, boolean];
        casesRun++;
        let stream: Stream | null = null;
        try {
          stream = await session.open();
          await writeAll(stream, header);
          await writeAll(stream, tail);
          if (finish) await stream.closeWrite();
          const answer = await within(readAll(stream).then(() => "ended", () => "reset"), 500, "open");
          count(`stream:${answer}`);
        } catch (error) {
          count(`stream:${(error as Error)?.name ?? "failed"}`);
        } finally {
          stream?.reset();
        }
      }
    };
    await Promise.all(Array.from({ length: options.concurrency ?? 8 }, worker));
    stop = true;
    await canaryLoop;
    await new Promise((resolve) => setTimeout(resolve, 2000));
    client.watch.after = await client.watch.fresh();
    const maxStallMs = client.probe.maxStallMs(fuzzStartMs);
    const invariants: Invariant[] = [
      {
        name: "client alive",
        ok: !client.exited,
        detail: client.exited ? client.tail.slice(-5).join(" | ") : "running",
      },
      {
        name: "client kept its one session",
        ok: server.sessions.length === 1 && !session.isClosed,
        detail: `${server.sessions.length} session(s); ${
          session.isClosed ? `closed: ${session.closeReason}` : "open"
        }`,
      },
      {
        name: `no event-loop stall > ${stallLimitMs} ms`,
        ok: maxStallMs <= stallLimitMs && client.probe.reports.length > 0,
        detail: `max stall ${maxStallMs} ms (raw lag ${client.probe.maxLagMs(fuzzStartMs)} ms)`,
      },
      {
        name: "canary streams echo without errors",
        ok: canary.errors === 0 && canary.rounds > 0,
        detail: `${canary.rounds} rounds, ${canary.errors} errors, max ${round1(canary.maxLatencyMs)} ms${
          canary.errorSamples[0] ? `; ${canary.errorSamples[0]}` : ""
        }`,
      },
      {
        name: "client descriptors back (<= before + 10)",
        ok: (client.watch.after.fds ?? Infinity) <= (client.watch.before.fds ?? 0) + 10,
        detail: `${client.watch.before.fds} before, ${
          client.watch.peakFds(fuzzStartMs)
        } peak, ${client.watch.after.fds} after`,
      },
    ];
    return {
      seed: options.seed,
      cases: casesRun,
      durationMs: Math.round(performance.now() - started),
      invariants,
      ok: invariants.every((invariant) => invariant.ok),
      outcomes: Object.fromEntries(outcomes),
      client: {
        ...client.watch.toJSON(),
        max_stall_ms: maxStallMs,
        log_levels: Object.fromEntries(client.levels),
      },
      canary,
      replay: `deno task fuzz --seed ${options.seed} --client-cases ${options.cases}`,
    };
  } finally {
    await client.stop();
    await server.close();
    await echo.close();
    await work.cleanup();
  }
}

/** The run as a printable table. */
export function formatClientFuzzReport(report: ClientFuzzReport): string {
  return formatTable(`Client stream-header fuzz ${report.ok ? "passed" : "FAILED"}`, [
    ["seed", String(report.seed)],
    ["cases", `${report.cases} data streams (${JSON.stringify(report.outcomes)})`],
    ["duration", `${(report.durationMs / 1000).toFixed(1)} s`],
    ...report.invariants.map((invariant): [string, string] => [
      `${invariant.ok ? "ok  " : "FAIL"} ${invariant.name}`,
      invariant.detail,
    ]),
    ...(report.ok ? [] : [["replay", report.replay] as [string, string]]),
  ]);
}

/**
 * Plays one fuzz script (`_fuzz_cases.ts`) against a live server over real TLS: raw yamux bytes, or
 * our own yamux session and JSON-RPC peer driven with hostile content. The client side may fail in
 * any way (that is the point); what the harness collects is what the server answered, which ports it
 * said it bound, and whether its data-stream headers were valid.
 *
 * @module
 */

import { FrameType, Session, type Stream, writeHeader } from "../lib/mux/mod.ts";
import { RpcError, RpcPeer, type RpcPeer as RpcPeerType } from "../lib/rpc/mod.ts";
import { readStreamHeader } from "../lib/protocol/mod.ts";
import type { JsonRpcParams } from "../lib/rpc/messages.ts";
import { writeAll } from "../lib/net/conn.ts";
import { concatBytes } from "./bytes.ts";
import { closeQuietly } from "../lib/transport/pipe.ts";
import { dialTls, type FuzzConn, sourceAddress } from "./fuzz_conn.ts";
import type { Ending, FuzzScript, RawFrame, RpcBody } from "./fuzz_cases.ts";

/** What a script run needs to reach the server. */
export interface ScriptTarget {
  tunnelPort: number;
  caPem: string;
  authKey: string;
}

/** What the harness learns from the scripts; shared by every worker of a run. */
export class ScriptLedger {
  /** `addr port` of every binding the server answered "accepted" or "retrying" for. */
  readonly boundPorts = new Map<string, { addr: string; port: number }>();
  /** Outcome counts, e.g. `register:accepted`, `rpc:error:-32700`, `dial:failed`. */
  readonly outcomes = new Map<string, number>();
  /** Data-stream headers from the server that did not parse (must stay empty). */
  readonly badServerHeaders: string[] = [];

  count(key: string, by = 1): void {
    this.outcomes.set(key, (this.outcomes.get(key) ?? 0) + by);
  }

  recordBinding(addr: string, port: number): void {
    if (Number.isInteger(port) && port > 0 && port < 65536) {
      this.boundPorts.set(`${addr} ${port}`, { addr, port });
    }
  }

  /** Records the bindings named in a `register_proxies` result. */
  recordRegistration(result: unknown): void {
    const proxies = (result as { proxies?: unknown })?.proxies;
    if (!Array.isArray(proxies)) return;
    for (const entry of proxies as Array<Record<string, unknown>>) {
      this.count(`register:${String(entry?.status)}${entry?.code ? `:${String(entry.code)}` : ""}`);
      if (
        (entry?.status === "accepted" || entry?.status === "retrying") &&
        typeof entry.publish_addr === "string"
      ) {
        this.recordBinding(entry.publish_addr, Number(entry.publish_port));
      }
    }
  }
}

const encoder = new TextEncoder();
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** `promise`'s value, or `fallback` after `ms` (the timer is cleared either way: no timer outlives a test). */
export async function within<T, F>(promise: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<F>((resolve) => (timer = setTimeout(() => resolve(fallback), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Encodes a raw frame `repeat` times. */
function encodeRawFrame(frame: RawFrame): Uint8Array {
  const one = 12 + frame.payload.length;
  const bytes = new Uint8Array(one * frame.repeat);
  for (let index = 0; index < frame.repeat; index++) {
    const streamId = (frame.streamId + index * frame.streamStep) >>> 0;
    writeHeader(bytes, index * one, frame.type, frame.flags, streamId, frame.length >>> 0, frame.version);
    bytes.set(frame.payload, index * one + 12);
  }
  return bytes;
}

/** A yamux data frame on stream 1 carrying `json` as one control frame (with SYN when `open`). */
function controlFrame(json: unknown, open: boolean): Uint8Array {
  const body = encoder.encode(JSON.stringify(json));
  const bytes = new Uint8Array(12 + 4 + body.length);
  writeHeader(bytes, 0, FrameType.Data, open ? 1 : 0, 1, 4 + body.length);
  new DataView(bytes.buffer).setUint32(12, body.length);
  bytes.set(body, 16);
  return bytes;
}

function authenticateParams(target: ScriptTarget, clientId: string) {
  return { auth_key: target.authKey, protocol_version: 1, client_id: clientId };
}

/** Reads whatever arrives for `ms` or until the connection ends; returns it as latin-1 text. */
async function drain(conn: FuzzConn, ms: number): Promise<string> {
  const chunks: string[] = [];
  const buffer = new Uint8Array(64 * 1024);
  const deadlineMs = performance.now() + ms;
  while (true) {
    const leftMs = deadlineMs - performance.now();
    if (leftMs <= 0) break;
    const count = await within(conn.read(buffer).catch(() => null), leftMs, null);
    if (count === null) break;
    // latin-1 keeps every byte, so JSON inside yamux frames can be searched without parsing frames.
    for (let offset = 0; offset < count; offset += 8192) {
      chunks.push(String.fromCharCode(...buffer.subarray(offset, Math.min(count, offset + 8192))));
    }
  }
  return chunks.join("");
}

async function runYamux(
  script: Extract<FuzzScript, { kind: "yamux" }>,
  conn: FuzzConn,
  target: ScriptTarget,
  index: number,
  ledger: ScriptLedger,
): Promise<void> {
  const parts: Uint8Array[] = [];
  if (script.preamble !== "none") {
    const syn = new Uint8Array(12);
    writeHeader(syn, 0, FrameType.WindowUpdate, 1, 1, 0);
    parts.push(syn);
  }
  if (script.preamble === "auth" || script.preamble === "auth+register") {
    parts.push(
      controlFrame({
        jsonrpc: "2.0",
        id: 1,
        method: "authenticate",
        params: authenticateParams(target, `fzy${index}`),
      }, false),
    );
  }
  if (script.preamble === "auth+register") {
    const proxy = {
      name: "p0",
      proxy_type: "tcp",
      publish_addr: "127.0.0.1",
      publish_port: 0,
      local_addr: "127.0.0.1",
      local_port: 9,
    };
    parts.push(
      controlFrame(
        { jsonrpc: "2.0", id: 2, method: "register_proxies", params: { proxies: [proxy] } },
        false,
      ),
    );
  }
  for (const frame of script.frames) parts.push(encodeRawFrame(frame));
  const bytes = concatBytes(parts);
  for (const [offset, value] of script.flips) bytes[offset % bytes.length] = value;
  const writing = writeAll(conn, bytes).catch(() => ledger.count("yamux:write-failed"));
  const text = await drain(conn, script.readMs);
  await within(writing, 100, undefined);
  ledger.count(conn.ended ? "yamux:closed-by-server" : "yamux:still-open");
  for (
    const match of text.matchAll(
      /"status":"(accepted|retrying)","publish_addr":"([^"\\]*)","publish_port":(\d+)/g,
    )
  ) {
    ledger.recordBinding(match[2] ?? "", Number(match[3]));
  }
}

/** Our yamux session and control peer over a fuzz connection. */
async function openSession(conn: FuzzConn): Promise<{ session: Session; control: Stream; rpc: RpcPeerType }> {
  const session = new Session(conn, { role: "client", keepaliveIntervalMs: 0 });
  const control = await session.open();
  const rpc = new RpcPeer(control, { requestTimeoutMs: 5000 });
  return { session, control, rpc };
}

function outcomeOf(error: unknown): string {
  if (error instanceof RpcError) return `error:${error.code}`;
  return (error as Error)?.name ?? "failed";
}

async function end(
  ending: Ending,
  session: Session,
  rpc: RpcPeerType,
  conn: FuzzConn,
  lingerMs = 100,
): Promise<void> {
  if (ending === "goaway") {
    rpc.close();
    await within(session.close(), 1000, undefined);
  } else if (ending === "linger") {
    await sleep(lingerMs);
  }
  conn.destroy();
  rpc.close();
  await within(session.closed, 1000, undefined);
}

async function authenticate(
  rpc: RpcPeerType,
  target: ScriptTarget,
  clientId: string,
  ledger: ScriptLedger,
  kind: string,
): Promise<boolean> {
  try {
    await rpc.request("authenticate", authenticateParams(target, clientId), { timeoutMs: 5000 });
    return true;
  } catch (error) {
    ledger.count(`${kind}:auth-${outcomeOf(error)}`);
    return false;
  }
}

async function writeRpcBody(control: Stream, body: RpcBody): Promise<void> {
  const frame = new Uint8Array(4 + body.body.length);
  new DataView(frame.buffer).setUint32(0, body.declaredLength >>> 0);
  frame.set(body.body, 4);
  await writeAll(control, frame);
}

async function runRpc(
  script: Extract<FuzzScript, { kind: "rpc" }>,
  conn: FuzzConn,
  target: ScriptTarget,
  index: number,
  ledger: ScriptLedger,
): Promise<void> {
  const { session, control, rpc } = await openSession(conn);
  try {
    if (script.authFirst && !await authenticate(rpc, target, `fzr${index}`, ledger, "rpc")) return;
    let fatal = false;
    for (const body of script.bodies) {
      // Bodies go straight onto the control stream, between the peer's own frames (none are in flight).
      await writeRpcBody(control, body);
      if (body.declaredLength !== body.body.length) {
        fatal = true;
        break;
      }
    }
    if (!fatal) {
      try {
        await rpc.request("heartbeat", { time_ms: 1 }, { timeoutMs: 3000 });
        ledger.count("rpc:heartbeat-answered");
      } catch (error) {
        ledger.count(`rpc:heartbeat-${outcomeOf(error)}`);
      }
    }
  } finally {
    await end(script.ending, session, rpc, conn);
  }
}

async function runAuth(
  script: Extract<FuzzScript, { kind: "auth" }>,
  conn: FuzzConn,
  ledger: ScriptLedger,
): Promise<void> {
  const { session, rpc } = await openSession(conn);
  const attempt = (params: unknown) =>
    rpc.request("authenticate", params as JsonRpcParams, { timeoutMs: 5000 }).then(
      () => ledger.count("auth:ok"),
      (error) => ledger.count(`auth:${outcomeOf(error)}`),
    );
  try {
    if (script.pipelined) await Promise.all(script.attempts.map(attempt));
    else for (const params of script.attempts) await attempt(params);
  } finally {
    await end(script.ending, session, rpc, conn);
  }
}

/** What the fuzz client does with a data stream the server opened. */
async function serveDataStream(stream: Stream, move: string, ledger: ScriptLedger): Promise<void> {
  try {
    const header = await readStreamHeader(stream);
    if (typeof header.proxy !== "string") throw new Error("no proxy");
  } catch (error) {
    ledger.badServerHeaders.push(String(error));
    stream.reset();
    return;
  }
  ledger.count(`stream:${move}`);
  try {
    if (move === "reset") stream.reset();
    else if (move === "close") await stream.close();
    else if (move === "garbage") {
      await writeAll(stream, crypto.getRandomValues(new Uint8Array(512)));
      await stream.close();
    } else if (move === "echo") {
      const buffer = new Uint8Array(4096);
      const count = await within(stream.read(buffer), 500, null);
      if (count) await writeAll(stream, buffer.subarray(0, count));
      await stream.close();
    }
    // "ignore": never read; the session's end frees it.
  } catch {
    // The outside connection or the session went away first.
  }
}

async function touchOutside(addr: string, port: number, ledger: ScriptLedger): Promise<void> {
  const hostname = addr.replace(/^\[|\]$/g, "");
  let conn: Deno.TcpConn | null = null;
  try {
    conn = await Deno.connect({ hostname: hostname === "localhost" ? "127.0.0.1" : hostname, port });
    await writeAll(conn, encoder.encode("fuzz-outside-1234"));
    const buffer = new Uint8Array(64);
    const current = conn;
    const count = await within(current.read(buffer).catch(() => null), 300, null);
    ledger.count(count ? "outside:answered" : "outside:no-answer");
  } catch {
    ledger.count("outside:refused");
  } finally {
    if (conn) closeQuietly(conn);
  }
}

async function runRegister(
  script: Extract<FuzzScript, { kind: "register" }>,
  conn: FuzzConn,
  target: ScriptTarget,
  index: number,
  ledger: ScriptLedger,
): Promise<void> {
  const { session, rpc } = await openSession(conn);
  const streams: Promise<void>[] = [];
  const accepting = (async () => {
    for await (const stream of session) streams.push(serveDataStream(stream, script.move, ledger));
  })().catch(() => {});
  const accepted: Array<{ addr: string; port: number }> = [];
  try {
    if (!await authenticate(rpc, target, `fzg${index}`, ledger, "register")) return;
    for (const call of script.calls) {
      const results = await Promise.allSettled(
        Array.from(
          { length: call.pipelined },
          () => rpc.request("register_proxies", call.params as JsonRpcParams, { timeoutMs: 10_000 }),
        ),
      );
      for (const result of results) {
        if (result.status === "rejected") {
          ledger.count(`register:call-${outcomeOf(result.reason)}`);
          continue;
        }
        ledger.recordRegistration(result.value);
        for (const entry of (result.value as { proxies?: Array<Record<string, unknown>> }).proxies ?? []) {
          if (entry.status === "accepted") {
            accepted.push({ addr: String(entry.publish_addr), port: Number(entry.publish_port) });
          }
        }
      }
    }
    await Promise.all(
      accepted.slice(0, script.outside).map(({ addr, port }) => touchOutside(addr, port, ledger)),
    );
  } finally {
    await end(script.ending, session, rpc, conn, script.lingerMs);
    await accepting;
    await within(Promise.all(streams), 1000, undefined);
  }
}

async function runStream(
  script: Extract<FuzzScript, { kind: "stream" }>,
  conn: FuzzConn,
  target: ScriptTarget,
  index: number,
  ledger: ScriptLedger,
): Promise<void> {
  const { session, rpc } = await openSession(conn);
  try {
    if (!await authenticate(rpc, target, `fzs${index}`, ledger, "stream")) return;
    for (const header of script.headers) {
      const stream = await session.open();
      await writeAll(stream, header).catch(() => {});
      const refused = await within(
        stream.read(new Uint8Array(16)).then(() => "answered", () => "reset"),
        1000,
        "silent",
      );
      ledger.count(`stream:client-opened-${refused}`);
      stream.reset();
    }
  } finally {
    await end(script.ending, session, rpc, conn);
  }
}

/**
 * Plays `script` (number `index` of its run) against the server; never throws (client-side failures
 * are counted in `ledger`), and gives up after `timeoutMs`.
 */
export async function playScript(
  script: FuzzScript,
  index: number,
  target: ScriptTarget,
  ledger: ScriptLedger,
  timeoutMs = 20_000,
): Promise<void> {
  let conn: FuzzConn;
  try {
    conn = await dialTls(target.tunnelPort, sourceAddress(index), target.caPem);
  } catch {
    ledger.count("dial:failed");
    return;
  }
  const play = (async () => {
    switch (script.kind) {
      case "yamux":
        return await runYamux(script, conn, target, index, ledger);
      case "rpc":
        return await runRpc(script, conn, target, index, ledger);
      case "auth":
        return await runAuth(script, conn, ledger);
      case "register":
        return await runRegister(script, conn, target, index, ledger);
      case "stream":
        return await runStream(script, conn, target, index, ledger);
    }
  })().catch((error) => ledger.count(`${script.kind}:client-${outcomeOf(error)}`));
  const timedOut = await within(play.then(() => false), timeoutMs, true);
  if (timedOut) ledger.count(`${script.kind}:timed-out`);
  conn.destroy();
  await play;
}

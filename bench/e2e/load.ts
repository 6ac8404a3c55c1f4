/**
 * The end-to-end bench's load generator: bulk transfers both ways (sha256-checked on demand), 64-byte
 * round trips, connection churn, fresh-connection and split-write requests, and idle connections, against any path that ends at the agent (agent.ts).
 * It runs in the bench's main thread, a process of its own, apart from the tunnel's processes and the
 * agent.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { AgentMode, SINK_FLAG_HASH, type SinkReport, SOURCE_HEADER_BYTES } from "./agent.ts";
import { BULK_WRITE_BYTES, sourceBytes, uploadBytes } from "./pattern.ts";

/** A byte stream to the agent through one path (the part of `Deno.Conn` used here). */
export interface BenchConn {
  read(buffer: Uint8Array): Promise<number | null>;
  write(data: Uint8Array): Promise<number>;
  closeWrite(): Promise<void>;
  close(): void;
}

/** Opens a connection that ends at the agent through one path (direct, TLS, tunnel, ssh). */
export type Connector = () => Promise<BenchConn>;

/** A plain TCP connector to 127.0.0.1:`port` (Nagle off, as every tunnel sets it). */
export function tcpConnector(port: number): Connector {
  return async () => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port, transport: "tcp" });
    conn.setNoDelay(true);
    return conn;
  };
}

/** A TLS connector to 127.0.0.1:`port`, verifying the name "localhost" against `caCertPem`. */
export function tlsConnector(port: number, caCertPem: string): Connector {
  return async () => {
    const tcp = await Deno.connect({ hostname: "127.0.0.1", port, transport: "tcp" });
    tcp.setNoDelay(true);
    try {
      const tls = await Deno.startTls(tcp, { hostname: "localhost", caCerts: [caCertPem] });
      await tls.handshake();
      return tls;
    } catch (error) {
      closeQuietly(tcp);
      throw error;
    }
  };
}

/** Closes, ignoring "already closed". */
export function closeQuietly(conn: { close(): void }): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

async function writeAll(conn: BenchConn, data: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < data.length) offset += await conn.write(offset === 0 ? data : data.subarray(offset));
}

/** Reads exactly `buffer.length` bytes, or throws when the stream ends first. */
async function readFull(conn: BenchConn, buffer: Uint8Array): Promise<void> {
  let filled = 0;
  while (filled < buffer.length) {
    const count = await conn.read(filled === 0 ? buffer : buffer.subarray(filled));
    if (count === null) throw new Error(`connection ended after ${filled} of ${buffer.length} bytes`);
    filled += count;
  }
}

/** Reads until end of stream (at most `limitBytes`) and returns the bytes. */
async function readToEnd(conn: BenchConn, limitBytes: number): Promise<Uint8Array> {
  const buffer = new Uint8Array(limitBytes);
  let filled = 0;
  while (true) {
    if (filled === buffer.length) throw new Error(`reply longer than ${limitBytes} bytes`);
    const count = await conn.read(buffer.subarray(filled));
    if (count === null) return buffer.subarray(0, filled);
    filled += count;
  }
}

/** Closes every connection when `signal` aborts, so a stuck run ends; returns the remover. */
function closeOnAbort(signal: AbortSignal, conns: Iterable<BenchConn>): () => void {
  const onAbort = () => {
    for (const conn of conns) closeQuietly(conn);
  };
  if (signal.aborted) onAbort();
  signal.addEventListener("abort", onAbort, { once: true });
  return () => signal.removeEventListener("abort", onAbort);
}

/** Options of {@linkcode bulkTransfer}. */
export interface BulkOptions {
  /** Concurrent connections; the bytes are split evenly among them. */
  connections: number;
  /** Bytes in all (rounded down to a multiple of `connections`). */
  totalBytes: number;
  /** Have the agent hash what it receives and compare with what was sent. */
  verify: boolean;
}

/**
 * Sends `totalBytes` to the agent's sink over `connections` connections at once and resolves to the
 * throughput in MB/s (10^6 bytes per second). The clock runs from the first write (connections are
 * open) until the agent has confirmed the last byte of every connection. Throws when a count (or,
 * with `verify`, a hash) is wrong.
 */
export async function bulkTransfer(
  connect: Connector,
  options: BulkOptions,
  signal: AbortSignal,
): Promise<number> {
  const perConnBytes = Math.floor(options.totalBytes / options.connections);
  const bytes = uploadBytes();
  const expectedHash = options.verify ? bytes.sha256(perConnBytes) : null;
  const conns: BenchConn[] = [];
  const removeAbort = closeOnAbort(signal, conns);
  try {
    for (let index = 0; index < options.connections; index++) {
      signal.throwIfAborted();
      conns.push(await connect());
    }
    const header = new Uint8Array([AgentMode.sink, options.verify ? SINK_FLAG_HASH : 0]);
    const started = performance.now();
    const reports = await Promise.all(conns.map(async (conn) => {
      await writeAll(conn, header);
      for (const piece of bytes.pieces(perConnBytes)) await writeAll(conn, piece);
      await conn.closeWrite();
      const reply = new TextDecoder().decode(await readToEnd(conn, 4096));
      return JSON.parse(reply) as SinkReport;
    }));
    const elapsedMs = performance.now() - started;
    checkReports(reports, perConnBytes, expectedHash, "delivered", "what was sent");
    return (perConnBytes * options.connections) / 1e6 / (elapsedMs / 1000);
  } finally {
    removeAbort();
    for (const conn of conns) closeQuietly(conn);
  }
}

/** Throws unless every connection's report has `perConnBytes` bytes and, when given, `expectedHash`. */
function checkReports(
  reports: readonly SinkReport[],
  perConnBytes: number,
  expectedHash: string | null,
  verb: string,
  source: string,
): void {
  for (const [index, report] of reports.entries()) {
    if (report.bytes !== perConnBytes) {
      throw new Error(`connection ${index} ${verb} ${report.bytes} bytes, expected ${perConnBytes}`);
    }
    if (expectedHash !== null && report.sha256 !== expectedHash) {
      throw new Error(
        `connection ${index}: sha256 of the bytes received (${report.sha256}) differs from ${source} ` +
          `(${expectedHash})`,
      );
    }
  }
}

/**
 * The other direction of {@linkcode bulkTransfer}: asks the agent's source for `totalBytes` over
 * `connections` connections at once and reads them to end of stream; resolves to MB/s. The clock runs
 * from the first request (connections are open) until the last byte of every connection has arrived.
 * With `verify`, the bench hashes what arrives and compares it with the seeded stream the agent sends.
 */
export async function bulkDownload(
  connect: Connector,
  options: BulkOptions,
  signal: AbortSignal,
): Promise<number> {
  const perConnBytes = Math.floor(options.totalBytes / options.connections);
  const expectedHash = options.verify ? sourceBytes().sha256(perConnBytes) : null;
  const conns: BenchConn[] = [];
  const removeAbort = closeOnAbort(signal, conns);
  try {
    for (let index = 0; index < options.connections; index++) {
      signal.throwIfAborted();
      conns.push(await connect());
    }
    const request = new Uint8Array(SOURCE_HEADER_BYTES);
    request[0] = AgentMode.source;
    new DataView(request.buffer).setBigUint64(1, BigInt(perConnBytes));
    const started = performance.now();
    const received = await Promise.all(conns.map(async (conn) => {
      await writeAll(conn, request);
      const hash = options.verify ? createHash("sha256") : null;
      const buffer = new Uint8Array(BULK_WRITE_BYTES);
      let bytes = 0;
      for (let count = await conn.read(buffer); count !== null; count = await conn.read(buffer)) {
        bytes += count;
        hash?.update(buffer.subarray(0, count));
      }
      return { bytes, sha256: hash === null ? null : hash.digest("hex") };
    }));
    const elapsedMs = performance.now() - started;
    checkReports(received, perConnBytes, expectedHash, "received", "what the agent sends");
    return (perConnBytes * options.connections) / 1e6 / (elapsedMs / 1000);
  } finally {
    removeAbort();
    for (const conn of conns) closeQuietly(conn);
  }
}

/** Latency percentiles of one run of round trips, in µs. */
export interface RoundTripFigures {
  p50Us: number;
  p99Us: number;
}

/** The `q`-quantile (0..1) of ascending `sorted` values, nearest rank. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank] ?? Number.NaN;
}

/**
 * Measures 64-byte request/response round trips on one connection to the agent's echo: `warmup`
 * unmeasured ones first, then `count` measured; resolves to p50 and p99 in µs.
 */
export async function roundTrips(
  connect: Connector,
  options: { count: number; warmup: number; messageBytes: number },
  signal: AbortSignal,
): Promise<RoundTripFigures> {
  const conn = await connect();
  const removeAbort = closeOnAbort(signal, [conn]);
  try {
    const request = new Uint8Array(options.messageBytes);
    crypto.getRandomValues(request);
    const reply = new Uint8Array(options.messageBytes);
    await writeAll(conn, new Uint8Array([AgentMode.echo]));
    const samples = new Float64Array(options.count);
    for (let index = -options.warmup; index < options.count; index++) {
      const started = performance.now();
      await writeAll(conn, request);
      await readFull(conn, reply);
      const elapsedMs = performance.now() - started;
      if (index >= 0) samples[index] = elapsedMs * 1000;
    }
    if (reply[0] !== request[0] || reply[reply.length - 1] !== request[request.length - 1]) {
      throw new Error("the echo returned different bytes");
    }
    const sorted = [...samples].sort((a, b) => a - b);
    return { p50Us: quantile(sorted, 0.5), p99Us: quantile(sorted, 0.99) };
  } finally {
    removeAbort();
    closeQuietly(conn);
  }
}

/** The echo mode byte followed by `messageBytes` random bytes: the first write of an echo request. */
function echoRequest(messageBytes: number): Uint8Array<ArrayBuffer> {
  const request = new Uint8Array(messageBytes + 1);
  crypto.getRandomValues(request);
  request[0] = AgentMode.echo;
  return request;
}

/**
 * Opens `total` connections, `concurrency` at a time; each connects, sends 64 bytes to the echo, reads
 * them back and closes. Resolves to connections per second.
 */
export async function connectionChurn(
  connect: Connector,
  options: { total: number; concurrency: number; messageBytes: number },
  signal: AbortSignal,
): Promise<number> {
  const message = echoRequest(options.messageBytes);
  let next = 0;
  const live = new Set<BenchConn>();
  const removeAbort = closeOnAbort(signal, live);
  const worker = async () => {
    const reply = new Uint8Array(options.messageBytes);
    while (next < options.total) {
      next++;
      signal.throwIfAborted();
      const conn = await connect();
      live.add(conn);
      try {
        await writeAll(conn, message);
        await readFull(conn, reply);
      } finally {
        live.delete(conn);
        closeQuietly(conn);
      }
    }
  };
  try {
    const started = performance.now();
    await Promise.all(Array.from({ length: options.concurrency }, worker));
    return options.total / ((performance.now() - started) / 1000);
  } finally {
    removeAbort();
  }
}

/** Percentiles of one run of requests, in ms, and how many took longer than the stall limit. */
export interface RequestFigures {
  p50Ms: number;
  p99Ms: number;
  /** Requests that took longer than `stallMs`. */
  stalled: number;
}

function requestFigures(samplesMs: Float64Array, stallMs: number): RequestFigures {
  const sorted = [...samplesMs].sort((a, b) => a - b);
  return {
    p50Ms: quantile(sorted, 0.5),
    p99Ms: quantile(sorted, 0.99),
    stalled: sorted.filter((value) => value > stallMs).length,
  };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let index = 0; index < a.length; index++) if (a[index] !== b[index]) return false;
  return true;
}

/**
 * `count` requests one after another, each on a fresh connection: `send` writes the request (the mode
 * byte included), then the `replyBytes` echo is read and the connection closed. `timeFromConnect`
 * chooses whether the clock starts before the connect or once it is open (before the first write).
 */
async function freshRequests(
  connect: Connector,
  options: {
    count: number;
    expected: Uint8Array;
    stallMs: number;
    timeFromConnect: boolean;
    send: (conn: BenchConn) => Promise<void>;
  },
  signal: AbortSignal,
): Promise<RequestFigures> {
  const live = new Set<BenchConn>();
  const removeAbort = closeOnAbort(signal, live);
  const reply = new Uint8Array(options.expected.length);
  const samples = new Float64Array(options.count);
  try {
    for (let index = 0; index < options.count; index++) {
      signal.throwIfAborted();
      const beforeConnect = performance.now();
      const conn = await connect();
      live.add(conn);
      try {
        const started = options.timeFromConnect ? beforeConnect : performance.now();
        await options.send(conn);
        await readFull(conn, reply);
        samples[index] = performance.now() - started;
      } finally {
        live.delete(conn);
        closeQuietly(conn);
      }
      if (!sameBytes(reply, options.expected)) throw new Error("the echo returned different bytes");
    }
    return requestFigures(samples, options.stallMs);
  } finally {
    removeAbort();
  }
}

/**
 * Fresh connection + round trip: `count` times in a row, connect, send `messageBytes` to the echo in one
 * write (after the mode byte, in the same write), read them back, close. The clock runs from before the
 * connect until the last byte of the echo, so Nagle's algorithm on any hop shows as a 40 ms stall.
 */
export function freshRoundTrips(
  connect: Connector,
  options: { count: number; messageBytes: number; stallMs: number },
  signal: AbortSignal,
): Promise<RequestFigures> {
  const request = echoRequest(options.messageBytes);
  return freshRequests(connect, {
    count: options.count,
    expected: request.subarray(1),
    stallMs: options.stallMs,
    timeFromConnect: true,
    send: (conn) => writeAll(conn, request),
  }, signal);
}

/**
 * Split-write requests: `count` times in a row, on a fresh connection, a `headerBytes` write (after the
 * mode byte, in the same write) and at once a `bodyBytes` write, without waiting for anything between
 * them; then the echo of header and body is read and the connection closed. The clock runs from the
 * first write to the last byte of the echo (the connect is not counted). A hop that leaves Nagle's
 * algorithm on holds the body until the header is acknowledged, which a delayed ACK puts off by 40 ms.
 */
export function splitWriteRequests(
  connect: Connector,
  options: { count: number; headerBytes: number; bodyBytes: number; stallMs: number },
  signal: AbortSignal,
): Promise<RequestFigures> {
  const header = echoRequest(options.headerBytes);
  const body = new Uint8Array(options.bodyBytes);
  crypto.getRandomValues(body);
  const expected = new Uint8Array(options.headerBytes + options.bodyBytes);
  expected.set(header.subarray(1));
  expected.set(body, options.headerBytes);
  return freshRequests(connect, {
    count: options.count,
    expected,
    stallMs: options.stallMs,
    timeFromConnect: false,
    send: async (conn) => {
      await writeAll(conn, header);
      await writeAll(conn, body);
    },
  }, signal);
}

/**
 * Connections held open and idle: each was confirmed end to end (one byte echoed), so every hop of the
 * path (published port, stream, local connection) exists while they are held.
 */
export class IdleConnections {
  readonly #conns: BenchConn[] = [];

  /** Connections held. */
  get size(): number {
    return this.#conns.length;
  }

  /** Opens connections until `target` are held, `concurrency` at a time. */
  async growTo(connect: Connector, target: number, concurrency: number, signal: AbortSignal): Promise<void> {
    const removeAbort = closeOnAbort(signal, this.#conns);
    const hello = new Uint8Array([AgentMode.echo, 0x21]);
    let remaining = target - this.#conns.length;
    const worker = async () => {
      const reply = new Uint8Array(1);
      while (remaining > 0) {
        remaining--;
        signal.throwIfAborted();
        const conn = await connect();
        this.#conns.push(conn);
        await writeAll(conn, hello);
        await readFull(conn, reply);
      }
    };
    try {
      await Promise.all(Array.from({ length: Math.min(concurrency, Math.max(remaining, 1)) }, worker));
    } finally {
      removeAbort();
    }
  }

  /**
   * Sends `bytes` through each of the first `count` connections held and reads them back from the echo,
   * `concurrency` connections at a time; they stay open (and idle) afterwards.
   */
  async burst(count: number, bytes: number, concurrency: number, signal: AbortSignal): Promise<void> {
    const removeAbort = closeOnAbort(signal, this.#conns);
    const conns = this.#conns.slice(0, count);
    const data = new Uint8Array(bytes).fill(0x5a);
    const worker = async () => {
      const reply = new Uint8Array(bytes);
      for (let conn = conns.pop(); conn !== undefined; conn = conns.pop()) {
        signal.throwIfAborted();
        await Promise.all([writeAll(conn, data), readFull(conn, reply)]);
      }
    };
    try {
      await Promise.all(Array.from({ length: concurrency }, worker));
    } finally {
      removeAbort();
    }
  }

  /** Closes every connection. */
  closeAll(): void {
    for (const conn of this.#conns.splice(0)) closeQuietly(conn);
  }
}

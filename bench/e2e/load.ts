/**
 * The end-to-end bench's load generator: bulk transfers (sha256-checked on demand), 64-byte round
 * trips, connection churn and idle connections, against any path that ends at the agent (agent.ts).
 * It runs in the bench's main thread, a process of its own, apart from the tunnel's processes and the
 * agent.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { AgentMode, SINK_FLAG_HASH, type SinkReport } from "./agent.ts";

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

/** Size of each write of a bulk transfer (the tunnel's large copy buffer). */
export const BULK_WRITE_BYTES = 256 * 1024;
/**
 * Period of the data sent: random bytes repeated, with a period that is no multiple of any read or
 * write size, so a reordered, lost or duplicated piece changes the hash.
 */
const PATTERN_PERIOD_BYTES = 4 * 1024 * 1024 + 13;

/**
 * The bytes a bulk transfer sends: `period` random bytes followed by their first `BULK_WRITE_BYTES`
 * again, so every write of the cyclic stream is one contiguous view.
 */
let pattern: Uint8Array | null = null;
function bulkPattern(): Uint8Array {
  if (pattern !== null) return pattern;
  const bytes = new Uint8Array(PATTERN_PERIOD_BYTES + BULK_WRITE_BYTES);
  for (let offset = 0; offset < PATTERN_PERIOD_BYTES; offset += 65_536) {
    crypto.getRandomValues(bytes.subarray(offset, Math.min(offset + 65_536, PATTERN_PERIOD_BYTES)));
  }
  bytes.copyWithin(PATTERN_PERIOD_BYTES, 0, BULK_WRITE_BYTES);
  pattern = bytes;
  return bytes;
}

/** Calls `each` with the successive views of the first `totalBytes` bytes of the cyclic stream. */
function forEachPiece(totalBytes: number, each: (piece: Uint8Array) => void): void {
  const bytes = bulkPattern();
  let offset = 0;
  for (let sent = 0; sent < totalBytes;) {
    const size = Math.min(BULK_WRITE_BYTES, totalBytes - sent);
    each(bytes.subarray(offset, offset + size));
    sent += size;
    offset = (offset + size) % PATTERN_PERIOD_BYTES;
  }
}

const expectedHashes = new Map<number, string>();
/** Hex SHA-256 of the first `totalBytes` bytes of the cyclic stream (cached per size). */
function expectedSha256(totalBytes: number): string {
  let hex = expectedHashes.get(totalBytes);
  if (hex === undefined) {
    const hash = createHash("sha256");
    forEachPiece(totalBytes, (piece) => hash.update(piece));
    hex = hash.digest("hex");
    expectedHashes.set(totalBytes, hex);
  }
  return hex;
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
  const expectedHash = options.verify ? expectedSha256(perConnBytes) : null;
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
      const pieces: Uint8Array[] = [];
      forEachPiece(perConnBytes, (piece) => pieces.push(piece));
      for (const piece of pieces) await writeAll(conn, piece);
      await conn.closeWrite();
      const reply = new TextDecoder().decode(await readToEnd(conn, 4096));
      return JSON.parse(reply) as SinkReport;
    }));
    const elapsedMs = performance.now() - started;
    for (const [index, report] of reports.entries()) {
      if (report.bytes !== perConnBytes) {
        throw new Error(`connection ${index} delivered ${report.bytes} bytes, expected ${perConnBytes}`);
      }
      if (expectedHash !== null && report.sha256 !== expectedHash) {
        throw new Error(
          `connection ${index}: sha256 of the bytes received (${report.sha256}) differs from what was sent ` +
            `(${expectedHash})`,
        );
      }
    }
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

/**
 * Opens `total` connections, `concurrency` at a time; each connects, sends 64 bytes to the echo, reads
 * them back and closes. Resolves to connections per second.
 */
export async function connectionChurn(
  connect: Connector,
  options: { total: number; concurrency: number; messageBytes: number },
  signal: AbortSignal,
): Promise<number> {
  const message = new Uint8Array(options.messageBytes + 1);
  crypto.getRandomValues(message);
  message[0] = AgentMode.echo;
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

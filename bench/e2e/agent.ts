/**
 * The end-to-end bench's far end: a child process (`deno run bench/e2e/agent.ts CERT KEY`) playing the
 * local service behind every path, on plain TCP and on TLS. It prints one JSON line on stdout,
 * `{"tcpPort":N,"tlsPort":M}`, serves until its stdin closes (so it never outlives the bench), then exits.
 *
 * Every connection starts with a mode byte (see {@linkcode AgentMode}):
 *
 * - `S` (sink): a flags byte follows (1 = hash); then everything up to end of stream is counted (and
 *   hashed), and one JSON line `{"bytes":N,"sha256":"…"|null}` is written back before closing.
 * - `E` (echo): everything after the mode byte is echoed until end of stream.
 * - `D` (download source): an 8-byte big-endian length follows; that many bytes of the seeded stream
 *   ({@linkcode sourceBytes}) are written back in 256 KiB writes, then the agent's end of stream; the
 *   connection is closed once the bench has closed its end too (so no byte is cut off by a reset).
 *
 * It runs in its own process so that the load generator (the bench), the tunnel's two ends and this
 * service each have their own event loop, and so that 10,000 idle connections do not put the bench's
 * own descriptors over the limit.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { acceptEach } from "../../lib/net/accept.ts";
import { type DuplexConn, writeAll } from "../../lib/net/conn.ts";
import { closeQuietly } from "../../lib/transport/pipe.ts";
import { sourceBytes } from "./pattern.ts";

/** The mode bytes a connection starts with. */
export const AgentMode = {
  /** Count (and optionally hash) everything, then report. */
  sink: 0x53,
  /** Echo everything. */
  echo: 0x45,
  /** Send the number of bytes asked for (8-byte big-endian length), then end of stream. */
  source: 0x44,
} as const;

/** Bytes of the source mode's header: the mode byte and the 8-byte length. */
export const SOURCE_HEADER_BYTES = 9;
/** Most bytes the source mode sends on one connection (far above any run's size). */
export const MAX_SOURCE_BYTES = 64 * 1024 * 1024 * 1024;

/** Flags byte of the sink mode: hash what arrives. */
export const SINK_FLAG_HASH = 1;

/** What the sink writes back once the sender's end of stream arrived. */
export interface SinkReport {
  /** Payload bytes received after the two header bytes. */
  bytes: number;
  /** Hex SHA-256 of those bytes, when asked for. */
  sha256: string | null;
}

/** First read of a connection: small, so idle and chatty connections cost little. */
const SMALL_READ_BYTES = 4 * 1024;
/** Reads once a connection's reads fill the small buffer: bulk traffic. */
const LARGE_READ_BYTES = 256 * 1024;

type Conn = DuplexConn;

/** Reads into a small buffer until a read fills it, then into a large one (shared per connection). */
class AdaptiveReader {
  #buffer = new Uint8Array(SMALL_READ_BYTES);
  constructor(readonly conn: Conn) {}
  async read(): Promise<Uint8Array | null> {
    const count = await this.conn.read(this.#buffer);
    if (count === null) return null;
    const chunk = this.#buffer.subarray(0, count);
    if (count === this.#buffer.length && this.#buffer.length < LARGE_READ_BYTES) {
      const grown = new Uint8Array(LARGE_READ_BYTES);
      grown.set(chunk);
      this.#buffer = grown;
      return grown.subarray(0, count);
    }
    return chunk;
  }
}

/** `first` extended by further reads until it holds at least `count` bytes; null at end of stream. */
async function readAtLeast(
  reader: AdaptiveReader,
  first: Uint8Array,
  count: number,
): Promise<Uint8Array | null> {
  if (first.length >= count) return first;
  // `first` is a view of the reader's buffer, which the next read overwrites: keep a copy.
  let chunk: Uint8Array = first.slice();
  while (chunk.length < count) {
    const more = await reader.read();
    if (more === null) return null;
    const joined: Uint8Array = new Uint8Array(chunk.length + more.length);
    joined.set(chunk);
    joined.set(more, chunk.length);
    chunk = joined;
  }
  return chunk;
}

/** The source mode: writes the bytes asked for, ends its side, and waits for the bench to end its own. */
async function serveSource(conn: Conn, reader: AdaptiveReader, first: Uint8Array): Promise<void> {
  const header = await readAtLeast(reader, first, SOURCE_HEADER_BYTES);
  if (header === null) return;
  const requested = new DataView(header.buffer, header.byteOffset, header.byteLength).getBigUint64(1);
  if (requested > BigInt(MAX_SOURCE_BYTES)) return;
  for (const piece of sourceBytes().pieces(Number(requested))) await writeAll(conn, piece);
  await conn.closeWrite();
  // Closing before the bench has read everything could reset the connection and lose the tail: wait
  // for its end of stream (it sends nothing else).
  while ((await reader.read()) !== null) { /* discard */ }
}

async function serveConn(conn: Conn): Promise<void> {
  const reader = new AdaptiveReader(conn);
  try {
    const first = await reader.read();
    if (first === null || first.length === 0) return;
    const mode = first[0];
    if (mode === AgentMode.echo) {
      let chunk: Uint8Array | null = first.subarray(1);
      while (chunk !== null) {
        if (chunk.length > 0) await writeAll(conn, chunk);
        chunk = await reader.read();
      }
      await conn.closeWrite();
      return;
    }
    if (mode === AgentMode.source) {
      await serveSource(conn, reader, first);
      return;
    }
    if (mode !== AgentMode.sink) return;
    const chunk = await readAtLeast(reader, first, 2);
    if (chunk === null) return;
    const hash = (chunk[1] ?? 0) & SINK_FLAG_HASH ? createHash("sha256") : null;
    let bytes = 0;
    let data: Uint8Array | null = chunk.subarray(2);
    while (data !== null) {
      bytes += data.length;
      if (hash !== null && data.length > 0) hash.update(data);
      data = await reader.read();
    }
    const report: SinkReport = { bytes, sha256: hash === null ? null : hash.digest("hex") };
    await writeAll(conn, new TextEncoder().encode(JSON.stringify(report) + "\n"));
    await conn.closeWrite();
  } catch {
    // Reset by the peer (a bench run was aborted): nothing to report.
  } finally {
    closeQuietly(conn);
  }
}

function acceptLoop(listener: Deno.Listener, open: Set<Conn>): Promise<void> {
  return acceptEach(listener, (conn: Conn) => {
    if ("setNoDelay" in conn && typeof conn.setNoDelay === "function") {
      (conn as Deno.TcpConn).setNoDelay(true);
    }
    open.add(conn);
    serveConn(conn).finally(() => open.delete(conn));
  }, { pauseMs: 20 });
}

async function main(certPath: string, keyPath: string): Promise<void> {
  const tcp = Deno.listen({ hostname: "127.0.0.1", port: 0, transport: "tcp" });
  const tls = Deno.listenTls({
    hostname: "127.0.0.1",
    port: 0,
    transport: "tcp",
    cert: await Deno.readTextFile(certPath),
    key: await Deno.readTextFile(keyPath),
  });
  const open = new Set<Conn>();
  const loops = [acceptLoop(tcp, open), acceptLoop(tls, open)];
  console.log(JSON.stringify({ tcpPort: tcp.addr.port, tlsPort: tls.addr.port }));
  // Serve until the bench closes our stdin (or dies, which closes it too).
  const sink = new Uint8Array(64);
  while ((await Deno.stdin.read(sink)) !== null) { /* nothing is sent on stdin */ }
  closeQuietly(tcp);
  closeQuietly(tls);
  for (const conn of open) closeQuietly(conn);
  await Promise.allSettled(loops);
}

if (import.meta.main) {
  const [certPath, keyPath] = Deno.args;
  if (certPath === undefined || keyPath === undefined) {
    console.error("usage: deno run --allow-net --allow-read bench/e2e/agent.ts CERT_PEM KEY_PEM");
    Deno.exit(2);
  }
  await main(certPath, keyPath);
  Deno.exit(0);
}

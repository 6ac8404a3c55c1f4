/**
 * The receiving end of the mux section's network cases: listens on 127.0.0.1, accepts one connection,
 * reads everything the sender writes (raw TCP, or every stream of a yamux session) and reports the
 * byte count. Runs in a Worker (`_mux_sink_worker.ts`) or in the main thread, per `--topology`.
 *
 * @module
 */

import { Session } from "../../lib/mux/mod.ts";

/** What the sink is asked to receive. */
export type SinkJob =
  /** One raw TCP connection, read until end of stream into a buffer of `readBufferBytes`. */
  | { kind: "tcp"; readBufferBytes: number }
  /** A yamux session (the sink is the server role) carrying exactly `streams` streams, each read likewise. */
  | { kind: "yamux"; streams: number; readBufferBytes: number };

/** What the sink received. */
export interface SinkResult {
  /** Payload bytes read (all streams together for yamux). */
  bytes: number;
  /** Streams read to their end (1 for raw TCP). */
  streams: number;
}

/** A listening sink. */
export interface Sink {
  /** The port on 127.0.0.1 to connect to. */
  port: number;
  /** Settles once everything was received (or the sink failed or was aborted). */
  done: Promise<SinkResult>;
}

async function drain(
  reader: { read(buffer: Uint8Array): Promise<number | null> },
  readBufferBytes: number,
): Promise<number> {
  const buffer = new Uint8Array(readBufferBytes);
  let total = 0;
  while (true) {
    const count = await reader.read(buffer);
    if (count === null) return total;
    total += count;
  }
}

/** Starts a sink for `job`; `signal` aborts it and releases its listener and connection. */
export function startSink(job: SinkJob, signal: AbortSignal): Sink {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0, transport: "tcp" });
  const port = listener.addr.port;
  const done = (async (): Promise<SinkResult> => {
    let conn: Deno.TcpConn | null = null;
    let session: Session | null = null;
    /** One drain per accepted stream; all settle before `done` does, even when the sink fails early. */
    const readers: Promise<number>[] = [];
    const onAbort = () => {
      try {
        listener.close();
      } catch { /* already closed */ }
      void session?.close();
      try {
        conn?.close();
      } catch { /* already closed */ }
    };
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      conn = await listener.accept();
      listener.close();
      conn.setNoDelay(true);
      if (job.kind === "tcp") {
        const bytes = await drain(conn, job.readBufferBytes);
        return { bytes, streams: 1 };
      }
      session = new Session(conn, { role: "server", acceptBacklog: job.streams + 16 });
      while (readers.length < job.streams) {
        const stream = await session.accept();
        if (stream === null) {
          throw new Error(`yamux session ended after ${readers.length} of ${job.streams} streams`);
        }
        readers.push(drain(stream, job.readBufferBytes).finally(() => stream.close()));
      }
      const counts = await Promise.all(readers);
      return { bytes: counts.reduce((sum, count) => sum + count, 0), streams: counts.length };
    } finally {
      signal.removeEventListener("abort", onAbort);
      onAbort();
      await Promise.allSettled(readers);
      if (session !== null) await session.closed;
    }
  })();
  // An aborted run stops awaiting `done`; its rejection must not count as unhandled.
  done.catch(() => {});
  return { port, done };
}

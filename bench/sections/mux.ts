/**
 * Mux section: what our yamux costs compared with what carries it.
 *
 * - Throughput over TCP on 127.0.0.1: raw Deno TCP (baseline) against our yamux with 1, 8 and 1000
 *   streams, the same total bytes in every case. The sender runs in the main thread; the receiver runs in
 *   a Worker thread (`--topology worker`, the default) or in the main thread too (`--topology same`).
 * - The frame codec alone (see `_mux_codec.ts`).
 *
 * @module
 */

import { Session, type Stream } from "../../lib/mux/mod.ts";
import type { BenchCase, BenchContext, BenchSection, SectionInstance } from "../_harness.ts";
import { type SinkJob, type SinkResult, startSink } from "./_mux_sink.ts";
import type { SinkReplyMessage, SinkStartMessage } from "./_mux_sink_worker.ts";
import { codecCases } from "./_mux_codec.ts";

const KIB = 1024;
const MIB = 1024 * 1024;
/**
 * Size of each write and read the application makes, with and without yamux: the large buffer of the
 * tunnel's copy loop (`LARGE_BUFFER_BYTES` in lib/transport/pipe.ts), so "tcp raw" is the same program
 * without the multiplexer.
 */
const APP_IO_BYTES = 256 * KIB;
/**
 * I/O size of the informational "tcp raw 1 MiB I/O" case: TCP with fewer, larger system calls, about
 * what our session's 1 MiB write batching gives the socket; it shows the headroom above the baseline.
 */
const LARGE_IO_BYTES = 1 * MIB;
/** Bytes per throughput run: 1 GiB in full mode, 256 MiB in quick mode. */
const totalBytes = (context: BenchContext) => (context.quick ? 256 : 1024) * MIB;

/** Where the receiver runs. */
interface SinkRunner {
  /** Starts a receiver for `job` and resolves once it listens. */
  start(job: SinkJob, signal: AbortSignal): Promise<{ port: number; done: Promise<SinkResult> }>;
  /** Releases the runner (terminates its worker). */
  close(): void;
}

/** Receiver in the main thread: sender and receiver share one event loop and one core. */
class InlineSinkRunner implements SinkRunner {
  start(job: SinkJob, signal: AbortSignal) {
    return Promise.resolve(startSink(job, signal));
  }
  close(): void {}
}

/** Receiver in a Worker: its own thread, event loop and V8 isolate, so each end can use a core. */
class WorkerSinkRunner implements SinkRunner {
  /** The live worker; replaced after an abort, since terminating is the only way to stop it. */
  #worker: Worker | null = null;
  /** Id of the next job, to match replies with requests. */
  #nextId = 1;

  #ensureWorker(): Worker {
    this.#worker ??= new Worker(new URL("./_mux_sink_worker.ts", import.meta.url), { type: "module" });
    return this.#worker;
  }

  start(job: SinkJob, signal: AbortSignal): Promise<{ port: number; done: Promise<SinkResult> }> {
    const worker = this.#ensureWorker();
    const id = this.#nextId++;
    return new Promise((resolveReady, rejectReady) => {
      let resolveDone: (result: SinkResult) => void = () => {};
      let rejectDone: (error: Error) => void = () => {};
      const done = new Promise<SinkResult>((resolve, reject) => {
        resolveDone = resolve;
        rejectDone = reject;
      });
      // The caller may never await `done` when it fails first; keep that from being an unhandled rejection.
      done.catch(() => {});
      const cleanup = () => {
        worker.removeEventListener("message", onMessage);
        worker.removeEventListener("error", onError);
        signal.removeEventListener("abort", onAbort);
      };
      const onMessage = (event: MessageEvent<SinkReplyMessage>) => {
        const reply = event.data;
        if (reply.id !== id) return;
        if (reply.type === "ready") resolveReady({ port: reply.port, done });
        else if (reply.type === "done") {
          cleanup();
          resolveDone(reply.result);
        } else {
          cleanup();
          const error = new Error(`bench receiver failed: ${reply.message}`);
          rejectReady(error);
          rejectDone(error);
        }
      };
      const onError = (event: ErrorEvent) => {
        event.preventDefault();
        cleanup();
        this.close();
        const error = new Error(`bench receiver worker crashed: ${event.message}`);
        rejectReady(error);
        rejectDone(error);
      };
      const onAbort = () => {
        cleanup();
        this.close();
        const error = signal.reason instanceof Error ? signal.reason : new Error("bench run aborted");
        rejectReady(error);
        rejectDone(error);
      };
      worker.addEventListener("message", onMessage);
      worker.addEventListener("error", onError);
      signal.addEventListener("abort", onAbort, { once: true });
      const message: SinkStartMessage = { type: "start", id, job };
      worker.postMessage(message);
    });
  }

  close(): void {
    this.#worker?.terminate();
    this.#worker = null;
  }
}

/** Incompressible data to send; its content does not matter, only that nothing can shortcut it. */
function payloadChunk(): Uint8Array {
  const chunk = new Uint8Array(LARGE_IO_BYTES);
  for (let offset = 0; offset < chunk.length; offset += 65_536) {
    crypto.getRandomValues(chunk.subarray(offset, Math.min(offset + 65_536, chunk.length)));
  }
  return chunk;
}

async function writeBytes(
  conn: { write(data: Uint8Array): Promise<number> },
  chunk: Uint8Array,
  bytes: number,
): Promise<void> {
  let remaining = bytes;
  while (remaining > 0) {
    const piece = remaining >= chunk.length ? chunk : chunk.subarray(0, remaining);
    let offset = 0;
    while (offset < piece.length) offset += await conn.write(offset === 0 ? piece : piece.subarray(offset));
    remaining -= piece.length;
  }
}

/** Rejects once `signal` aborts, so a run waiting on a stuck peer can give up. */
function abortPromise(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    const fail = () =>
      reject(signal.reason instanceof Error ? signal.reason : new Error("bench run aborted"));
    if (signal.aborted) fail();
    else signal.addEventListener("abort", fail, { once: true });
  });
}

/** Megabytes (10^6 bytes) per second. */
function megabytesPerSecond(bytes: number, elapsedMs: number): number {
  return bytes / 1e6 / (elapsedMs / 1000);
}

function checkReceived(result: SinkResult, bytes: number, streams: number): void {
  if (result.bytes !== bytes || result.streams !== streams) {
    throw new Error(
      `receiver got ${result.bytes} bytes on ${result.streams} stream(s), expected ${bytes} on ${streams}`,
    );
  }
}

function rawTcpCase(
  runner: SinkRunner,
  payload: Uint8Array,
  bytes: number,
  name: string,
  ioBytes: { write: number; read: number },
): BenchCase {
  const chunk = payload.subarray(0, ioBytes.write);
  return {
    name,
    metric: "throughput",
    unit: "MB/s",
    ...(name === "tcp raw" ? {} : { baseline: "tcp raw" }),
    params: { totalBytes: bytes, writeBytes: ioBytes.write, readBytes: ioBytes.read },
    async run(signal) {
      const aborted = abortPromise(signal);
      aborted.catch(() => {});
      const sink = await runner.start({ kind: "tcp", readBufferBytes: ioBytes.read }, signal);
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: sink.port, transport: "tcp" });
      const onAbort = () => conn.close();
      signal.addEventListener("abort", onAbort, { once: true });
      try {
        conn.setNoDelay(true);
        const started = performance.now();
        await Promise.race([
          (async () => {
            await writeBytes(conn, chunk, bytes);
            await conn.closeWrite();
          })(),
          aborted,
        ]);
        const result = await Promise.race([sink.done, aborted]);
        const elapsedMs = performance.now() - started;
        checkReceived(result, bytes, 1);
        return megabytesPerSecond(bytes, elapsedMs);
      } finally {
        signal.removeEventListener("abort", onAbort);
        if (!signal.aborted) conn.close();
      }
    },
  };
}

function yamuxCase(
  runner: SinkRunner,
  chunk: Uint8Array,
  totalBytesWanted: number,
  streams: number,
): BenchCase {
  const bytesPerStream = Math.floor(totalBytesWanted / streams);
  const bytes = bytesPerStream * streams;
  return {
    name: `yamux ${streams} stream${streams === 1 ? "" : "s"}`,
    metric: "throughput",
    unit: "MB/s",
    baseline: "tcp raw",
    ...(streams === 1 ? { bar: { minRatio: 0.6 } } : streams === 8 ? { bar: { minRatio: 0.7 } } : {}),
    params: {
      totalBytes: bytes,
      streams,
      bytesPerStream,
      writeBytes: APP_IO_BYTES,
      readBytes: APP_IO_BYTES,
    },
    async run(signal) {
      const aborted = abortPromise(signal);
      aborted.catch(() => {});
      const sink = await runner.start({ kind: "yamux", streams, readBufferBytes: APP_IO_BYTES }, signal);
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: sink.port, transport: "tcp" });
      conn.setNoDelay(true);
      const session = new Session(conn, { role: "client" });
      const onAbort = () => void session.close();
      signal.addEventListener("abort", onAbort, { once: true });
      try {
        const started = performance.now();
        const sendOne = async () => {
          const stream: Stream = await session.open();
          try {
            await writeBytes(stream, chunk, bytesPerStream);
            await stream.closeWrite();
          } catch (error) {
            stream.reset();
            throw error;
          }
        };
        const senders: Promise<void>[] = [];
        for (let index = 0; index < streams; index++) senders.push(sendOne());
        await Promise.race([Promise.all(senders), aborted]);
        const result = await Promise.race([sink.done, aborted]);
        const elapsedMs = performance.now() - started;
        checkReceived(result, bytes, streams);
        return megabytesPerSecond(bytes, elapsedMs);
      } finally {
        signal.removeEventListener("abort", onAbort);
        await session.close();
      }
    },
  };
}

/** The mux section. */
export const muxSection: BenchSection = {
  name: "mux",
  description: "yamux throughput over loopback TCP vs raw TCP, and the frame codec vs a memory copy",
  runs: (context) => (context.quick ? 3 : 11),
  budgetMs: (context) => (context.quick ? 60_000 : 150_000),
  runTimeoutMs: (context) => (context.quick ? 30_000 : 60_000),
  setup(context): Promise<SectionInstance> {
    const runner: SinkRunner = context.topology === "worker"
      ? new WorkerSinkRunner()
      : new InlineSinkRunner();
    const chunk = payloadChunk();
    const bytes = totalBytes(context);
    const cases: BenchCase[] = [
      rawTcpCase(runner, chunk, bytes, "tcp raw", { write: APP_IO_BYTES, read: APP_IO_BYTES }),
      rawTcpCase(runner, chunk, bytes, "tcp raw 1 MiB I/O", { write: LARGE_IO_BYTES, read: LARGE_IO_BYTES }),
      yamuxCase(runner, chunk, bytes, 1),
      yamuxCase(runner, chunk, bytes, 8),
      yamuxCase(runner, chunk, bytes, 1000),
      ...codecCases(context),
    ];
    return Promise.resolve({
      cases,
      teardown: () => {
        runner.close();
        return Promise.resolve();
      },
    });
  },
};

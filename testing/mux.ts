/**
 * Helpers shared by the multiplexer's tests (not part of the public API).
 *
 * @module
 */

import { memoryPair } from "../lib/net/memory_pair.ts";
import type { DuplexConn } from "../lib/net/conn.ts";
import { FrameDecoder } from "../lib/mux/decoder.ts";
import type { Frame } from "../lib/mux/frame.ts";
import { writeHeader } from "../lib/mux/frame.ts";
import { HEADER_SIZE_BYTES } from "../lib/mux/constants.ts";
import { Session } from "../lib/mux/session.ts";
import type { Stream } from "../lib/mux/stream.ts";
import type { SessionOptions } from "../lib/mux/options.ts";

export { concatBytes, patternBytes, readAll, sha256Hex } from "./bytes.ts";

/** Options for both ends of a test pair (role is set per end). */
export type PairOptions = Omit<SessionOptions, "role">;

/** A client and a server session over an in-memory pair. */
export function memorySessions(
  clientOptions: PairOptions = {},
  serverOptions: PairOptions = clientOptions,
): { client: Session; server: Session; close: () => Promise<void> } {
  const [a, b] = memoryPair({ capacityBytes: 1024 * 1024 });
  const client = new Session(a, { role: "client", ...clientOptions });
  const server = new Session(b, { role: "server", ...serverOptions });
  return { client, server, close: () => closeAll(client, server) };
}

/** A client and a server session over TCP on 127.0.0.1 (port 0). */
export async function tcpSessions(
  clientOptions: PairOptions = {},
  serverOptions: PairOptions = clientOptions,
): Promise<{ client: Session; server: Session; close: () => Promise<void> }> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [a, b] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
    listener.accept(),
  ]);
  listener.close();
  const client = new Session(a, { role: "client", ...clientOptions });
  const server = new Session(b, { role: "server", ...serverOptions });
  return { client, server, close: () => closeAll(client, server) };
}

/** Closes `sessions` and waits until each is over. */
export async function closeAll(...sessions: Session[]): Promise<void> {
  await Promise.all(sessions.map((session) => session.close()));
}

/** Encodes one frame (header + optional payload). */
export function frameBytes(
  type: number,
  flags: number,
  streamId: number,
  length: number,
  payload: Uint8Array = new Uint8Array(0),
  version = 0,
): Uint8Array {
  const bytes = new Uint8Array(HEADER_SIZE_BYTES + payload.length);
  writeHeader(bytes, 0, type, flags, streamId, length, version);
  bytes.set(payload, HEADER_SIZE_BYTES);
  return bytes;
}

/**
 * A hand-driven peer over a raw in-memory end: writes frames we build and decodes what the session
 * sends, answering pings only when told to.
 */
export class RawPeer {
  readonly frames: Frame[] = [];
  readonly #decoder = new FrameDecoder();
  readonly #reading: Promise<void>;
  #ended = false;
  #waiters: Array<() => void> = [];

  /** @param conn the raw end; `read`: keep reading (false: never read, to block the session's writes) */
  constructor(readonly conn: DuplexConn, read = true) {
    this.#reading = read ? this.#readLoop() : Promise.resolve();
  }

  async #readLoop(): Promise<void> {
    const buffer = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const count = await this.conn.read(buffer);
        if (count === null) break;
        for (const frame of this.#decoder.decode(buffer.slice(0, count))) this.frames.push(frame);
        this.#wake();
      }
    } catch {
      // The end was closed under us: the test is over.
    }
    this.#ended = true;
    this.#wake();
  }

  #wake(): void {
    for (const wake of this.#waiters.splice(0)) wake();
  }

  /** True once the session's side closed the connection. */
  get ended(): boolean {
    return this.#ended;
  }

  /** Sends raw bytes. */
  async send(bytes: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < bytes.length) offset += await this.conn.write(bytes.subarray(offset));
  }

  /** Waits until a received frame satisfies `match` (or the connection ends); returns it or null. */
  async waitFor(match: (frame: Frame) => boolean, timeoutMs = 5000): Promise<Frame | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.frames.find(match);
      if (found !== undefined) return found;
      if (this.#ended || Date.now() > deadline) return null;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(deadline - Date.now(), 0));
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Closes the raw end and waits for the read loop. */
  async close(): Promise<void> {
    this.conn.close();
    await this.#reading;
  }
}

/** Rejects with a clear message if `promise` takes longer than `ms`. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The next stream `session` accepts (within 5 s); fails if the session ends instead. */
export async function accepted(session: Session): Promise<Stream> {
  const stream = await within(session.accept(), 5000, "accept()");
  if (stream === null) throw new Error("the session ended instead of accepting a stream");
  return stream;
}

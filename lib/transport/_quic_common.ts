/**
 * What both sides of the `"quic"` transport (`quic.ts`) share: its constants, the byte stream over one
 * bidirectional QUIC stream with its lingering close ({@linkcode QuicStreamConn}), and the freeing of
 * closed endpoints (see "Freeing" in `quic.ts`).
 *
 * @module
 */

import { exposeFullCollection, type FullCollection } from "../_gc.ts";
import type { DuplexConn } from "../net/conn.ts";
import { errorMessage } from "../text.ts";

/** The ALPN protocol both ends require; a QUIC peer offering anything else fails the handshake. */
export const QUIC_ALPN = "tls-tunnel/1";
/**
 * Connections the server holds in handshake at once (accepted, tunnel stream not yet arrived); beyond,
 * a new one is refused with no handshake state. The server's own pending limits apply below it.
 */
export const QUIC_MAX_PENDING_HANDSHAKES = 256;
/** A QUIC connection whose peer sent nothing for this long is closed (the smaller of both ends' values). */
export const QUIC_IDLE_TIMEOUT_MS = 30_000;
/** Both ends send a QUIC PING after this long without sending, so a quiet tunnel never idles out. */
export const QUIC_KEEPALIVE_INTERVAL_MS = 10_000;

/**
 * How long `close()` waits for the peer's FIN before closing the QUIC connection (which drops anything
 * unacknowledged); see {@linkcode QuicStreamConn}.
 */
export const QUIC_CLOSE_LINGER_MS = 2000;

/** Application close codes sent in the CONNECTION_CLOSE frame: a normal close. */
export const CLOSE_NORMAL = 0;
/** The server refused the connection (pending limits, shutting down). */
export const CLOSE_REFUSED = 1;
/** No tunnel stream within the handshake deadline. */
export const CLOSE_HANDSHAKE_TIMEOUT = 2;

/** Largest read taken from a QUIC stream at once. */
const READ_CHUNK_BYTES = 64 * 1024;

// ---------------------------------------------------------------------------------------------------
// Freeing endpoints

let fullCollection: Promise<FullCollection | null> | null = null;
let collectionTimer: ReturnType<typeof setTimeout> | undefined;

/** V8's full collection (`lib/_gc.ts`, as `cli/_idle_gc.ts` uses it), loaded once; null if refused. */
export function loadFullCollection(): Promise<FullCollection | null> {
  fullCollection ??= exposeFullCollection().catch(() => null);
  return fullCollection;
}

/** When the collections after an endpoint's close run, from its close: the connection ops settle first. */
const COLLECTION_DELAYS_MS = [0, 100, 1000];

/**
 * Closes `endpoint` and, once the caller's references are gone and its connections' last operations have
 * settled, collects garbage so that its UDP socket is really released (see the module doc): a full
 * collection of the small heap a tunnel keeps takes a few milliseconds, and runs only after a close.
 */
export function closeEndpoint(endpoint: Deno.QuicEndpoint): void {
  try {
    endpoint.close({ closeCode: CLOSE_NORMAL, reason: "" });
  } catch {
    // Already closed.
  }
  pendingCollections = [...COLLECTION_DELAYS_MS];
  if (collectionTimer === undefined) scheduleCollection(0);
}

let pendingCollections: number[] = [];

function scheduleCollection(elapsedMs: number): void {
  const next = pendingCollections.shift();
  if (next === undefined) return;
  collectionTimer = setTimeout(() => {
    collectionTimer = undefined;
    void loadFullCollection().then((collect) => {
      collect?.();
      if (collectionTimer === undefined) scheduleCollection(next);
    });
  }, Math.max(0, next - elapsedMs));
  // Never what keeps a process alive.
  Deno.unrefTimer(collectionTimer);
}

/** Closes a QUIC connection; safe on one already closed. */
export function closeConnection(conn: Deno.QuicConn, closeCode: number, reason: string): void {
  try {
    conn.close({ closeCode, reason });
  } catch {
    // Already closed.
  }
}

// ---------------------------------------------------------------------------------------------------
// The byte stream

/**
 * A {@linkcode DuplexConn} over one bidirectional QUIC stream. `closeWrite` sends the stream's FIN.
 * `close` sends the FIN after what is queued, but closing the QUIC connection at once would throw away
 * whatever was written and not yet acknowledged (a server's last answer before it closes, which TCP
 * would still deliver). So the connection is closed (`onClose`) once both FINs are known to have
 * crossed: at once when the peer's FIN came after ours; when it has not come, as soon as it does (the
 * peer sends it after reading ours, so everything we wrote has arrived); when it came before ours, the
 * peer closes the connection once it has read our FIN. Never later than {@linkcode QUIC_CLOSE_LINGER_MS}.
 */
export class QuicStreamConn implements DuplexConn {
  #conn: Deno.QuicConn | null;
  readonly #reader: ReadableStreamBYOBReader;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  #onClose: (() => void) | null;
  /** Our read buffer: a BYOB read transfers it and hands it back in its result. */
  #scratch: ArrayBuffer | null = new ArrayBuffer(READ_CHUNK_BYTES);
  #closed = false;
  #finished = false;
  #finSent = false;
  /** Whether the peer's FIN has been read, and whether ours had been sent by then. */
  #peerFin: "before-ours" | "after-ours" | null = null;

  constructor(conn: Deno.QuicConn, stream: Deno.QuicBidirectionalStream, onClose: () => void) {
    this.#conn = conn;
    this.#reader = stream.readable.getReader({ mode: "byob" });
    this.#writer = stream.writable.getWriter();
    this.#onClose = onClose;
    // A failed write or a cancelled read is seen through the calls; these must not end the process.
    this.#writer.closed.catch(() => {});
    this.#reader.closed.catch(() => {});
  }

  /** One read of at most `maxBytes` into our buffer; null at the end of the stream. */
  async #readChunk(maxBytes: number): Promise<Uint8Array | null> {
    const scratch = this.#scratch ?? new ArrayBuffer(READ_CHUNK_BYTES);
    this.#scratch = null;
    const result = await this.#reader.read(
      new Uint8Array(scratch, 0, Math.min(maxBytes, scratch.byteLength)),
    );
    const view = result.value;
    if (view !== undefined) this.#scratch = view.buffer as ArrayBuffer;
    if (result.done || view === undefined) {
      this.#peerFin ??= this.#finSent ? "after-ours" : "before-ours";
      return null;
    }
    return view;
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    if (this.#closed) return null;
    let view: Uint8Array | null;
    try {
      view = await this.#readChunk(buffer.length);
    } catch (error) {
      if (this.#closed) return null;
      throw new Deno.errors.ConnectionReset(`QUIC stream failed: ${errorMessage(error)}`, { cause: error });
    }
    if (view === null || this.#closed) return null;
    buffer.set(view);
    return view.length;
  }

  async write(data: Uint8Array): Promise<number> {
    if (this.#closed) throw new Deno.errors.BrokenPipe("The QUIC connection is closed");
    try {
      await this.#writer.write(data);
    } catch (error) {
      throw new Deno.errors.BrokenPipe(`QUIC stream write failed: ${errorMessage(error)}`, { cause: error });
    }
    return data.length;
  }

  async closeWrite(): Promise<void> {
    if (this.#closed || this.#finSent) return;
    this.#finSent = true;
    try {
      await this.#writer.close();
    } catch {
      // The stream or the connection is gone: nothing is left to end.
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (!this.#finSent) {
      this.#finSent = true;
      this.#writer.close().catch(() => {});
    }
    const finish = () => {
      if (this.#finished) return;
      this.#finished = true;
      clearTimeout(linger);
      this.#reader.cancel().catch(() => {});
      const onClose = this.#onClose;
      // Nothing here may keep the connection (and so its endpoint) reachable once it is closed.
      this.#onClose = null;
      this.#conn = null;
      onClose?.();
    };
    const linger = setTimeout(finish, QUIC_CLOSE_LINGER_MS);
    this.#conn?.closed.then(finish, finish);
    if (this.#peerFin === "after-ours") finish();
    else if (this.#peerFin === null) this.#drain().then(finish, finish);
    // "before-ours": the peer closes the connection once it has read our FIN.
  }

  /** Reads and drops what the peer still sends, until its FIN. */
  async #drain(): Promise<void> {
    while (!this.#finished && await this.#readChunk(READ_CHUNK_BYTES) !== null) {
      // Dropped: nobody reads a closed connection.
    }
  }
}

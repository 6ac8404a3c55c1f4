/**
 * The one seam between `Session` and `Stream`, so each side's needs of the other are listed here:
 * `StreamHost` is what a stream may ask of its session (the session hands it to every stream it
 * creates), `StreamPort` is what the session may ask of a stream (the stream's session-facing half,
 * which only the session holds; it stays off the public `Stream` surface). Also `SessionEnd`, how the
 * session's reader and writer end it.
 *
 * @module
 */

import type { MuxError, SessionCloseReason } from "./errors.ts";
import type { Stream } from "./stream.ts";
import type { SendSource } from "./writer.ts";

/** Smallest read the session makes straight into a reader's buffer (smaller pieces are copied). */
export const DIRECT_READ_MIN_BYTES = 32 * 1024;

/** What a stream may ask of its session. */
export interface StreamHost {
  /** Ceiling of a stream's receive window (auto-tuning stops there). */
  readonly maxStreamWindowBytes: number;
  /** Smoothed round-trip time of the session in ms (0 while unknown). */
  rttMs(): number;
  /** Queues a WindowUpdate frame for `streamId` with `flags` and `deltaBytes`; never blocks. */
  sendWindowUpdate(streamId: number, flags: number, deltaBytes: number): void;
  /** The stream has write data and send window: schedule its send side in the round-robin send queue. */
  wantsToSend(source: SendSource): void;
  /** The stream is finished in both directions (or reset): forget it. */
  streamDone(port: StreamPort): void;
}

/**
 * What the session may ask of a stream. (Its send side is handed over separately, as the writer's
 * {@linkcode SendSource}, when it has something to send.)
 */
export interface StreamPort {
  /** The stream id. */
  readonly id: number;
  /** The public stream this port belongs to. */
  readonly stream: Stream;

  // --- receive side, called by the reader loop ---------------------------------------------------
  /**
   * A data frame of `length` bytes starts: it must fit in the window we granted.
   *
   * @throws {ProtocolError} the peer exceeded our window or sent data after its FIN
   */
  onDataFrame(length: number): void;
  /**
   * Payload bytes of the current data frame: a view of the session's reusable read buffer (copied if
   * kept). `hold`: more of this frame follows and will be read straight into the same reader's buffer,
   * so do not resolve the read yet.
   */
  onData(payload: Uint8Array, hold: boolean): void;
  /**
   * The buffer to read the rest of the current data frame (`remainingFrameBytes`) straight into: the
   * unfilled part of the waiting reader's buffer, or free space of the stream's ring; null when a direct
   * read is not worth it.
   */
  directReadTarget(remainingFrameBytes: number): Uint8Array | null;
  /** The direct read into the target finished with `count` bytes (0 when the connection failed). */
  directReadDone(count: number): void;
  /**
   * True when no read waits but none has data queued either, i.e. the reader is most likely just
   * processing what it got and about to call `read()` again.
   */
  readerMayReturn(): boolean;
  /** From time to time: give drained receive storage back if nothing arrived since the last call. */
  releaseIdleBuffers(): void;

  // --- events -------------------------------------------------------------------------------------
  /** The peer granted `deltaBytes` more send window. */
  onWindowUpdate(deltaBytes: number): void;
  /**
   * The peer half-closed its direction (FIN).
   *
   * @throws {ProtocolError} on a second FIN
   */
  onRemoteFin(): void;
  /** The peer reset the stream (RST). */
  onRemoteReset(): void;
  /** The session ended with `error`: buffered data stays readable; everything else fails with it. */
  onSessionEnd(error: Error): void;
}

/** `error` as `Name: message` for error texts. */
export function errorText(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** How the session ends: what the reader and writer report, and what `Session.#terminate` takes. */
export interface SessionEnd {
  /** Why it ends. */
  reason: SessionCloseReason;
  /** The error that ends it abnormally (none for a normal end). */
  error?: MuxError;
  /** Queue GoAway with this code before closing (none if undefined). */
  goAwayCode?: number | undefined;
  /** Write queued frames and half-close (bounded by `closeFlushTimeoutMs`) before closing. */
  flush?: boolean;
}

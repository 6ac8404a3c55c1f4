/**
 * Session options, their defaults and their validation.
 *
 * @module
 */

import {
  DEFAULT_ACCEPT_BACKLOG,
  DEFAULT_KEEPALIVE_INTERVAL_MS,
  DEFAULT_KEEPALIVE_TIMEOUT_MS,
  DEFAULT_MAX_DATA_FRAME_BYTES,
  DEFAULT_MAX_STREAM_WINDOW_BYTES,
  DEFAULT_MAX_STREAMS,
  DEFAULT_MAX_UNACKED_OPENS,
  INITIAL_STREAM_WINDOW_BYTES,
  MAX_U32,
} from "./constants.ts";

/** Which end of the connection a session is: the client opens odd stream ids, the server even ones. */
export type SessionRole = "client" | "server";

/** Options of `new Session(conn, options)`. Every field but `role` has a default. */
export interface SessionOptions {
  /** `"client"` (odd stream ids from 1) or `"server"` (even stream ids from 2). */
  role: SessionRole;
  /** Inbound streams waiting for `accept()`; a SYN beyond this is answered with RST. Default 256. */
  acceptBacklog?: number;
  /** Live streams (both directions); `open()` beyond it rejects, an inbound SYN gets RST. Default 65536. */
  maxStreams?: number;
  /** Opened streams not yet acknowledged by the peer before `open()` waits. Default 256. */
  maxUnackedOpens?: number;
  /**
   * Our initial receive window per stream, at least the spec's 256 KiB (the peer always assumes 256 KiB;
   * any excess is granted on the SYN/ACK frame). Default 256 KiB.
   */
  initialStreamWindowBytes?: number;
  /** Ceiling of a stream's receive window under auto-tuning (see lib/mux/README.md). Default 16 MiB. */
  maxStreamWindowBytes?: number;
  /** Interval between keepalive pings; 0 disables keepalive. Default 10000. */
  keepaliveIntervalMs?: number;
  /** An unanswered keepalive ping ends the session after this long. Default 30000. */
  keepaliveTimeoutMs?: number;
  /** Largest data payload accepted in one inbound frame. Default: `maxStreamWindowBytes`. */
  maxFramePayloadBytes?: number;
  /** Largest data frame we send (also bounded by the peer's window). Default 256 KiB. */
  maxDataFrameBytes?: number;
  /** Size of the buffer the connection is read into. Default 1 MiB. */
  readBufferBytes?: number;
  /**
   * Bound of the outbound buffer: stream data is copied into a batch of at most this many bytes, written
   * with one `conn.write` while the next batch fills (so at most twice this is buffered). Default 1 MiB.
   */
  writeBatchBytes?: number;
  /**
   * Data frames of at least this many bytes are written to the connection straight from the caller's
   * buffer (two writes: header, payload) instead of being copied into the batch; 0 disables. Default 0.
   */
  zeroCopyMinBytes?: number;
  /** How long `close()` (or a protocol error) waits to flush queued frames before closing. Default 1000. */
  closeFlushTimeoutMs?: number;
  /**
   * How often streams that received nothing since the previous sweep give their drained receive storage
   * back (a stream keeps its storage while data flows, so a burst's storage goes 1–2 sweeps after it
   * ends). Default 5000.
   */
  idleBufferSweepMs?: number;
}

/** {@linkcode SessionOptions} with every default filled in. */
export type ResolvedSessionOptions = Required<SessionOptions>;

/** Default outbound batch size. */
export const DEFAULT_WRITE_BATCH_BYTES = 1024 * 1024;
/** Default read buffer size. */
export const DEFAULT_READ_BUFFER_BYTES = 256 * 1024;
/** Default zero-copy threshold (0: always copy into the batch). */
export const DEFAULT_ZERO_COPY_MIN_BYTES = 0;
/** Default flush time on close. */
export const DEFAULT_CLOSE_FLUSH_TIMEOUT_MS = 1000;
/** Default interval of the idle receive storage sweep. */
export const DEFAULT_IDLE_BUFFER_SWEEP_MS = 5000;

/**
 * Fills in defaults and checks every value.
 *
 * @throws {RangeError} naming the option, its value and the allowed range
 * @throws {TypeError} when `role` is neither "client" nor "server"
 */
export function resolveSessionOptions(options: SessionOptions): ResolvedSessionOptions {
  if (options.role !== "client" && options.role !== "server") {
    throw new TypeError(
      `yamux session role must be "client" or "server", got ${JSON.stringify(options.role)}`,
    );
  }
  const maxStreamWindowBytes = options.maxStreamWindowBytes ?? DEFAULT_MAX_STREAM_WINDOW_BYTES;
  const resolved: ResolvedSessionOptions = {
    role: options.role,
    acceptBacklog: options.acceptBacklog ?? DEFAULT_ACCEPT_BACKLOG,
    maxStreams: options.maxStreams ?? DEFAULT_MAX_STREAMS,
    maxUnackedOpens: options.maxUnackedOpens ?? DEFAULT_MAX_UNACKED_OPENS,
    initialStreamWindowBytes: options.initialStreamWindowBytes ?? INITIAL_STREAM_WINDOW_BYTES,
    maxStreamWindowBytes,
    keepaliveIntervalMs: options.keepaliveIntervalMs ?? DEFAULT_KEEPALIVE_INTERVAL_MS,
    keepaliveTimeoutMs: options.keepaliveTimeoutMs ?? DEFAULT_KEEPALIVE_TIMEOUT_MS,
    maxFramePayloadBytes: options.maxFramePayloadBytes ?? maxStreamWindowBytes,
    maxDataFrameBytes: options.maxDataFrameBytes ?? DEFAULT_MAX_DATA_FRAME_BYTES,
    readBufferBytes: options.readBufferBytes ?? DEFAULT_READ_BUFFER_BYTES,
    writeBatchBytes: options.writeBatchBytes ?? DEFAULT_WRITE_BATCH_BYTES,
    closeFlushTimeoutMs: options.closeFlushTimeoutMs ?? DEFAULT_CLOSE_FLUSH_TIMEOUT_MS,
    zeroCopyMinBytes: options.zeroCopyMinBytes ?? DEFAULT_ZERO_COPY_MIN_BYTES,
    idleBufferSweepMs: options.idleBufferSweepMs ?? DEFAULT_IDLE_BUFFER_SWEEP_MS,
  };
  requireInteger("acceptBacklog", resolved.acceptBacklog, 0, MAX_U32);
  requireInteger("maxStreams", resolved.maxStreams, 1, MAX_U32);
  requireInteger("maxUnackedOpens", resolved.maxUnackedOpens, 1, MAX_U32);
  requireInteger("maxStreamWindowBytes", resolved.maxStreamWindowBytes, INITIAL_STREAM_WINDOW_BYTES, MAX_U32);
  requireInteger(
    "initialStreamWindowBytes",
    resolved.initialStreamWindowBytes,
    INITIAL_STREAM_WINDOW_BYTES,
    resolved.maxStreamWindowBytes,
  );
  requireInteger("keepaliveIntervalMs", resolved.keepaliveIntervalMs, 0, 2 ** 31 - 1);
  requireInteger("keepaliveTimeoutMs", resolved.keepaliveTimeoutMs, 1, 2 ** 31 - 1);
  requireInteger("maxFramePayloadBytes", resolved.maxFramePayloadBytes, 1, MAX_U32);
  requireInteger("maxDataFrameBytes", resolved.maxDataFrameBytes, 1, MAX_U32);
  requireInteger("readBufferBytes", resolved.readBufferBytes, 1024, 2 ** 30);
  requireInteger("writeBatchBytes", resolved.writeBatchBytes, 16 * 1024, 2 ** 30);
  requireInteger("zeroCopyMinBytes", resolved.zeroCopyMinBytes, 0, MAX_U32);
  requireInteger("closeFlushTimeoutMs", resolved.closeFlushTimeoutMs, 0, 2 ** 31 - 1);
  requireInteger("idleBufferSweepMs", resolved.idleBufferSweepMs, 10, 2 ** 31 - 1);
  return resolved;
}

function requireInteger(name: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`yamux option ${name} must be an integer from ${min} to ${max}, got ${value}`);
  }
}

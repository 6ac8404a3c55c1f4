/**
 * The limits of an `RpcPeer` and of one call: defaults, option shapes and the checks that
 * refuse a timeout or count a caller got wrong.
 *
 * @module
 */

import type { RpcSchema } from "./schema.ts";

/** Default time a request waits for its response. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
/** Default number of incoming requests whose handlers may run at once. */
export const DEFAULT_MAX_CONCURRENT_REQUESTS = 64;
/** Default number of incoming notifications waiting for their handler before reading pauses. */
export const DEFAULT_MAX_QUEUED_NOTIFICATIONS = 1024;
/**
 * Frames waiting to be written beyond which the peer stops reading until they drain: a remote that
 * sends requests without reading the answers is slowed down instead of growing our memory.
 */
export const MAX_PENDING_WRITES = 1024;

/** Options of `RpcPeer`. */
export interface RpcPeerOptions {
  /** Largest frame body received or sent. Default 1 MiB. */
  maxFrameBytes?: number;
  /** Default timeout of `RpcPeer.request`; `Infinity` waits forever. Default 30 s. */
  requestTimeoutMs?: number;
  /** Incoming requests whose handlers may run at once. Default 64. */
  maxConcurrentRequests?: number;
  /** Incoming notifications that may wait for their handler before reading pauses. Default 1024. */
  maxQueuedNotifications?: number;
  /**
   * Start reading in the constructor (default `true`). Register handlers right after constructing,
   * before awaiting anything, or pass `false` and call `RpcPeer.start` once they are.
   */
  autoStart?: boolean;
}

/** Options of one `RpcPeer.request` call. */
export interface RequestOptions<T> {
  /** Overrides the peer's `requestTimeoutMs` for this call; `Infinity` waits forever. */
  timeoutMs?: number;
  /** Aborting rejects the call with the signal's reason (a late response is then ignored). */
  signal?: AbortSignal;
  /** Validates the result; a mismatch rejects with `RpcInvalidResultError`. */
  resultSchema?: RpcSchema<T>;
}

/** Longest delay `setTimeout` honours (larger ones fire at once). */
const MAX_TIMER_MS = 2_147_483_647;

/** Checks a timeout given by a caller. */
export function checkedTimeout(timeoutMs: number): number {
  if (!(timeoutMs > 0 && (timeoutMs <= MAX_TIMER_MS || timeoutMs === Infinity))) {
    throw new RangeError(
      `timeoutMs must be from 1 to ${MAX_TIMER_MS} milliseconds or Infinity, got ${timeoutMs}`,
    );
  }
  return timeoutMs;
}

/** Checks a positive count given by a caller. */
export function checkedCount(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(`${name} must be a positive integer, got ${value}`);
  }
  return value;
}

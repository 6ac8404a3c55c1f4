/**
 * Internal plumbing between `Session` and `Stream`: symbol-keyed methods keep the session-facing API
 * off the public `Stream` surface, and `StreamOwner` is what a stream may ask of its session.
 *
 * @module
 */

import type { Stream } from "./stream.ts";

/** Session → stream: a data frame of `length` bytes starts (`(length: number) => void`; checks the window). */
export const kOnDataFrame: unique symbol = Symbol("yamux.onDataFrame");
/** Session → stream: payload bytes of the current data frame (`(bytes: Uint8Array) => void`; copied if kept). */
export const kOnData: unique symbol = Symbol("yamux.onData");
/**
 * Session → stream: the unfilled part of the waiting reader's buffer, for the session to read the rest
 * of the current data frame straight into it (`(remainingFrameBytes: number) => Uint8Array | null`).
 */
export const kDirectReadTarget: unique symbol = Symbol("yamux.directReadTarget");
/** Session → stream: the direct read into the target finished with `count` bytes (`(count) => void`). */
export const kDirectReadDone: unique symbol = Symbol("yamux.directReadDone");
/**
 * Session → stream: true when no read waits but none has data queued either, i.e. the reader is most
 * likely just processing what it got and about to call `read()` again (`() => boolean`).
 */
export const kReaderMayReturn: unique symbol = Symbol("yamux.readerMayReturn");
/** Smallest read the session makes straight into a reader's buffer (smaller pieces are copied). */
export const DIRECT_READ_MIN_BYTES = 32 * 1024;
/**
 * Session → stream, from time to time: give drained receive storage back if nothing arrived since the last
 * call (`() => void`).
 */
export const kReleaseIdleBuffers: unique symbol = Symbol("yamux.releaseIdleBuffers");
/** Session → stream: the peer granted more send window (`(deltaBytes: number) => void`). */
export const kOnWindowUpdate: unique symbol = Symbol("yamux.onWindowUpdate");
/** Session → stream: the peer acknowledged the stream we opened. */
export const kOnAck: unique symbol = Symbol("yamux.onAck");
/** Session → stream: the peer half-closed its direction. */
export const kOnRemoteFin: unique symbol = Symbol("yamux.onRemoteFin");
/** Session → stream: the peer reset the stream. */
export const kOnRemoteReset: unique symbol = Symbol("yamux.onRemoteReset");
/** Session → stream: the session ended (`(error: Error) => void`). */
export const kOnSessionEnd: unique symbol = Symbol("yamux.onSessionEnd");
/** Session → stream: bytes of the pending write that may go out now (`() => number`). */
export const kSendableBytes: unique symbol = Symbol("yamux.sendableBytes");
/** Session → stream: takes the next `count` bytes of the pending write (`(count) => Uint8Array`). */
export const kTakeSendBytes: unique symbol = Symbol("yamux.takeSendBytes");
/**
 * Session → stream: takes the next `count` bytes of the pending write to be written straight from the
 * caller's buffer (`(count) => { bytes, written }`); the write resolves only after `written()`.
 */
export const kTakeSendBytesZeroCopy: unique symbol = Symbol("yamux.takeSendBytesZeroCopy");
/** Session → stream: whether the stream waits for the peer's ACK (counts against unacked opens). */
export const kAwaitingAck: unique symbol = Symbol("yamux.awaitingAck");
/** Session → stream: whether the stream sits in the session's send queue. */
export const kQueued: unique symbol = Symbol("yamux.queued");

/** What a stream may ask of its session. */
export interface StreamOwner {
  /** Ceiling of a stream's receive window (auto-tuning stops there). */
  readonly maxStreamWindowBytes: number;
  /** Smoothed round-trip time of the session in ms (0 while unknown). */
  rttMs(): number;
  /** Queues a WindowUpdate frame for `streamId` with `flags` and `deltaBytes`; never blocks. */
  sendWindowUpdate(streamId: number, flags: number, deltaBytes: number): void;
  /** The stream has write data and send window: schedule it in the round-robin send queue. */
  wantsToSend(stream: Stream): void;
  /** The stream is finished in both directions (or reset): forget it. */
  streamDone(stream: Stream): void;
}

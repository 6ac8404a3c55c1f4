/**
 * Typed errors of the multiplexer. Protocol errors carry the GoAway code they make the session send,
 * so the mapping between what went wrong and what goes on the wire lives in one place.
 *
 * @module
 */

import { GoAwayCode, type GoAwayCodeValue } from "./constants.ts";

/** Base class of every error the multiplexer raises. */
export class MuxError extends Error {
  override name = "MuxError";
}

/** The peer (or a frame) broke the yamux protocol; the session sends GoAway(`goAwayCode`) and ends. */
export class ProtocolError extends MuxError {
  override name = "ProtocolError";
  /** The GoAway code sent to the peer because of this error. */
  readonly goAwayCode: GoAwayCodeValue;

  /**
   * @param message what was violated, with the offending values
   * @param goAwayCode the code sent in the GoAway frame (default: protocol error)
   */
  constructor(
    message: string,
    goAwayCode: GoAwayCodeValue = GoAwayCode.ProtocolError,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.goAwayCode = goAwayCode;
  }
}

/** A stream was reset (RST), locally or by the peer; reads and writes on it fail with this. */
export class StreamResetError extends MuxError {
  override name = "StreamResetError";

  /**
   * @param streamId the stream that was reset
   * @param byPeer true when the peer sent the RST (e.g. it refused the stream), false for `reset()`
   */
  constructor(readonly streamId: number, readonly byPeer: boolean) {
    super(
      byPeer
        ? `yamux stream ${streamId} was reset by the peer (it refused or aborted the stream)`
        : `yamux stream ${streamId} was reset locally by reset()`,
    );
  }
}

/** A write (or read) on a stream whose direction was already closed locally. */
export class StreamClosedError extends MuxError {
  override name = "StreamClosedError";

  /** @param streamId the stream used after close */
  constructor(readonly streamId: number, message: string) {
    super(message);
  }
}

/** Why a session ended. */
export type SessionCloseReason =
  /** `close()` was called. */
  | "local-close"
  /** The peer closed the connection cleanly (end of stream at a frame boundary). */
  | "remote-closed"
  /** Reading or writing the connection failed (or it ended inside a frame). */
  | "conn-error"
  /** We detected a protocol violation and sent GoAway(protocol error). */
  | "protocol-error"
  /** The peer sent GoAway with an error code (1 protocol error, 2 internal error, or other). */
  | "remote-goaway"
  /** A keepalive ping went unanswered past `keepaliveTimeoutMs`. */
  | "keepalive-timeout";

/** An operation was attempted on (or interrupted by the end of) a session that is over. */
export class SessionClosedError extends MuxError {
  override name = "SessionClosedError";

  /**
   * @param reason why the session ended
   * @param options `cause`: the error that ended it, when there was one
   */
  constructor(readonly reason: SessionCloseReason, message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/** The peer did not answer a keepalive ping in time; the session was closed. */
export class KeepaliveTimeoutError extends MuxError {
  override name = "KeepaliveTimeoutError";

  /**
   * @param intervalMs the keepalive interval in force
   * @param timeoutMs how long the ping went unanswered
   */
  constructor(readonly intervalMs: number, readonly timeoutMs: number) {
    super(
      `yamux keepalive ping got no answer within ${timeoutMs} ms (pings every ${intervalMs} ms); ` +
        `the peer or the network path is dead, so the session was closed`,
    );
  }
}

/** The peer sent GoAway: no new streams may be opened; a non-zero code also ended the session. */
export class RemoteGoAwayError extends MuxError {
  override name = "RemoteGoAwayError";

  /** @param code the GoAway code the peer sent (0 normal, 1 protocol error, 2 internal error) */
  constructor(readonly code: GoAwayCodeValue) {
    super(
      `the yamux peer sent GoAway with code ${code} (${
        describeGoAwayCode(code)
      }); no new streams can be opened`,
    );
  }
}

/** Opening a stream would exceed a limit (live streams, or stream ids exhausted). */
export class StreamLimitError extends MuxError {
  override name = "StreamLimitError";

  /** @param limit the limit that was hit */
  constructor(readonly limit: number, message: string) {
    super(message);
  }
}

/** Describes a GoAway code in words, for messages. */
export function describeGoAwayCode(code: GoAwayCodeValue): string {
  switch (code) {
    case GoAwayCode.Normal:
      return "normal";
    case GoAwayCode.ProtocolError:
      return "protocol error";
    case GoAwayCode.InternalError:
      return "internal error";
    default:
      return "unknown code";
  }
}

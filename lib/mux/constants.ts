/**
 * Wire constants of the yamux protocol (hashicorp/yamux `spec.md`) and this implementation's defaults.
 *
 * @module
 */

/** The only protocol version defined by the spec; every header starts with it. */
export const PROTOCOL_VERSION = 0;

/** Size of every frame header in bytes: version u8, type u8, flags u16, stream id u32, length u32. */
export const HEADER_SIZE_BYTES = 12;

/** Frame types (header byte 1). */
export const FrameType = {
  /** Stream data; `length` payload bytes follow the header. */
  Data: 0,
  /** Grows the receiver's send window by `length` bytes; carries no payload. */
  WindowUpdate: 1,
  /** Liveness / RTT probe on stream 0; `length` is an opaque value echoed back. */
  Ping: 2,
  /** Session termination notice on stream 0; `length` is a {@linkcode GoAwayCode}. */
  GoAway: 3,
} as const;

/** One of the values of {@linkcode FrameType}. */
export type FrameTypeValue = typeof FrameType[keyof typeof FrameType];

/** Header flags (a u16 bitmask, header bytes 2-3). */
export const Flag = {
  /** Opens a stream (or requests a ping). */
  SYN: 1,
  /** Acknowledges a stream opening (or answers a ping). */
  ACK: 2,
  /** Half-closes the sender's direction of the stream. */
  FIN: 4,
  /** Resets (aborts) the stream in both directions. */
  RST: 8,
} as const;

/** Every flag bit the spec defines; any other bit set in a header is a protocol error here. */
export const KNOWN_FLAGS_MASK = Flag.SYN | Flag.ACK | Flag.FIN | Flag.RST;

/** GoAway codes (the `length` field of a GoAway frame). */
export const GoAwayCode = {
  /** Normal termination: no new streams, existing ones may finish. */
  Normal: 0,
  /** The sender saw a protocol violation. */
  ProtocolError: 1,
  /** The sender hit an internal error. */
  InternalError: 2,
} as const;

/** A GoAway code: one of {@linkcode GoAwayCode}, or any other u32 a peer may send. */
export type GoAwayCodeValue = number;

/** The session-level stream id; only Ping and GoAway frames use it. */
export const SESSION_STREAM_ID = 0;

/** First stream id the client role opens (client ids are odd). */
export const FIRST_CLIENT_STREAM_ID = 1;

/** First stream id the server role opens (server ids are even). */
export const FIRST_SERVER_STREAM_ID = 2;

/** Largest value of a u32 header field (stream id, length). */
export const MAX_U32 = 0xffff_ffff;

/** The spec's initial per-stream window, per direction, that both sides assume when a stream opens. */
export const INITIAL_STREAM_WINDOW_BYTES = 256 * 1024;

/** Default ceiling of a stream's receive window once auto-tuning has grown it. */
export const DEFAULT_MAX_STREAM_WINDOW_BYTES = 16 * 1024 * 1024;

/** Default number of inbound streams waiting for `accept()` before further SYNs are reset. */
export const DEFAULT_ACCEPT_BACKLOG = 256;

/** Default limit of live streams (both directions) in one session. */
export const DEFAULT_MAX_STREAMS = 65_536;

/** Default number of our opened streams whose ACK has not arrived before `open()` waits. */
export const DEFAULT_MAX_UNACKED_OPENS = 256;

/** Default interval between keepalive pings. */
export const DEFAULT_KEEPALIVE_INTERVAL_MS = 10_000;

/** Default time a keepalive ping may stay unanswered before the session is declared dead. */
export const DEFAULT_KEEPALIVE_TIMEOUT_MS = 30_000;

/** Default largest data frame we send (also bounded by the peer's window). */
export const DEFAULT_MAX_DATA_FRAME_BYTES = 256 * 1024;

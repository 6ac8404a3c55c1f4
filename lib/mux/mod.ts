/**
 * The in-house yamux multiplexer (hashicorp/yamux wire format): frame codec, incremental decoder,
 * sessions and streams. See lib/mux/README.md for defaults, flow control and deviations from the spec.
 *
 * @module
 */

export * from "./constants.ts";
export * from "./errors.ts";
export { decodeHeader, encodeHeader, type Frame, type FrameHeader, writeHeader } from "./frame.ts";
export {
  DEFAULT_MAX_FRAME_PAYLOAD_BYTES,
  FrameDecoder,
  type FrameDecoderOptions,
  type FrameSegment,
  headerProblem,
} from "./decoder.ts";
export {
  DEFAULT_CLOSE_FLUSH_TIMEOUT_MS,
  DEFAULT_READ_BUFFER_BYTES,
  DEFAULT_WRITE_BATCH_BYTES,
  DEFAULT_ZERO_COPY_MIN_BYTES,
  type ResolvedSessionOptions,
  resolveSessionOptions,
  type SessionOptions,
  type SessionRole,
} from "./options.ts";
export { Session } from "./session.ts";
export { Stream } from "./stream.ts";

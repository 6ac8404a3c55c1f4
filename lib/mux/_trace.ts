/**
 * Frame tracing for `-vv`: one trace record per frame sent or received (type, flags, stream id, length;
 * never a payload), under the category `tls-tunnel.mux`. Whether trace is on is asked once per session,
 * so that a session without tracing pays one null check per frame and builds no strings.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { Flag, FrameType } from "./constants.ts";
import type { FrameHeader } from "./frame.ts";

const logger = getLogger(["tls-tunnel", "mux"]);

/** Records one frame: `sent` or `received`, and its header fields. */
export type FrameTrace = (
  direction: "sent" | "received",
  type: number,
  flags: number,
  streamId: number,
  length: number,
) => void;

const TYPE_NAMES: Readonly<Record<number, string>> = {
  [FrameType.Data]: "DATA",
  [FrameType.WindowUpdate]: "WINDOW_UPDATE",
  [FrameType.Ping]: "PING",
  [FrameType.GoAway]: "GO_AWAY",
};

/** `SYN|ACK`, or `-` for none. */
function flagNames(flags: number): string {
  const names: string[] = [];
  if (flags & Flag.SYN) names.push("SYN");
  if (flags & Flag.ACK) names.push("ACK");
  if (flags & Flag.FIN) names.push("FIN");
  if (flags & Flag.RST) names.push("RST");
  return names.length > 0 ? names.join("|") : "-";
}

/**
 * The tracer of a session with `role`, or null when trace records are not logged (the common case:
 * callers then skip tracing with a single null check).
 */
export function frameTracer(role: "client" | "server"): FrameTrace | null {
  if (!logger.isEnabledFor("trace")) return null;
  return (direction, type, flags, streamId, length) => {
    // length: payload bytes for DATA, the window delta, ping opaque value or GoAway code otherwise.
    logger.trace("yamux {direction} {type} flags={flags} stream={streamId} length={length}", {
      role,
      direction,
      type: TYPE_NAMES[type] ?? String(type),
      flags: flagNames(flags),
      streamId,
      length,
    });
  };
}

/** Records a received frame's header. */
export function traceReceived(trace: FrameTrace, header: FrameHeader): void {
  trace("received", header.type, header.flags, header.streamId, header.length);
}

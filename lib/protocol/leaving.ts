/**
 * A client that stops (Ctrl-C, SIGTERM) leaves its server in order: both ends give the connections in
 * flight the same grace period.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { Session } from "../mux/mod.ts";
import { withTimeout } from "../_async.ts";

const logger = getLogger(["tls-tunnel", "client"]);

/**
 * How long connections in flight may go on once the client is told to stop (Ctrl-C, SIGTERM); the server
 * gives a client that sent GoAway as long before it resets what is still open.
 */
export const LEAVE_GRACE_MS = 5000;

/**
 * Leaves the server on Ctrl-C/SIGTERM: GoAway first, so the server releases the ports at once and sends
 * no new connections; then the streams in flight get {@linkcode LEAVE_GRACE_MS} to finish; then the
 * session closes (over TLS with close_notify), so the server logs a departure, not a lost connection.
 */
export async function leaveServer(session: Session, streams: Set<Promise<void>>): Promise<void> {
  if (session.isClosed) return;
  await withTimeout(session.goAway(), 1000, "GoAway to be sent").catch(() => {});
  if (streams.size > 0) {
    logger.info("Leaving: {count} connection(s) in flight get up to {secs} s to finish", {
      count: streams.size,
      secs: LEAVE_GRACE_MS / 1000,
    });
    await withTimeout(Promise.all([...streams]), LEAVE_GRACE_MS, "connections in flight to finish")
      .catch(() => {});
  }
  await session.close();
}

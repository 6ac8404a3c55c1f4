/**
 * The accept loop every listener here runs: hand each connection on, survive transient accept
 * failures (such as running out of file descriptors) with a short pause, and end when the listener is
 * closed.
 *
 * @module
 */

/** Options of {@linkcode acceptEach}. */
export interface AcceptEachOptions {
  /** Checked after each accept: once true, a just-accepted connection is closed and the loop ends. */
  stopped?: () => boolean;
  /** Told about each transient failure before the pause. */
  onError?: (error: unknown) => void;
  /**
   * Pause after a transient failure (default 50 ms), doubled after each further failure in a row up to
   * 1 s, so a persistent one (out of file descriptors) neither spins nor floods the log.
   */
  pauseMs?: number;
}

/**
 * Accepts connections from `listener` and passes each to `onConn` (which must not block) until the
 * listener is closed or `stopped()` holds. Never rejects.
 */
export async function acceptEach<C extends { close(): void }>(
  listener: { accept(): Promise<C> },
  onConn: (conn: C) => void,
  options: AcceptEachOptions = {},
): Promise<void> {
  const stopped = options.stopped ?? (() => false);
  const firstPauseMs = options.pauseMs ?? 50;
  let pauseMs = firstPauseMs;
  while (!stopped()) {
    let conn: C;
    try {
      conn = await listener.accept();
    } catch (error) {
      if (stopped() || error instanceof Deno.errors.BadResource || error instanceof Deno.errors.Interrupted) {
        return;
      }
      options.onError?.(error);
      await new Promise((resolve) => setTimeout(resolve, pauseMs));
      pauseMs = Math.min(pauseMs * 2, Math.max(firstPauseMs, 1000));
      continue;
    }
    pauseMs = firstPauseMs;
    if (stopped()) {
      try {
        conn.close();
      } catch {
        // Already closed.
      }
      return;
    }
    onConn(conn);
  }
}

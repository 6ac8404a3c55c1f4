/**
 * Outside connections another listener hands to a proxy's publication (a group's shared port, the HTTPS
 * vhost's SNI router), waiting for the proxy's accept loop: a waiting `accept()` takes one at once, else
 * at most {@linkcode MAX_QUEUED_CONNECTIONS} queue, beyond that (or once closed) `deliver` refuses.
 *
 * @module
 */

import type { OutsideConn } from "./proxy_kinds/kind.ts";

/** Connections handed to a publication and not yet taken by its accept loop, at most. */
export const MAX_QUEUED_CONNECTIONS = 256;

/** The queue between a listener that hands connections on and one proxy's accept loop. */
export class HandedConnections {
  readonly #queue: OutsideConn[] = [];
  #waiting: { resolve: (conn: OutsideConn) => void; reject: (error: Error) => void } | null = null;
  #closed = false;

  /** Whether {@linkcode close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Hands `conn` to the waiting accept, or queues it; false when closed or the queue is full. */
  deliver(conn: OutsideConn): boolean {
    if (this.#closed) return false;
    if (this.#waiting) {
      const waiting = this.#waiting;
      this.#waiting = null;
      waiting.resolve(conn);
      return true;
    }
    if (this.#queue.length >= MAX_QUEUED_CONNECTIONS) return false;
    this.#queue.push(conn);
    return true;
  }

  /** The next handed connection; once closed (and nothing queued), what `whenClosed()` returns. */
  accept(whenClosed: () => Promise<OutsideConn>): Promise<OutsideConn> {
    const queued = this.#queue.shift();
    if (queued) return Promise.resolve(queued);
    if (this.#closed) return whenClosed();
    return new Promise((resolve, reject) => {
      this.#waiting = { resolve, reject };
    });
  }

  /**
   * Refuses further connections; returns those still queued (the caller closes or re-routes them) and the
   * rejection of the accept waiting now, if one is (the caller rejects it when it sees fit).
   */
  close(): { queued: OutsideConn[]; rejectWaiting: ((error: Error) => void) | null } {
    this.#closed = true;
    const waiting = this.#waiting;
    this.#waiting = null;
    return { queued: this.#queue.splice(0), rejectWaiting: waiting?.reject ?? null };
  }
}

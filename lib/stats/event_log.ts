/**
 * A bounded log of recent events (connections, disconnections, notifications) for the dashboard.
 *
 * @module
 */

import type { EventSnapshot } from "./snapshot.ts";

/** Keeps the newest `capacity` events; listeners hear each one as it is added. */
export class EventLog {
  readonly #events: EventSnapshot[] = [];
  readonly #listeners = new Set<(event: EventSnapshot) => void>();

  constructor(readonly capacity = 100) {}

  /** Records an event and tells the listeners. */
  add(event: Omit<EventSnapshot, "time_ms"> & { time_ms?: number }): void {
    const full: EventSnapshot = { ...event, time_ms: event.time_ms ?? Date.now() };
    this.#events.push(full);
    if (this.#events.length > this.capacity) this.#events.shift();
    for (const listener of this.#listeners) {
      try {
        listener(full);
      } catch {
        // A failing listener (a closed SSE stream) must not stop the others.
      }
    }
  }

  /** The events kept, oldest first. */
  recent(): EventSnapshot[] {
    return [...this.#events];
  }

  /** Subscribes to new events; returns the unsubscribe function. */
  subscribe(listener: (event: EventSnapshot) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

/**
 * Server → client notifications that never hold up the code that raises them: a bounded queue
 * drained by one sender, and merging of repeated identical notifications, so a flapping port cannot
 * flood the client or its log.
 *
 * @module
 */

/** Sends one notification; may be slow or fail (the client may be gone). */
export type SendNotification = (method: string, params: Record<string, unknown>) => Promise<void>;

/** Options of {@linkcode Notifier}. */
export interface NotifierOptions {
  /** Notifications waiting to be sent before new ones are dropped (default 256). */
  maxQueued?: number;
  /** Identical notifications within this window after one was sent are merged into one (default 5000). */
  mergeWindowMs?: number;
}

interface Held {
  method: string;
  params: Record<string, unknown>;
  /** Occurrences merged into this one. */
  count: number;
}

/** A bounded, merging notification queue for one client. */
export class Notifier {
  readonly #send: SendNotification;
  readonly #maxQueued: number;
  readonly #mergeWindowMs: number;
  readonly #queue: Array<{ method: string; params: Record<string, unknown> }> = [];
  readonly #lastSentMs = new Map<string, number>();
  readonly #held = new Map<string, Held>();
  readonly #timers = new Map<string, ReturnType<typeof setTimeout>>();
  #draining = false;
  #closed = false;
  /** Notifications dropped because the queue was full. */
  dropped = 0;
  /** Notifications merged into another. */
  merged = 0;

  constructor(send: SendNotification, options: NotifierOptions = {}) {
    this.#send = send;
    this.#maxQueued = options.maxQueued ?? 256;
    this.#mergeWindowMs = options.mergeWindowMs ?? 5000;
  }

  /**
   * Queues a notification; returns at once. `mergeKey` identifies "the same" notification: while one
   * with this key was sent less than the merge window ago, further ones are held and sent as one at
   * the window's end, with `data.repeat_count` saying how many it stands for.
   */
  push(method: string, params: Record<string, unknown>, mergeKey?: string): void {
    if (this.#closed) return;
    if (mergeKey === undefined) return this.#enqueue(method, params);
    const now = Date.now();
    const held = this.#held.get(mergeKey);
    if (held) {
      held.count++;
      held.params = params;
      this.merged++;
      return;
    }
    const last = this.#lastSentMs.get(mergeKey);
    if (last !== undefined && now - last < this.#mergeWindowMs) {
      this.#held.set(mergeKey, { method, params, count: 1 });
      const timer = setTimeout(() => this.#flushHeld(mergeKey), last + this.#mergeWindowMs - now);
      this.#timers.set(mergeKey, timer);
      return;
    }
    this.#lastSentMs.set(mergeKey, now);
    this.#enqueue(method, params);
  }

  #flushHeld(mergeKey: string): void {
    this.#timers.delete(mergeKey);
    const held = this.#held.get(mergeKey);
    this.#held.delete(mergeKey);
    if (!held || this.#closed) return;
    this.#lastSentMs.set(mergeKey, Date.now());
    const data = held.params.data;
    const params = held.count > 1
      ? {
        ...held.params,
        data: { ...(typeof data === "object" && data !== null ? data : {}), repeat_count: held.count },
      }
      : held.params;
    this.#enqueue(held.method, params);
  }

  #enqueue(method: string, params: Record<string, unknown>): void {
    if (this.#queue.length >= this.#maxQueued) {
      this.dropped++;
      return;
    }
    this.#queue.push({ method, params });
    if (!this.#draining) this.#drain();
  }

  async #drain(): Promise<void> {
    this.#draining = true;
    try {
      while (this.#queue.length > 0 && !this.#closed) {
        const next = this.#queue.shift();
        if (!next) break;
        try {
          await this.#send(next.method, next.params);
        } catch {
          // The client is gone or its control stream failed; its session teardown follows.
        }
      }
    } finally {
      this.#draining = false;
    }
  }

  /** Drops everything pending and cancels merge timers. */
  close(): void {
    this.#closed = true;
    this.#queue.length = 0;
    for (const timer of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    this.#held.clear();
  }
}

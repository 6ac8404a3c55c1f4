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
  /** The ordering scope (a proxy) it belongs to. */
  scope: string;
}

/**
 * Where a notification goes. `mergeKey` identifies "the same" notification (repeats of it are merged);
 * `scope` names what it is about (a proxy): notifications of one scope always reach the client in the
 * order they were raised, so the last one received tells the current state. `state`, when given, is
 * the state the notification reports (per scope and method): a notification whose state differs from
 * the previous one of its scope and method is a state change and is sent at once, after whatever was
 * held for the scope. `count` says whether a merged notification carries `data.repeat_count`
 * (push_exception) or the latest simply replaces the held one (proxy_status, whose shape has no count).
 */
export interface Routing {
  /** Identifies repeats of the same notification. */
  mergeKey: string;
  /** What the notification is about; defaults to the merge key. */
  scope?: string;
  /** The state it reports, if it reports one. */
  state?: string;
  /** Whether a merged notification says how many it stands for in `data.repeat_count` (default true). */
  count?: boolean;
}

/** A bounded, merging notification queue for one client. */
export class Notifier {
  readonly #send: SendNotification;
  readonly #maxQueued: number;
  readonly #mergeWindowMs: number;
  readonly #queue: Array<{ method: string; params: Record<string, unknown> }> = [];
  readonly #lastSentMs = new Map<string, number>();
  /** Held notifications by merge key, in the order of their latest occurrence. */
  readonly #held = new Map<string, Held>();
  readonly #timers = new Map<string, ReturnType<typeof setTimeout>>();
  readonly #counted = new Set<string>();
  /** The last state pushed per scope and method. */
  readonly #states = new Map<string, string>();
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
   * Queues a notification; returns at once. Without `routing` it is sent as is. With it, while one with
   * the same merge key was sent less than the merge window ago, further ones are held and sent as one
   * (the latest's params) at the window's end. A notification of a scope that is not a repeat of a held
   * one first sends everything held for that scope, so a newer state never arrives before an older one.
   */
  push(method: string, params: Record<string, unknown>, routing?: Routing): void {
    if (this.#closed) return;
    if (routing === undefined) return this.#enqueue(method, params);
    const { mergeKey } = routing;
    const scope = routing.scope ?? mergeKey;
    if (routing.count === false) this.#counted.delete(mergeKey);
    else this.#counted.add(mergeKey);
    const now = Date.now();
    if (routing.state !== undefined) {
      const stateKey = `${scope}\u0000${method}`;
      const previous = this.#states.get(stateKey);
      this.#states.set(stateKey, routing.state);
      if (this.#states.size > 65_536) this.#states.clear();
      if (previous !== undefined && previous !== routing.state) {
        // A new state goes out at once, after what was held for this scope.
        this.#flushScope(scope);
        this.#lastSentMs.set(mergeKey, now);
        return this.#enqueue(method, params);
      }
    }
    const held = this.#held.get(mergeKey);
    if (held) {
      held.count++;
      held.params = params;
      this.merged++;
      // Re-inserted last: held notifications of a scope go out in the order of their latest occurrence.
      this.#held.delete(mergeKey);
      this.#held.set(mergeKey, held);
      return;
    }
    const last = this.#lastSentMs.get(mergeKey);
    if (last !== undefined && now - last < this.#mergeWindowMs) {
      this.#held.set(mergeKey, { method, params, count: 1, scope });
      const timer = setTimeout(() => this.#flushScope(scope), last + this.#mergeWindowMs - now);
      this.#timers.set(mergeKey, timer);
      return;
    }
    this.#flushScope(scope);
    this.#lastSentMs.set(mergeKey, now);
    if (this.#lastSentMs.size > 65_536) this.#forgetOldSends(now);
    this.#enqueue(method, params);
  }

  /** Sends everything held for `scope`, oldest state first. */
  #flushScope(scope: string): void {
    if (this.#closed) return;
    for (const [mergeKey, held] of [...this.#held]) {
      if (held.scope !== scope) continue;
      clearTimeout(this.#timers.get(mergeKey));
      this.#timers.delete(mergeKey);
      this.#held.delete(mergeKey);
      this.#lastSentMs.set(mergeKey, Date.now());
      const data = held.params.data;
      const params = this.#counted.has(mergeKey)
        ? {
          ...held.params,
          data: { ...(typeof data === "object" && data !== null ? data : {}), repeat_count: held.count },
        }
        : held.params;
      this.#enqueue(held.method, params);
    }
  }

  /** Keys sent longer ago than the window merge with nothing; forgetting them bounds the map. */
  #forgetOldSends(now: number): void {
    for (const [mergeKey, sentMs] of this.#lastSentMs) {
      if (now - sentMs >= this.#mergeWindowMs && !this.#held.has(mergeKey)) {
        this.#lastSentMs.delete(mergeKey);
        this.#counted.delete(mergeKey);
      }
    }
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
    this.#counted.clear();
    this.#states.clear();
  }
}

/**
 * One-at-a-time execution with a bounded backlog: what keeps a client's overlapping `register_proxies`
 * calls from interleaving across their awaits, and a pipelined flood of them from queueing unbounded work.
 *
 * @module
 */

/** Thrown by {@linkcode SerialQueue.run} when `limit` tasks are already running or waiting. */
export class SerialQueueFullError extends Error {
  override name = "SerialQueueFullError";
  constructor(
    /** Tasks that may be running or waiting at once. */
    readonly limit: number,
  ) {
    super(`${limit} tasks are already running or waiting; wait for one of them to finish`);
  }
}

/** Runs tasks one at a time, in the order they were handed in; at most `limit` running or waiting. */
export class SerialQueue {
  #tail: Promise<void> = Promise.resolve();
  #pending = 0;

  constructor(
    /** Tasks that may be running or waiting at once (at least 1). */
    readonly limit: number,
  ) {
    if (!Number.isInteger(limit) || limit < 1) {
      throw new RangeError(`SerialQueue limit must be a positive integer, got ${limit}`);
    }
  }

  /** Tasks running or waiting now. */
  get pending(): number {
    return this.#pending;
  }

  /**
   * Runs `task` once every task handed in before it has settled; resolves or rejects as it does.
   * A task that throws does not stop the ones after it.
   *
   * @throws {SerialQueueFullError} (synchronously) `limit` tasks are running or waiting; `task` is not run
   */
  run<T>(task: () => Promise<T>): Promise<T> {
    if (this.#pending >= this.limit) throw new SerialQueueFullError(this.limit);
    this.#pending++;
    const result = this.#tail.then(async () => {
      try {
        return await task();
      } finally {
        this.#pending--;
      }
    });
    this.#tail = result.then(() => {}, () => {});
    return result;
  }
}

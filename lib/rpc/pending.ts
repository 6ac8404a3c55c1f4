/**
 * The bookkeeping of an `RpcPeer`'s outgoing calls: request ids (never reused on one
 * connection) and, for each call not yet answered, how it settles: by its response, its timeout, its
 * caller's abort signal or the peer closing, whichever comes first.
 *
 * @module
 */

import type { JsonRpcId } from "./messages.ts";
import { RpcInvalidResultError, RpcTimeoutError } from "./peer_errors.ts";
import { type RpcSchema, toIssues } from "./schema.ts";

/** A request sent and not yet answered. */
export interface PendingRequest {
  /** Settles the call with the response's result. */
  resolve(result: unknown): void;
  /** Settles the call with an error (error response, timeout, abort, close). */
  reject(error: unknown): void;
}

/** The calls a peer has sent and not yet seen settled, by id. */
export class PendingRequests {
  /** Requests sent and awaiting a response, by id. */
  readonly #pending = new Map<JsonRpcId, PendingRequest>();
  /** Id of the next request sent; ids are never reused on one connection. */
  #nextId = 1;

  /** Requests still awaiting their response. */
  get size(): number {
    return this.#pending.size;
  }

  /** Takes the id of the next request. */
  nextId(): number {
    return this.#nextId++;
  }

  /** The call waiting for the response with `id`, if any. */
  get(id: JsonRpcId): PendingRequest | undefined {
    return this.#pending.get(id);
  }

  /**
   * Registers the call `id` and returns the promise its caller awaits. It settles once: with the
   * (validated) result, an error, `RpcTimeoutError` after `timeoutMs` (unless infinite), or the
   * signal's reason on abort; a later answer is ignored.
   */
  add<T>(
    id: number,
    method: string,
    timeoutMs: number,
    signal: AbortSignal | undefined,
    resultSchema: RpcSchema<T> | undefined,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const onAbort = () => settle(() => reject(signal?.reason));
      const settle = (finish: () => void) => {
        if (!this.#pending.delete(id)) return;
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        finish();
      };
      this.#pending.set(id, {
        resolve: (result) =>
          settle(() => {
            if (resultSchema === undefined) return resolve(result as T);
            const parsed = resultSchema.safeParse(result);
            if (parsed.success) resolve(parsed.data);
            else reject(new RpcInvalidResultError(method, toIssues(parsed.error.issues)));
          }),
        reject: (error) => settle(() => reject(error)),
      });
      if (Number.isFinite(timeoutMs)) {
        timer = setTimeout(() => settle(() => reject(new RpcTimeoutError(method, timeoutMs))), timeoutMs);
      }
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Rejects every call still waiting with `error` (the peer closed). */
  rejectAll(error: unknown): void {
    for (const pending of [...this.#pending.values()]) pending.reject(error);
    this.#pending.clear();
  }
}

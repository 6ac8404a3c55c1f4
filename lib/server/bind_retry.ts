/**
 * Binding a published port with retries: exponential backoff (2 s, 4 s, 8 s … capped), only for
 * errors that waiting can fix, with a report of every failed attempt.
 *
 * @module
 */

import type { BindRetryConfig } from "../config/types.ts";
import { sleep } from "../_async.ts";
import { BindError } from "../net/tcp.ts";

/** Delay before retry number `retry` (1-based): `initial × 2^(retry-1)`, capped at the maximum. */
export function bindRetryDelaySecs(retry: number, policy: BindRetryConfig): number {
  return Math.min(policy.maxDelaySecs, policy.initialDelaySecs * 2 ** Math.max(0, retry - 1));
}

/** The stricter of the server's policy and what a client asked for: a client may ask for less, never more. */
export function narrowPolicy(server: BindRetryConfig, requested?: Partial<BindRetryConfig>): BindRetryConfig {
  return {
    maxRetries: Math.min(server.maxRetries, requested?.maxRetries ?? Infinity),
    initialDelaySecs: Math.min(server.initialDelaySecs, requested?.initialDelaySecs ?? Infinity),
    maxDelaySecs: Math.min(server.maxDelaySecs, requested?.maxDelaySecs ?? Infinity),
  };
}

/** A failed attempt that will be retried. */
export interface BindRetryAttempt {
  /** Retries done so far, including the one being scheduled (1 after the first failure). */
  retryCount: number;
  /** The policy's `maxRetries`. */
  maxRetries: number;
  /** Seconds until the next attempt. */
  retryDelaySecs: number;
  /** Why the attempt failed. */
  error: BindError;
}

/** Options of {@linkcode bindWithRetry}. */
export interface BindWithRetryOptions<T> {
  /** One attempt: binds or throws (a `BindError` to be classified). */
  bind: () => T;
  /** Retry policy. */
  policy: BindRetryConfig;
  /** Stops retrying; the returned promise rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Called after each failed attempt that will be retried, before waiting. */
  onRetry?: (attempt: BindRetryAttempt) => void;
  /** The first attempt was already made by the caller and failed with this; start with its retry. */
  firstAttemptError?: BindError;
}

/**
 * Binds, retrying retryable failures per the policy. Resolves with the bound resource and the number
 * of retries it took; rejects with the last `BindError` when the error is permanent or retries are
 * exhausted.
 */
export async function bindWithRetry<T>(
  options: BindWithRetryOptions<T>,
): Promise<{ bound: T; retries: number }> {
  const { policy } = options;
  for (let retry = 0;; retry++) {
    options.signal?.throwIfAborted();
    try {
      if (retry === 0 && options.firstAttemptError) throw options.firstAttemptError;
      return { bound: options.bind(), retries: retry };
    } catch (error) {
      if (!(error instanceof BindError)) throw error;
      if (!error.retryable || retry >= policy.maxRetries) throw error;
      const retryDelaySecs = bindRetryDelaySecs(retry + 1, policy);
      options.onRetry?.({ retryCount: retry + 1, maxRetries: policy.maxRetries, retryDelaySecs, error });
      await sleep(retryDelaySecs * 1000, options.signal);
    }
  }
}

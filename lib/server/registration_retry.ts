/**
 * The background bind retry of a registered proxy whose single port is busy: the registration answers
 * "retrying" at once, then {@linkcode bindWithRetry} keeps trying with backoff while the client hears of
 * each failed attempt, of the recovery, or of the final failure (as a notice, a proxy status and a
 * server event).
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { BindRetryConfig } from "../config/types.ts";
import type { BindError } from "../net/tcp.ts";
import {
  type BindFailedNoticeData,
  type BindRecoveredNoticeData,
  type BindRetryNoticeData,
  NoticeCode,
  type ProxyRegistration,
  type PushExceptionParams,
} from "../protocol/control.ts";
import { formatHostPort } from "../net/address.ts";
import { bindWithRetry } from "./bind_retry.ts";
import type { ConnectedClient } from "./connected_client.ts";
import type { Publication } from "./proxy_kinds/kind.ts";
import type { PublishedProxy } from "./published_proxy.ts";
import { bindErrorCode } from "./registration_answers.ts";
import { errorMessage } from "../text.ts";

// The registrar's category: these lines are part of its story of a registration.
const logger = getLogger(["tls-tunnel", "server", "registrar"]);

/** One proxy to keep binding in the background, and how the registrar takes the outcome. */
export interface BackgroundBind {
  /** The client publishing the proxy; its signal stops the retries. */
  client: ConnectedClient;
  /** The proxy, claimed and published by the client, not yet listening. */
  published: PublishedProxy;
  /** Why the first bind failed (retryable). */
  firstError: BindError;
  /** The retry policy narrowed to what the client asked for. */
  policy: BindRetryConfig;
  /**
   * Hands a bound listener to the proxy, remembers the port and says so; null when the proxy was
   * stopped meanwhile (its session ended).
   */
  attach(listener: Publication, retries: number): ProxyRegistration | null;
  /** Tells the client (merged, never blocking) and records the server event. */
  announce(notice: PushExceptionParams): void;
}

/** The port is busy: answer "retrying" now and keep trying with backoff, reporting each attempt. */
export function retryBindInBackground(job: BackgroundBind): ProxyRegistration {
  const { client, published, firstError, policy, attach, announce } = job;
  const proxy = published.spec;
  let firstDelaySecs = policy.initialDelaySecs;
  const retrying = bindWithRetry({
    bind: () => published.bind(proxy.publish_port),
    policy,
    signal: client.signal,
    firstAttemptError: firstError,
    onRetry: (attempt) => {
      if (attempt.retryCount === 1) firstDelaySecs = attempt.retryDelaySecs;
      const message =
        `Proxy '${proxy.name}' bind failed (attempt ${attempt.retryCount}/${attempt.maxRetries}): ` +
        `${attempt.error.message}. Retrying in ${attempt.retryDelaySecs} s`;
      logger.warn(
        "Proxy '{proxy}' bind failed (attempt {attempt}/{maxAttempts}): {error}. Retrying in {secs} s",
        {
          proxy: proxy.name,
          client: client.name,
          attempt: attempt.retryCount,
          maxAttempts: attempt.maxRetries,
          error: attempt.error.message,
          secs: attempt.retryDelaySecs,
        },
      );
      published.stats.bindRetries++;
      published.stats.setStatus("unhealthy", attempt.error.message);
      client.notifyException({
        level: "warning",
        code: NoticeCode.bindRetry,
        message,
        data: {
          proxy_name: proxy.name,
          publish_addr: proxy.publish_addr,
          publish_port: proxy.publish_port,
          retry_count: attempt.retryCount,
          max_retries: attempt.maxRetries,
          retry_delay_secs: attempt.retryDelaySecs,
          error: attempt.error.message,
        } satisfies BindRetryNoticeData,
      });
      client.notifyStatus(published, {
        errorMessage: attempt.error.message,
        retryAfterSeconds: attempt.retryDelaySecs,
      });
    },
  });
  retrying.then(
    ({ bound, retries }) => {
      // A session that ended meanwhile stopped the proxy, which then closes the listener.
      if (!attach(bound, retries)) return;
      client.notifyException({
        level: "info",
        code: NoticeCode.bindRecovered,
        message: `Proxy '${proxy.name}' is listening on ` +
          `${formatHostPort(proxy.publish_addr, proxy.publish_port)} after ${retries} retries`,
        data: {
          proxy_name: proxy.name,
          publish_addr: proxy.publish_addr,
          publish_port: proxy.publish_port,
          retries,
        } satisfies BindRecoveredNoticeData,
      });
      client.notifyStatus(published);
    },
    (error: unknown) => {
      if (client.signal.aborted || published.stopped) return;
      const finalError = errorMessage(error);
      logger.error("Proxy {proxy} of {client} bind failed after {retries} retries: {error}", {
        proxy: proxy.name,
        client: client.name,
        retries: policy.maxRetries,
        error: finalError,
      });
      published.stats.setStatus("bind_failed", finalError);
      announce({
        level: "error",
        code: NoticeCode.bindFailed,
        message: `Proxy '${proxy.name}' bind failed after ${policy.maxRetries} retries: ${finalError}`,
        data: {
          proxy_name: proxy.name,
          publish_addr: proxy.publish_addr,
          publish_port: proxy.publish_port,
          max_retries: policy.maxRetries,
          final_error: finalError,
        } satisfies BindFailedNoticeData,
      });
      client.notifyStatus(published, { errorMessage: finalError });
    },
  );
  return {
    name: proxy.name,
    status: "retrying",
    publish_addr: proxy.publish_addr,
    publish_port: proxy.publish_port,
    code: bindErrorCode(firstError),
    reason: firstError.message,
    retry_after_seconds: firstDelaySecs,
  };
}

/**
 * Alerts: the server's events (a client gone, a port that could not be published…) POSTed as JSON to a
 * webhook. Sending never holds up the server: events queue (bounded) and go out one at a time, each
 * with a timeout; a webhook that is down costs a warning, not a stall.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { NotifyConfig } from "../config/types.ts";
import type { EventLog } from "../stats/event_log.ts";
import type { EventSnapshot } from "../stats/snapshot.ts";
import { errorMessage } from "../text.ts";

const logger = getLogger(["tls-tunnel", "server", "webhook"]);

/** Events waiting to be sent before new ones are dropped. */
const MAX_QUEUED_EVENTS = 100;

/** The JSON body of one webhook POST: the event as the dashboard lists it, with its time as ISO text. */
export type WebhookPayload = Omit<EventSnapshot, "time_ms"> & {
  /** ISO time of the event. */
  time: string;
  /** This server's tunnel address, to tell servers apart. */
  server: string;
};

/** Sends the configured events of `events` to the webhook until {@linkcode close}. */
export class WebhookNotifier {
  readonly #config: NotifyConfig;
  readonly #server: () => string;
  readonly #queue: WebhookPayload[] = [];
  readonly #unsubscribe: () => void;
  #sending: Promise<void> | null = null;
  #closed = false;
  /** Events delivered (2xx). */
  delivered = 0;
  /** Events that failed (error, timeout, non-2xx) or were dropped. */
  failed = 0;

  constructor(config: NotifyConfig, events: EventLog, serverAddr: () => string) {
    this.#config = config;
    this.#server = serverAddr;
    const wanted = new Set(config.events);
    this.#unsubscribe = events.subscribe((event) => {
      if (wanted.has(event.code)) this.#enqueue(event);
    });
  }

  #enqueue(event: EventSnapshot): void {
    if (this.#closed) return;
    if (this.#queue.length >= MAX_QUEUED_EVENTS) {
      this.failed++;
      return;
    }
    const payload: WebhookPayload = {
      time: new Date(event.time_ms).toISOString(),
      level: event.level,
      code: event.code,
      message: event.message,
      server: this.#server(),
    };
    if (event.client !== undefined) payload.client = event.client;
    if (event.data !== undefined) payload.data = event.data;
    this.#queue.push(payload);
    this.#sending ??= this.#drain().finally(() => (this.#sending = null));
  }

  async #drain(): Promise<void> {
    while (this.#queue.length > 0 && !this.#closed) {
      const payload = this.#queue.shift();
      if (payload) await this.#post(payload);
    }
  }

  async #post(payload: WebhookPayload): Promise<void> {
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (this.#config.webhookToken !== undefined) {
      headers.authorization = `Bearer ${this.#config.webhookToken}`;
    }
    try {
      const response = await fetch(this.#config.webhookUrl, {
        method: "POST",
        headers,
        body: JSON.stringify(payload),
        signal: AbortSignal.timeout(this.#config.timeoutSecs * 1000),
      });
      await response.body?.cancel();
      if (response.ok) {
        this.delivered++;
        return;
      }
      this.failed++;
      logger.warn("Webhook answered HTTP {status} to {code}; check server.notify.webhook_url", {
        status: response.status,
        code: payload.code,
      });
    } catch (error) {
      this.failed++;
      logger.warn("Webhook POST of {code} failed: {error}; check server.notify.webhook_url", {
        code: payload.code,
        error: errorMessage(error),
      });
    }
  }

  /** Stops listening; waits for the POST in flight (bounded by its timeout); drops the rest. */
  async close(): Promise<void> {
    this.#unsubscribe();
    this.#closed = true;
    this.#queue.length = 0;
    await this.#sending;
  }
}

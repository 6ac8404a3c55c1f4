/**
 * `GET /api/events`: server-sent events for the dashboard. Each stream gets `retry: 2000`, a `snapshot`
 * at once, then one every push interval, a `notice` for each new event of the {@linkcode EventLog},
 * and a fresh `snapshot` shortly after each burst of events.
 *
 * Every stream has an owner and a bound: at most {@linkcode MAX_EVENT_STREAMS} are open at once (more
 * get 503), a reader that stops reading is dropped once `MAX_QUEUED_EVENT_CHUNKS` chunks wait
 * for it, and {@linkcode EventStreams.closeAll} ends them all when the endpoint stops.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { EventLog } from "./event_log.ts";
import type { EventSnapshot, ServedStats } from "./snapshot.ts";
import { COMMON_HEADERS, json } from "./http_responses.ts";

const logger = getLogger(["tls-tunnel", "stats"]);

/** Most `/api/events` streams open at once; more get 503 (each costs a timer and a snapshot per second). */
export const MAX_EVENT_STREAMS = 32;
/** Delay of the snapshot pushed after an event, so a burst of events costs one snapshot. */
const EVENT_SNAPSHOT_DELAY_MS = 50;
/** Queued SSE chunks after which a reader is considered stuck and its stream is closed. */
const MAX_QUEUED_EVENT_CHUNKS = 64;

/** Options of {@linkcode EventStreams}. */
export interface EventStreamsOptions {
  /** Takes a fresh snapshot with the endpoint's clock. */
  served: () => ServedStats;
  /** The events pushed as `notice`. */
  events: EventLog;
  /** How often each stream gets a snapshot. */
  pushIntervalMs: number;
}

/** The open `/api/events` streams of one endpoint. */
export class EventStreams {
  readonly #options: EventStreamsOptions;
  /** Closers of the open streams. */
  readonly #open = new Set<() => void>();

  /** Streams that push `options.served()` and `options.events`. */
  constructor(options: EventStreamsOptions) {
    this.#options = options;
  }

  /** The answer to `GET /api/events`: a new stream, or 503 when {@linkcode MAX_EVENT_STREAMS} are open. */
  open(): Response {
    if (this.#open.size >= MAX_EVENT_STREAMS) {
      return json(
        { error: `Too many open event streams (${MAX_EVENT_STREAMS}); close some dashboards` },
        503,
      );
    }
    const { served, events, pushIntervalMs } = this.#options;
    const streams = this.#open;
    const encoder = new TextEncoder();
    let close = () => {};
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        let closed = false;
        // The callback only runs after this function has defined `pushSnapshot`.
        const timer = setInterval(() => pushSnapshot(), pushIntervalMs);
        /** A snapshot due soon after an event; one for a burst of events. */
        let followUp: ReturnType<typeof setTimeout> | undefined;
        let unsubscribe = () => {};
        close = () => {
          if (closed) return;
          closed = true;
          clearInterval(timer);
          clearTimeout(followUp);
          unsubscribe();
          streams.delete(close);
          try {
            controller.close();
          } catch {
            // Already cancelled by the reader.
          }
        };
        const send = (event: string, data: unknown) => {
          if (closed) return;
          if ((controller.desiredSize ?? 0) < -MAX_QUEUED_EVENT_CHUNKS) {
            close();
            return;
          }
          controller.enqueue(encoder.encode(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`));
        };
        const pushSnapshot = () => {
          try {
            send("snapshot", served());
          } catch (error) {
            logger.warn("Taking a stats snapshot failed: {error}", { error: String(error) });
          }
        };
        streams.add(close);
        controller.enqueue(encoder.encode(`retry: 2000\n\n`));
        pushSnapshot();
        unsubscribe = events.subscribe((event: EventSnapshot) => {
          send("notice", event);
          followUp ??= setTimeout(() => {
            followUp = undefined;
            pushSnapshot();
          }, EVENT_SNAPSHOT_DELAY_MS);
        });
      },
      cancel() {
        close();
      },
    });
    return new Response(body, {
      headers: {
        ...COMMON_HEADERS,
        "content-type": "text/event-stream; charset=utf-8",
        "x-accel-buffering": "no",
      },
    });
  }

  /** Ends every open stream (the endpoint is stopping). */
  closeAll(): void {
    for (const close of [...this.#open]) close();
  }
}

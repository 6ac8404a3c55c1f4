/**
 * Streams the **client** opens on its session after authenticating (visitors, forwarders; protocol
 * README §5b): each starts with an open request (`open_request.ts`), which is read within
 * {@linkcode OPEN_REQUEST_TIMEOUT_MS}, dispatched by its `kind` to the handler registered for it, and
 * answered on the same stream: `ok` then bytes both ways, or a refusal after which the stream is closed.
 *
 * The dispatcher knows no kind: a feature adds one with {@linkcode ClientStreamHandlers.register} (the
 * server registers `visit` in its constructor; forwarders register `forward` the same way). A kind nobody
 * registered is answered `DISABLED`, a request that does not parse `BAD_REQUEST`. Every stream a client
 * holds open this way counts against its limit ({@linkcode ClientStreamLimits.maxStreamsPerClient}) from
 * the moment it is accepted until it is over; beyond the limit a new one is answered `LIMIT` at once.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { Stream } from "../mux/mod.ts";
import { writeAll } from "../net/conn.ts";
import {
  encodeOpenReply,
  type OpenKind,
  type OpenRefusalCode,
  type OpenRequest,
  OpenRequestError,
  readOpenRequest,
} from "../protocol/open_request.ts";
import { abortQuietly, closeQuietly } from "../transport/pipe.ts";
import { sleep, TimeoutError, withTimeout } from "../_async.ts";
import { errorMessage } from "../text.ts";
import type { ConnectedClient } from "./connected_client.ts";

const logger = getLogger(["tls-tunnel", "server", "client-streams"]);

/** How long a client-opened stream may take to send its open request before it is refused and closed. */
export const OPEN_REQUEST_TIMEOUT_MS = 10_000;
/** How long a refused stream waits for the client's end (its FIN) before it is reset. */
export const REFUSED_LINGER_MS = 2_000;
/** How long writing the reply may take (it is a few bytes; a client that never reads gets a reset). */
const REPLY_WRITE_TIMEOUT_MS = 5_000;

/** A refusal a handler returns: the code and the reason the client is told (and the server logs). */
export interface ClientStreamRefusal {
  /** Always false. */
  ok: false;
  /** The refusal code (§5b). */
  code: OpenRefusalCode;
  /** What the user should read on the client's side: what was refused and why. */
  reason: string;
}

/**
 * A handler's acceptance: the dispatcher answers `ok`, then hands the stream to `carry`, which owns it
 * (and what the handler prepared, such as a stream to another client) until it resolves. When the `ok`
 * cannot be written (the client went away), `abandon` frees what was prepared instead.
 */
export interface ClientStreamAcceptance {
  /** Always true. */
  ok: true;
  /** Carries the bytes; the stream is the client's, after the reply. Must not reject. */
  carry(stream: Stream): Promise<void>;
  /** Frees what the handler prepared, when `carry` will not be called. */
  abandon(): void;
}

/** What a handler decided. */
export type ClientStreamOutcome = ClientStreamAcceptance | ClientStreamRefusal;

/** Who opened the stream, for a handler's checks. */
export interface ClientStreamContext {
  /** The client whose session opened the stream. */
  client: ConnectedClient;
  /** The yamux stream id (odd), for logs. */
  streamId: number;
}

/**
 * Decides one open request of its kind. It is called with the request already validated; it may take
 * time (open a stream to another client, connect somewhere) and must not throw for a refusal: it
 * returns one. A throw is answered `UNREACHABLE` with the error's message and logged.
 */
export type ClientStreamHandler<K extends OpenKind> = (
  request: Extract<OpenRequest, { kind: K }>,
  context: ClientStreamContext,
) => Promise<ClientStreamOutcome>;

/** Counters of client-opened streams, by kind and result (`ok` or the refusal code), since start. */
export type ClientStreamCounts = Record<string, Record<string, number>>;

/** Limits of {@linkcode ClientStreamHandlers.serve}. */
export interface ClientStreamLimits {
  /**
   * Client-opened streams one session may hold at once (being decided or carrying); a function is read at
   * each new stream (a reloaded config applies to the next one).
   */
  maxStreamsPerClient: number | (() => number);
  /** How long the open request may take; default {@linkcode OPEN_REQUEST_TIMEOUT_MS}. */
  openRequestTimeoutMs?: number;
}

/** Refusals of one session logged per {@linkcode REFUSAL_LOG_WINDOW_MS}; the rest are counted, then summed up. */
export const REFUSAL_LOG_BURST = 20;
/** The window of {@linkcode REFUSAL_LOG_BURST}. */
export const REFUSAL_LOG_WINDOW_MS = 10_000;

/**
 * The refusals of one session's streams as log lines, at most {@linkcode REFUSAL_LOG_BURST} per window: a
 * client that opens refused streams in a loop cannot flood the log (every refusal is still counted).
 */
class RefusalLog {
  #windowStartMs = Number.NEGATIVE_INFINITY;
  #logged = 0;
  #suppressed = 0;

  constructor(readonly client: string) {}

  /** Logs `message` at `level` (with `properties`) unless this window's burst is used up. */
  log(level: "info" | "warn", message: string, properties: Record<string, unknown>): void {
    const nowMs = performance.now();
    if (nowMs - this.#windowStartMs >= REFUSAL_LOG_WINDOW_MS) {
      if (this.#suppressed > 0) {
        logger.warn(
          "{count} more refusals of streams opened by {client} were not logged (counted in " +
            "client_opened_streams)",
          { count: this.#suppressed, client: this.client },
        );
      }
      this.#windowStartMs = nowMs;
      this.#logged = 0;
      this.#suppressed = 0;
    }
    if (this.#logged >= REFUSAL_LOG_BURST) {
      this.#suppressed++;
      return;
    }
    this.#logged++;
    logger[level](message, properties);
  }
}

/** Result label of a stream refused before it had a kind (limit, timeout, malformed request). */
const UNKNOWN_KIND = "unknown";

/**
 * The registry of handlers by kind, and the dispatcher that serves one session's client-opened streams
 * with them. One per server; its counters are the server's.
 */
export class ClientStreamHandlers {
  readonly #handlers = new Map<OpenKind, ClientStreamHandler<OpenKind>>();
  /** Results by kind: `{visit: {ok: 3, denied: 1}}`; kind `unknown` for refusals before the request was read. */
  readonly counts: ClientStreamCounts = {};

  /** Registers the handler of `kind`, replacing any earlier one. */
  register<K extends OpenKind>(kind: K, handler: ClientStreamHandler<K>): void {
    this.#handlers.set(kind, handler as unknown as ClientStreamHandler<OpenKind>);
  }

  /** Whether a handler serves `kind`. */
  handles(kind: OpenKind): boolean {
    return this.#handlers.has(kind);
  }

  #count(kind: string, result: string): void {
    const byResult = this.counts[kind] ??= {};
    byResult[result] = (byResult[result] ?? 0) + 1;
  }

  /**
   * Accepts the streams `client`'s session opens until the session ends, serving each concurrently.
   * Resolves when the session is over and every stream it served has ended.
   */
  async serve(client: ConnectedClient, limits: ClientStreamLimits): Promise<void> {
    const open = new Set<Promise<void>>();
    const refusing = new Set<Promise<void>>();
    const refusals = new RefusalLog(client.name);
    for await (const stream of client.session) {
      const limit = typeof limits.maxStreamsPerClient === "function"
        ? limits.maxStreamsPerClient()
        : limits.maxStreamsPerClient;
      if (open.size >= limit) {
        this.#count(UNKNOWN_KIND, "limit");
        refusals.log(
          "warn",
          "Refused a stream opened by {client}: {count} client-opened streams are open, the limit " +
            "(max_client_streams) is {limit}",
          { client: client.name, count: open.size, limit },
        );
        // Answered, then released once the client ends it (or after the linger). At most `limit` such
        // refusals linger per session; beyond that a flood gets bare resets and holds nothing.
        if (refusing.size >= limit) {
          abortQuietly(stream);
          continue;
        }
        const refusal: Promise<void> = refuse(stream, {
          ok: false,
          code: "LIMIT",
          reason: `${open.size} streams of this client are open; the server's limit is ${limit} ` +
            `(max_client_streams)`,
        }).finally(() => refusing.delete(refusal));
        refusing.add(refusal);
        continue;
      }
      const task: Promise<void> = this.#serveOne(client, stream, limits, refusals)
        .catch((error) => {
          logger.error("Unexpected failure serving a stream of {client}: {error}", {
            client: client.name,
            error: errorMessage(error),
          });
          abortQuietly(stream);
        })
        .finally(() => open.delete(task));
      open.add(task);
    }
    await Promise.all([...open, ...refusing]);
  }

  async #serveOne(
    client: ConnectedClient,
    stream: Stream,
    limits: ClientStreamLimits,
    refusals: RefusalLog,
  ): Promise<void> {
    const timeoutMs = limits.openRequestTimeoutMs ?? OPEN_REQUEST_TIMEOUT_MS;
    let request: OpenRequest;
    try {
      request = await withTimeout(readOpenRequest(stream), timeoutMs, "the open request");
    } catch (error) {
      const timedOut = error instanceof TimeoutError;
      const reason = timedOut
        ? `no open request within ${timeoutMs / 1000} s`
        : error instanceof OpenRequestError
        ? error.message
        : `the stream failed before its open request: ${errorMessage(error)}`;
      this.#count(UNKNOWN_KIND, timedOut ? "timeout" : "bad_request");
      refusals.log("info", "Refused a stream opened by {client} (stream {id}): {reason}", {
        client: client.name,
        id: stream.id,
        reason,
      });
      // After a timeout a read is still pending on the stream: answer, then reset rather than drain.
      await refuse(stream, { ok: false, code: "BAD_REQUEST", reason }, {
        linger: !timedOut,
        signal: client.signal,
      });
      return;
    }
    const handler = this.#handlers.get(request.kind);
    if (!handler) {
      this.#count(request.kind, "disabled");
      const reason = `this server does not serve "${request.kind}" streams`;
      refusals.log("info", "Refused a {kind} stream of {client} (DISABLED): {reason}", {
        kind: request.kind,
        client: client.name,
        reason,
      });
      await refuse(stream, { ok: false, code: "DISABLED", reason });
      return;
    }
    let outcome: ClientStreamOutcome;
    try {
      outcome = await handler(request, { client, streamId: stream.id });
    } catch (error) {
      outcome = { ok: false, code: "UNREACHABLE", reason: errorMessage(error) };
      logger.warn("The {kind} handler failed for {client}: {error}", {
        kind: request.kind,
        client: client.name,
        error: errorMessage(error),
      });
    }
    if (!outcome.ok) {
      this.#count(request.kind, outcome.code.toLowerCase());
      refusals.log("info", "Refused a {kind} stream of {client} ({code}): {reason}", {
        kind: request.kind,
        client: client.name,
        code: outcome.code,
        reason: outcome.reason,
      });
      await refuse(stream, outcome);
      return;
    }
    try {
      await withTimeout(writeAll(stream, encodeOpenReply({ ok: true })), REPLY_WRITE_TIMEOUT_MS, "the reply");
    } catch (error) {
      this.#count(request.kind, "gone");
      logger.debug("Could not answer a {kind} stream of {client}: {error}", {
        kind: request.kind,
        client: client.name,
        error: errorMessage(error),
      });
      outcome.abandon();
      abortQuietly(stream);
      return;
    }
    this.#count(request.kind, "ok");
    await outcome.carry(stream);
  }
}

/**
 * Answers a refusal on `stream`, half-closes it, waits up to {@linkcode REFUSED_LINGER_MS} for the client
 * to end its side (discarding what it sends), then releases it (reset if the client did not end it).
 * With `linger: false` (a read is still pending on the stream) it is closed after the reply and reset once
 * the linger is over (a no-op when the client ended it meanwhile).
 */
export async function refuse(
  stream: Stream,
  refusal: ClientStreamRefusal,
  options: { linger?: boolean; signal?: AbortSignal } = {},
): Promise<void> {
  try {
    await withTimeout(
      writeAll(stream, encodeOpenReply({ ok: false, code: refusal.code, reason: refusal.reason })),
      REPLY_WRITE_TIMEOUT_MS,
      "the refusal",
    );
    await stream.closeWrite();
    if (options.linger === false) {
      // A read is pending: close() ends it and discards what comes; a reset right away could overtake the
      // reply (a reset stream drops what it buffered), so it only comes after the linger.
      closeQuietly(stream);
      // Cut short when the session ends (its streams end with it).
      await sleep(REFUSED_LINGER_MS, options.signal).catch(() => {});
      abortQuietly(stream);
      return;
    }
    await withTimeout(drain(stream), REFUSED_LINGER_MS, "the client's end of a refused stream");
    closeQuietly(stream);
  } catch {
    abortQuietly(stream);
  }
}

async function drain(stream: Stream): Promise<void> {
  const scratch = new Uint8Array(4096);
  while ((await stream.read(scratch)) !== null) {
    // Discarded: a refused stream carries nothing.
  }
}

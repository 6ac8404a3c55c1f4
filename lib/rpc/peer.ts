/**
 * A symmetric JSON-RPC 2.0 endpoint over one {@linkcode DuplexConn}: both sides call and serve.
 *
 * - Incoming requests run concurrently (a slow handler never delays other messages), bounded by
 *   `maxConcurrentRequests`; beyond it requests are answered at once with {@linkcode SERVER_OVERLOADED}.
 * - Incoming notifications are delivered to their handlers one at a time, in arrival order; reading
 *   pauses while `maxQueuedNotifications` are waiting, so a flood cannot grow memory without bound.
 * - Outgoing frames are written whole, one after another; while {@linkcode MAX_PENDING_WRITES} wait
 *   (the remote is not reading), reading pauses too.
 * - Bad input never stops the peer: unknown methods, invalid messages and malformed JSON are answered
 *   with the matching error response. Only an oversized or truncated frame, an I/O error or the end
 *   of the stream closes it, and {@linkcode RpcPeer.closeReason} then says which.
 * - The end of the remote's stream ends the session (half-close is not used on the control stream):
 *   the peer closes, rejecting its pending requests and aborting the handlers still running.
 *
 * The peer's parts live beside it: option defaults and checks (`peer_options.ts`), its errors
 * (`peer_errors.ts`), params and result validation (`schema.ts`), the handler registry (`handlers.ts`),
 * the bookkeeping of outgoing calls (`pending.ts`) and message tracing (`trace.ts`). This module keeps
 * the read loop, the dispatch of what it reads, the writes and the closing, which share the peer's state.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { DuplexConn } from "../net/conn.ts";
import {
  DEFAULT_MAX_FRAME_BYTES,
  encodeFrame,
  FRAME_HEADER_BYTES,
  FrameReader,
  FrameTooLargeError,
  FrameWriter,
  MalformedJsonError,
} from "./framing.ts";
import {
  HandlerRegistry,
  type NotificationContext,
  type NotificationHandler,
  type RequestContext,
  type RequestHandler,
} from "./handlers.ts";
import {
  INTERNAL_ERROR,
  INVALID_REQUEST,
  type JsonRpcErrorResponse,
  type JsonRpcId,
  type JsonRpcNotification,
  type JsonRpcParams,
  type JsonRpcRequest,
  type JsonRpcSuccessResponse,
  makeErrorResponse,
  makeNotification,
  makeRequest,
  makeSuccessResponse,
  METHOD_NOT_FOUND,
  PARSE_ERROR,
  parseMessage,
  RpcError,
  SERVER_OVERLOADED,
} from "./messages.ts";
import { PendingRequests } from "./pending.ts";
import { RpcClosedError } from "./peer_errors.ts";
import {
  checkedCount,
  checkedTimeout,
  DEFAULT_MAX_CONCURRENT_REQUESTS,
  DEFAULT_MAX_QUEUED_NOTIFICATIONS,
  DEFAULT_REQUEST_TIMEOUT_MS,
  MAX_PENDING_WRITES,
  type RequestOptions,
  type RpcPeerOptions,
} from "./peer_options.ts";
import { type RpcSchema, validateParams } from "./schema.ts";
import { excerpt, traceDecoder, traceMessage } from "./trace.ts";

// The peer's public surface, written in the modules beside it: importing peer.ts gives all of it.
export type { NotificationContext, NotificationHandler, RequestContext, RequestHandler } from "./handlers.ts";
export { RpcClosedError, RpcInvalidResultError, RpcTimeoutError } from "./peer_errors.ts";
export {
  DEFAULT_MAX_CONCURRENT_REQUESTS,
  DEFAULT_MAX_QUEUED_NOTIFICATIONS,
  DEFAULT_REQUEST_TIMEOUT_MS,
  MAX_PENDING_WRITES,
  type RequestOptions,
  type RpcPeerOptions,
} from "./peer_options.ts";
export type { RpcSchema, RpcSchemaIssue } from "./schema.ts";

const logger = getLogger(["tls-tunnel", "rpc"]);

/** How long a peer tries to tell the remote why it is closing before it closes anyway. */
const FATAL_NOTICE_TIMEOUT_MS = 250;

/** A JSON-RPC 2.0 endpoint over one connection. See the module documentation. */
export class RpcPeer {
  /** The connection; closed when the peer closes. */
  readonly #conn: DuplexConn;
  /** Decodes incoming frames; only the read loop uses it. */
  readonly #reader: FrameReader;
  /** Serializes outgoing frames. */
  readonly #writer: FrameWriter;
  /** Largest frame body received or sent. */
  readonly #maxFrameBytes: number;
  /** Whether messages are traced (`-vv`): asked once, so that without it no message is decoded twice. */
  readonly #trace = logger.isEnabledFor("trace");
  /** Timeout of requests that give none. */
  readonly #requestTimeoutMs: number;
  /** Incoming requests whose handlers may run at once. */
  readonly #maxConcurrentRequests: number;
  /** Undelivered notifications at which reading pauses. */
  readonly #maxQueuedNotifications: number;

  /** Request and notification handlers by method. */
  readonly #handlers = new HandlerRegistry();
  /** Requests sent and awaiting a response, by id. */
  readonly #pending = new PendingRequests();

  /** Incoming request handlers in progress. */
  #activeRequests = 0;
  /** Every task the read loop started (request handlers, notification deliveries) not yet settled. */
  readonly #tasks = new Set<Promise<void>>();
  /** Notifications received and not yet delivered. */
  #queuedNotifications = 0;
  /** Settles once every notification queued so far has been delivered. */
  #notificationTail: Promise<void> = Promise.resolve();

  /** Whether the read loop has been started. */
  #started = false;
  /** Aborted on close; handed to handlers. */
  readonly #abort = new AbortController();
  /** Set once, when the peer closes. */
  #closeReason: Error | undefined;
  /** The last error response with id `null`: the remote's complaint about something we sent. */
  #lastRemoteComplaint: RpcError | undefined;
  /** Resolves when the peer is closed and everything it started has settled. */
  readonly #closed: Promise<void>;
  /** Resolves `#closed`. */
  #resolveClosed: () => void = () => {};

  constructor(conn: DuplexConn, options: RpcPeerOptions = {}) {
    this.#conn = conn;
    this.#maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    this.#reader = new FrameReader(conn, { maxFrameBytes: this.#maxFrameBytes });
    this.#writer = new FrameWriter(conn, { maxFrameBytes: this.#maxFrameBytes });
    this.#requestTimeoutMs = checkedTimeout(options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS);
    this.#maxConcurrentRequests = checkedCount(
      "maxConcurrentRequests",
      options.maxConcurrentRequests ?? DEFAULT_MAX_CONCURRENT_REQUESTS,
    );
    this.#maxQueuedNotifications = checkedCount(
      "maxQueuedNotifications",
      options.maxQueuedNotifications ?? DEFAULT_MAX_QUEUED_NOTIFICATIONS,
    );
    this.#closed = new Promise((resolve) => (this.#resolveClosed = resolve));
    if (options.autoStart ?? true) this.start();
  }

  /**
   * Resolves (never rejects) once the peer is closed, its read loop has stopped and every handler it
   * started has settled. Handlers see `context.signal` aborted on close and should return promptly.
   */
  get closed(): Promise<void> {
    return this.#closed;
  }

  /**
   * Why the peer closed, or `undefined` while open: an {@linkcode RpcClosedError} for a local
   * `close()` or the remote ending the stream; a `FrameTooLargeError` or `TruncatedFrameError` for a
   * protocol violation; the connection's error for an I/O failure.
   */
  get closeReason(): Error | undefined {
    return this.#closeReason;
  }

  /** Whether the peer is closed. */
  get isClosed(): boolean {
    return this.#closeReason !== undefined;
  }

  /** Requests sent and still awaiting their response. */
  get pendingRequestCount(): number {
    return this.#pending.size;
  }

  /** Starts the read loop (done by the constructor unless `autoStart: false`). Idempotent. */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    if (this.isClosed) {
      this.#resolveClosed();
      return;
    }
    void this.#readLoop();
  }

  /**
   * Calls `method` on the remote peer and resolves with its result.
   *
   * @throws {RpcError} the remote answered with an error response
   * @throws {RpcTimeoutError} no response within the timeout
   * @throws {RpcClosedError} the peer closed before the response arrived
   * @throws {RpcInvalidResultError} the result did not match `resultSchema`
   * @throws {FrameTooLargeError} the request does not fit in a frame (nothing was sent)
   * Aborting `options.signal` rejects with the signal's reason.
   */
  request<T = unknown>(method: string, params?: JsonRpcParams, options: RequestOptions<T> = {}): Promise<T> {
    if (this.#closeReason !== undefined) return Promise.reject(this.#closedError());
    const { signal, resultSchema } = options;
    if (signal?.aborted) return Promise.reject(signal.reason);
    let timeoutMs: number;
    let frame: Uint8Array;
    const id = this.#pending.nextId();
    try {
      timeoutMs = checkedTimeout(options.timeoutMs ?? this.#requestTimeoutMs);
      frame = encodeFrame(makeRequest(id, method, params), this.#maxFrameBytes);
    } catch (error) {
      return Promise.reject(error);
    }

    const call = this.#pending.add<T>(id, method, timeoutMs, signal, resultSchema);
    // A failed write closes the peer, which rejects this call with RpcClosedError.
    this.#write(frame).catch(() => {});
    return call;
  }

  /**
   * Sends a notification; resolves once it is written to the connection.
   *
   * @throws {RpcClosedError} the peer is closed (or closed while writing)
   * @throws {FrameTooLargeError} the notification does not fit in a frame (nothing was sent)
   */
  async notify(method: string, params?: JsonRpcParams): Promise<void> {
    if (this.#closeReason !== undefined) throw this.#closedError();
    await this.#write(encodeFrame(makeNotification(method, params), this.#maxFrameBytes));
  }

  /**
   * Serves requests for `method`; with a `schema`, params that do not match are answered -32602
   * with `data.issues` (path and message of each problem) and the handler is not called.
   * Returns a function that unregisters the handler.
   *
   * @throws {Error} a handler for `method` is already registered, or the name starts with `rpc.`
   */
  handle<R>(method: string, handler: RequestHandler<unknown, R>): () => void;
  handle<P, R>(method: string, schema: RpcSchema<P>, handler: RequestHandler<P, R>): () => void;
  handle<P, R>(
    method: string,
    schemaOrHandler: RpcSchema<P> | RequestHandler<unknown, R>,
    handler?: RequestHandler<P, R>,
  ): () => void {
    return this.#handlers.addRequestHandler(method, schemaOrHandler, handler);
  }

  /**
   * Serves requests for every method that has no handler of its own, instead of answering -32601
   * (for example to refuse them all with one error until the session is set up). Returns a function
   * that unregisters it.
   *
   * @throws {Error} such a handler is already registered
   */
  handleOtherMethods<R>(handler: RequestHandler<unknown, R>): () => void {
    return this.#handlers.addOtherMethodsHandler(handler);
  }

  /**
   * Receives notifications for `method`, one at a time in arrival order. With a `schema`,
   * notifications whose params do not match are logged and dropped. Returns a function that
   * unregisters the handler.
   *
   * @throws {Error} a handler for `method` is already registered, or the name starts with `rpc.`
   */
  onNotification(method: string, handler: NotificationHandler<unknown>): () => void;
  onNotification<P>(method: string, schema: RpcSchema<P>, handler: NotificationHandler<P>): () => void;
  onNotification<P>(
    method: string,
    schemaOrHandler: RpcSchema<P> | NotificationHandler<unknown>,
    handler?: NotificationHandler<P>,
  ): () => void {
    return this.#handlers.addNotificationHandler(method, schemaOrHandler, handler);
  }

  /**
   * Closes the peer and its connection: pending requests reject with {@linkcode RpcClosedError},
   * handlers see their signal aborted, responses not yet written are dropped. Idempotent.
   *
   * @param reason recorded as {@linkcode closeReason}; default: an `RpcClosedError` "closed locally"
   */
  close(reason?: Error): void {
    this.#shutdown(reason ?? new RpcClosedError("The RPC peer was closed locally"));
  }

  // ---- reading ----

  async #readLoop(): Promise<void> {
    let reason: Error;
    try {
      while (true) {
        let value: unknown;
        try {
          value = await this.#reader.next();
        } catch (error) {
          if (!(error instanceof MalformedJsonError)) throw error;
          logger.debug("Received a malformed frame: {reason}", { reason: error.message });
          this.#sendError(null, PARSE_ERROR, `Parse error: ${error.message}`);
          continue;
        }
        if (value === null) {
          reason = this.#remoteEndedError();
          break;
        }
        if (this.#trace) traceMessage("received", value);
        this.#dispatch(value);
        if (this.#queuedNotifications >= this.#maxQueuedNotifications) await this.#notificationTail;
        if (this.#writer.pendingFrames >= MAX_PENDING_WRITES) await this.#writer.drained();
      }
    } catch (error) {
      reason = error instanceof Error ? error : new Error(String(error));
      if (error instanceof FrameTooLargeError && !this.isClosed) await this.#tellRemoteWhy(error);
    }
    this.#shutdown(reason);
    while (this.#tasks.size > 0) await Promise.allSettled([...this.#tasks]);
    this.#resolveClosed();
  }

  #dispatch(value: unknown): void {
    const parsed = parseMessage(value);
    switch (parsed.kind) {
      case "request":
        if (this.#activeRequests >= this.#maxConcurrentRequests) {
          this.#sendError(
            parsed.message.id,
            SERVER_OVERLOADED,
            `Server overloaded: ${this.#maxConcurrentRequests} requests are already being handled; retry later`,
          );
        } else {
          this.#track(this.#serveRequest(parsed.message));
        }
        return;
      case "notification":
        this.#queueNotification(parsed.message);
        return;
      case "success": {
        const pending = this.#pending.get(parsed.message.id);
        if (pending === undefined) {
          logger.debug("Ignoring a response to unknown request {id}", { id: parsed.message.id });
        } else pending.resolve(parsed.message.result);
        return;
      }
      case "error": {
        const error = RpcError.fromErrorObject(parsed.message.error);
        const pending = parsed.message.id === null ? undefined : this.#pending.get(parsed.message.id);
        if (pending !== undefined) return pending.reject(error);
        if (parsed.message.id === null) this.#lastRemoteComplaint = error;
        logger.debug("Remote peer reported an error not tied to a pending request: {code} {message}", {
          id: parsed.message.id,
          code: error.code,
          message: error.message,
        });
        return;
      }
      case "invalid":
        this.#sendError(parsed.id, INVALID_REQUEST, `Invalid request: ${parsed.reason}`);
        return;
    }
  }

  async #serveRequest(request: JsonRpcRequest): Promise<void> {
    const { id, method } = request;
    const entry = this.#handlers.requestHandler(method);
    if (entry === undefined) {
      this.#sendError(id, METHOD_NOT_FOUND, `Method '${excerpt(method)}' not found`);
      return;
    }
    this.#activeRequests++;
    let response: JsonRpcSuccessResponse | JsonRpcErrorResponse;
    try {
      const params = validateParams(entry.schema, request.params, method);
      const context: RequestContext = { method, id, signal: this.#abort.signal, peer: this };
      const result = await (entry.handler as RequestHandler<unknown, unknown>)(params, context);
      response = makeSuccessResponse(id, result);
    } catch (error) {
      response = makeErrorResponse(id, this.#errorObjectFor(error, method));
    } finally {
      this.#activeRequests--;
    }
    if (this.isClosed) return;
    let frame: Uint8Array;
    try {
      frame = encodeFrame(response, this.#maxFrameBytes);
    } catch (error) {
      logger.error("Cannot send the response to {method}: {error}", { method, error });
      const reason = error instanceof FrameTooLargeError
        ? `its response of ${error.frameBytes} bytes exceeds the frame limit of ${error.maxFrameBytes} bytes`
        : "its result is not serializable as JSON";
      this.#sendError(id, INTERNAL_ERROR, `Internal error: method '${method}' failed: ${reason}`);
      return;
    }
    await this.#write(frame).catch(() => {});
  }

  /** The error member answering a handler's failure. */
  #errorObjectFor(error: unknown, method: string) {
    if (error instanceof RpcError) return error.toErrorObject();
    // The details may name files, hosts or secrets: log them here, send the remote a generic message.
    logger.error("Handler for {method} failed: {error}", { method, error });
    return {
      code: INTERNAL_ERROR,
      message: `Internal error while handling '${excerpt(method)}'; see the remote log`,
    };
  }

  #queueNotification(notification: JsonRpcNotification): void {
    const { method } = notification;
    if (this.#handlers.notificationHandler(method) === undefined) {
      logger.debug("Ignoring notification {method}: no handler", { method });
      return;
    }
    this.#queuedNotifications++;
    const delivery = this.#notificationTail.then(async () => {
      try {
        const entry = this.#handlers.notificationHandler(method);
        if (entry === undefined || this.isClosed) return;
        const params = validateParams(entry.schema, notification.params, method);
        const context: NotificationContext = { method, signal: this.#abort.signal, peer: this };
        await (entry.handler as NotificationHandler<unknown>)(params, context);
      } catch (error) {
        logger.warn("Notification handler for {method} failed: {error}", { method, error });
      } finally {
        this.#queuedNotifications--;
      }
    });
    this.#notificationTail = delivery;
    this.#track(delivery);
  }

  // ---- writing ----

  /** Writes one frame; an I/O failure closes the peer and rejects with `RpcClosedError`. */
  async #write(frame: Uint8Array): Promise<void> {
    if (this.#trace) {
      traceMessage("sent", JSON.parse(traceDecoder.decode(frame.subarray(FRAME_HEADER_BYTES))));
    }
    try {
      await this.#writer.writeEncoded(frame);
    } catch (error) {
      this.#shutdown(error instanceof Error ? error : new Error(String(error)));
      throw this.#closedError();
    }
  }

  /** Sends an error response without waiting; failures close the peer. */
  #sendError(id: JsonRpcId | null, code: number, message: string, data?: unknown): void {
    if (this.isClosed) return;
    let frame: Uint8Array;
    try {
      const error = data === undefined ? { code, message } : { code, message, data };
      frame = encodeFrame(makeErrorResponse(id, error), this.#maxFrameBytes);
    } catch {
      // Only a tiny frame limit or a huge string id can get here; the bare code still fits.
      frame = encodeFrame(makeErrorResponse(null, { code, message: "error" }));
    }
    this.#write(frame).catch(() => {});
  }

  /** Tells the remote why we are about to close, waiting at most a moment (it may not be reading). */
  async #tellRemoteWhy(error: FrameTooLargeError): Promise<void> {
    const data = { frameBytes: error.frameBytes, maxFrameBytes: error.maxFrameBytes };
    const frame = encodeFrame(
      makeErrorResponse(null, { code: INVALID_REQUEST, message: error.message, data }),
      this.#maxFrameBytes,
    );
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.#writer.writeEncoded(frame).catch(() => {}),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, FATAL_NOTICE_TIMEOUT_MS))),
    ]);
    clearTimeout(timer);
  }

  // ---- closing ----

  #shutdown(reason: Error): void {
    if (this.#closeReason !== undefined) return;
    this.#closeReason = reason;
    this.#abort.abort(reason);
    const closedError = this.#closedError();
    this.#pending.rejectAll(closedError);
    try {
      this.#conn.close();
    } catch (error) {
      logger.debug("Closing the connection failed: {error}", { error });
    }
    if (!this.#started) this.#resolveClosed();
  }

  /** The error rejected from calls once closed. */
  #closedError(): RpcClosedError {
    const reason = this.#closeReason;
    if (reason instanceof RpcClosedError || reason === undefined) {
      return reason ?? new RpcClosedError("The RPC peer is closed");
    }
    return new RpcClosedError(`The RPC peer is closed: ${reason.message}`, { cause: reason });
  }

  /** The close reason when the remote ends the stream between frames. */
  #remoteEndedError(): RpcClosedError {
    const complaint = this.#lastRemoteComplaint;
    return complaint === undefined
      ? new RpcClosedError("The remote peer closed the connection")
      : new RpcClosedError(`The remote peer closed the connection after reporting: ${complaint.message}`, {
        cause: complaint,
      });
  }

  #track(task: Promise<void>): void {
    this.#tasks.add(task);
    const forget = () => void this.#tasks.delete(task);
    task.then(forget, forget);
  }
}

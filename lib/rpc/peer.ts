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
  INTERNAL_ERROR,
  INVALID_PARAMS,
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

const logger = getLogger(["tls-tunnel", "rpc"]);

/** Default time a request waits for its response. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
/** Default number of incoming requests whose handlers may run at once. */
export const DEFAULT_MAX_CONCURRENT_REQUESTS = 64;
/** Default number of incoming notifications waiting for their handler before reading pauses. */
export const DEFAULT_MAX_QUEUED_NOTIFICATIONS = 1024;
/**
 * Frames waiting to be written beyond which the peer stops reading until they drain: a remote that
 * sends requests without reading the answers is slowed down instead of growing our memory.
 */
export const MAX_PENDING_WRITES = 1024;
/** How long a peer tries to tell the remote why it is closing before it closes anyway. */
const FATAL_NOTICE_TIMEOUT_MS = 250;

/** The peer is closed: rejected from pending and later calls. `cause` holds the close reason. */
export class RpcClosedError extends Error {
  override name = "RpcClosedError";
}

/** No response arrived within the request's timeout. The request stays unanswered; the peer stays open. */
export class RpcTimeoutError extends Error {
  override name = "RpcTimeoutError";

  /**
   * @param method the method called
   * @param timeoutMs the timeout that expired
   */
  constructor(readonly method: string, readonly timeoutMs: number) {
    super(
      `Request '${method}' got no response within ${timeoutMs} ms; the remote peer is slow or stuck ` +
        `(raise the timeout if this is expected)`,
    );
  }
}

/** A response's result did not match the `resultSchema` given to {@linkcode RpcPeer.request}. */
export class RpcInvalidResultError extends Error {
  override name = "RpcInvalidResultError";

  /**
   * @param method the method called
   * @param issues where and why the result is invalid
   */
  constructor(readonly method: string, readonly issues: RpcSchemaIssue[]) {
    super(
      `Response to '${method}' has an invalid result: ${formatIssues(issues)}; ` +
        `the remote peer speaks an incompatible protocol version`,
    );
  }
}

/** One problem reported by a schema, as found in zod's `error.issues`. */
export interface RpcSchemaIssue {
  /** Where in the value (keys and indexes from the root). */
  path: (string | number)[];
  /** What is wrong there. */
  message: string;
  /** Machine-readable kind of problem, when the schema library gives one. */
  code?: string;
}

/**
 * A validator for params or results. A zod schema (`z.object({...})`) satisfies it; so does anything
 * with a compatible `safeParse`.
 */
export interface RpcSchema<T> {
  /** Validates `value`, returning the parsed data or the issues. */
  safeParse(value: unknown):
    | { success: true; data: T }
    | {
      success: false;
      error: { issues: readonly { path: readonly PropertyKey[]; message: string; code?: string }[] };
    };
}

/** What a request handler receives besides the params. */
export interface RequestContext {
  /** The method called. */
  method: string;
  /** The request's id. */
  id: JsonRpcId;
  /** Aborted when the peer closes: the response could no longer be sent. */
  signal: AbortSignal;
  /** The peer that received the request (to notify or call back). */
  peer: RpcPeer;
}

/** What a notification handler receives besides the params. */
export interface NotificationContext {
  /** The notification's method. */
  method: string;
  /** Aborted when the peer closes. */
  signal: AbortSignal;
  /** The peer that received the notification. */
  peer: RpcPeer;
}

/**
 * Serves one method. Its return value is the result (`undefined` is sent as `null`); throwing an
 * {@linkcode RpcError} answers with that error; throwing anything else answers -32603 with a message
 * that reveals nothing of the error (which is logged here instead).
 */
export type RequestHandler<P = unknown, R = unknown> = (params: P, context: RequestContext) => R | Promise<R>;

/** Handles one notification method; errors are logged, since nobody can be told. */
export type NotificationHandler<P = unknown> = (
  params: P,
  context: NotificationContext,
) => void | Promise<void>;

/** Options of {@linkcode RpcPeer}. */
export interface RpcPeerOptions {
  /** Largest frame body received or sent. Default 1 MiB. */
  maxFrameBytes?: number;
  /** Default timeout of {@linkcode RpcPeer.request}; `Infinity` waits forever. Default 30 s. */
  requestTimeoutMs?: number;
  /** Incoming requests whose handlers may run at once. Default 64. */
  maxConcurrentRequests?: number;
  /** Incoming notifications that may wait for their handler before reading pauses. Default 1024. */
  maxQueuedNotifications?: number;
  /**
   * Start reading in the constructor (default `true`). Register handlers right after constructing,
   * before awaiting anything, or pass `false` and call {@linkcode RpcPeer.start} once they are.
   */
  autoStart?: boolean;
}

/** Options of one {@linkcode RpcPeer.request} call. */
export interface RequestOptions<T> {
  /** Overrides the peer's `requestTimeoutMs` for this call; `Infinity` waits forever. */
  timeoutMs?: number;
  /** Aborting rejects the call with the signal's reason (a late response is then ignored). */
  signal?: AbortSignal;
  /** Validates the result; a mismatch rejects with {@linkcode RpcInvalidResultError}. */
  resultSchema?: RpcSchema<T>;
}

/** A request sent and not yet answered. */
interface PendingRequest {
  /** Settles the call with the response's result. */
  resolve(result: unknown): void;
  /** Settles the call with an error (error response, timeout, abort, close). */
  reject(error: unknown): void;
}

/** A registered handler and the schema its params must match. */
interface HandlerEntry<H> {
  /** The function called with the (validated) params. */
  handler: H;
  /** Validates the params first, when given. */
  schema: RpcSchema<unknown> | undefined;
}

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

  /** Request handlers by method. */
  readonly #handlers = new Map<string, HandlerEntry<RequestHandler<never, unknown>>>();
  /** Notification handlers by method. */
  readonly #notificationHandlers = new Map<string, HandlerEntry<NotificationHandler<never>>>();
  /** Serves requests for methods without a handler of their own, when set. */
  #otherMethodsHandler: HandlerEntry<RequestHandler<never, unknown>> | undefined;
  /** Requests sent and awaiting a response, by id. */
  readonly #pending = new Map<JsonRpcId, PendingRequest>();
  /** Id of the next request sent; ids are never reused on one connection. */
  #nextId = 1;

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
    const id = this.#nextId++;
    try {
      timeoutMs = checkedTimeout(options.timeoutMs ?? this.#requestTimeoutMs);
      frame = encodeFrame(makeRequest(id, method, params), this.#maxFrameBytes);
    } catch (error) {
      return Promise.reject(error);
    }

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
      // A failed write closes the peer, which rejects this call with RpcClosedError.
      this.#write(frame).catch(() => {});
    });
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
    return register(this.#handlers, "request", method, schemaOrHandler, handler);
  }

  /**
   * Serves requests for every method that has no handler of its own, instead of answering -32601
   * (for example to refuse them all with one error until the session is set up). Returns a function
   * that unregisters it.
   *
   * @throws {Error} such a handler is already registered
   */
  handleOtherMethods<R>(handler: RequestHandler<unknown, R>): () => void {
    if (this.#otherMethodsHandler !== undefined) {
      throw new Error("A handler for other methods is already registered; unregister it first");
    }
    const entry = { handler, schema: undefined };
    this.#otherMethodsHandler = entry;
    return () => {
      if (this.#otherMethodsHandler === entry) this.#otherMethodsHandler = undefined;
    };
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
    return register(this.#notificationHandlers, "notification", method, schemaOrHandler, handler);
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
    const entry = this.#handlers.get(method) ?? this.#otherMethodsHandler;
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
    if (!this.#notificationHandlers.has(method)) {
      logger.debug("Ignoring notification {method}: no handler", { method });
      return;
    }
    this.#queuedNotifications++;
    const delivery = this.#notificationTail.then(async () => {
      try {
        const entry = this.#notificationHandlers.get(method);
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
    for (const pending of [...this.#pending.values()]) pending.reject(closedError);
    this.#pending.clear();
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

/** Adds a handler to `table`, returning its unregistration function. */
function register<H, P>(
  table: Map<string, HandlerEntry<H>>,
  kind: "request" | "notification",
  method: string,
  schemaOrHandler: RpcSchema<P> | H,
  handler: H | undefined,
): () => void {
  if (method.startsWith("rpc.")) {
    throw new Error(`Method names starting with 'rpc.' are reserved by JSON-RPC 2.0; rename '${method}'`);
  }
  if (table.has(method)) {
    throw new Error(`A ${kind} handler for '${method}' is already registered; unregister it first`);
  }
  const entry: HandlerEntry<H> = handler === undefined
    ? { handler: schemaOrHandler as H, schema: undefined }
    : { handler, schema: schemaOrHandler as RpcSchema<unknown> };
  table.set(method, entry);
  return () => {
    if (table.get(method) === entry) table.delete(method);
  };
}

/** Issues sent in the `data` of a -32602 response, at most. */
const MAX_REPORTED_ISSUES = 20;

/** Returns the params to hand to a handler, or throws -32602 when they do not match `schema`. */
function validateParams(schema: RpcSchema<unknown> | undefined, params: unknown, method: string): unknown {
  if (schema === undefined) return params;
  const parsed = schema.safeParse(params);
  if (parsed.success) return parsed.data;
  // Bounded: a huge invalid array could otherwise yield an error response larger than any frame.
  const issues = toIssues(parsed.error.issues.slice(0, MAX_REPORTED_ISSUES));
  const more = parsed.error.issues.length - issues.length;
  const summary = formatIssues(issues.slice(0, 3)) + (issues.length > 3 || more > 0 ? "; …" : "");
  throw new RpcError(INVALID_PARAMS, `Invalid params for '${method}': ${summary}`, { issues });
}

/** Copies schema issues into plain JSON (symbols in paths become strings). */
function toIssues(
  issues: readonly { path: readonly PropertyKey[]; message: string; code?: string }[],
): RpcSchemaIssue[] {
  return issues.map((issue) => {
    const path = issue.path.map((key) => (typeof key === "number" ? key : String(key)));
    return issue.code === undefined
      ? { path, message: issue.message }
      : { path, message: issue.message, code: issue.code };
  });
}

/** `a.b[0]: message; c: message` for error messages. */
function formatIssues(issues: RpcSchemaIssue[]): string {
  return issues
    .map((issue) => {
      const where = issue.path.reduce<string>(
        (text, key) => (typeof key === "number" ? `${text}[${key}]` : text === "" ? key : `${text}.${key}`),
        "",
      );
      return `${where === "" ? "(params)" : where}: ${issue.message}`;
    })
    .join("; ");
}

/** Longest delay `setTimeout` honours (larger ones fire at once). */
const MAX_TIMER_MS = 2_147_483_647;

/** Checks a timeout given by a caller. */
function checkedTimeout(timeoutMs: number): number {
  if (!(timeoutMs > 0 && (timeoutMs <= MAX_TIMER_MS || timeoutMs === Infinity))) {
    throw new RangeError(
      `timeoutMs must be from 1 to ${MAX_TIMER_MS} milliseconds or Infinity, got ${timeoutMs}`,
    );
  }
  return timeoutMs;
}

/** A method name cut to a length fit for messages (names come from the network). */
const traceDecoder = new TextDecoder();

/**
 * One trace record for a message: its kind, method, id and params (an error response: its code). The
 * log formatter masks secret-named fields (auth_key, tokens) at any depth, in every sink the CLI sets up.
 */
function traceMessage(direction: "sent" | "received", value: unknown): void {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    logger.trace("RPC {direction} a message that is not an object", { direction });
    return;
  }
  const message = value as Record<string, unknown>;
  const method = typeof message.method === "string" ? excerpt(message.method) : null;
  const error = message.error;
  const kind = method !== null
    ? ("id" in message ? "request" : "notification")
    : error !== undefined
    ? "error response"
    : "response";
  const template = method !== null
    ? "RPC {direction} {kind} {method} id={id}"
    : "RPC {direction} {kind} id={id}";
  logger.trace(template, {
    direction,
    kind,
    ...(method !== null ? { method } : {}),
    id: message.id ?? null,
    ...(message.params !== undefined ? { params: message.params } : {}),
    ...(typeof error === "object" && error !== null && "code" in error ? { code: error.code } : {}),
  });
}

function excerpt(method: string): string {
  return method.length <= 100 ? method : `${method.slice(0, 100)}…`;
}

/** Checks a positive count given by a caller. */
function checkedCount(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(`${name} must be a positive integer, got ${value}`);
  }
  return value;
}

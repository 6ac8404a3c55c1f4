/**
 * The handler registry of an `RpcPeer`: which function serves each request method and
 * receives each notification method, with the schema its params must match, and the optional
 * catch-all for request methods without a handler of their own.
 *
 * @module
 */

import type { JsonRpcId } from "./messages.ts";
import type { RpcPeer } from "./peer.ts";
import type { RpcSchema } from "./schema.ts";

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
 * `RpcError` answers with that error; throwing anything else answers -32603 with a message
 * that reveals nothing of the error (which is logged here instead).
 */
export type RequestHandler<P = unknown, R = unknown> = (params: P, context: RequestContext) => R | Promise<R>;

/** Handles one notification method; errors are logged, since nobody can be told. */
export type NotificationHandler<P = unknown> = (
  params: P,
  context: NotificationContext,
) => void | Promise<void>;

/** A registered handler and the schema its params must match. */
export interface HandlerEntry<H> {
  /** The function called with the (validated) params. */
  handler: H;
  /** Validates the params first, when given. */
  schema: RpcSchema<unknown> | undefined;
}

/** The handlers of one peer, by method. */
export class HandlerRegistry {
  /** Request handlers by method. */
  readonly #requests = new Map<string, HandlerEntry<RequestHandler<never, unknown>>>();
  /** Notification handlers by method. */
  readonly #notifications = new Map<string, HandlerEntry<NotificationHandler<never>>>();
  /** Serves requests for methods without a handler of their own, when set. */
  #otherMethods: HandlerEntry<RequestHandler<never, unknown>> | undefined;

  /** Adds a request handler (see `RpcPeer.handle`), returning its unregistration function. */
  addRequestHandler<P, R>(
    method: string,
    schemaOrHandler: RpcSchema<P> | RequestHandler<unknown, R>,
    handler: RequestHandler<P, R> | undefined,
  ): () => void {
    return register(this.#requests, "request", method, schemaOrHandler, handler);
  }

  /** Adds the catch-all request handler (see `RpcPeer.handleOtherMethods`). */
  addOtherMethodsHandler<R>(handler: RequestHandler<unknown, R>): () => void {
    if (this.#otherMethods !== undefined) {
      throw new Error("A handler for other methods is already registered; unregister it first");
    }
    const entry = { handler, schema: undefined };
    this.#otherMethods = entry;
    return () => {
      if (this.#otherMethods === entry) this.#otherMethods = undefined;
    };
  }

  /** Adds a notification handler (see `RpcPeer.onNotification`), returning its unregistration function. */
  addNotificationHandler<P>(
    method: string,
    schemaOrHandler: RpcSchema<P> | NotificationHandler<unknown>,
    handler: NotificationHandler<P> | undefined,
  ): () => void {
    return register(this.#notifications, "notification", method, schemaOrHandler, handler);
  }

  /** The handler serving requests for `method`: its own, else the catch-all, else none. */
  requestHandler(method: string): HandlerEntry<RequestHandler<never, unknown>> | undefined {
    return this.#requests.get(method) ?? this.#otherMethods;
  }

  /** The handler receiving notifications for `method`, if any. */
  notificationHandler(method: string): HandlerEntry<NotificationHandler<never>> | undefined {
    return this.#notifications.get(method);
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

/**
 * What an `RpcPeer` logs about the messages it sends and receives at `trace` level (`-vv`),
 * and the cut of a network-supplied method name fit for any log or error message.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";

const logger = getLogger(["tls-tunnel", "rpc"]);

/** Decodes a sent frame's body for its trace record. */
export const traceDecoder = new TextDecoder();

/**
 * One trace record for a message: its kind, method, id and params (an error response: its code). The
 * log formatter masks secret-named fields (auth_key, tokens) at any depth, in every sink the CLI sets up.
 */
export function traceMessage(direction: "sent" | "received", value: unknown): void {
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

/** A method name cut to a length fit for messages (names come from the network). */
export function excerpt(method: string): string {
  return method.length <= 100 ? method : `${method.slice(0, 100)}…`;
}

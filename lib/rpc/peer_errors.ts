/**
 * The errors an `RpcPeer` call rejects with besides the remote's own `RpcError`: the peer
 * closed, no answer in time, or an answer whose result does not match the caller's schema.
 *
 * @module
 */

import { formatIssues, type RpcSchemaIssue } from "./schema.ts";

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

/** A response's result did not match the `resultSchema` given to `RpcPeer.request`. */
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

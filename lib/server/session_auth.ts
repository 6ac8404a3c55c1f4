/**
 * The authentication of a new session on the server: the control stream refuses every method until
 * `authenticate` succeeds, only one `authenticate` runs per session, and a client_id already in use makes
 * way for the newcomer only when its session is dead (a live one means a second copy of the client, which
 * is refused with DUPLICATE_CLIENT). The checks of the key itself are in `auth.ts`.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { Session } from "../mux/mod.ts";
import { withTimeout } from "../_async.ts";
import {
  type AuthenticateResult,
  ControlErrorCode,
  type DuplicateClientData,
  Method,
} from "../protocol/control.ts";
import { PROTOCOL_VERSION } from "../protocol/version.ts";
import { RpcError, type RpcPeer } from "../rpc/mod.ts";
import type { EventLog } from "../stats/event_log.ts";
import { VERSION } from "../version.ts";
import type { ConnectedClient } from "./connected_client.ts";

// The server's category: these lines are part of its story of a session.
const logger = getLogger(["tls-tunnel", "server"]);

/**
 * How long a connected client has to answer a liveness ping when a new session with its client_id
 * authenticates: answered, the newcomer is a second copy and is refused; not, the old one is replaced.
 */
export const DUPLICATE_CLIENT_PING_TIMEOUT_MS = 1000;

/** What {@linkcode awaitAuthentication} asks of the server. */
export interface AuthenticationSteps {
  /**
   * One authentication attempt: checks it, makes way for the client and registers it. Throws the
   * `RpcError` to answer with. `ended` aborts when the session ends first.
   */
  admit(raw: unknown, ended: AbortSignal): Promise<ConnectedClient>;
  /** Serves the authenticated client's requests; called before the authenticate response leaves. */
  install(client: ConnectedClient): void;
}

/**
 * Waits for `authenticate`; resolves to the client, or null when the session ended or authenticate
 * failed (the error was sent; the caller closes the session a moment later). One authenticate runs per
 * session: another, concurrent or later, is refused without a key check.
 */
export function awaitAuthentication(
  rpc: RpcPeer,
  session: Session,
  steps: AuthenticationSteps,
): Promise<ConnectedClient | null> {
  return new Promise((resolve) => {
    let settled = false;
    let called = false;
    const ended = new AbortController();
    const settle = (client: ConnectedClient | null) => {
      if (settled) return;
      settled = true;
      if (!client) ended.abort(new Error("the session ended before it authenticated"));
      resolve(client);
    };
    rpc.closed.then(() => settle(null));
    session.closed.then(() => settle(null));
    const unregisterEarly = rpc.handleOtherMethods(() => {
      throw new RpcError(ControlErrorCode.notAuthenticated, "Call authenticate first");
    });
    rpc.handle(Method.authenticate, async (raw: unknown) => {
      if (called) {
        throw new RpcError(
          ControlErrorCode.alreadyAuthenticated,
          settled && !ended.signal.aborted
            ? "This session is already authenticated"
            : "authenticate was already called on this session; wait for its answer",
        );
      }
      called = true;
      try {
        const client = await steps.admit(raw, ended.signal);
        unregisterEarly();
        steps.install(client);
        settle(client);
        const result: AuthenticateResult = {
          client_id: client.clientId,
          client_name: client.name,
          protocol_version: PROTOCOL_VERSION,
          server_version: VERSION,
          session_id: client.sessionId,
        };
        return result;
      } catch (error) {
        // Any authenticate error ends the session, once the error response has left.
        setTimeout(() => settle(null), 0);
        throw error;
      }
    });
  });
}

/** What {@linkcode displacePrevious} needs from the server. */
export interface DisplaceContext {
  /** Connected clients by client_id. */
  clients: ReadonlyMap<string, ConnectedClient>;
  /** Server events. */
  events: EventLog;
  /** Removes a client from the registry, records the event and tears its session down. */
  forget(client: ConnectedClient, reason: string): Promise<void>;
}

/**
 * Makes way for a new session of `clientId`. A previous session that does not answer a liveness ping
 * within {@linkcode DUPLICATE_CLIENT_PING_TIMEOUT_MS} (half-open after a network change, a frozen
 * process) is closed at once, releasing its ports; one that answers belongs to another running copy of
 * the client, and the newcomer is refused with DUPLICATE_CLIENT instead of the two replacing each other.
 */
export async function displacePrevious(
  context: DisplaceContext,
  clientId: string,
  name: string,
  remote: string,
): Promise<void> {
  for (let previous = context.clients.get(clientId); previous; previous = context.clients.get(clientId)) {
    const alive = !previous.closing &&
      await withTimeout(previous.session.ping(), DUPLICATE_CLIENT_PING_TIMEOUT_MS, "a ping answer").then(
        () => true,
        () => false,
      );
    // Another session of this id may have taken the place while the ping was out: check that one.
    if (context.clients.get(clientId) !== previous) continue;
    if (alive) {
      context.events.add({
        level: "warning",
        code: "DUPLICATE_CLIENT",
        message: `Refused ${remote}: client ${name} is already connected from ${previous.remoteAddr}`,
        client: name,
        data: { client_id: clientId, remote_addr: remote, other_remote_addr: previous.remoteAddr },
      });
      logger.warn(
        "Refused {remote}: client {client} is already connected from {other} (a second copy with the same client_id)",
        { remote, client: name, other: previous.remoteAddr },
      );
      throw new RpcError(
        ControlErrorCode.duplicateClient,
        `Another copy of this client is connected: client_id "${clientId}" is in use by a live session ` +
          `from ${previous.remoteAddr}; give each copy its own client_id ([client] client_id)`,
        { other_remote_addr: previous.remoteAddr } satisfies DuplicateClientData,
      );
    }
    logger.info(
      "Client {client} reconnected from {remote}; its previous session did not answer a ping within {ms} ms, " +
        "replacing its previous session",
      { client: name, remote, ms: DUPLICATE_CLIENT_PING_TIMEOUT_MS },
    );
    await context.forget(previous, "replaced by a new session of the same client");
  }
}

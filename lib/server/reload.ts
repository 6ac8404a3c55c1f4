/**
 * Changes to a running server without a restart:
 *
 * - `unregister_proxies` (a client stops publishing proxies by name on its live session): run in the
 *   session's registration queue, so a pipelined `unregister_proxies` and `register_proxies` of one name
 *   happen in the order they arrived, and the port is free when the answer leaves;
 * - a reloaded config ({@linkcode reconcileClients}): each connected client's key is looked up again —
 *   a key that is gone (or changed) ends the session with a `KEY_REVOKED` notice first; a client whose
 *   `allow_ports` shrank loses exactly the proxies now outside them (`PROXY_REVOKED` and a `proxy_status`
 *   `closed` each), and its new `max_proxies` counts from its next registration;
 * - which changed keys a running server cannot apply ({@linkcode serverRestartKeys}).
 *
 * The server's own fields (its config, the authenticator's keys, the pending limits, the certificate)
 * are swapped by `TunnelServer.applyConfig`; this module decides what happens to the sessions.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { ServerConfig } from "../config/types.ts";
import { formatPortRanges, portInRanges } from "../config/mod.ts";
import {
  ControlErrorCode,
  Method,
  NoticeCode,
  type ProxyRevokedNoticeData,
  type ProxyUnregistration,
  type PushExceptionParams,
  type TooManyPendingData,
  UnregisterProxiesParams,
  type UnregisterProxiesResult,
} from "../protocol/control.ts";
import { wireName } from "../protocol/fields.ts";
import { INVALID_PARAMS, RpcError } from "../rpc/mod.ts";
import { withTimeout } from "../_async.ts";
import type { EventLog } from "../stats/event_log.ts";
import { escapeForTerminal } from "../text.ts";
import { findGrant } from "./auth.ts";
import type { ConnectedClient } from "./connected_client.ts";
import type { StickyPorts } from "./port_plan.ts";
import { SerialQueueFullError } from "./serial_queue.ts";

const logger = getLogger(["tls-tunnel", "server", "reload"]);

/** How long a revoked client's `KEY_REVOKED` notice may take to leave before its session is closed. */
const REVOKE_NOTICE_TIMEOUT_MS = 1000;

/**
 * Handles `unregister_proxies` for `client`: each name's proxy is stopped (its port released, its outside
 * connections reset) and forgotten, with its sticky port; one answer per name, in request order.
 *
 * @throws {RpcError} `INVALID_PARAMS` for params not of the shape `{names: [1..1024 entries]}`;
 *   `TOO_MANY_PENDING` when the session's registration queue is full
 */
export async function unregisterProxies(
  client: ConnectedClient,
  raw: unknown,
  sticky: StickyPorts,
): Promise<UnregisterProxiesResult> {
  const parsed = UnregisterProxiesParams.safeParse(raw);
  if (!parsed.success) {
    throw new RpcError(INVALID_PARAMS, "unregister_proxies expects { names: [1 to 1024 proxy names] }");
  }
  const names = parsed.data.names;
  let queued: Promise<UnregisterProxiesResult>;
  try {
    queued = client.registrations.run(async () => {
      const results: ProxyUnregistration[] = [];
      for (const candidate of names) results.push(await unregisterOne(client, candidate, sticky));
      return { proxies: results };
    });
  } catch (error) {
    if (!(error instanceof SerialQueueFullError)) throw error;
    throw new RpcError(
      ControlErrorCode.tooManyPending,
      `${error.limit} register_proxies/unregister_proxies calls of this session are already waiting for ` +
        `their answers; wait for them before sending more`,
      { limit: error.limit } satisfies TooManyPendingData,
    );
  }
  return await queued;
}

async function unregisterOne(
  client: ConnectedClient,
  candidate: unknown,
  sticky: StickyPorts,
): Promise<ProxyUnregistration> {
  const name = wireName.safeParse(candidate);
  if (!name.success) {
    const echoed = typeof candidate === "string" ? escapeForTerminal(candidate.slice(0, 160)) : "?";
    return { name: echoed, status: "invalid" };
  }
  const proxy = client.proxies.get(name.data);
  if (!proxy) return { name: name.data, status: "not_found" };
  const releasedPort = proxy.boundPort;
  await client.discard(proxy);
  sticky.release(client.clientId, [name.data]);
  logger.info("Proxy {proxy} of {client} unregistered by the client{port}", {
    proxy: name.data,
    client: client.name,
    port: releasedPort !== null ? `; port ${releasedPort} released` : "",
  });
  return { name: name.data, status: "removed", released_port: releasedPort };
}

/** What {@linkcode reconcileClients} needs from the server. */
export interface ReconcileContext {
  /** Connected clients by client_id. */
  clients: ReadonlyMap<string, ConnectedClient>;
  /** Ends a client's session (registry, event, teardown). */
  forget(client: ConnectedClient, reason: string): Promise<void>;
  /** Server events (dashboard, webhook). */
  events: EventLog;
}

/** What a reload did to the connected clients. */
export interface ReconcileReport {
  /** Names of the clients disconnected because their key is no longer accepted. */
  disconnected: string[];
  /** Proxies stopped because their port is outside the client's new `allow_ports`, as `client/proxy`. */
  revokedProxies: string[];
}

/** The key a client authenticated with, as `previous` had it; null when it cannot be told. */
function keyOf(client: ConnectedClient, previous: ServerConfig): string | null {
  const entryName = client.grant.entryName;
  if (entryName === null) return previous.authKey ?? null;
  return previous.clients.find((entry) => entry.name === entryName)?.authKey ?? null;
}

/**
 * Brings every connected client in line with `next`: a client whose key `next` no longer accepts (or
 * accepts for another `[[server.clients]]` entry) is told (`KEY_REVOKED`) and disconnected; the others
 * take their new grant, and lose the proxies whose port is now outside their `allow_ports`.
 */
export async function reconcileClients(
  context: ReconcileContext,
  previous: ServerConfig,
  next: ServerConfig,
): Promise<ReconcileReport> {
  const report: ReconcileReport = { disconnected: [], revokedProxies: [] };
  for (const client of [...context.clients.values()]) {
    if (client.closing) continue;
    const key = keyOf(client, previous);
    const grant = key === null ? null : findGrant(next, key);
    if (grant === null || grant.entryName !== client.grant.entryName) {
      const reason = client.grant.entryName === null
        ? "the server's reloaded config no longer accepts the shared auth_key"
        : `the server's reloaded config no longer accepts the key of [[server.clients]] '${client.grant.entryName}'`;
      await revokeClient(context, client, reason);
      report.disconnected.push(client.name);
      continue;
    }
    client.grant.allowPorts = grant.allowPorts;
    client.grant.maxProxies = grant.maxProxies;
    report.revokedProxies.push(...await dropOutsideProxies(client, context.events));
  }
  return report;
}

/** Tells `client` why (waiting at most a second for the notice to leave), then ends its session. */
async function revokeClient(
  context: ReconcileContext,
  client: ConnectedClient,
  reason: string,
): Promise<void> {
  logger.warn("Client {client} disconnected: {reason}", { client: client.name, reason });
  const notice: PushExceptionParams = {
    level: "error",
    code: NoticeCode.keyRevoked,
    message: `Disconnected: ${reason}; ask the server's operator for a new key`,
  };
  // Straight to the wire, not through the merging queue: the session closes right after.
  await withTimeout(client.rpc.notify(Method.pushException, notice), REVOKE_NOTICE_TIMEOUT_MS, "the notice")
    .catch(() => {});
  await context.forget(client, `key revoked by a config reload (${reason})`);
}

/** Stops `client`'s proxies whose port is outside its (new) `allow_ports`; returns them as `client/proxy`. */
async function dropOutsideProxies(client: ConnectedClient, events: EventLog): Promise<string[]> {
  const dropped: string[] = [];
  const allowed = client.grant.allowPorts;
  // Claimed proxies (a registration in progress) are checked against the new grant by that registration.
  for (const proxy of [...client.proxies.values()]) {
    const port = proxy.boundPort ?? proxy.spec.publish_port;
    if (port === 0 || portInRanges(port, allowed)) continue;
    const reason = `port ${port} is outside this client's allow_ports (${formatPortRanges(allowed)}) ` +
      `after a server config reload`;
    await client.discard(proxy);
    logger.warn("Proxy {proxy} of {client} stopped: {reason}", {
      proxy: proxy.spec.name,
      client: client.name,
      reason,
    });
    const notice: PushExceptionParams = {
      level: "warning",
      code: NoticeCode.proxyRevoked,
      message: `Proxy '${proxy.spec.name}' stopped: ${reason}`,
      data: { proxy_name: proxy.spec.name, publish_port: port, reason } satisfies ProxyRevokedNoticeData,
    };
    client.notifyException(notice);
    client.notifyStatus(proxy, { errorMessage: reason });
    events.add({
      level: "warning",
      code: NoticeCode.proxyRevoked,
      message: `${client.name}: ${notice.message}`,
      client: client.name,
      data: { proxy_name: proxy.spec.name, publish_port: port },
    });
    dropped.push(`${client.name}/${proxy.spec.name}`);
  }
  return dropped;
}

/**
 * Keys a running server applies on reload (camelCase, as in {@linkcode ServerConfig}): the clients and
 * their keys and `allow_ports`, the limits, the bind retry, the certificate and key (read again even when
 * their paths are unchanged), `unhealthy_after_failures` and the forwarding keys (`allow_forward`…).
 */
export const SERVER_LIVE_KEYS: ReadonlySet<string> = new Set([
  "clients",
  "authKey",
  "allowPorts",
  "maxProxiesPerClient",
  "maxPendingConnections",
  "maxPendingPerIp",
  "bindRetry",
  "certPath",
  "keyPath",
  "unhealthyAfterFailures",
  // Read on every stream a client opens (client_streams.ts, visit.ts): the next one gets the new value.
  "maxClientStreams",
  // Read on every forward request (forward.ts): the next forwarded connection gets the new values.
  "allowForward",
  "forwardAllowPrivate",
  "maxForwardsPerClient",
  "forwardConnectTimeoutSecs",
]);

/** The keys (TOML spelling) whose change `next` makes but a running server cannot apply: they need a restart. */
export function serverRestartKeys(previous: ServerConfig, next: ServerConfig): string[] {
  return changedKeys(previous, next, SERVER_LIVE_KEYS);
}

/** Keys of two config objects whose values differ (compared as JSON), except `live` ones, in snake_case. */
export function changedKeys<T extends object>(previous: T, next: T, live: ReadonlySet<string>): string[] {
  const keys = new Set([...Object.keys(previous), ...Object.keys(next)]);
  const changed: string[] = [];
  for (const key of keys) {
    if (live.has(key)) continue;
    const before = JSON.stringify((previous as Record<string, unknown>)[key]);
    const after = JSON.stringify((next as Record<string, unknown>)[key]);
    if (before !== after) changed.push(key.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`));
  }
  return changed.sort();
}

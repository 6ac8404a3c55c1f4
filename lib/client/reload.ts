/**
 * What a client's config reload changes, and the calls that change it on a live session.
 *
 * {@linkcode planClientReload} compares the running config with a new one: proxies are added, removed,
 * changed (any key of the `[[proxies]]` entry differs: re-registered, which resets its outside
 * connections) or untouched (left alone: its port and open connections stay). Of the `[client]` keys,
 * {@linkcode CLIENT_LIVE_KEYS} apply at once; any other change (`server_addr`, `auth_key`, `transport`,
 * the CA or pin, keepalive, reconnect…) keeps its running value and is reported as needing a restart:
 * the session is never reconnected by a reload.
 *
 * `TunnelClient.applyConfig` (client.ts) runs the plan: first the client's own state, then on the live
 * session `unregister_proxies` (removed and changed) and `register_proxies` (added and changed). Between
 * sessions only the state changes, and the next session registers the new set.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { ClientConfig } from "../config/types.ts";
import type { RpcPeer } from "../rpc/mod.ts";
import {
  describeMessageError,
  Method,
  type ProxyRegistration,
  type ProxyUnregistration,
  type UnregisterProxiesParams,
  UnregisterProxiesResult,
} from "../protocol/control.ts";
import { MalformedServerAnswerError } from "./errors.ts";

const logger = getLogger(["tls-tunnel", "client", "reload"]);

/** How long the client waits for the server to answer `unregister_proxies`. */
const UNREGISTER_TIMEOUT_MS = 15_000;

/** One proxy as the client config holds it (with the defaults the whole-file checks fill in). */
type ClientProxyConfig = ClientConfig["proxies"][number];

/**
 * `[client]` keys (camelCase, as in {@linkcode ClientConfig}) a reload applies to the running client:
 * the proxies, the local connect retries (next outside connection) and the bind retry asked for (next
 * registration). Every other key needs a restart.
 */
export const CLIENT_LIVE_KEYS: ReadonlySet<string> = new Set([
  "proxies",
  "localConnectRetries",
  "localRetryDelayMs",
  "bindRetry",
]);

/** What a reload changes. */
export interface ClientReloadPlan {
  /** Proxies of the new config whose name the running one does not have. */
  added: ClientProxyConfig[];
  /** Names of running proxies the new config does not have. */
  removed: string[];
  /** Proxies of the new config whose entry differs from the running one of the same name. */
  changed: ClientProxyConfig[];
  /** Names of proxies left as they are. */
  unchanged: string[];
  /** Changed `[client]` keys (TOML spelling) that need a restart; they keep their running values. */
  restartKeys: string[];
  /** The config to run with: `next`, with the running values of {@linkcode restartKeys}. */
  config: ClientConfig;
}

/** What a reload did, as `TunnelClient.applyConfig` reports it. */
export interface ClientReloadResult {
  /** Names of the proxies added. */
  added: string[];
  /** Names of the proxies removed (their ports released by the server). */
  removed: string[];
  /** Names of the proxies re-registered because their entry changed. */
  changed: string[];
  /** Names of the proxies left untouched. */
  unchanged: string[];
  /** Changed `[client]` keys (TOML spelling) that need a restart. */
  restartKeys: string[];
  /** The server's answers for the added and changed proxies (empty between sessions). */
  registrations: ProxyRegistration[];
  /** The server's answers for the removed and changed proxies (empty between sessions). */
  unregistrations: ProxyUnregistration[];
  /** True when no session was up: the next session registers the new set. */
  offline: boolean;
}

function snakeCase(key: string): string {
  return key.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`);
}

/** Compares the running config with `next` (both validated). */
export function planClientReload(running: ClientConfig, next: ClientConfig): ClientReloadPlan {
  const restartKeys: string[] = [];
  const config: ClientConfig = { ...next };
  for (const key of new Set([...Object.keys(running), ...Object.keys(next)])) {
    if (CLIENT_LIVE_KEYS.has(key)) continue;
    const before = (running as Record<string, unknown>)[key];
    if (JSON.stringify(before) === JSON.stringify((next as Record<string, unknown>)[key])) continue;
    restartKeys.push(snakeCase(key));
    Object.assign(config, { [key]: before });
  }
  const runningByName = new Map(running.proxies.map((proxy) => [proxy.name, proxy]));
  const nextNames = new Set(next.proxies.map((proxy) => proxy.name));
  const plan: ClientReloadPlan = {
    added: [],
    removed: running.proxies.filter((proxy) => !nextNames.has(proxy.name)).map((proxy) => proxy.name),
    changed: [],
    unchanged: [],
    restartKeys: restartKeys.sort(),
    config,
  };
  for (const proxy of next.proxies) {
    const before = runningByName.get(proxy.name);
    if (before === undefined) plan.added.push(proxy);
    else if (JSON.stringify(before) !== JSON.stringify(proxy)) plan.changed.push(proxy);
    else plan.unchanged.push(proxy.name);
  }
  return plan;
}

/**
 * Asks the server to stop publishing `names` on the live session (`unregister_proxies`); resolves with
 * its answer per name once their ports are free.
 *
 * @param server the server's `host:port`, for messages
 * @throws {MalformedServerAnswerError} for an answer in another shape
 * @throws {RpcError} the server refused the call, or the session ended
 */
export async function unregisterProxies(
  rpc: RpcPeer,
  names: string[],
  server: string,
): Promise<ProxyUnregistration[]> {
  if (names.length === 0) return [];
  const params: UnregisterProxiesParams = { names };
  const answer = await rpc.request<unknown>(Method.unregisterProxies, params, {
    timeoutMs: UNREGISTER_TIMEOUT_MS,
  });
  const checked = UnregisterProxiesResult.safeParse(answer);
  if (!checked.success) {
    throw new MalformedServerAnswerError(
      Method.unregisterProxies,
      describeMessageError(checked.error),
      server,
    );
  }
  for (const entry of checked.data.proxies) {
    if (entry.status !== "removed") {
      logger.debug("Server answered {status} for unregistering proxy {proxy}", {
        status: entry.status,
        proxy: entry.name,
      });
    }
  }
  return checked.data.proxies;
}

/** Runs tasks one at a time, in the order they were handed in (a reload and a session's registration). */
export class Exclusive {
  #tail: Promise<void> = Promise.resolve();

  /** Runs `task` once every task handed in before has settled; resolves or rejects as it does. */
  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(task);
    this.#tail = result.then(() => {}, () => {});
    return result;
  }
}

/** One line for the log: what a reload did. */
export function describeReload(result: ClientReloadResult): string {
  const parts = [
    result.added.length > 0 ? `added ${result.added.join(", ")}` : "",
    result.removed.length > 0 ? `removed ${result.removed.join(", ")}` : "",
    result.changed.length > 0 ? `re-registered ${result.changed.join(", ")}` : "",
  ].filter((part) => part !== "");
  const proxies = parts.length > 0 ? parts.join("; ") : "no proxy changed";
  return `${proxies}; ${result.unchanged.length} proxy(ies) untouched` +
    (result.offline ? " (not connected: the next session registers the new set)" : "");
}

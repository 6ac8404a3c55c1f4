/**
 * The server's view of whether a proxy's local service answers: the client reports each data stream it
 * could not carry to the local service (`proxy_connect_result`), the server counts them, and after
 * `unhealthy_after_failures` in a row marks the proxy unhealthy until a stream gets through. Without
 * this a proxy whose local service is down looked healthy on the server however many connections
 * failed.
 *
 * Reports are hostile input: each is checked against the schema, may only name a stream the server
 * opened, and a proxy accepts at most one failure report per stream it opened, so a flood of reports
 * costs constant work each and cannot inflate the counters.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { formatHostPort } from "../net/address.ts";
import { ProxyConnectResultParams } from "../protocol/control.ts";
import type { EventLog } from "../stats/event_log.ts";
import type { ConnectedClient } from "./connected_client.ts";

const logger = getLogger(["tls-tunnel", "server"]);

/** Longest last error kept for a proxy, in characters. */
const MAX_ERROR_CHARS = 512;

/** Per proxy: what the client reported about the streams the server opened for it. */
export class ConnectFailures {
  /** Streams opened for which no failure was reported yet: the most failure reports still accepted. */
  #unreportedStreams = 0;
  /** The highest conn_id of a stream opened. */
  #lastConnId = 0;
  /** Failures reported in a row since the last success. */
  consecutive = 0;
  /** Whether the failures (not a health check) made the proxy unhealthy. */
  markedUnhealthy = false;
  /** Reports refused: for a stream never opened, or more failures than streams. */
  ignoredReports = 0;

  /** Records that a data stream `connId` was opened (its header written). */
  streamOpened(connId: number): void {
    this.#lastConnId = Math.max(this.#lastConnId, connId);
    this.#unreportedStreams++;
  }

  /**
   * Takes one report; returns what it means: a failure counted, the first success after failures, or
   * nothing (ignored: it names no stream opened, repeats a success, or exceeds the streams opened).
   */
  take(connId: number, ok: boolean): "failure" | "recovered" | "ignored" {
    if (connId > this.#lastConnId) {
      this.ignoredReports++;
      return "ignored";
    }
    if (ok) {
      if (this.consecutive === 0) return "ignored";
      this.consecutive = 0;
      return "recovered";
    }
    if (this.#unreportedStreams === 0) {
      this.ignoredReports++;
      return "ignored";
    }
    this.#unreportedStreams--;
    this.consecutive++;
    return "failure";
  }
}

/** What {@linkcode onProxyConnectResult} needs from the server. */
export interface ConnectResultContext {
  /** `unhealthy_after_failures`. */
  unhealthyAfterFailures: number;
  /** Server events (dashboard, webhook). */
  events: EventLog;
}

/** Reports that did not match the schema, per client session; logged once, then only counted. */
const malformedReports = new WeakMap<ConnectedClient, number>();

/** Handles one `proxy_connect_result` notification from `client`. Never throws. */
export function onProxyConnectResult(
  client: ConnectedClient,
  raw: unknown,
  context: ConnectResultContext,
): void {
  const parsed = ProxyConnectResultParams.safeParse(raw);
  if (!parsed.success) {
    const count = (malformedReports.get(client) ?? 0) + 1;
    malformedReports.set(client, count);
    if (count === 1) {
      logger.info("Client {client} sent a malformed proxy_connect_result ({issue}); ignoring such reports", {
        client: client.name,
        issue: parsed.error.issues[0]?.message ?? "?",
      });
    }
    return;
  }
  const report = parsed.data;
  const proxy = client.proxies.get(report.proxy_name);
  if (!proxy || proxy.boundPort === null) return;
  const failures = proxy.connectFailures;
  const outcome = failures.take(report.conn_id, report.ok);
  if (outcome === "ignored") return;
  const stats = proxy.stats;
  if (outcome === "failure") {
    const error = (report.error ?? "the client could not reach the local service").slice(0, MAX_ERROR_CHARS);
    stats.failedConnections++;
    stats.lastError = error;
    if (failures.consecutive < context.unhealthyAfterFailures || stats.status !== "healthy") return;
    failures.markedUnhealthy = true;
    const message = `${failures.consecutive} connections in a row could not reach the local service ` +
      `${formatHostPort(proxy.spec.local_addr, proxy.spec.local_port)}: ${error}`;
    stats.setStatus("unhealthy", message);
    logger.warn("Proxy {proxy} of {client} is unhealthy: {message}", {
      proxy: proxy.spec.name,
      client: client.name,
      message,
    });
    context.events.add({
      level: "warning",
      code: "PROXY_UNHEALTHY",
      message: `${client.name}: proxy '${proxy.spec.name}' is unhealthy: ${message}`,
      client: client.name,
      data: { proxy_name: proxy.spec.name, consecutive_failures: failures.consecutive, error },
    });
    client.notifyStatus(proxy, { errorMessage: message });
    return;
  }
  if (!failures.markedUnhealthy) return;
  failures.markedUnhealthy = false;
  if (stats.status !== "unhealthy" || proxy.refuseConnections) return;
  stats.setStatus("healthy");
  logger.info("Proxy {proxy} of {client} is healthy again: a connection reached the local service", {
    proxy: proxy.spec.name,
    client: client.name,
  });
  context.events.add({
    level: "info",
    code: "PROXY_HEALTHY",
    message: `${client.name}: proxy '${proxy.spec.name}' is healthy again`,
    client: client.name,
    data: { proxy_name: proxy.spec.name },
  });
  client.notifyStatus(proxy);
}

/**
 * The server's handling of `register_proxies`: validation against what the client may publish,
 * choosing a port (sticky, requested, range, system), binding with retry and backoff, and telling the
 * client how each proxy fares, live.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { BindRetryConfig, ServerConfig } from "../config/types.ts";
import { formatPortRanges, portInRanges } from "../config/mod.ts";
import {
  type BindFailedNoticeData,
  type BindRecoveredNoticeData,
  type BindRetryNoticeData,
  ControlErrorCode,
  describeParamsError,
  NoticeCode,
  type PortChangedNoticeData,
  type ProxyRegistration,
  ProxyRejectCode,
  type ProxyRejectCodeValue,
  ProxySpec,
  type PushExceptionParams,
  RegisterProxiesParams,
  type RegisterProxiesResult,
  type TooManyPendingData,
} from "../protocol/control.ts";
import { fromBindRetryRequest } from "../protocol/convert.ts";
import { INVALID_PARAMS, RpcError } from "../rpc/mod.ts";
import { escapeForTerminal, NAME_MAX_LENGTH } from "../text.ts";
import { addressesOverlap, formatAddr, formatHostPort } from "../net/address.ts";
import { BindError } from "../net/tcp.ts";
import type { EventLog } from "../stats/event_log.ts";
import type { Histogram } from "../stats/histogram.ts";
import { bindWithRetry, narrowPolicy } from "./bind_retry.ts";
import type { ConnectedClient } from "./connected_client.ts";
import { candidatePorts, type PortRequest, preferredPort, type StickyPorts } from "./port_plan.ts";
import { PublishedProxy } from "./published_proxy.ts";
import { type PublishedListener, type ServerProxyKind, UnknownProxyKindError } from "./proxy_kinds/kind.ts";
import { serverProxyKindFor } from "./proxy_kinds/registry.ts";
import { SerialQueueFullError } from "./serial_queue.ts";

const logger = getLogger(["tls-tunnel", "server", "registrar"]);

/**
 * Longest stretch (ms) a registration runs before letting other sessions' I/O and timers run: one call
 * may carry 1024 proxies with 4096-port ranges each, which took 3.5 s in one piece.
 */
const REGISTRATION_SLICE_MS = 5;

/** How long a registration has held the event loop; gives it back once the slice is spent. */
class TimeSlice {
  #startedMs = performance.now();

  /** Resolves at once, or after one turn of the event loop when the slice is spent. */
  async yieldIfSpent(): Promise<void> {
    if (performance.now() - this.#startedMs < REGISTRATION_SLICE_MS) return;
    await new Promise((resolve) => setTimeout(resolve, 0));
    this.#startedMs = performance.now();
  }
}

/** What the registrar needs from the server. */
export interface RegistrarContext {
  /** The server's config. */
  config: ServerConfig;
  /** Why `addr:port` is the server's own (tunnel or stats) port, or null. */
  reservedPortReason(addr: string, port: number): string | null;
  /**
   * The name of another live client publishing an overlapping binding, or null. With `verify`, a
   * holder is pinged first and disconnected (freeing the port) when it does not answer.
   */
  contestedHolder(
    client: ConnectedClient,
    addr: string,
    port: number,
    verify: boolean,
  ): Promise<string | null>;
  /** Remembered ports per client and proxy. */
  sticky: StickyPorts;
  /** Stream open latency, for every proxy. */
  openLatency: Histogram;
  /** Server events. */
  events: EventLog;
}

/** Two bindings collide when their ports match and their addresses overlap (a wildcard overlaps all). */
export function bindingsOverlap(addrA: string, portA: number, addrB: string, portB: number): boolean {
  return portA === portB && portA !== 0 && addressesOverlap(addrA, addrB);
}

function bindErrorCode(error: BindError): ProxyRejectCodeValue {
  switch (error.kind) {
    case "address_in_use":
      return ProxyRejectCode.addressInUse;
    case "permission_denied":
      return ProxyRejectCode.permissionDenied;
    case "address_not_available":
      return ProxyRejectCode.addressNotAvailable;
    case "invalid_address":
      return ProxyRejectCode.invalidProxy;
    default:
      return ProxyRejectCode.bindFailed;
  }
}

/** The answer for a proxy whose session ended while it was being registered (no one reads it). */
function closingRejection(proxy: ProxySpec): ProxyRegistration {
  return rejected(proxy, ProxyRejectCode.bindFailed, "The session is closing");
}

/**
 * The address and port an invalid proxy object asked for, echoed in its rejection when they are of the
 * right type (a string of at most 255 characters, made safe for terminals; a port number), else `""`/`0`.
 */
function askedBinding(candidate: unknown): { publish_addr: string; publish_port: number } {
  const fields = typeof candidate === "object" && candidate !== null
    ? candidate as Record<string, unknown>
    : {};
  const addr = fields.publish_addr;
  const port = fields.publish_port;
  return {
    publish_addr: typeof addr === "string" && addr.length <= 255 ? escapeForTerminal(addr).slice(0, 255) : "",
    publish_port: typeof port === "number" && Number.isInteger(port) && port >= 0 && port <= 65535 ? port : 0,
  };
}

function rejected(
  proxy: { name: string; publish_addr: string; publish_port: number },
  code: ProxyRejectCodeValue,
  reason: string,
): ProxyRegistration {
  return {
    name: proxy.name,
    status: "rejected",
    publish_addr: proxy.publish_addr,
    publish_port: proxy.publish_port,
    code,
    reason,
  };
}

/** Handles `register_proxies` for the server. */
export class ProxyRegistrar {
  constructor(readonly context: RegistrarContext) {}

  /** Logs a rejection (at INFO: the client's request, not the server, is at fault) and returns it. */
  #refused(client: ConnectedClient, rejection: ProxyRegistration): ProxyRegistration {
    if (rejection.status === "rejected") {
      logger.info("Proxy {proxy} of {client} rejected ({code}): {reason}", {
        proxy: rejection.name,
        client: client.name,
        code: rejection.code,
        reason: rejection.reason,
      });
    }
    return rejection;
  }

  /** Tells the client (merged, never blocking) and records the server event (dashboard, webhook). */
  #announce(client: ConnectedClient, notice: PushExceptionParams): void {
    client.notifyException(notice);
    this.context.events.add({
      level: notice.level,
      code: notice.code,
      message: `${client.name}: ${notice.message}`,
      client: client.name,
      ...(notice.data ? { data: notice.data } : {}),
    });
  }

  /**
   * Registers each proxy in `raw`; one result per proxy, in order. A session's calls run one at a time,
   * in arrival order, so overlapping calls (pipelined, or sent while one waits on a liveness ping)
   * cannot both pass the checks for one name or binding.
   *
   * @throws {RpcError} `INVALID_PARAMS` for malformed params; `TOO_MANY_PENDING` when
   *   `MAX_PENDING_REGISTRATIONS` calls of this session are already running or waiting
   */
  async register(client: ConnectedClient, raw: unknown): Promise<RegisterProxiesResult> {
    const parsed = RegisterProxiesParams.safeParse(raw);
    if (!parsed.success) throw new RpcError(INVALID_PARAMS, "register_proxies expects { proxies: [...] }");
    const policy = narrowPolicy(this.context.config.bindRetry, fromBindRetryRequest(parsed.data.bind_retry));
    const proxies = parsed.data.proxies;
    let queued: Promise<RegisterProxiesResult>;
    try {
      queued = client.registrations.run(async () => {
        const results: ProxyRegistration[] = [];
        const slice = new TimeSlice();
        for (const candidate of proxies) {
          await slice.yieldIfSpent();
          results.push(await this.#registerOne(client, candidate, policy, slice));
        }
        return { proxies: results };
      });
    } catch (error) {
      if (!(error instanceof SerialQueueFullError)) throw error;
      throw new RpcError(
        ControlErrorCode.tooManyPending,
        `${error.limit} register_proxies calls of this session are already waiting for their answers; ` +
          `wait for them before sending more`,
        { limit: error.limit } satisfies TooManyPendingData,
      );
    }
    return await queued;
  }

  /**
   * Checks a proxy against everything but other clients and the bind itself; returns the rejection, or
   * null if it may go on. Synchronous, so the name can be claimed before anything else runs.
   */
  #check(client: ConnectedClient, proxy: ProxySpec): ProxyRegistration | null {
    const { grant } = client;
    if (client.closing) return closingRejection(proxy);
    if (client.hasName(proxy.name)) {
      return rejected(
        proxy,
        ProxyRejectCode.duplicateName,
        `Another proxy of this client is named '${proxy.name}'`,
      );
    }
    if (client.proxyCount >= grant.maxProxies) {
      return rejected(
        proxy,
        ProxyRejectCode.tooManyProxies,
        `This client may publish at most ${grant.maxProxies} proxies; remove some or raise max_proxies`,
      );
    }
    const range = proxy.publish_port_range;
    if (range && range.start > range.end) {
      return rejected(
        proxy,
        ProxyRejectCode.invalidProxy,
        `publish_port_range ${range.start}-${range.end} is reversed`,
      );
    }
    if (proxy.publish_port !== 0 && !portInRanges(proxy.publish_port, grant.allowPorts) && !range) {
      return rejected(
        proxy,
        ProxyRejectCode.portNotAllowed,
        `Port ${proxy.publish_port} is outside the ports this client may publish (${
          formatPortRanges(grant.allowPorts)
        }); pick a publish_port in them`,
      );
    }
    if (range && !portInRanges(range.start, grant.allowPorts) && !portInRanges(range.end, grant.allowPorts)) {
      return rejected(
        proxy,
        ProxyRejectCode.portNotAllowed,
        `publish_port_range ${range.start}-${range.end} is outside the ports this client may publish (${
          formatPortRanges(grant.allowPorts)
        })`,
      );
    }
    if (proxy.publish_port !== 0 && !range) {
      const reserved = this.context.reservedPortReason(proxy.publish_addr, proxy.publish_port);
      if (reserved) return rejected(proxy, ProxyRejectCode.reservedPort, reserved);
      for (const other of client.ownProxies()) {
        if (bindingsOverlap(other.spec.publish_addr, other.port, proxy.publish_addr, proxy.publish_port)) {
          return rejected(
            proxy,
            ProxyRejectCode.duplicateBinding,
            `Proxy '${other.spec.name}' of this client already publishes ` +
              formatHostPort(proxy.publish_addr, proxy.publish_port),
          );
        }
      }
    }
    return null;
  }

  /**
   * For a single explicit port: the rejection when another live client publishes it (a holder that
   * does not answer a liveness ping is disconnected instead), else null.
   */
  async #checkOtherClients(client: ConnectedClient, proxy: ProxySpec): Promise<ProxyRegistration | null> {
    if (proxy.publish_port === 0 || proxy.publish_port_range) return null;
    const holder = await this.context.contestedHolder(client, proxy.publish_addr, proxy.publish_port, true);
    if (!holder) return null;
    return rejected(
      proxy,
      ProxyRejectCode.portOwnedByOtherClient,
      `Port ${proxy.publish_port} on ${proxy.publish_addr} is published by client '${holder}', which is ` +
        `connected and answering; pick another publish_port or stop that client`,
    );
  }

  /** Why `port` cannot be tried for this proxy without stepping on someone, or null when it can. */
  async #unusable(
    client: ConnectedClient,
    self: PublishedProxy,
    port: number,
  ): Promise<{ code: ProxyRejectCodeValue; reason: string } | null> {
    if (port === 0) return null;
    const proxy = self.spec;
    if (!portInRanges(port, client.grant.allowPorts)) {
      return {
        code: ProxyRejectCode.portNotAllowed,
        reason: `Port ${port} is outside the ports this client may publish (${
          formatPortRanges(client.grant.allowPorts)
        })`,
      };
    }
    const reserved = this.context.reservedPortReason(proxy.publish_addr, port);
    if (reserved) return { code: ProxyRejectCode.reservedPort, reason: reserved };
    for (const other of client.ownProxies()) {
      if (other !== self && bindingsOverlap(other.spec.publish_addr, other.port, proxy.publish_addr, port)) {
        return {
          code: ProxyRejectCode.duplicateBinding,
          reason: `Proxy '${other.spec.name}' of this client already publishes ` +
            formatHostPort(proxy.publish_addr, port),
        };
      }
    }
    const holder = await this.context.contestedHolder(client, proxy.publish_addr, port, false);
    if (holder === null) return null;
    return {
      code: ProxyRejectCode.portOwnedByOtherClient,
      reason:
        `Port ${port} on ${proxy.publish_addr} is published by client '${holder}'; pick another publish_port`,
    };
  }

  async #registerOne(
    client: ConnectedClient,
    candidate: unknown,
    policy: BindRetryConfig,
    slice: TimeSlice,
  ): Promise<ProxyRegistration> {
    const spec = ProxySpec.safeParse(candidate);
    if (!spec.success) {
      const sentName = typeof candidate === "object" && candidate !== null &&
          typeof (candidate as Record<string, unknown>).name === "string"
        ? String((candidate as Record<string, unknown>).name)
        : "?";
      // Echoed so the client can tell which proxy failed, but never raw: the name may be the problem.
      const fallbackName = escapeForTerminal(sentName.slice(0, NAME_MAX_LENGTH));
      return this.#refused(
        client,
        rejected(
          { name: fallbackName, ...askedBinding(candidate) },
          ProxyRejectCode.invalidProxy,
          `Invalid proxy: ${describeParamsError(spec.error)}`,
        ),
      );
    }
    const proxy = spec.data;
    let kind: ServerProxyKind;
    try {
      kind = serverProxyKindFor(proxy.proxy_type);
    } catch (error) {
      if (!(error instanceof UnknownProxyKindError)) throw error;
      return this.#refused(client, rejected(proxy, ProxyRejectCode.invalidProxy, error.message));
    }
    const problem = this.#check(client, proxy);
    if (problem) return this.#refused(client, problem);
    // Claimed in the same turn as the checks, before any await: from here the client owns the proxy
    // (and stops it if the session ends), and no other registration can pass the checks for its name.
    const published = new PublishedProxy(
      proxy,
      client.name,
      () => client.session.open(),
      this.context.openLatency,
      kind,
    );
    const refusal = client.claim(published);
    if (refusal === "session_closing") return closingRejection(proxy);
    if (refusal === "duplicate_name") {
      return rejected(
        proxy,
        ProxyRejectCode.duplicateName,
        `Another proxy of this client is named '${proxy.name}'`,
      );
    }
    const contested = await this.#checkOtherClients(client, proxy);
    if (contested) {
      await client.discard(published);
      return this.#refused(client, contested);
    }
    if (!client.publish(published)) return closingRejection(proxy);

    const request: PortRequest = {
      publishPort: proxy.publish_port,
      fallbackToSystemPort: proxy.fallback_to_system_port ?? false,
      ...(proxy.publish_port_range ? { range: proxy.publish_port_range } : {}),
      allowPorts: client.grant.allowPorts,
    };
    const sticky = this.context.sticky.lookup(client.clientId, proxy.name);
    if (sticky !== undefined) request.stickyPort = sticky;
    const preferred = preferredPort(request);

    let lastError: BindError | null = null;
    let lastSkip: { code: ProxyRejectCodeValue; reason: string } | null = null;
    for (const port of candidatePorts(request)) {
      await slice.yieldIfSpent();
      const skip = await this.#unusable(client, published, port);
      // The session may have ended during either await; its proxy is stopped then, and must not bind.
      if (published.stopped) return closingRejection(proxy);
      if (skip) {
        lastSkip = skip;
        continue;
      }
      try {
        const listener = published.bind(port);
        if (port === 0 && !portInRanges(listener.addr.port, client.grant.allowPorts)) {
          // The system's pick fell outside what this client may publish; do not hand it out.
          listener.close();
          continue;
        }
        return this.#bound(client, published, listener, preferred, 0) ?? closingRejection(proxy);
      } catch (error) {
        if (!(error instanceof BindError)) throw error;
        lastError = error;
        if (!error.retryable) break;
      }
    }

    const singlePort = proxy.publish_port !== 0 && !proxy.publish_port_range;
    if (lastError && lastError.retryable && singlePort && policy.maxRetries > 0) {
      return this.#retryInBackground(client, published, lastError, policy);
    }
    const reason = lastError
      ? (proxy.publish_port_range && lastError.kind === "address_in_use"
        ? `Every port of publish_port_range ${proxy.publish_port_range.start}-${proxy.publish_port_range.end} ` +
          `is taken; widen the range or set fallback_to_system_port = true`
        : proxy.publish_port === 0 && lastError.kind === "address_in_use"
        ? `No port this client may publish (${formatPortRanges(client.grant.allowPorts)}) is free; ` +
          `free one or widen allow_ports`
        : lastError.message)
      : lastSkip?.reason ?? `No port this client may publish is free for '${proxy.name}'`;
    const code = lastError ? bindErrorCode(lastError) : lastSkip?.code ?? ProxyRejectCode.portNotAllowed;
    published.stats.setStatus("bind_failed", reason);
    await client.discard(published);
    logger.info("Proxy {proxy} of {client} not published ({code}): {reason}", {
      code,
      proxy: proxy.name,
      client: client.name,
      reason,
    });
    this.#announce(client, {
      level: "error",
      code: NoticeCode.bindFailed,
      message: `Proxy '${proxy.name}' could not be published: ${reason}`,
      data: {
        proxy_name: proxy.name,
        publish_addr: proxy.publish_addr,
        publish_port: proxy.publish_port,
        max_retries: 0,
        final_error: reason,
      } satisfies BindFailedNoticeData,
    });
    return rejected(proxy, code, reason);
  }

  /**
   * A listener was bound: hand it to its proxy, remember the port, and say so. Null when the proxy was
   * stopped meanwhile (its session ended): the listener is closed and nothing is remembered.
   */
  #bound(
    client: ConnectedClient,
    published: PublishedProxy,
    listener: PublishedListener,
    preferred: number | null,
    retries: number,
  ): ProxyRegistration | null {
    const proxy = published.spec;
    const port = listener.addr.port;
    if (!published.attach(listener)) return null;
    this.context.sticky.remember(client.clientId, proxy.name, port);
    logger.info("Proxy {proxy} of {client} listening on {addr} → client's {local}{after}", {
      proxy: proxy.name,
      client: client.name,
      addr: formatAddr(listener.addr),
      local: `${proxy.local_addr}:${proxy.local_port}`,
      after: retries > 0 ? ` (after ${retries} retries)` : "",
    });
    if (preferred !== null && port !== preferred) {
      const reason = preferred === proxy.publish_port
        ? `port ${preferred} was not available`
        : `its previous port ${preferred} was not available`;
      this.#announce(client, {
        level: "warning",
        code: NoticeCode.portChanged,
        message: `Proxy '${proxy.name}' is published on port ${port} instead of ${preferred}: ${reason}`,
        data: {
          proxy_name: proxy.name,
          requested_port: preferred,
          publish_port: port,
          reason,
        } satisfies PortChangedNoticeData,
      });
    }
    const accepted: ProxyRegistration = {
      name: proxy.name,
      status: "accepted",
      publish_addr: proxy.publish_addr,
      publish_port: port,
    };
    if (port !== proxy.publish_port) accepted.requested_port = proxy.publish_port;
    return accepted;
  }

  /** The port is busy: answer "retrying" now and keep trying with backoff, reporting each attempt. */
  #retryInBackground(
    client: ConnectedClient,
    published: PublishedProxy,
    firstError: BindError,
    policy: BindRetryConfig,
  ): ProxyRegistration {
    const proxy = published.spec;
    let firstDelaySecs = policy.initialDelaySecs;
    const retrying = bindWithRetry({
      bind: () => published.bind(proxy.publish_port),
      policy,
      signal: client.signal,
      firstAttemptError: firstError,
      onRetry: (attempt) => {
        if (attempt.retryCount === 1) firstDelaySecs = attempt.retryDelaySecs;
        const message =
          `Proxy '${proxy.name}' bind failed (attempt ${attempt.retryCount}/${attempt.maxRetries}): ` +
          `${attempt.error.message}. Retrying in ${attempt.retryDelaySecs} s`;
        logger.warn(
          "Proxy '{proxy}' bind failed (attempt {attempt}/{maxAttempts}): {error}. Retrying in {secs} s",
          {
            proxy: proxy.name,
            client: client.name,
            attempt: attempt.retryCount,
            maxAttempts: attempt.maxRetries,
            error: attempt.error.message,
            secs: attempt.retryDelaySecs,
          },
        );
        published.stats.bindRetries++;
        published.stats.setStatus("unhealthy", attempt.error.message);
        client.notifyException({
          level: "warning",
          code: NoticeCode.bindRetry,
          message,
          data: {
            proxy_name: proxy.name,
            publish_addr: proxy.publish_addr,
            publish_port: proxy.publish_port,
            retry_count: attempt.retryCount,
            max_retries: attempt.maxRetries,
            retry_delay_secs: attempt.retryDelaySecs,
            error: attempt.error.message,
          } satisfies BindRetryNoticeData,
        });
        client.notifyStatus(published, {
          errorMessage: attempt.error.message,
          retryAfterSeconds: attempt.retryDelaySecs,
        });
      },
    });
    retrying.then(
      ({ bound, retries }) => {
        // A session that ended meanwhile stopped the proxy, which then closes the listener.
        if (!this.#bound(client, published, bound, proxy.publish_port, retries)) return;
        client.notifyException({
          level: "info",
          code: NoticeCode.bindRecovered,
          message: `Proxy '${proxy.name}' is listening on ` +
            `${formatHostPort(proxy.publish_addr, proxy.publish_port)} after ${retries} retries`,
          data: {
            proxy_name: proxy.name,
            publish_addr: proxy.publish_addr,
            publish_port: proxy.publish_port,
            retries,
          } satisfies BindRecoveredNoticeData,
        });
        client.notifyStatus(published);
      },
      (error: unknown) => {
        if (client.signal.aborted || published.stopped) return;
        const finalError = error instanceof Error ? error.message : String(error);
        logger.error("Proxy {proxy} of {client} bind failed after {retries} retries: {error}", {
          proxy: proxy.name,
          client: client.name,
          retries: policy.maxRetries,
          error: finalError,
        });
        published.stats.setStatus("bind_failed", finalError);
        this.#announce(client, {
          level: "error",
          code: NoticeCode.bindFailed,
          message: `Proxy '${proxy.name}' bind failed after ${policy.maxRetries} retries: ${finalError}`,
          data: {
            proxy_name: proxy.name,
            publish_addr: proxy.publish_addr,
            publish_port: proxy.publish_port,
            max_retries: policy.maxRetries,
            final_error: finalError,
          } satisfies BindFailedNoticeData,
        });
        client.notifyStatus(published, { errorMessage: finalError });
      },
    );
    return {
      name: proxy.name,
      status: "retrying",
      publish_addr: proxy.publish_addr,
      publish_port: proxy.publish_port,
      code: bindErrorCode(firstError),
      reason: firstError.message,
      retry_after_seconds: firstDelaySecs,
    };
  }
}

/**
 * The server's handling of `register_proxies`: validation against what the client may publish,
 * choosing a port (sticky, requested, range, system), binding with retry and backoff, and telling the
 * client how each proxy fares, live.
 *
 * This module runs a registration from end to end; its parts live beside it: the checks before a bind
 * (`registration_checks.ts`), the per-proxy answers (`registration_answers.ts`) and the background bind
 * retry (`registration_retry.ts`).
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { BindRetryConfig, ServerConfig } from "../config/types.ts";
import { formatPortRanges, portInRanges } from "../config/mod.ts";
import {
  type BindFailedNoticeData,
  ControlErrorCode,
  describeParamsError,
  NoticeCode,
  type PortChangedNoticeData,
  type ProxyRegistration,
  ProxyRejectCode,
  type ProxyRejectCodeValue,
  type ProxySpec,
  ProxySpecRequest,
  type PushExceptionParams,
  RegisterProxiesParams,
  type RegisterProxiesResult,
  type TooManyPendingData,
} from "../protocol/control.ts";
import { fromBindRetryRequest } from "../protocol/convert.ts";
import { INVALID_PARAMS, RpcError } from "../rpc/mod.ts";
import { formatAddr } from "../net/address.ts";
import { BindError } from "../net/tcp.ts";
import type { EventLog } from "../stats/event_log.ts";
import type { Histogram } from "../stats/histogram.ts";
import { narrowPolicy } from "./bind_retry.ts";
import type { ConnectedClient } from "./connected_client.ts";
import { candidatePorts, type PortRequest, preferredPort, type StickyPorts } from "./port_plan.ts";
import { PublishedProxy } from "./published_proxy.ts";
import { registerPrivate } from "./visit.ts";
import {
  isDatagramPublication,
  type Publication,
  type ServerProxyKind,
  UnknownProxyKindError,
} from "./proxy_kinds/kind.ts";
import { serverProxyKindFor } from "./proxy_kinds/registry.ts";
import {
  accepted,
  bindErrorCode,
  closingRejection,
  invalidProxyEcho,
  rejected,
} from "./registration_answers.ts";
import { type RegistrationCheckContext, RegistrationChecks } from "./registration_checks.ts";
import { retryBindInBackground } from "./registration_retry.ts";
import { SerialQueueFullError } from "./serial_queue.ts";
import type { VhostService } from "./vhost/service.ts";
import { VhostPublication } from "./vhost/target.ts";
import { type GroupRegistry, groupSpecProblem } from "./groups.ts";

export { bindingsOverlap } from "./registration_checks.ts";

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

/**
 * What the registrar needs from the server: besides what its checks need (why a port is the server's
 * own, who else publishes a binding), the following.
 */
export interface RegistrarContext extends RegistrationCheckContext {
  /** The server's config. */
  config: ServerConfig;
  /** Remembered ports per client and proxy. */
  sticky: StickyPorts;
  /** Stream open latency, for every proxy. */
  openLatency: Histogram;
  /** Server events. */
  events: EventLog;
  /** The shared HTTP/HTTPS ports, when configured (`http`/`https` proxies are routed there). */
  vhost?: VhostService | null;
  /** Groups of clients sharing a TCP port (`group`/`group_key`); none when absent. */
  groups?: GroupRegistry;
}

/** Handles `register_proxies` for the server. */
export class ProxyRegistrar {
  /** The checks before a bind. */
  readonly #checks: RegistrationChecks;

  constructor(readonly context: RegistrarContext) {
    this.#checks = new RegistrationChecks(context);
  }

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

  async #registerOne(
    client: ConnectedClient,
    candidate: unknown,
    policy: BindRetryConfig,
    slice: TimeSlice,
  ): Promise<ProxyRegistration> {
    const spec = ProxySpecRequest.safeParse(candidate);
    if (!spec.success) {
      return this.#refused(
        client,
        rejected(
          invalidProxyEcho(candidate),
          ProxyRejectCode.invalidProxy,
          `Invalid proxy: ${describeParamsError(spec.error)}`,
        ),
      );
    }
    // A proxy that names no address is published on the server's default_publish_addr.
    const proxy: ProxySpec = {
      ...spec.data,
      publish_addr: spec.data.publish_addr ?? this.context.config.defaultPublishAddr,
    };
    let kind: ServerProxyKind;
    try {
      kind = serverProxyKindFor(proxy.proxy_type);
    } catch (error) {
      if (!(error instanceof UnknownProxyKindError)) throw error;
      return this.#refused(client, rejected(proxy, ProxyRejectCode.invalidProxy, error.message));
    }
    if ((proxy.visibility ?? "public") !== "public" && proxy.proxy_type !== "tcp") {
      return this.#refused(
        client,
        rejected(
          proxy,
          ProxyRejectCode.invalidProxy,
          `visibility "${proxy.visibility}" needs proxy_type "tcp"; visitors reach TCP proxies only`,
        ),
      );
    }
    const groupProblem = groupSpecProblem(proxy);
    if (groupProblem) {
      return this.#refused(client, rejected(proxy, ProxyRejectCode.invalidProxy, groupProblem));
    }
    const problem = this.#checks.check(client, proxy);
    if (problem) return this.#refused(client, problem);
    // Claimed in the same turn as the checks, before any await: from here the client owns the proxy
    // (and stops it if the session ends), and no other registration can pass the checks for its name.
    const published = new PublishedProxy(
      proxy,
      client.name,
      (firstBytes) => client.session.open(firstBytes),
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
    if (proxy.visibility === "private") return registerPrivate(client, published);
    // Groups hold TCP ports: a udp proxy may publish the same port number beside one.
    if (proxy.proxy_type === "tcp" && proxy.publish_port !== 0 && !proxy.publish_port_range) {
      const group = this.context.groups?.at(proxy.publish_addr, proxy.publish_port);
      if (proxy.group !== undefined) return await this.#publishInGroup(client, published, kind);
      if (group) {
        await client.discard(published);
        return this.#refused(
          client,
          rejected(proxy, ProxyRejectCode.portOwnedByOtherClient, group.refusal(proxy) ?? "in a group"),
        );
      }
    }
    const contested = await this.#checks.checkOtherClients(client, proxy);
    if (contested) {
      await client.discard(published);
      return this.#refused(client, contested);
    }
    if (!client.publish(published)) return closingRejection(proxy);
    if (kind.vhost) return await this.#publishVhost(client, published, kind.vhost);

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
      const skip = await this.#checks.unusable(client, published, port);
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
      return retryBindInBackground({
        client,
        published,
        firstError: lastError,
        policy,
        attach: (listener, retries) => this.#bound(client, published, listener, proxy.publish_port, retries),
        announce: (notice) => this.#announce(client, notice),
      });
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
   * A `tcp` proxy with `group`: joins the group holding its binding (same name and key), or binds the
   * port for a new group, owned by the group (`groups.ts`). No bind retry: a group's port is bound once.
   */
  async #publishInGroup(
    client: ConnectedClient,
    published: PublishedProxy,
    kind: ServerProxyKind,
  ): Promise<ProxyRegistration> {
    const proxy = published.spec;
    const groups = this.context.groups;
    if (!groups) {
      await client.discard(published);
      return this.#refused(
        client,
        rejected(proxy, ProxyRejectCode.invalidProxy, "this server has no groups"),
      );
    }
    if (!groups.at(proxy.publish_addr, proxy.publish_port)) {
      // A proxy outside any group holding the port refuses the group, as it would any other proxy.
      const contested = await this.#checks.checkOtherClients(client, proxy);
      if (contested) {
        await client.discard(published);
        return this.#refused(client, contested);
      }
    }
    // From here to the attach nothing awaits: no other registration can make or join the group meanwhile.
    const group = groups.at(proxy.publish_addr, proxy.publish_port);
    const refusal = group?.refusal(proxy);
    if (refusal) {
      await client.discard(published);
      return this.#refused(client, rejected(proxy, ProxyRejectCode.portOwnedByOtherClient, refusal));
    }
    if (published.stopped || !client.publish(published)) return closingRejection(proxy);
    if (group) {
      if (!published.attach(group.join(published))) return closingRejection(proxy);
      logger.info("Proxy {proxy} of {client} joined group {group} on {addr} ({count} members)", {
        proxy: proxy.name,
        client: client.name,
        group: group.name,
        addr: formatAddr(group.addr),
        count: group.members.length,
      });
      return accepted(proxy, group.addr.port);
    }
    let listener: Publication;
    try {
      listener = kind.bind(proxy.publish_addr, proxy.publish_port);
    } catch (error) {
      if (!(error instanceof BindError)) throw error;
      published.stats.setStatus("bind_failed", error.message);
      await client.discard(published);
      return this.#refused(client, rejected(proxy, bindErrorCode(error), error.message));
    }
    if (isDatagramPublication(listener)) {
      listener.close();
      await client.discard(published);
      return this.#refused(
        client,
        rejected(proxy, ProxyRejectCode.invalidProxy, "this kind cannot be grouped"),
      );
    }
    const created = groups.create(proxy, listener);
    if (!published.attach(created.join(published))) return closingRejection(proxy);
    logger.info("Proxy {proxy} of {client} formed group {group} on {addr}", {
      proxy: proxy.name,
      client: client.name,
      group: created.name,
      addr: formatAddr(created.addr),
    });
    return accepted(proxy, created.addr.port);
  }

  /**
   * An `http`/`https` proxy: no port of its own, its routes go on the server's shared port of its kind
   * (`vhost/`); it is answered as published on that port.
   */
  async #publishVhost(
    client: ConnectedClient,
    published: PublishedProxy,
    kind: "http" | "https",
  ): Promise<ProxyRegistration> {
    const proxy = published.spec;
    const vhost = this.context.vhost;
    const outcome = vhost ? vhost.publish(published, kind, client) : {
      code: ProxyRejectCode.invalidProxy,
      reason: `this server serves no ${kind} proxies: its vhost_${kind}_port is not set`,
    };
    if (!(outcome instanceof VhostPublication)) {
      await client.discard(published);
      return this.#refused(client, rejected(proxy, outcome.code, outcome.reason));
    }
    if (!published.attach(outcome)) return closingRejection(proxy);
    logger.info("Proxy {proxy} of {client} serves {hosts} on the {kind} vhost port {port}", {
      proxy: proxy.name,
      client: client.name,
      hosts: [...(proxy.custom_domains ?? []), ...(proxy.subdomain ? [`${proxy.subdomain}.*`] : [])].join(
        ", ",
      ),
      kind,
      port: outcome.addr.port,
    });
    // Answered with the shared port's own address and port: that is where the proxy is reached.
    return {
      name: proxy.name,
      status: "accepted",
      publish_addr: outcome.addr.hostname,
      publish_port: outcome.addr.port,
    };
  }

  /**
   * A listener was bound: hand it to its proxy, remember the port, and say so. Null when the proxy was
   * stopped meanwhile (its session ended): the listener is closed and nothing is remembered.
   */
  #bound(
    client: ConnectedClient,
    published: PublishedProxy,
    listener: Publication,
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
    // "both" is echoed, so the client knows visitors reach it too (README.md §5b).
    const answer = accepted(proxy, port);
    if (proxy.visibility === "both" && answer.status === "accepted") answer.visibility = "both";
    return answer;
  }
}

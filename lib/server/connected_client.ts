/**
 * A client as the server holds it while its session lives: its session and control channel, its
 * published proxies, and the notifications queued for it.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { Session } from "../mux/mod.ts";
import type { RpcPeer } from "../rpc/mod.ts";
import { Method, NoticeCode, type ProxyStatusParams, type PushExceptionParams } from "../protocol/control.ts";
import type { ProxyStatus } from "../stats/proxy_stats.ts";
import type { ClientGrant } from "./auth.ts";
import { Notifier } from "./notifier.ts";
import type { PublishedProxy } from "./published_proxy.ts";
import { SerialQueue } from "./serial_queue.ts";

const logger = getLogger(["tls-tunnel", "server"]);

/** The bind state a bind notice reports: a notice of another state is never held behind older ones. */
const BIND_STATE_OF_CODE: ReadonlyMap<string, string> = new Map([
  [NoticeCode.bindRetry, "retrying"],
  [NoticeCode.bindRecovered, "listening"],
  [NoticeCode.bindFailed, "bind_failed"],
]);

/**
 * `register_proxies` calls of one session that may be running or waiting their turn at once; beyond it
 * a call is refused with `TOO_MANY_PENDING`. The tunnel client sends one at a time.
 */
export const MAX_PENDING_REGISTRATIONS = 8;

/** Why a proxy could not be claimed for a client. */
export type ClaimRefusal = "duplicate_name" | "session_closing";

/**
 * A client connected to the server, with its published proxies.
 *
 * The client owns every {@linkcode PublishedProxy} made for it from the moment a registration claims
 * its name: the proxy is either in {@linkcode proxies}, claimed by the registration in progress, or
 * stopped. Ending the session stops all of them, and a proxy offered after that is stopped at once, so
 * no listener outlives the session that asked for it.
 */
export class ConnectedClient {
  /** Published proxies by name (bound, or being bound or retried): what other clients and stats see. */
  readonly #proxies = new Map<string, PublishedProxy>();
  /** Proxies whose registration is still being checked (e.g. waiting on a liveness ping), by name. */
  readonly #claims = new Map<string, PublishedProxy>();
  /** Runs this session's `register_proxies` calls one at a time. */
  readonly registrations = new SerialQueue(MAX_PENDING_REGISTRATIONS);
  /** When the session authenticated (ms since epoch). */
  readonly connectedAtMs = Date.now();
  /**
   * `[server.rate_limit]`'s admission of one new outside connection of this client (its bucket); null
   * without a rate limit. Handed to every proxy it claims.
   */
  admitOutside: (() => boolean) | null = null;
  /** Aborted when the session ends: pending bind retries and health work stop. */
  readonly #lifetime = new AbortController();
  readonly #notifier: Notifier;
  #closing: Promise<void> | null = null;
  /** Set first thing in {@linkcode close}, before any proxy is stopped. */
  #ended = false;

  constructor(
    /** The id the client sent; a new session with the same id replaces this one. */
    readonly clientId: string,
    /** The name shown in logs and stats. */
    readonly name: string,
    /** Server-assigned id of this session. */
    readonly sessionId: string,
    /** "host:port" of the client's TLS connection. */
    readonly remoteAddr: string,
    /** What the client's key allows. */
    readonly grant: ClientGrant,
    /** The yamux session. */
    readonly session: Session,
    /** The control channel. */
    readonly rpc: RpcPeer,
  ) {
    this.#notifier = new Notifier((method, params) => rpc.notify(method, params));
  }

  /** Aborted when the session ends. */
  get signal(): AbortSignal {
    return this.#lifetime.signal;
  }

  /** Published proxies by name, including those whose bind is still being retried. */
  get proxies(): ReadonlyMap<string, PublishedProxy> {
    return this.#proxies;
  }

  /** Proxies published or claimed by a registration in progress: what counts against `max_proxies`. */
  get proxyCount(): number {
    return this.#proxies.size + this.#claims.size;
  }

  /** Whether a proxy of this client, published or claimed, has `name`. */
  hasName(name: string): boolean {
    return this.#proxies.has(name) || this.#claims.has(name);
  }

  /** Every proxy of this client, claimed ones too: what a new binding of it must not overlap. */
  *ownProxies(): IterableIterator<PublishedProxy> {
    yield* this.#claims.values();
    yield* this.#proxies.values();
  }

  /**
   * Reserves `proxy`'s name for the registration in progress, and takes ownership of `proxy`. On a
   * refusal `proxy` is stopped and the caller drops it.
   */
  claim(proxy: PublishedProxy): ClaimRefusal | null {
    const refusal = this.#ended ? "session_closing" : this.hasName(proxy.spec.name) ? "duplicate_name" : null;
    if (refusal) {
      void proxy.stop();
      return refusal;
    }
    proxy.admitOutside = this.admitOutside;
    this.#claims.set(proxy.spec.name, proxy);
    return null;
  }

  /**
   * Turns `proxy`'s claim into a published entry (it may now be bound). False, with `proxy` stopped and
   * forgotten, when the session is ending or `proxy` holds no claim.
   */
  publish(proxy: PublishedProxy): boolean {
    const name = proxy.spec.name;
    const claimed = this.#claims.get(name) === proxy;
    if (claimed) this.#claims.delete(name);
    if (!claimed || this.#ended || proxy.stopped) {
      void proxy.stop();
      return false;
    }
    this.#proxies.set(name, proxy);
    return true;
  }

  /** Stops `proxy` (releasing its port) and forgets it, claimed or published; another entry of its name stays. */
  discard(proxy: PublishedProxy): Promise<void> {
    const name = proxy.spec.name;
    if (this.#claims.get(name) === proxy) this.#claims.delete(name);
    if (this.#proxies.get(name) === proxy) this.#proxies.delete(name);
    return proxy.stop();
  }

  /**
   * Queues a `push_exception` notification; never blocks or throws. Identical ones (same code, proxy
   * and level) within a few seconds are merged into one whose `data.repeat_count` says how many it
   * stands for (1 for one that stands for itself). Notices about one proxy keep their order with its
   * `proxy_status` notifications.
   */
  notifyException(params: PushExceptionParams): void {
    const proxyName = params.data?.proxy_name;
    const mergeKey = `${params.code}\u0000${String(proxyName)}\u0000${params.level}`;
    const state = BIND_STATE_OF_CODE.get(params.code);
    this.#notifier.push(
      Method.pushException,
      { ...params, data: { ...params.data, repeat_count: 1 } },
      {
        mergeKey,
        ...(typeof proxyName === "string" ? { scope: `proxy\u0000${proxyName}` } : {}),
        ...(state !== undefined ? { state } : {}),
      },
    );
  }

  /**
   * Queues a `proxy_status` notification for `proxy` with its current status. A burst of the same
   * status (bind retries) collapses into its latest; a different status goes out at once, after
   * anything held for the proxy, so the last one the client receives is the proxy's current status.
   */
  notifyStatus(
    proxy: PublishedProxy,
    extra: { errorMessage?: string | null; retryAfterSeconds?: number | null } = {},
  ) {
    const status: ProxyStatus = proxy.stats.status;
    const name = proxy.spec.name;
    this.#notifier.push(
      Method.proxyStatus,
      {
        proxy_name: name,
        status,
        publish_addr: proxy.spec.publish_addr,
        publish_port: proxy.port,
        error_message: extra.errorMessage ?? (status === "healthy" ? null : proxy.stats.lastError),
        retry_after_seconds: extra.retryAfterSeconds ?? null,
      } satisfies ProxyStatusParams,
      { mergeKey: `status\u0000${name}`, scope: `proxy\u0000${name}`, state: status, count: false },
    );
  }

  /** Whether {@linkcode close} or {@linkcode leave} has begun. */
  get closing(): boolean {
    return this.#ended;
  }

  /**
   * The client said it is leaving (GoAway): closes every listener and stops pending retries and
   * registrations, while the outside connections being carried go on until {@linkcode close}. From here
   * on the client counts as closing (a newcomer with its id replaces it at once). Resolves with the number
   * of ports released once they are free: once each accept loop has ended (Deno frees a listener's port
   * only when its pending accept is over).
   */
  async leave(): Promise<number> {
    this.#ended = true;
    this.#lifetime.abort(new Error(`${this.name} is leaving`));
    const proxies = [...this.#claims.values(), ...this.#proxies.values()];
    const bound = proxies.filter((proxy) => proxy.boundPort !== null).length;
    await Promise.all(proxies.map((proxy) => proxy.stopListening()));
    return bound;
  }

  /**
   * Resolves once no outside connection is carried for this client, its session has ended, `timeoutMs`
   * has passed or `signal` aborts (checked every 20 ms: a leaving client's grace period is seconds).
   */
  async drained(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const deadlineMs = performance.now() + timeoutMs;
    while (
      this.openConnections > 0 && !this.session.isClosed && !signal?.aborted && performance.now() < deadlineMs
    ) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /** Outside connections being carried for this client now. */
  get openConnections(): number {
    let count = 0;
    for (const proxy of this.#proxies.values()) count += proxy.openConnections;
    return count;
  }

  /**
   * Stops every listener (releasing the ports at once), pending retries and registrations in progress,
   * then ends the session.
   */
  close(reason: string): Promise<void> {
    this.#ended = true;
    this.#closing ??= (async () => {
      const startedMs = performance.now();
      this.#lifetime.abort(new Error(`session of ${this.name} ended: ${reason}`));
      this.#notifier.close();
      // Claimed proxies too: a registration in progress may bind after this, and its proxy must refuse.
      const released = [...this.#claims.values(), ...this.#proxies.values()];
      const bound = released.filter((proxy) => proxy.boundPort !== null).length;
      await Promise.all(released.map((proxy) => proxy.stop()));
      const releaseMs = performance.now() - startedMs;
      this.session.close();
      this.rpc.close();
      logger.info("Client {client} disconnected ({reason}); released {count} port(s) in {ms} ms", {
        client: this.name,
        reason,
        count: bound,
        ms: releaseMs.toFixed(1),
      });
    })();
    return this.#closing;
  }
}

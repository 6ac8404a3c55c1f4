/**
 * A client as the server holds it while its session lives: its session and control channel, its
 * published proxies, and the notifications queued for it.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { Session } from "../mux/mod.ts";
import type { RpcPeer } from "../rpc/mod.ts";
import { Method, type PushExceptionParams } from "../rpc/control.ts";
import type { ProxyStatus } from "../stats/proxy_stats.ts";
import type { ClientGrant } from "./auth.ts";
import { Notifier } from "./notifier.ts";
import type { PublishedProxy } from "./published_proxy.ts";

const logger = getLogger(["tls-tunnel", "server"]);

/** A client connected to the server, with its published proxies. */
export class ConnectedClient {
  /** Published proxies by name, including those whose bind is still being retried. */
  readonly proxies = new Map<string, PublishedProxy>();
  /** When the session authenticated (ms since epoch). */
  readonly connectedAtMs = Date.now();
  /** Aborted when the session ends: pending bind retries and health work stop. */
  readonly #lifetime = new AbortController();
  readonly #notifier: Notifier;
  #closing: Promise<void> | null = null;

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

  /**
   * Queues a `push_exception` notification; never blocks or throws. Identical ones (same code, proxy
   * and message) within a few seconds are merged into one with `data.repeat_count`.
   */
  notifyException(params: PushExceptionParams): void {
    const proxyName = params.data?.proxy_name;
    this.#notifier.push(
      Method.pushException,
      params,
      `${params.code}\u0000${String(proxyName)}\u0000${params.level}`,
    );
  }

  /** Queues a `proxy_status` notification for `proxy` with its current status. */
  notifyStatus(
    proxy: PublishedProxy,
    extra: { errorMessage?: string | null; retryAfterSeconds?: number | null } = {},
  ) {
    const status: ProxyStatus = proxy.stats.status;
    this.#notifier.push(
      Method.proxyStatus,
      {
        proxy_name: proxy.spec.name,
        status,
        publish_addr: proxy.spec.publish_addr,
        publish_port: proxy.port,
        error_message: extra.errorMessage ?? (status === "healthy" ? null : proxy.stats.lastError),
        retry_after_seconds: extra.retryAfterSeconds ?? null,
      },
      // A burst of retries for one proxy collapses into the latest status.
      extra.retryAfterSeconds !== undefined && extra.retryAfterSeconds !== null
        ? `status\u0000${proxy.spec.name}\u0000${status}`
        : undefined,
    );
  }

  /** Whether {@linkcode close} has begun. */
  get closing(): boolean {
    return this.#closing !== null;
  }

  /** Stops every listener (releasing the ports at once) and pending retries, then ends the session. */
  close(reason: string): Promise<void> {
    this.#closing ??= (async () => {
      const startedMs = performance.now();
      this.#lifetime.abort(new Error(`session of ${this.name} ended: ${reason}`));
      this.#notifier.close();
      const released = [...this.proxies.values()];
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

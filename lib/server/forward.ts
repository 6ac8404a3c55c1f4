/**
 * The server's `forward` handler (issue 15): a client's `[[forwarders]]` connection arrives as a stream
 * whose open request names `host:port`; the server connects there and splices the two. Registered with the
 * client-stream dispatcher (`client_streams.ts`) under the kind `"forward"`.
 *
 * In order, each refusal answered with its code (protocol README §5b):
 * - `allow_forward = false` → `DISABLED` (the Rust tool's switch; off by default);
 * - the client's `[server.rate_limit]` bucket for new outside connections is empty → `RATE_LIMITED`;
 * - the client already has `max_forwards_per_client` forwarded connections open → `LIMIT`;
 * - the destination resolves only to internal addresses and `forward_allow_private = false` →
 *   `FORBIDDEN_DESTINATION` (`forward_destination.ts`);
 * - it does not resolve, refuses, or does not answer within `forward_connect_timeout_secs` → `UNREACHABLE`.
 *
 * Every result is counted per client, forwarder and result (the stats' `forwards`, the metric
 * `tls_tunnel_forwarded_connections_total`); single refusals are logged at debug level only, since a client
 * can cause as many as it likes.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { Stream } from "../mux/mod.ts";
import { formatHostPort } from "../net/address.ts";
import type { ForwardRequest } from "../protocol/open_request.ts";
import { closeQuietly, pipeBoth } from "../transport/pipe.ts";
import { errorMessage } from "../text.ts";
import type { ClientStreamContext, ClientStreamOutcome } from "./client_streams.ts";
import { connectDestination, DestinationError } from "./forward_destination.ts";
import type { KeyedRateLimiter } from "./rate_limit.ts";
import type { ForwardCountSnapshot } from "../stats/snapshot.ts";

const logger = getLogger(["tls-tunnel", "server", "forward"]);

/** Deadline of the server's lookup of a forwarded connection's destination. */
export const FORWARD_RESOLVE_TIMEOUT_MS = 5_000;

/** Most (client, forwarder, result) counters kept; beyond, new forwarder names are counted as `"other"`. */
export const MAX_FORWARD_COUNTERS = 4096;

/** The server's forwarding settings, as the config gives them. */
export interface ForwardSettings {
  /** `allow_forward`. */
  allowForward: boolean;
  /** `forward_allow_private`. */
  forwardAllowPrivate: boolean;
  /** `max_forwards_per_client`. */
  maxForwardsPerClient: number;
  /** `forward_connect_timeout_secs`. */
  forwardConnectTimeoutSecs: number;
}

/** One counter of forwarded connections, as the stats serve it. */
export type ForwardCount = ForwardCountSnapshot;

/** Forwarded connections: the handler, the per-client limit and the counters. */
export class ForwardService {
  /** Forwarded connections open now, by client name. */
  readonly #active = new Map<string, number>();
  readonly #counts = new Map<string, ForwardCount>();
  /** Bytes carried since start, both ways together. */
  bytesTotal = 0;

  constructor(
    /** The settings now (read on every request: a reloaded config applies to the next one). */
    readonly settings: () => ForwardSettings,
    /** `[server.rate_limit]`'s per-client bucket of new outside connections, if any. */
    readonly outsideLimiter: KeyedRateLimiter | null = null,
  ) {}

  /** Forwarded connections open now, in all. */
  get activeTotal(): number {
    let total = 0;
    for (const count of this.#active.values()) total += count;
    return total;
  }

  /** Every counter, sorted by client, forwarder and result. */
  counts(): ForwardCount[] {
    return [...this.#counts.values()].map((count) => ({ ...count })).sort((a, b) =>
      a.client.localeCompare(b.client) || a.forwarder.localeCompare(b.forwarder) ||
      a.result.localeCompare(b.result)
    );
  }

  #count(client: string, forwarder: string, result: string): void {
    let key = `${client}\u0000${forwarder}\u0000${result}`;
    let counter = this.#counts.get(key);
    if (counter === undefined && this.#counts.size >= MAX_FORWARD_COUNTERS) {
      forwarder = "other";
      key = `${client}\u0000${forwarder}\u0000${result}`;
      counter = this.#counts.get(key);
    }
    if (counter === undefined) {
      counter = { client, forwarder, result, count: 0 };
      this.#counts.set(key, counter);
    }
    counter.count++;
  }

  #refuse(
    request: ForwardRequest,
    context: ClientStreamContext,
    code: "DISABLED" | "RATE_LIMITED" | "LIMIT" | "FORBIDDEN_DESTINATION" | "UNREACHABLE",
    reason: string,
  ): ClientStreamOutcome {
    this.#count(context.client.name, request.forwarder, code.toLowerCase());
    logger.debug("Refused forwarding {target} for {client} ({forwarder}): {code} {reason}", {
      target: formatHostPort(request.host, request.port),
      client: context.client.name,
      forwarder: request.forwarder,
      code,
      reason,
    });
    return { ok: false, code, reason };
  }

  /** The `forward` handler: decides one request (see the module doc). */
  readonly handle = async (
    request: ForwardRequest,
    context: ClientStreamContext,
  ): Promise<ClientStreamOutcome> => {
    const { client } = context;
    const target = formatHostPort(request.host, request.port);
    const settings = this.settings();
    if (!settings.allowForward) {
      return this.#refuse(
        request,
        context,
        "DISABLED",
        "this server does not forward connections (allow_forward = false in its [server] table)",
      );
    }
    if (this.outsideLimiter !== null && !this.outsideLimiter.allow(client.name)) {
      return this.#refuse(
        request,
        context,
        "RATE_LIMITED",
        `too many new connections from this client ([server.rate_limit] requests_per_second = ${this.outsideLimiter.config.requestsPerSecond})`,
      );
    }
    const active = this.#active.get(client.name) ?? 0;
    if (active >= settings.maxForwardsPerClient) {
      return this.#refuse(
        request,
        context,
        "LIMIT",
        `this client has ${active} forwarded connections open, the server's limit (max_forwards_per_client)`,
      );
    }
    // Held from here: a slow destination counts against the limit while it is being reached.
    this.#active.set(client.name, active + 1);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      const left = (this.#active.get(client.name) ?? 1) - 1;
      if (left <= 0) this.#active.delete(client.name);
      else this.#active.set(client.name, left);
    };
    let conn: Deno.TcpConn;
    try {
      conn = await connectDestination(request.host, request.port, {
        allowPrivate: settings.forwardAllowPrivate,
        resolveTimeoutMs: FORWARD_RESOLVE_TIMEOUT_MS,
        connectTimeoutMs: settings.forwardConnectTimeoutSecs * 1000,
        signal: client.signal,
      });
    } catch (error) {
      release();
      if (error instanceof DestinationError) return this.#refuse(request, context, error.code, error.message);
      return this.#refuse(request, context, "UNREACHABLE", `Cannot reach ${target}: ${errorMessage(error)}`);
    }
    this.#count(client.name, request.forwarder, "ok");
    logger.debug("Forwarding {target} for {client} ({forwarder})", {
      target,
      client: client.name,
      forwarder: request.forwarder,
    });
    return {
      ok: true,
      carry: async (stream: Stream) => {
        try {
          const result = await pipeBoth(stream, conn);
          this.bytesTotal += result.aToBBytes + result.bToABytes;
        } finally {
          release();
        }
      },
      abandon: () => {
        closeQuietly(conn);
        release();
      },
    };
  };
}

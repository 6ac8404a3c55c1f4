/**
 * The client's `[[forwarders]]` (issue 15): a local HTTP or SOCKS5 proxy whose connections leave through
 * the server. Each accepted connection's handshake is read (`http_proxy_server.ts`, `socks5_server.ts`),
 * routed (`routing.ts`: through the tunnel, or `"direct"` from the client itself), and then either a
 * stream is opened to the server with the open request `{"kind":"forward","forwarder","host","port"}`
 * (protocol README §5b) and its reply awaited, or the client connects itself; the application gets its
 * success answer only once the destination is reached, and the failure's own answer otherwise (HTTP
 * status with a reason body, SOCKS5 reply code).
 *
 * The listener is bound once and stays bound across reconnects of the session: while the tunnel is down a
 * tunnelled connection is answered 503 / SOCKS5 0x03 (network unreachable), a direct one still works.
 * Limits: {@linkcode ForwarderOptions} `max_connections` per forwarder (beyond: 503 / 0x01), the
 * handshake's bytes and deadline (`forwarder_head.ts`), the server's reply deadline
 * ({@linkcode OPEN_REPLY_TIMEOUT_MS}), the direct connect deadline ({@linkcode DIRECT_CONNECT_TIMEOUT_MS}).
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { ForwarderConfig } from "../config/types.ts";
import { acceptEach } from "../net/accept.ts";
import { formatAddr, formatHostPort } from "../net/address.ts";
import { type DuplexConn, writeAll } from "../net/conn.ts";
import { BindError, listenTcp } from "../net/tcp.ts";
import { encodeOpenRequest, readOpenReply } from "../protocol/open_request.ts";
import { abortQuietly, closeQuietly, pipeBoth } from "../transport/pipe.ts";
import { errorMessage } from "../text.ts";
import { withTimeout } from "../_async.ts";
import {
  type FailureKind,
  failureOfRefusal,
  type ForwardFailure,
  HEAD_TIMEOUT_MS,
  HeadError,
  HeadReader,
} from "./forwarder_head.ts";
import {
  CONNECT_ESTABLISHED,
  httpFailureResponse,
  HttpProxyRefusal,
  type ProxyCredentials,
  readHttpProxyRequest,
} from "./http_proxy_server.ts";
import { readSocks5Request, socks5FailureReply, Socks5Refusal, socks5Reply } from "./socks5_server.ts";
import { ForwardRouter, GeoIpDatabaseError, type Route, type RouteDecision } from "./routing.ts";
import { FatalClientError } from "./errors.ts";
import type { ForwarderSnapshot } from "../stats/snapshot.ts";

export type { ForwarderSnapshot } from "../stats/snapshot.ts";

const logger = getLogger(["tls-tunnel", "client", "forwarder"]);

/** Time the server has to answer a forward request (it resolves and connects within its own deadlines). */
export const OPEN_REPLY_TIMEOUT_MS = 30_000;
/** Time a direct connection has to reach its destination (lookup and connect). */
export const DIRECT_CONNECT_TIMEOUT_MS = 10_000;
/** Time a failure answer may take to write before the local connection is dropped anyway. */
const ANSWER_WRITE_TIMEOUT_MS = 5_000;

/** A stream to the server, as the forwarder needs it. */
export type TunnelStream = DuplexConn & { reset?(): void };

/** The tunnel is not connected now: nothing can be forwarded through it. */
export class TunnelDownError extends Error {
  override name = "TunnelDownError";
}

/** Opens a stream on the current session, or throws {@linkcode TunnelDownError}. */
export type OpenTunnelStream = () => Promise<TunnelStream>;

/** A forwarded connection that did not get through, with the answer's kind. */
export class ForwardFailureError extends Error {
  override name = "ForwardFailureError";
  constructor(readonly failure: ForwardFailure, options?: ErrorOptions) {
    super(failure.reason, options);
  }
}

/** Options of {@linkcode Forwarder}. */
export interface ForwarderOptions {
  /** The router (`[forwarders.routing]`); absent → every connection goes through the tunnel. */
  router?: ForwardRouter;
  /** Ends the forwarder: the listener closes and carried connections are reset. */
  signal?: AbortSignal;
  /** Time a local application has for its handshake; default {@linkcode HEAD_TIMEOUT_MS} (tests shorten it). */
  headTimeoutMs?: number;
}

/** The route label of a handshake that failed before any route was chosen. */
const NO_ROUTE = "none";

/** One `[[forwarders]]` entry at work: its listener and the connections it carries. */
export class Forwarder {
  readonly #connections = new Set<Deno.TcpConn>();
  readonly #results: Record<string, Record<string, number>> = {};
  readonly #counters = { bytesIn: 0, bytesOut: 0 };
  readonly #credentials: ProxyCredentials | null;
  #listener: Deno.TcpListener | null = null;
  #acceptLoop: Promise<void> | null = null;
  #stopped = false;
  #active = 0;

  constructor(
    readonly config: ForwarderConfig,
    readonly openStream: OpenTunnelStream,
    readonly options: ForwarderOptions = {},
  ) {
    this.#credentials = config.username !== undefined && config.password !== undefined
      ? { username: config.username, password: config.password }
      : null;
  }

  /** The bound address (after {@linkcode start}). */
  get addr(): Deno.NetAddr | null {
    return this.#listener?.addr ?? null;
  }

  /**
   * Binds the local proxy and starts accepting.
   *
   * @throws {BindError} classified, when the port cannot be bound
   */
  start(): Deno.NetAddr {
    const listener = listenTcp(this.config.bindAddr, this.config.bindPort, `forwarders ${this.config.name}`);
    this.#listener = listener;
    this.options.signal?.addEventListener("abort", () => void this.close(), { once: true });
    this.#acceptLoop = acceptEach(listener, (conn) => void this.#handle(conn), {
      stopped: () => this.#stopped,
      onError: (error) =>
        logger.warn("Accept on forwarder {name} failed: {error}", {
          name: this.config.name,
          error: errorMessage(error),
        }),
    });
    logger.info("Forwarder {name}: {type} proxy on {addr}{auth}{routing}", {
      name: this.config.name,
      type: this.config.proxyType === "http" ? "HTTP" : "SOCKS5",
      addr: formatAddr(listener.addr),
      auth: this.#credentials === null ? "" : " (user name and password required)",
      routing: this.options.router === undefined ? "" : " with routing rules",
    });
    return listener.addr;
  }

  /** Stops accepting and resets every connection carried. Resolves when the accept loop has ended. */
  async close(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#listener) closeQuietly(this.#listener);
    for (const conn of this.#connections) abortQuietly(conn);
    await this.#acceptLoop;
  }

  /** The forwarder's counters. */
  snapshot(): ForwarderSnapshot {
    return {
      name: this.config.name,
      proxy_type: this.config.proxyType,
      listen_addr: this.#listener ? formatAddr(this.#listener.addr) : null,
      active_connections: this.#active,
      results: structuredClone(this.#results),
      bytes_out: this.#counters.bytesIn,
      bytes_in: this.#counters.bytesOut,
    };
  }

  #count(route: Route | typeof NO_ROUTE, result: FailureKind | "ok"): void {
    const byResult = this.#results[route] ??= {};
    byResult[result] = (byResult[result] ?? 0) + 1;
  }

  async #handle(conn: Deno.TcpConn): Promise<void> {
    if (this.#stopped) {
      closeQuietly(conn);
      return;
    }
    this.#connections.add(conn);
    try {
      if (this.#active >= this.config.maxConnections) {
        const failure: ForwardFailure = {
          kind: "busy",
          reason: `forwarder ${this.config.name} carries ${this.#active} connections, its max_connections`,
        };
        this.#count(NO_ROUTE, "busy");
        await this.#answerFailure(conn, failure, null);
        return;
      }
      this.#active++;
      try {
        await this.#serve(conn);
      } finally {
        this.#active--;
      }
    } catch (error) {
      logger.warn("Forwarder {name}: unexpected failure: {error}", {
        name: this.config.name,
        error: errorMessage(error),
      });
    } finally {
      this.#connections.delete(conn);
      closeQuietly(conn);
    }
  }

  async #serve(conn: Deno.TcpConn): Promise<void> {
    const isHttp = this.config.proxyType === "http";
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(), this.options.headTimeoutMs ?? HEAD_TIMEOUT_MS);
    const reader = new HeadReader(conn, deadline.signal);
    let host: string;
    let port: number;
    let connectForm = true;
    let firstBytes: Uint8Array | null = null;
    try {
      if (isHttp) {
        const request = await readHttpProxyRequest(reader, this.#credentials);
        ({ host, port } = request);
        connectForm = request.kind === "connect";
        firstBytes = request.head;
      } else {
        ({ host, port } = await readSocks5Request(reader, conn, this.#credentials));
      }
    } catch (error) {
      const failure = handshakeFailure(error);
      this.#count(NO_ROUTE, failure.kind);
      logger.debug("Forwarder {name}: refused a local connection: {reason}", {
        name: this.config.name,
        reason: failure.reason,
      });
      const answer = error instanceof Socks5Refusal
        ? error.answer
        : isHttp && !(error instanceof HeadError && error.kind === "closed")
        ? httpFailureResponse(failure)
        : null;
      if (answer !== null) await writeBounded(conn, answer);
      return;
    } finally {
      clearTimeout(timer);
    }
    const rest = reader.rest();
    const target = formatHostPort(host, port);
    const decision: RouteDecision = this.options.router
      ? await this.options.router.decide(host)
      : { route: "proxy", rule: "no routing rules" };
    let upstream: TunnelStream;
    try {
      upstream = decision.route === "direct"
        ? await connectDirect(host, port, decision.addresses)
        : await this.#openThroughTunnel(host, port);
    } catch (error) {
      const failure = error instanceof ForwardFailureError
        ? error.failure
        : { kind: "unreachable" as const, reason: `cannot reach ${target}: ${errorMessage(error)}` };
      this.#count(decision.route, failure.kind);
      logger.debug("Forwarder {name}: {target} ({route}, {rule}) failed: {reason}", {
        name: this.config.name,
        target,
        route: decision.route,
        rule: decision.rule,
        reason: failure.reason,
      });
      await this.#answerFailure(conn, failure, isHttp);
      return;
    }
    this.#count(decision.route, "ok");
    logger.debug("Forwarder {name}: {target} via {route} ({rule})", {
      name: this.config.name,
      target,
      route: decision.route,
      rule: decision.rule,
    });
    try {
      if (!isHttp) await writeAll(conn, socks5Reply(0x00));
      else if (connectForm) await writeAll(conn, CONNECT_ESTABLISHED);
      if (firstBytes !== null) await writeAll(upstream, firstBytes);
      if (rest.length > 0) await writeAll(upstream, rest);
      // Written here, not by the copy loop: counted as the application's bytes all the same.
      this.#counters.bytesIn += (firstBytes?.length ?? 0) + rest.length;
    } catch {
      abortQuietly(upstream);
      return;
    }
    // Local application → destination counts as bytes out, back as bytes in (see snapshot()).
    await pipeBoth(conn, upstream, { counters: this.#counters });
  }

  /** A stream to the server carrying a forward request the server accepted. */
  async #openThroughTunnel(host: string, port: number): Promise<TunnelStream> {
    let stream: TunnelStream;
    try {
      stream = await this.openStream();
    } catch (error) {
      throw new ForwardFailureError({
        kind: "tunnel_down",
        reason: `the tunnel to the server is not connected (${errorMessage(error)}); try again once it is`,
      }, { cause: error });
    }
    try {
      await writeAll(stream, encodeOpenRequest({ kind: "forward", forwarder: this.config.name, host, port }));
      const reply = await withTimeout(readOpenReply(stream), OPEN_REPLY_TIMEOUT_MS, "the server's reply");
      if (reply.ok) return stream;
      closeQuietly(stream);
      throw new ForwardFailureError(failureOfRefusal(reply));
    } catch (error) {
      abortQuietly(stream);
      if (error instanceof ForwardFailureError) throw error;
      const timedOut = /did not happen within/.test(errorMessage(error));
      throw new ForwardFailureError({
        kind: timedOut ? "timeout" : "tunnel_down",
        reason: timedOut
          ? `the server did not answer within ${OPEN_REPLY_TIMEOUT_MS / 1000} s`
          : `the stream to the server failed: ${errorMessage(error)}`,
      }, { cause: error });
    }
  }

  /** Answers a failure the way the application's protocol says, then the caller closes. */
  async #answerFailure(conn: Deno.TcpConn, failure: ForwardFailure, isHttp: boolean | null): Promise<void> {
    const http = isHttp ?? this.config.proxyType === "http";
    // A SOCKS5 client that has not even greeted cannot read a reply: it is closed without one.
    if (!http && isHttp === null) return;
    await writeBounded(conn, http ? httpFailureResponse(failure) : socks5FailureReply(failure));
  }
}

/** The failure a handshake error means. */
function handshakeFailure(error: unknown): ForwardFailure {
  if (error instanceof HttpProxyRefusal || error instanceof Socks5Refusal) return error.failure;
  if (error instanceof HeadError) {
    if (error.kind === "too_large") return { kind: "head_too_large", reason: error.message };
    if (error.kind === "timeout") return { kind: "request_timeout", reason: error.message };
    return { kind: "bad_request", reason: error.message };
  }
  return { kind: "bad_request", reason: errorMessage(error) };
}

/** Writes `bytes` within a deadline; a local application that does not read is dropped all the same. */
async function writeBounded(conn: Deno.TcpConn, bytes: Uint8Array): Promise<void> {
  await withTimeout(writeAll(conn, bytes), ANSWER_WRITE_TIMEOUT_MS, "the answer").catch(() => {});
}

/**
 * The client's own connection for a direct route: to the addresses routing resolved, or by name (Deno
 * resolves a name for `Deno.connect` without blocking the event loop), within
 * {@linkcode DIRECT_CONNECT_TIMEOUT_MS} in all.
 */
export async function connectDirect(
  host: string,
  port: number,
  addresses: readonly string[] | undefined,
): Promise<Deno.TcpConn> {
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, DIRECT_CONNECT_TIMEOUT_MS);
  const candidates = addresses !== undefined && addresses.length > 0 ? addresses : [host];
  let lastError: unknown = null;
  try {
    for (const hostname of candidates) {
      try {
        const conn = await Deno.connect({ hostname, port, signal: controller.signal });
        conn.setNoDelay(true);
        return conn;
      } catch (error) {
        lastError = error;
        if (timedOut) break;
      }
    }
  } finally {
    clearTimeout(timer);
  }
  const target = formatHostPort(host, port);
  if (timedOut) {
    throw new ForwardFailureError({
      kind: "timeout",
      reason: `connecting directly to ${target} took longer than ${DIRECT_CONNECT_TIMEOUT_MS / 1000} s`,
    });
  }
  if (lastError instanceof Deno.errors.ConnectionRefused) {
    throw new ForwardFailureError({ kind: "refused", reason: `${target} refused the (direct) connection` });
  }
  throw new ForwardFailureError({
    kind: "unreachable",
    reason: `cannot connect directly to ${target}: ${errorMessage(lastError)}`,
  });
}

/**
 * Starts every forwarder of the config: loads each one's routing (its `geoip_db`) and binds its listener.
 * On a failure the ones already started are closed again.
 *
 * @throws {BindError} or {@linkcode GeoIpDatabaseError}, naming the forwarder's setting
 */
export async function startForwarders(
  configs: readonly ForwarderConfig[],
  openStream: OpenTunnelStream,
  signal?: AbortSignal,
): Promise<Forwarder[]> {
  const started: Forwarder[] = [];
  try {
    for (const config of configs) {
      const router = config.routing ? await ForwardRouter.load(config.routing) : undefined;
      const forwarder = new Forwarder(config, openStream, {
        ...(router ? { router } : {}),
        ...(signal ? { signal } : {}),
      });
      forwarder.start();
      started.push(forwarder);
    }
  } catch (error) {
    await Promise.all(started.map((forwarder) => forwarder.close()));
    throw error;
  }
  return started;
}

/**
 * {@linkcode startForwarders} for a client's run: a local port that cannot be bound or a GeoIP database
 * that cannot be read ends the client ({@linkcode FatalClientError}: the same config would fail again).
 */
export async function startClientForwarders(
  configs: readonly ForwarderConfig[],
  openStream: OpenTunnelStream,
  signal?: AbortSignal,
): Promise<Forwarder[]> {
  try {
    return await startForwarders(configs, openStream, signal);
  } catch (error) {
    if (!(error instanceof BindError) && !(error instanceof GeoIpDatabaseError)) throw error;
    throw new FatalClientError(error.message, 0, { cause: error });
  }
}

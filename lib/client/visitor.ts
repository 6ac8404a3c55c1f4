/**
 * A `[[visitors]]` entry at work: a local listener whose every connection becomes a `visit` stream to the
 * server (protocol README §5b), which splices it to another client's private proxy. The listener is bound
 * once, when the client starts, and stays bound across reconnects of the client's session: a connection
 * that arrives while there is no session is reset at once (and logged), and the next one after the
 * session is back works.
 *
 * A client of several servers (`[client] servers`) gives its visitors every server's session: each local
 * connection tries the connected servers one after the other, each at most once (in config order, but
 * servers that refused or failed this visitor lately, or that leave a visit unanswered, after the others),
 * and is carried by the first that answers ok. Only when every server refused or failed is the local
 * connection reset, and the log line names each server's answer. The visitor's counters keep a line per
 * server (`servers` in its snapshot).
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { VisitorConfig } from "../config/types.ts";
import type { Session, Stream } from "../mux/mod.ts";
import { acceptEach } from "../net/accept.ts";
import { formatAddr, formatHostPort } from "../net/address.ts";
import { writeAll } from "../net/conn.ts";
import { encodeOpenRequest, readOpenReply, type VisitRequest } from "../protocol/open_request.ts";
import { abortQuietly, closeQuietly, pipeBoth } from "../transport/pipe.ts";
import { withTimeout } from "../_async.ts";
import { errorMessage } from "../text.ts";
import type { VisitorServerSnapshot, VisitorSnapshot } from "../stats/snapshot.ts";

const logger = getLogger(["tls-tunnel", "client", "visitor"]);

/** Refusals one visitor logs per {@linkcode REFUSAL_LOG_WINDOW_MS}; the rest are counted, then summed up. */
const REFUSAL_LOG_BURST = 10;
/** The window of {@linkcode REFUSAL_LOG_BURST}. */
const REFUSAL_LOG_WINDOW_MS = 10_000;

/** How long the server may take to answer a visit (it opens a stream to the target; no round trip). */
export const VISIT_REPLY_TIMEOUT_MS = 15_000;

/**
 * How long a server's refusal or failure puts it behind the others in a visitor's order: a server without
 * the target is asked again after this, not on every connection.
 */
export const ROUTE_FAILURE_MEMORY_MS = 30_000;

/**
 * A server that has left a visit unanswered this long is stalled (a frozen process, a dead path its
 * keepalive has not caught yet): new connections ask the others first, while the waiting one waits for its
 * answer, the end of that session, or {@linkcode VISIT_REPLY_TIMEOUT_MS}.
 */
export const STALLED_ANSWER_MS = 3_000;

/** One server a visitor may reach its target through. */
export interface VisitRoute {
  /** The server's name (`[[client.servers]]` name, or `host:port`), for logs and per-server counters. */
  readonly server: string;
  /** That server's authenticated session now, or null while there is none. */
  readonly session: Session | null;
}

/**
 * Where a visitor's connections go: one server's session (null while there is none), or, for a client of
 * several servers, every server as a {@linkcode VisitRoute} in config order.
 */
export type VisitRoutes = () => Session | null | readonly VisitRoute[];

/** The visitor could not bind its local port. */
export class VisitorBindError extends Error {
  override name = "VisitorBindError";
}

/** Counters of one visitor, for logs and the stats endpoint. */
export interface VisitorCounters {
  /** Local connections open now (carried). */
  activeConnections: number;
  /** Local connections accepted since start. */
  totalConnections: number;
  /** Local connections the server refused or that could not be sent, by reason (`denied`, `not_found`, `no_session`, …). */
  refused: Record<string, number>;
  /** Bytes from local applications to the target. */
  bytesIn: number;
  /** Bytes from the target to local applications. */
  bytesOut: number;
  /** The last refusal or failure, for people. */
  lastError: string | null;
}

/** One server's share of a visitor's connections (several servers only). */
interface RouteCounters {
  /** Local connections this server carried. */
  visits: number;
  /** This server's refusals and failures, by reason (the refusal code in lower case, `failed`). */
  refused: Record<string, number>;
  /** Refusals and failures since this server last carried one; orders the servers. */
  consecutiveFailures: number;
  /** When it last refused or failed (performance.now()). */
  lastFailureAtMs: number;
  /** The visits waiting for this server's answer now, by when each was sent (performance.now()). */
  readonly pending: Set<{ readonly startMs: number }>;
}

/** What one server answered a visit. */
type Attempt =
  | { ok: true; stream: Stream }
  | { ok: false; reason: string; message: string };

/** One visitor: its local listener and the connections it carries. */
export class Visitor {
  /** Live counters. */
  readonly counters: VisitorCounters = {
    activeConnections: 0,
    totalConnections: 0,
    refused: {},
    bytesIn: 0,
    bytesOut: 0,
    lastError: null,
  };
  /** Per-server counters by server name, once the routes name servers. */
  readonly #routeCounters = new Map<string, RouteCounters>();
  #listener: Deno.TcpListener | null = null;
  #acceptLoop: Promise<void> | null = null;
  readonly #connections = new Set<Deno.TcpConn>();
  readonly #carried = new Set<Promise<void>>();
  #stopped = false;
  /** The refusal log's window: an application retrying in a loop cannot flood the log. */
  #logWindow = { startMs: Number.NEGATIVE_INFINITY, logged: 0, suppressed: 0 };

  constructor(
    /** The `[[visitors]]` entry. */
    readonly config: VisitorConfig,
    /** The client's authenticated session now (null while it has none), or every server's. */
    readonly routes: VisitRoutes,
  ) {}

  /** The bound local address (after {@linkcode listen}). */
  get addr(): Deno.NetAddr | null {
    return this.#listener?.addr ?? null;
  }

  /** What the visitor reaches, for logs: `'ssh' (publish_port 2222)`. */
  get target(): string {
    return `'${this.config.name}' (publish_port ${this.config.publishPort}${
      this.config.client !== undefined ? `, client ${this.config.client}` : ""
    })`;
  }

  /**
   * Binds the local port and starts accepting.
   *
   * @throws {VisitorBindError} naming the address and what to do
   */
  listen(): Deno.NetAddr {
    const where = formatHostPort(this.config.bindAddr, this.config.bindPort);
    try {
      this.#listener = Deno.listen({ hostname: this.config.bindAddr, port: this.config.bindPort });
    } catch (error) {
      const hint = error instanceof Deno.errors.AddrInUse
        ? "another program uses it; pick another bind_port"
        : error instanceof Deno.errors.PermissionDenied
        ? "ports below 1024 need privileges; pick a bind_port above 1023"
        : "check bind_addr";
      throw new VisitorBindError(
        `Visitor ${this.target} cannot listen on ${where}: ${errorMessage(error)}; ${hint}`,
        { cause: error },
      );
    }
    const listener = this.#listener;
    logger.info("Visitor {target} listening on {addr}", {
      target: this.target,
      addr: formatAddr(listener.addr),
    });
    this.#acceptLoop = acceptEach(listener, (conn) => this.#accepted(conn), {
      stopped: () => this.#stopped,
      onError: (error) =>
        logger.warn("Visitor {target}: accept failed: {error}", {
          target: this.target,
          error: errorMessage(error),
        }),
    });
    return listener.addr;
  }

  #accepted(conn: Deno.TcpConn): void {
    this.counters.totalConnections++;
    this.#connections.add(conn);
    const carried: Promise<void> = this.#visit(conn)
      .catch((error) => {
        this.#refused("failed", `the visit failed: ${errorMessage(error)}`);
        abortQuietly(conn);
      })
      .finally(() => {
        this.#connections.delete(conn);
        this.#carried.delete(carried);
      });
    this.#carried.add(carried);
  }

  /** Counts a connection that was not carried and logs why (at most a burst per window). */
  #refused(reason: string, message: string): void {
    this.counters.refused[reason] = (this.counters.refused[reason] ?? 0) + 1;
    this.counters.lastError = message;
    const window = this.#logWindow;
    const nowMs = performance.now();
    if (nowMs - window.startMs >= REFUSAL_LOG_WINDOW_MS) {
      if (window.suppressed > 0) {
        logger.warn("Visitor {target}: {count} more connections were refused without a log line", {
          target: this.target,
          count: window.suppressed,
        });
      }
      this.#logWindow = { startMs: nowMs, logged: 0, suppressed: 0 };
    }
    if (this.#logWindow.logged >= REFUSAL_LOG_BURST) {
      this.#logWindow.suppressed++;
      return;
    }
    this.#logWindow.logged++;
    logger.warn("Visitor {target}: {message}", { target: this.target, message });
  }

  async #visit(conn: Deno.TcpConn): Promise<void> {
    const peer = formatAddr(conn.remoteAddr);
    try {
      conn.setNoDelay(true);
    } catch {
      // The connection is already gone; the first read says so.
    }
    const routes = this.routes();
    if (!Array.isArray(routes)) {
      await this.#visitOne(conn, peer, routes as Session | null);
      return;
    }
    const request = this.#request();
    /** Each server's answer, in the order asked, for the log line when none carried the connection. */
    const answers: Array<{ server: string; reason: string; message: string }> = [];
    let stream: Stream | null = null;
    for (const route of this.#ordered(routes)) {
      if (this.#stopped) break;
      const session = route.session;
      if (session === null || session.isClosed) {
        answers.push({ server: route.server, reason: "no_session", message: "not connected" });
        continue;
      }
      const counters = this.#routeCounter(route.server);
      const waiting = { startMs: performance.now() };
      counters.pending.add(waiting);
      const attempt = await this.#attempt(session, request).finally(() => counters.pending.delete(waiting));
      if (attempt.ok) {
        counters.visits++;
        counters.consecutiveFailures = 0;
        stream = attempt.stream;
        break;
      }
      counters.refused[attempt.reason] = (counters.refused[attempt.reason] ?? 0) + 1;
      counters.consecutiveFailures++;
      counters.lastFailureAtMs = performance.now();
      answers.push({ server: route.server, reason: attempt.reason, message: attempt.message });
    }
    if (stream === null) {
      const reason = mostTelling(answers);
      const list = answers.length > 0
        ? answers.map((answer) => `${answer.server}: ${answer.message}`).join("; ")
        : "no server configured";
      const message = reason === "no_session"
        ? `not connected to any server (${list}); the connection from ${peer} is reset (the visitor keeps ` +
          `listening and works again once the client is reconnected)`
        : `no server carried the connection from ${peer}, it is reset: ${list}`;
      this.#refused(reason, message);
      abortQuietly(conn);
      return;
    }
    await this.#carry(conn, peer, stream);
  }

  /** One server, as before there were several: the exact refusal, or an error (counted as `failed`). */
  async #visitOne(conn: Deno.TcpConn, peer: string, session: Session | null): Promise<void> {
    if (session === null || session.isClosed) {
      const message = `not connected to the server; the connection from ${peer} is reset (the visitor ` +
        `keeps listening and works again once the client is reconnected)`;
      this.#refused("no_session", message);
      abortQuietly(conn);
      return;
    }
    const stream = await session.open();
    try {
      await writeAll(stream, encodeOpenRequest(this.#request()));
      const reply = await withTimeout(readOpenReply(stream), VISIT_REPLY_TIMEOUT_MS, "the server's answer");
      if (!reply.ok) {
        const message = `the server refused the connection from ${peer} (${reply.code}): ${reply.reason}`;
        this.#refused(reply.code.toLowerCase(), message);
        closeQuietly(stream);
        // A reset: the application sees the connection fail, not an empty answer.
        abortQuietly(conn);
        return;
      }
    } catch (error) {
      abortQuietly(stream);
      throw error;
    }
    await this.#carry(conn, peer, stream);
  }

  /** The visit request this visitor sends. */
  #request(): VisitRequest {
    return {
      kind: "visit",
      name: this.config.name,
      publish_port: this.config.publishPort,
      ...(this.config.client !== undefined ? { client: this.config.client } : {}),
      ...(this.config.secretKey !== undefined ? { secret_key: this.config.secretKey } : {}),
    };
  }

  /**
   * The servers in the order to ask them: those that refused or failed this visitor within
   * {@linkcode ROUTE_FAILURE_MEMORY_MS} after the others (fewest failures first), then in config order.
   * A stalled server (a visit unanswered for {@linkcode STALLED_ANSWER_MS}) comes after those; without a
   * session a server is still listed (its answer is "not connected"), last.
   */
  #ordered(routes: readonly VisitRoute[]): VisitRoute[] {
    const nowMs = performance.now();
    const rank = (route: VisitRoute): number => {
      if (route.session === null || route.session.isClosed) return Number.MAX_SAFE_INTEGER;
      const counters = this.#routeCounters.get(route.server);
      if (counters === undefined) return 0;
      for (const { startMs } of counters.pending) {
        if (nowMs - startMs >= STALLED_ANSWER_MS) return Number.MAX_SAFE_INTEGER - 1;
      }
      if (nowMs - counters.lastFailureAtMs >= ROUTE_FAILURE_MEMORY_MS) return 0;
      return counters.consecutiveFailures;
    };
    // Array.prototype.sort is stable: equal ranks keep the config order.
    return routes.map((route) => ({ route, rank: rank(route) }))
      .sort((a, b) => a.rank - b.rank)
      .map(({ route }) => route);
  }

  #routeCounter(server: string): RouteCounters {
    let counters = this.#routeCounters.get(server);
    if (counters === undefined) {
      counters = {
        visits: 0,
        refused: {},
        consecutiveFailures: 0,
        lastFailureAtMs: Number.NEGATIVE_INFINITY,
        pending: new Set(),
      };
      this.#routeCounters.set(server, counters);
    }
    return counters;
  }

  /**
   * Asks one server for the target: its stream once it answered ok, or why not. The whole exchange (the
   * open too: a session that died without a word may hold it) is bounded by {@linkcode VISIT_REPLY_TIMEOUT_MS}.
   */
  async #attempt(session: Session, request: VisitRequest): Promise<Attempt> {
    const opening = session.open();
    try {
      const reply = await withTimeout(
        (async () => {
          const stream = await opening;
          await writeAll(stream, encodeOpenRequest(request));
          return await readOpenReply(stream);
        })(),
        VISIT_REPLY_TIMEOUT_MS,
        "the server's answer",
      );
      const opened: Stream = await opening;
      if (reply.ok) return { ok: true, stream: opened };
      closeQuietly(opened);
      return {
        ok: false,
        reason: reply.code.toLowerCase(),
        message: `refused (${reply.code}): ${reply.reason}`,
      };
    } catch (error) {
      // The stream is reset, now or (opened after the timeout) as soon as it exists.
      opening.then((stream) => abortQuietly(stream), () => {});
      return { ok: false, reason: "failed", message: `failed: ${errorMessage(error)}` };
    }
  }

  /** Carries an accepted visit: the local connection and the server's stream, both ways. */
  async #carry(conn: Deno.TcpConn, peer: string, stream: Stream): Promise<void> {
    this.counters.activeConnections++;
    try {
      const result = await pipeBoth(conn, stream, { counters: this.counters });
      logger.debug("Visitor {target}: connection from {peer} closed: {in} bytes in, {out} bytes out", {
        target: this.target,
        peer,
        in: result.aToBBytes,
        out: result.bToABytes,
      });
    } finally {
      this.counters.activeConnections--;
    }
  }

  /** The visitor's state for the stats endpoint. */
  snapshot(): VisitorSnapshot {
    const counters = this.counters;
    return {
      name: this.config.name,
      publish_port: this.config.publishPort,
      client: this.config.client ?? null,
      bind: formatHostPort(this.config.bindAddr, this.config.bindPort),
      listen_addr: this.#listener ? formatAddr(this.#listener.addr) : null,
      active_connections: counters.activeConnections,
      total_connections: counters.totalConnections,
      refused: { ...counters.refused },
      bytes_in: counters.bytesIn,
      bytes_out: counters.bytesOut,
      last_error: counters.lastError,
      ...(this.#routeCounters.size > 0 ? { servers: this.#serverSnapshots() } : {}),
    };
  }

  /** Each server's share, in the order servers were first asked. */
  #serverSnapshots(): VisitorServerSnapshot[] {
    return [...this.#routeCounters].map(([name, counters]) => ({
      name,
      visits: counters.visits,
      refused: { ...counters.refused },
    }));
  }

  /**
   * Closes the listener (the port is free once this resolves) and resets the connections it carries.
   */
  async close(): Promise<void> {
    this.#stopped = true;
    if (this.#listener) closeQuietly(this.#listener);
    for (const conn of this.#connections) abortQuietly(conn);
    await this.#acceptLoop;
    await Promise.all([...this.#carried]);
  }
}

/**
 * The reason a connection no server carried is counted under: a server's refusal other than NOT_FOUND
 * (that server has the target and says why not), then NOT_FOUND, then a failure, then no session.
 */
function mostTelling(answers: readonly { reason: string }[]): string {
  const rank = (reason: string): number =>
    reason === "no_session" ? 3 : reason === "failed" ? 2 : reason === "not_found" ? 1 : 0;
  let best: string | null = null;
  for (const { reason } of answers) {
    if (best === null || rank(reason) < rank(best)) best = reason;
  }
  return best ?? "no_session";
}

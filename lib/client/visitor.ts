/**
 * A `[[visitors]]` entry at work: a local listener whose every connection becomes a `visit` stream to the
 * server (protocol README §5b), which splices it to another client's private proxy. The listener is bound
 * once, when the client starts, and stays bound across reconnects of the client's session: a connection
 * that arrives while there is no session is reset at once (and logged), and the next one after the
 * session is back works.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { VisitorConfig } from "../config/types.ts";
import type { Session } from "../mux/mod.ts";
import { acceptEach } from "../net/accept.ts";
import { formatAddr, formatHostPort } from "../net/address.ts";
import { writeAll } from "../net/conn.ts";
import { encodeOpenRequest, readOpenReply, type VisitRequest } from "../protocol/open_request.ts";
import { abortQuietly, closeQuietly, pipeBoth } from "../transport/pipe.ts";
import { withTimeout } from "../_async.ts";
import { errorMessage } from "../text.ts";
import type { VisitorSnapshot } from "../stats/snapshot.ts";

const logger = getLogger(["tls-tunnel", "client", "visitor"]);

/** Refusals one visitor logs per {@linkcode REFUSAL_LOG_WINDOW_MS}; the rest are counted, then summed up. */
const REFUSAL_LOG_BURST = 10;
/** The window of {@linkcode REFUSAL_LOG_BURST}. */
const REFUSAL_LOG_WINDOW_MS = 10_000;

/** How long the server may take to answer a visit (it opens a stream to the target; no round trip). */
export const VISIT_REPLY_TIMEOUT_MS = 15_000;

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
    /** The client's authenticated session now, or null while it has none. */
    readonly session: () => Session | null,
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
    const session = this.session();
    if (session === null || session.isClosed) {
      const message = `not connected to the server; the connection from ${peer} is reset (the visitor ` +
        `keeps listening and works again once the client is reconnected)`;
      this.#refused("no_session", message);
      abortQuietly(conn);
      return;
    }
    const request: VisitRequest = {
      kind: "visit",
      name: this.config.name,
      publish_port: this.config.publishPort,
      ...(this.config.client !== undefined ? { client: this.config.client } : {}),
      ...(this.config.secretKey !== undefined ? { secret_key: this.config.secretKey } : {}),
    };
    const stream = await session.open();
    try {
      await writeAll(stream, encodeOpenRequest(request));
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
    };
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

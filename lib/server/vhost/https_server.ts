/**
 * The shared HTTPS port (`vhost_https_port`): each connection's TLS ClientHello is read (at most
 * `MAX_CLIENT_HELLO_BYTES`, within {@linkcode CLIENT_HELLO_TIMEOUT_MS}), its SNI routes it to an `https`
 * proxy, and the connection, the ClientHello put back in front, is handed to that proxy, which carries
 * the raw bytes to its client like a `tcp` proxy's. TLS is never terminated here: the client's service
 * holds the certificate. A connection without SNI, with an SNI no tunnel serves, or with a malformed or
 * slow ClientHello is closed after it (counted in `https_refused_total`).
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { acceptEach } from "../../net/accept.ts";
import { MAX_CLIENT_HELLO_BYTES, readClientHelloSni } from "../../net/sni.ts";
import { listenTcp } from "../../net/tcp.ts";
import { abortQuietly, closeQuietly } from "../../transport/pipe.ts";
import type { OutsideConn } from "../proxy_kinds/kind.ts";
import type { VhostRouter } from "./router.ts";
import type { VhostStats } from "./stats.ts";
import type { VhostProxyTarget } from "./target.ts";

const logger = getLogger(["tls-tunnel", "server", "vhost"]);

/** Time for a connection's whole ClientHello to arrive. */
export const CLIENT_HELLO_TIMEOUT_MS = 10_000;
/** Connections still sending their ClientHello, at most; beyond it new ones are closed at once. */
export const MAX_PENDING_HELLOS = 1024;

/** Options of {@linkcode VhostHttpsServer}. */
export interface VhostHttpsOptions {
  /** IP literal to bind. */
  hostname: string;
  /** Port to bind (0: any free port). */
  port: number;
  /** Routes by SNI host name. */
  router: VhostRouter<VhostProxyTarget>;
  /** Counters. */
  stats: VhostStats;
  /** ClientHello timeout (tests shorten it). */
  helloTimeoutMs?: number;
}

/** A TCP connection whose first bytes (already read) are handed out again before the rest. */
export class PrefixedConn implements OutsideConn {
  #prefix: Uint8Array | null;

  constructor(readonly conn: Deno.TcpConn, prefix: Uint8Array) {
    this.#prefix = prefix.length > 0 ? prefix : null;
  }

  get remoteAddr(): Deno.Addr {
    return this.conn.remoteAddr;
  }

  read(buffer: Uint8Array): Promise<number | null> {
    const prefix = this.#prefix;
    if (prefix) {
      const count = Math.min(buffer.length, prefix.length);
      buffer.set(prefix.subarray(0, count));
      this.#prefix = count < prefix.length ? prefix.subarray(count) : null;
      return Promise.resolve(count);
    }
    return this.conn.read(buffer);
  }

  write(data: Uint8Array): Promise<number> {
    return this.conn.write(data);
  }

  closeWrite(): Promise<void> {
    return this.conn.closeWrite();
  }

  close(): void {
    this.conn.close();
  }

  /** A real TCP reset, as for a `tcp` proxy's connection. */
  reset(): void {
    abortQuietly(this.conn);
  }
}

/** The shared HTTPS port. */
export class VhostHttpsServer {
  readonly #listener: Deno.TcpListener;
  readonly #pending = new Set<Deno.TcpConn>();
  #loop: Promise<void> | null = null;
  #closed = false;

  /** Binds the port. @throws {BindError} classified */
  constructor(readonly options: VhostHttpsOptions) {
    this.#listener = listenTcp(options.hostname, options.port, "vhost_https_port");
  }

  /** The bound address. */
  get addr(): Deno.NetAddr {
    return this.#listener.addr;
  }

  /** Starts accepting; resolves when {@linkcode close} ends the loop. */
  serve(): Promise<void> {
    this.#loop ??= acceptEach(this.#listener, (conn) => this.#admit(conn), {
      stopped: () => this.#closed,
      onError: (error) =>
        logger.warn("Accept on the HTTPS vhost port failed: {error}", { error: String(error) }),
    });
    return this.#loop;
  }

  /** Stops accepting; connections handed to proxies are theirs (they end with their proxy). */
  async close(): Promise<void> {
    this.#closed = true;
    closeQuietly(this.#listener);
    for (const conn of this.#pending) closeQuietly(conn);
    await this.#loop;
  }

  #admit(conn: Deno.TcpConn): void {
    if (this.#pending.size >= MAX_PENDING_HELLOS) {
      this.options.stats.httpsRefusedTotal++;
      closeQuietly(conn);
      return;
    }
    this.#pending.add(conn);
    this.#route(conn).catch((error) => {
      logger.debug("HTTPS vhost connection dropped: {error}", { error: String(error) });
      closeQuietly(conn);
    }).finally(() => this.#pending.delete(conn));
  }

  async #route(conn: Deno.TcpConn): Promise<void> {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      closeQuietly(conn);
    }, this.options.helloTimeoutMs ?? CLIENT_HELLO_TIMEOUT_MS);
    const buffer = new Uint8Array(MAX_CLIENT_HELLO_BYTES);
    let received = 0;
    let serverName: string | null = null;
    let reason = "";
    try {
      while (true) {
        const count = await conn.read(buffer.subarray(received)).catch(() => null);
        if (count === null) {
          reason = timedOut ? "ClientHello too slow" : "closed before a whole ClientHello";
          break;
        }
        received += count;
        const result = readClientHelloSni(buffer.subarray(0, received));
        if (result.status === "incomplete") {
          if (received < buffer.length) continue;
          reason = "ClientHello too large";
          break;
        }
        if (result.status === "invalid") reason = result.reason;
        else if (result.serverName === null) reason = "no SNI";
        else serverName = result.serverName;
        break;
      }
    } finally {
      clearTimeout(timer);
    }
    const route = serverName !== null ? this.options.router.match(serverName, "/") : null;
    if (serverName === null || !route || route.target.unavailable) {
      this.options.stats.httpsRefusedTotal++;
      logger.debug("HTTPS vhost closed a connection from {peer}: {reason}", {
        peer: conn.remoteAddr.hostname,
        reason: reason || `no tunnel serves ${serverName}`,
      });
      closeQuietly(conn);
      return;
    }
    // The ClientHello bytes go to the service first: it completes the handshake with its certificate.
    const routed = new PrefixedConn(conn, buffer.slice(0, received));
    try {
      conn.setNoDelay(true);
    } catch {
      // Gone already: the copy loop finds out.
    }
    if (!route.target.deliver(routed)) {
      this.options.stats.httpsRefusedTotal++;
      closeQuietly(conn);
      return;
    }
    this.options.stats.httpsRouted(route.host);
  }
}

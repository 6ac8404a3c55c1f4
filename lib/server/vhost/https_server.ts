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
import { PrefixedConn } from "../../net/conn.ts";
import { MAX_CLIENT_HELLO_BYTES, readClientHelloSni } from "../../net/sni.ts";
import { abortQuietly, closeQuietly } from "../../transport/pipe.ts";
import type { OutsideConn } from "../proxy_kinds/kind.ts";
import { VhostListener } from "./listener.ts";
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
export class PrefixedTcpConn extends PrefixedConn<Deno.TcpConn> implements OutsideConn {
  /** The outside peer's address. */
  get remoteAddr(): Deno.Addr {
    return this.conn.remoteAddr;
  }

  /** A real TCP reset, as for a `tcp` proxy's connection. */
  reset(): void {
    abortQuietly(this.conn);
  }
}

/**
 * The shared HTTPS port. `close()` closes the connections still sending their ClientHello; those handed
 * to proxies are theirs (they end with their proxy).
 */
export class VhostHttpsServer extends VhostListener {
  /** Binds the port. @throws {BindError} classified */
  constructor(readonly options: VhostHttpsOptions) {
    super({
      hostname: options.hostname,
      port: options.port,
      key: "vhost_https_port",
      label: "HTTPS vhost",
      maxConnections: MAX_PENDING_HELLOS,
      onRefused: () => options.stats.httpsRefusedTotal++,
    });
  }

  /** Routes one connection by its ClientHello's SNI (held until it is handed to a proxy or closed). */
  protected override handle(conn: Deno.TcpConn): Promise<void> {
    return this.#route(conn).catch((error) => {
      logger.debug("HTTPS vhost connection dropped: {error}", { error: String(error) });
      closeQuietly(conn);
    });
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
    const routed = new PrefixedTcpConn(conn, buffer.slice(0, received));
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

/**
 * The listening half both shared vhost ports run: bind the port (bind errors classified under its config
 * key), accept with the common back-off, keep each connection in a bounded set while its handler runs
 * (beyond the bound new ones are closed at once), and on close stop accepting and close those still held.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { acceptEach } from "../../net/accept.ts";
import { listenTcp } from "../../net/tcp.ts";
import { closeQuietly } from "../../transport/pipe.ts";

const logger = getLogger(["tls-tunnel", "server", "vhost"]);

/** Options of {@linkcode VhostListener}. */
export interface VhostListenerOptions {
  /** IP literal to bind. */
  hostname: string;
  /** Port to bind (0: any free port). */
  port: number;
  /** The config key the port comes from (named in bind errors). */
  key: "vhost_http_port" | "vhost_https_port";
  /** What the port is, in the log ("HTTP vhost"). */
  label: string;
  /** Connections held at once; beyond it new ones are closed at once. */
  maxConnections: number;
  /** Told about each connection closed for the bound. */
  onRefused?: () => void;
}

/**
 * A bound vhost port whose connections are held while {@linkcode handle} runs: the HTTP and HTTPS vhost
 * servers extend it with their handling.
 */
export abstract class VhostListener {
  readonly #port: VhostListenerOptions;
  readonly #listener: Deno.TcpListener;
  readonly #connections = new Set<Deno.TcpConn>();
  #loop: Promise<void> | null = null;
  #closed = false;

  /** Binds the port. @throws {BindError} classified */
  constructor(port: VhostListenerOptions) {
    this.#port = port;
    this.#listener = listenTcp(port.hostname, port.port, port.key);
  }

  /** Serves one accepted connection; a rejection closes it. */
  protected abstract handle(conn: Deno.TcpConn): Promise<void>;

  /** The bound address. */
  get addr(): Deno.NetAddr {
    return this.#listener.addr;
  }

  /** Starts accepting; resolves when {@linkcode close} ends the loop. */
  serve(): Promise<void> {
    this.#loop ??= acceptEach(this.#listener, (conn) => this.#admit(conn), {
      stopped: () => this.#closed,
      onError: (error) =>
        logger.warn(`Accept on the ${this.#port.label} port failed: {error}`, { error: String(error) }),
    });
    return this.#loop;
  }

  /** Stops accepting and closes every connection whose handling still runs. */
  async close(): Promise<void> {
    this.#closed = true;
    closeQuietly(this.#listener);
    for (const conn of this.#connections) closeQuietly(conn);
    await this.#loop;
  }

  #admit(conn: Deno.TcpConn): void {
    if (this.#connections.size >= this.#port.maxConnections) {
      this.#port.onRefused?.();
      closeQuietly(conn);
      return;
    }
    this.#connections.add(conn);
    this.handle(conn)
      .catch(() => closeQuietly(conn))
      .finally(() => this.#connections.delete(conn));
  }
}

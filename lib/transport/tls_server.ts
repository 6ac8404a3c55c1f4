/**
 * The server's end of the tunnel connection: plain TCP accepted with `node:net`, TLS run over it with
 * `node:tls`.
 *
 * Why not `Deno.listenTls`: in Deno 2.9.6 a connection it accepted cannot be closed before its handshake
 * completes (the file descriptor stays until the peer leaves), so idle or stalled connections exhaust the
 * server's descriptors; and its connections cannot set TCP_NODELAY. Here every socket has TCP_NODELAY
 * from the moment it is accepted and `close()` frees it in any state. The cost, measured in this run's
 * bench (see docs/PERFORMANCE.md), is slower decryption of what the server receives.
 *
 * @module
 */

import type { Server, Socket } from "node:net";
import type { SecureContext, TLSSocket } from "node:tls";
import { classifyBindError, requireIpLiteral } from "../net/tcp.ts";
import { NodeSocketConn } from "./node_socket_conn.ts";
import type { DuplexConn } from "../net/conn.ts";

/** Options of {@linkcode listenTunnelTls}. */
export interface TlsListenOptions {
  /** Address to bind (an IP literal). */
  hostname: string;
  /** Port to bind (0 = any free port). */
  port: number;
  /** PEM certificate chain (leaf first). */
  certPem: string;
  /** PEM private key of the leaf. */
  keyPem: string;
}

/**
 * A TCP connection just accepted by {@linkcode TunnelTlsListener}, before any TLS: the server admits it
 * (`startTls`) or refuses it (`refuse`), and must do one of the two at once.
 */
export interface AcceptedSocket {
  /** The peer's address. */
  readonly remoteAddr: Deno.NetAddr;
  /** Starts the server side of TLS over the socket. */
  startTls(): AcceptedTlsConn;
  /**
   * Closes the socket without creating any TLS state: in Deno 2.9.6 a `node:tls` TLSSocket destroyed in
   * the tick it was created keeps ~5 KB of JS heap for good (4,000 refused connections: +21 MB after a
   * full GC; the soak found it at 5.6 GB after 5 minutes of floods beyond the pending limits).
   */
  refuse(): void;
}

/** An admitted connection: TCP is up, TLS may still be in progress. */
export interface AcceptedTlsConn extends DuplexConn {
  /** The peer's address. */
  readonly remoteAddr: Deno.NetAddr;
  /** Resolves once the TLS handshake completed; rejects if it failed or the connection closed first. */
  handshake(): Promise<void>;
}

/** The server's TLS listener; see the module doc for why it is not `Deno.listenTls`. */
export class TunnelTlsListener {
  readonly #server: Server;
  readonly #context: SecureContext;
  readonly #wrap: (socket: Socket, context: SecureContext) => TLSSocket;
  #closed = false;
  #onConnection: ((socket: AcceptedSocket) => void) | null = null;
  readonly #done = Promise.withResolvers<void>();

  private constructor(
    server: Server,
    context: SecureContext,
    wrap: (socket: Socket, context: SecureContext) => TLSSocket,
    readonly addr: Deno.NetAddr,
  ) {
    this.#server = server;
    this.#context = context;
    this.#wrap = wrap;
    server.on("connection", (socket: Socket) => this.#accepted(socket));
    server.on("close", () => this.#done.resolve());
  }

  /** Binds; a busy or forbidden address rejects with a classified `BindError`. */
  static async listen(options: TlsListenOptions): Promise<TunnelTlsListener> {
    requireIpLiteral(options.hostname, options.port);
    // Loaded here, not at import: a client process never needs node:tls's server side (about 6 MB).
    const [net, tls] = await Promise.all([import("node:net"), import("node:tls")]);
    const context = tls.createSecureContext({ cert: options.certPem, key: options.keyPem });
    const server = net.createServer({ noDelay: true, pauseOnConnect: false });
    await new Promise<void>((resolve, reject) => {
      const onError = (error: Error) =>
        reject(classifyBindError(error, options.hostname, options.port, "bind_port"));
      server.once("error", onError);
      server.listen({ host: options.hostname, port: options.port, backlog: 511 }, () => {
        server.off("error", onError);
        resolve();
      });
    });
    // An accept failure (out of descriptors) surfaces here; the server keeps accepting once it can.
    server.on("error", () => {});
    const bound = server.address();
    if (bound === null || typeof bound === "string") throw new Error("node:net server has no TCP address");
    const wrap = (socket: Socket, secureContext: SecureContext) =>
      new tls.TLSSocket(socket, { isServer: true, secureContext });
    return new TunnelTlsListener(server, context, wrap, {
      transport: "tcp",
      hostname: bound.address,
      port: bound.port,
    });
  }

  /**
   * Hands each accepted connection to `onConnection` (which must not block) until {@linkcode close};
   * resolves then.
   */
  serve(onConnection: (socket: AcceptedSocket) => void): Promise<void> {
    this.#onConnection = onConnection;
    return this.#done.promise;
  }

  #accepted(socket: Socket): void {
    socket.setNoDelay(true);
    if (this.#closed || !this.#onConnection) {
      socket.destroy();
      return;
    }
    const remoteAddr: Deno.NetAddr = {
      transport: "tcp",
      hostname: socket.remoteAddress ?? "",
      port: socket.remotePort ?? 0,
    };
    this.#onConnection({
      remoteAddr,
      startTls: () => new ServerTlsConn(this.#wrap(socket, this.#context), socket, remoteAddr),
      refuse: () => socket.destroy(),
    });
  }

  /** Stops accepting; connections already accepted stay open. Safe to call more than once. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#server.close();
  }
}

/** Binds the server's TLS listener; a busy or forbidden port rejects with a classified `BindError`. */
export function listenTunnelTls(options: TlsListenOptions): Promise<TunnelTlsListener> {
  return TunnelTlsListener.listen(options);
}

class ServerTlsConn extends NodeSocketConn implements AcceptedTlsConn {
  readonly #handshake: Promise<void>;

  constructor(tls: TLSSocket, readonly raw: Socket, readonly remoteAddr: Deno.NetAddr) {
    super(tls);
    this.#handshake = new Promise<void>((resolve, reject) => {
      const fail = (error?: Error) => reject(error ?? new Deno.errors.ConnectionAborted("closed before TLS"));
      tls.once("secure", () => {
        tls.off("close", fail);
        resolve();
      });
      tls.once("error", fail);
      tls.once("close", () => fail());
    });
    // Observed through handshake(); an unobserved rejection must not end the process.
    this.#handshake.catch(() => {});
  }

  handshake(): Promise<void> {
    return this.#handshake;
  }

  override close(): void {
    super.close();
    // The TLS layer may not have taken the socket over yet (no byte received): free it directly.
    this.raw.destroy();
  }
}

/**
 * The server side every transport shares: a `node:net` server bound to an IP literal, TCP_NODELAY on
 * every accepted socket, admit/refuse per socket (see {@linkcode IncomingConn}), the handshake budget
 * counted from the TCP accept, and `close()` / the abort signal. Why `node:net` and not `Deno.listen` or
 * `Deno.listenTls`: see `tls.ts`. Each transport supplies only its `admit`, which builds its handshake
 * over the accepted socket (with, for TLS, a wrapper from {@linkcode serverTlsWrapper}).
 *
 * @module
 */

import type { Server, Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import { settleNow } from "../_async.ts";
import { classifyBindError, requireIpLiteral } from "../net/tcp.ts";
import type { AdmittedConn, IncomingConn, TransportListener, TransportListenOptions } from "./transport.ts";

/**
 * Starts a transport's handshake over an accepted TCP socket: `remainingMs` is what is left of the
 * handshake budget (it runs from the TCP accept); the connection must be freed by its `close()` in any
 * state.
 */
export type AdmitSocket = (socket: Socket, remoteAddr: Deno.NetAddr, remainingMs: number) => AdmittedConn;

/** Puts server-side TLS over an accepted socket. */
export type WrapTls = (socket: Socket) => TLSSocket;

/**
 * The server-side TLS wrapper for `options` (its certificate and key, offering `alpnProtocols` when
 * given). `node:tls` is loaded here, not at import: a client process never needs its server side
 * (about 6 MB).
 */
export async function serverTlsWrapper(
  options: TransportListenOptions,
  alpnProtocols?: string[],
): Promise<WrapTls> {
  const tls = await import("node:tls");
  let secureContext = tls.createSecureContext({ cert: options.certPem, key: options.keyPem });
  // Found by the listener built on the same options: a reload swaps the context new handshakes use.
  CERTIFICATE_SWAPS.set(options, (certPem, keyPem) => {
    secureContext = tls.createSecureContext({ cert: certPem, key: keyPem });
  });
  return (socket) =>
    new tls.TLSSocket(socket, {
      isServer: true,
      secureContext,
      ...(alpnProtocols ? { ALPNProtocols: alpnProtocols } : {}),
    });
}

/** Per listen options, how its TLS wrapper takes another certificate (throws for an unusable pair). */
const CERTIFICATE_SWAPS = new WeakMap<TransportListenOptions, (certPem: string, keyPem: string) => void>();

/** A bound `node:net` server that hands each accepted socket to its transport's {@linkcode AdmitSocket}. */
export class TcpTransportListener implements TransportListener {
  readonly #server: Server;
  readonly #admit: AdmitSocket;
  readonly #handshakeTimeoutMs: number;
  #closed = false;
  #onConnection: ((incoming: IncomingConn) => void) | null = null;
  /** Swaps the TLS certificate of new handshakes; null without TLS of its own (plain text behind a proxy). */
  #swapCertificate: ((certPem: string, keyPem: string) => void) | null = null;
  readonly #done = Promise.withResolvers<void>();

  private constructor(
    server: Server,
    admit: AdmitSocket,
    handshakeTimeoutMs: number,
    /** The bound address. */
    readonly addr: Deno.NetAddr,
  ) {
    this.#server = server;
    this.#admit = admit;
    this.#handshakeTimeoutMs = handshakeTimeoutMs;
    server.on("connection", (socket: Socket) => this.#accepted(socket));
    server.on("close", () => this.#done.resolve());
  }

  /**
   * Checks that `options.hostname` is an IP literal, runs `setup` (which loads what the transport needs
   * and returns its {@linkcode AdmitSocket}), then binds `options.hostname` and `options.port`; a busy or
   * forbidden address rejects with a classified `BindError`. Aborting `signal` closes the listener.
   */
  static async listen(
    options: TransportListenOptions,
    setup: () => Promise<AdmitSocket>,
    signal?: AbortSignal,
  ): Promise<TcpTransportListener> {
    requireIpLiteral(options.hostname, options.port);
    const [net, admit] = await Promise.all([import("node:net"), setup()]);
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
    const listener = new TcpTransportListener(server, admit, options.handshakeTimeoutMs, {
      transport: "tcp",
      hostname: bound.address,
      port: bound.port,
    });
    listener.#swapCertificate = CERTIFICATE_SWAPS.get(options) ?? null;
    if (signal?.aborted) listener.close();
    else signal?.addEventListener("abort", () => listener.close(), { once: true });
    return listener;
  }

  /** Hands each accepted connection to `onConnection` until the listener is closed; resolves then. */
  serve(onConnection: (incoming: IncomingConn) => void): Promise<void> {
    this.#onConnection = onConnection;
    return this.#done.promise;
  }

  #accepted(socket: Socket): void {
    const acceptedAtMs = performance.now();
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
      admit: () =>
        this.#admit(socket, remoteAddr, this.#handshakeTimeoutMs - (performance.now() - acceptedAtMs)),
      // Only the TCP socket, no TLS (or HTTP) state: in Deno 2.9.6 a node:tls TLSSocket destroyed in the
      // tick it was created keeps ~5 KB of JS heap for good (the soak found 5.6 GB after 5 minutes of
      // floods beyond the pending limits).
      refuse: () => socket.destroy(),
    });
  }

  /**
   * New TLS handshakes present `certPem`/`keyPem`; admitted connections keep theirs. Rejects, keeping
   * the old pair, when node:tls cannot use the pair or the listener has no TLS of its own.
   */
  replaceCertificate(certPem: string, keyPem: string): Promise<void> {
    const swap = this.#swapCertificate;
    if (swap === null) return Promise.reject(new Error("this listener has no TLS certificate of its own"));
    return settleNow(() => swap(certPem, keyPem));
  }

  /** Stops accepting; admitted connections stay open. Safe to call more than once. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#server.close();
  }
}

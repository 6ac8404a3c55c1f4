/**
 * The {@linkcode Transport} contract: how the tunnel's one connection between a client and the server is
 * accepted and dialed. Everything above it (yamux, the control protocol, the roles) sees only a
 * {@linkcode DuplexConn}; a transport decides what carries those bytes (TLS over TCP today; WebSocket,
 * HTTP/2 or QUIC next). The contract is spelt out in `mod.ts`.
 *
 * @module
 */

import type { DuplexConn } from "../net/conn.ts";
import type { OutboundProxy } from "../net/proxy_url.ts";

/** Options of {@linkcode Transport.listen}. */
export interface TransportListenOptions {
  /** Address to bind: an IP literal (binding a host name would block on a name lookup). */
  hostname: string;
  /** Port to bind (0 = any free port). */
  port: number;
  /** PEM certificate chain (leaf first) the server presents. */
  certPem: string;
  /** PEM private key of the leaf. */
  keyPem: string;
  /**
   * Budget from the TCP accept to the end of the transport's handshake: an admitted connection still
   * handshaking then is closed, and its {@linkcode AdmittedConn.handshake} rejects with a
   * {@linkcode TransportHandshakeTimeoutError}. (The server's own `handshake_timeout_secs` deadline, from
   * the same accept to authentication, runs on top.)
   */
  handshakeTimeoutMs: number;
  /** HTTP path the tunnel is served on, for transports over HTTP (`"wss"`); default `"/tunnel"`. */
  path?: string;
  /**
   * Behind a reverse proxy that terminates TLS (`behind_proxy`): an HTTP transport serves plain text
   * (ws) and `certPem`/`keyPem` go unused.
   */
  plainText?: boolean;
}

/** Options of {@linkcode Transport.dial}. */
export interface TransportDialOptions {
  /** Server host name or address. */
  hostname: string;
  /** Server port. */
  port: number;
  /** Name the server's certificate must carry (defaults to `hostname`). */
  serverName?: string;
  /** PEM CA or self-signed certificate to trust instead of the system roots. */
  caCertPem?: string;
  /** The file `caCertPem` was read from (`ca_cert_path`), named in certificate errors. */
  caCertPath?: string;
  /** Accept any certificate (testing only). */
  skipVerify?: boolean;
  /**
   * Pin: SHA-256 of the server's leaf certificate (DER) as hex, colons and a `SHA256:` prefix allowed.
   * With a pin, only that exact certificate is accepted, and CA, name and expiry checks are not made
   * (`caCertPem` and `skipVerify` are ignored); any other certificate fails the dial with a
   * {@linkcode TransportDialError} showing both fingerprints, before a byte of the tunnel is sent.
   */
  pinnedFingerprint?: string;
  /**
   * Leave through this outbound proxy (`proxy_url`, or `HTTPS_PROXY`): TCP to the proxy, its handshake
   * (HTTP CONNECT or SOCKS5), then the transport's own handshake over it, all within `timeoutMs`. Every
   * transport opens its TCP connection with `dialTcp` (or `connectNodeSocket`) of
   * `net/outbound_proxy.ts`, which honours it. A failure at the proxy rejects with a
   * {@linkcode TransportDialError} whose message names the hop and whose `cause` is the
   * `OutboundProxyError` (`permanent` when the proxy refused the credentials). Absent or null: direct.
   */
  proxy?: OutboundProxy | null;
  /** Give up the connect and handshake after this long. */
  timeoutMs: number;
  /** HTTP path of the tunnel, for transports over HTTP (`"wss"`); default `"/tunnel"`. */
  path?: string;
  /** ALPN protocols the TLS client offers (`["h2"]` for `"http2"`, as RFC 9113 §3.2 asks); none by default. */
  alpnProtocols?: string[];
}

/**
 * A connection a {@linkcode TransportListener} just accepted, before any handshake: the server must, in
 * the same turn, either {@linkcode admit} it or {@linkcode refuse} it (the pending limits decide).
 */
export interface IncomingConn {
  /** The peer's address. */
  readonly remoteAddr: Deno.NetAddr;
  /** Starts the transport's handshake over the connection. */
  admit(): AdmittedConn;
  /** Closes the connection at once, having built no handshake state for it (a flood costs nothing). */
  refuse(): void;
}

/**
 * An admitted connection: bytes flow once {@linkcode handshake} resolved. `close()` frees it in any state
 * (before, during or after the handshake), and a pending `handshake()` then rejects.
 */
export interface AdmittedConn extends DuplexConn {
  /** The peer's address. */
  readonly remoteAddr: Deno.NetAddr;
  /** Resolves once the handshake completed; rejects if it failed, timed out or the connection closed. */
  handshake(): Promise<void>;
  /**
   * After the handshake, the client addresses a reverse proxy claimed (`X-Forwarded-For`, `Forwarded`),
   * nearest-to-the-client first, IP literals only; empty when none. Unverified: the server believes them
   * only from a peer in `trusted_proxies`.
   */
  readonly forwardedFor?: readonly string[];
}

/** The server's listener of one transport. */
export interface TransportListener {
  /** The bound address. */
  readonly addr: Deno.NetAddr;
  /**
   * Hands each accepted connection to `onConnection` (which must not block, and must admit or refuse it
   * at once) until the listener is closed; resolves then.
   */
  serve(onConnection: (incoming: IncomingConn) => void): Promise<void>;
  /** Stops accepting; admitted connections stay open. Safe to call more than once. */
  close(): void;
  /**
   * Presents another certificate chain and key from the next TLS handshake on; connections already
   * handshaken keep theirs. Rejects (and keeps the old pair) when the pair is not usable. Absent for a
   * listener without TLS of its own.
   */
  replaceCertificate?(certPem: string, keyPem: string): Promise<void>;
}

/** A connected, handshaken connection to the server. */
export interface DialedConn extends DuplexConn {
  /** The server's address as dialed, "host:port". */
  readonly remote: string;
}

/** One way of carrying the tunnel connection; see `mod.ts` for the contract every transport keeps. */
export interface Transport {
  /** The name the config and the registry know it by. */
  readonly name: string;
  /**
   * Binds the server's listener; a busy or forbidden address rejects with a classified `BindError`.
   * Aborting `signal` closes the listener.
   */
  listen(options: TransportListenOptions, signal?: AbortSignal): Promise<TransportListener>;
  /**
   * Connects to the server and completes the handshake within `options.timeoutMs`; rejects with a
   * {@linkcode TransportDialError} whose message says what failed and what to do. Aborting `signal`
   * abandons the attempt (nothing is left open).
   */
  dial(options: TransportDialOptions, signal?: AbortSignal): Promise<DialedConn>;
}

/** The connection to the server could not be established; the message says why and what to do. */
export class TransportDialError extends Error {
  override name = "TransportDialError";
}

/** An admitted connection did not complete its handshake in time (it has been closed). */
export class TransportHandshakeTimeoutError extends Error {
  override name = "TransportHandshakeTimeoutError";
  constructor(
    /** The budget that ran out, from the TCP accept. */
    readonly timeoutMs: number,
  ) {
    super(`The transport handshake did not complete within ${timeoutMs} ms of the TCP accept; closed`);
  }
}

/**
 * The `"quic"` transport (experimental): the tunnel on one bidirectional QUIC stream, over UDP, with
 * Deno's `Deno.QuicEndpoint` / `Deno.connectQuic` (behind `--unstable-net` in Deno 2.9.6). One QUIC
 * connection per session, ALPN {@linkcode QUIC_ALPN}; the client opens the connection's only
 * bidirectional stream and yamux runs unchanged over it (a FIN on the stream is the end of that
 * direction: `closeWrite`). Mapping each tunnel stream to its own QUIC stream was not attempted.
 *
 * Server: one endpoint bound to `bind_addr:bind_port` (UDP). Each new connection is accepted in
 * 0.5-RTT mode, which gives a handle at once: its remote address (for the server's pending and per-IP
 * limits) and a `close()` that works before the handshake completes (the handshake deadline relies on
 * it). Deno 2.9.6 cannot show a `QuicIncoming`'s address without losing the connection (reading any of
 * its getters consumes it), so the cheap refusal without any handshake state (`QuicIncoming.refuse`) is
 * only used beyond {@linkcode QUIC_MAX_PENDING_HANDSHAKES} connections in handshake, or after `close()`.
 * An admitted connection's transport handshake is complete when the client's bidirectional stream
 * arrives: the client opens it only after verifying the server's certificate, so a client that does not
 * trust it never gets that far. The server accepts at most one bidirectional stream at a time and no
 * unidirectional ones.
 *
 * Client: a fresh endpoint per dial (so an abort or a timeout can end a handshake in flight by closing
 * it), the server's name resolved with `Deno.resolveDns` (Deno's QUIC connect would resolve it with a
 * blocking lookup). `ca_cert_path` is passed as `caCerts` and `server_name` as the name checked;
 * `server_fingerprint` pins through `serverCertificateHashes`: only a leaf whose SHA-256 is the pin is
 * accepted, with no CA, name or expiry checks, before the tunnel sends a byte (as on `tls`). Deno's QUIC
 * client has no way to skip verification, so `skip_verify` is refused for this transport (config check),
 * and UDP cannot go through an HTTP CONNECT or SOCKS5 proxy, so a dial with an outbound proxy fails.
 *
 * Liveness: QUIC keep-alive PINGs every {@linkcode QUIC_KEEPALIVE_INTERVAL_MS}, and a connection whose
 * peer has been silent for {@linkcode QUIC_IDLE_TIMEOUT_MS} is closed; yamux's own keepalive
 * (`keepalive_interval_secs`) runs on top as on every transport. UDP tells nobody that a peer died: a
 * killed client is noticed by the first of those two timeouts (TCP's RST is not there to shorten it).
 *
 * Freeing: in Deno 2.9.6 `QuicEndpoint.close()` closes its connections but the UDP socket is released
 * only when the endpoint object (and every connection object of it) is garbage-collected, and a
 * `QuicListener.stop()` does not wake a pending `incoming()`. So nothing here holds a QUIC object once
 * closed, a listener closes its endpoint when it and its last connection are closed, and after an
 * endpoint's close this module asks V8 for a few full collections (as `cli/_idle_gc.ts` does when idle).
 * Measured: the UDP socket is gone about 3 s after the close, the time a closed QUIC connection drains.
 *
 * @module
 */

import { settleNow } from "../_async.ts";
import { classifyBindError, requireIpLiteral } from "../net/tcp.ts";
import { requireUnstableNet } from "../net/unstable.ts";
import {
  type AdmittedConn,
  type IncomingConn,
  type Transport,
  TransportHandshakeTimeoutError,
  type TransportListener,
  type TransportListenOptions,
} from "./transport.ts";
import {
  CLOSE_HANDSHAKE_TIMEOUT,
  CLOSE_NORMAL,
  CLOSE_REFUSED,
  closeConnection,
  closeEndpoint,
  QUIC_ALPN,
  QUIC_IDLE_TIMEOUT_MS,
  QUIC_KEEPALIVE_INTERVAL_MS,
  QUIC_MAX_PENDING_HANDSHAKES,
  QuicStreamConn,
} from "./_quic_common.ts";
import { dialQuic } from "./_quic_dial.ts";

export {
  QUIC_ALPN,
  QUIC_CLOSE_LINGER_MS,
  QUIC_IDLE_TIMEOUT_MS,
  QUIC_KEEPALIVE_INTERVAL_MS,
  QUIC_MAX_PENDING_HANDSHAKES,
} from "./_quic_common.ts";
export { QuicDialError } from "./_quic_dial.ts";

/** The `"quic"` transport. */
export const quicTransport: Transport = {
  name: "quic",
  listen: listenQuic,
  dial: dialQuic,
};

// ---------------------------------------------------------------------------------------------------
// Server side

/** Binds the server's QUIC endpoint (UDP) and starts listening with the certificate and ALPN. */
function listenQuic(options: TransportListenOptions, signal?: AbortSignal): Promise<TransportListener> {
  requireUnstableNet('transport = "quic"');
  requireIpLiteral(options.hostname, options.port);
  let endpoint: Deno.QuicEndpoint;
  try {
    endpoint = new Deno.QuicEndpoint({ hostname: options.hostname, port: options.port });
  } catch (error) {
    return Promise.reject(classifyBindError(error, options.hostname, options.port, "bind_port"));
  }
  let listener: Deno.QuicListener;
  try {
    listener = endpoint.listen(serverListenOptions(options.certPem, options.keyPem));
  } catch (error) {
    closeEndpoint(endpoint);
    return Promise.reject(error);
  }
  const quic = new QuicTransportListener(endpoint, listener, options);
  if (signal?.aborted) quic.close();
  else signal?.addEventListener("abort", () => quic.close(), { once: true });
  return Promise.resolve(quic);
}

/** The endpoint's server side: the certificate, the ALPN, keep-alive and the stream limits. */
function serverListenOptions(certPem: string, keyPem: string): Deno.QuicListenOptions {
  return {
    alpnProtocols: [QUIC_ALPN],
    cert: certPem,
    key: keyPem,
    keepAliveInterval: QUIC_KEEPALIVE_INTERVAL_MS,
    maxIdleTimeout: QUIC_IDLE_TIMEOUT_MS,
    // The tunnel's one stream; a peer cannot make the server hold more.
    maxConcurrentBidirectionalStreams: 1,
    maxConcurrentUnidirectionalStreams: 0,
  };
}

/**
 * One accepted connection's claim on its listener: counted as in handshake until `settle()`, and as
 * live until `release()` closes it. Only the slot holds the connection, and drops it when released, so
 * that nothing keeps the endpoint reachable once everything is closed (see "Freeing").
 */
class ConnectionSlot {
  #conn: Deno.QuicConn | null;
  #settled = false;
  readonly #onSettled: () => void;
  readonly #onReleased: () => void;

  constructor(conn: Deno.QuicConn, onSettled: () => void, onReleased: () => void) {
    this.#conn = conn;
    this.#onSettled = onSettled;
    this.#onReleased = onReleased;
  }

  /** The connection, until released. */
  get conn(): Deno.QuicConn | null {
    return this.#conn;
  }

  /** The handshake ended (the tunnel stream arrived, or it failed). */
  settle(): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#onSettled();
  }

  /** Closes the connection with `closeCode` and gives up the claim. */
  release(closeCode: number, reason: string): void {
    this.settle();
    const conn = this.#conn;
    if (conn === null) return;
    this.#conn = null;
    closeConnection(conn, closeCode, reason);
    this.#onReleased();
  }
}

/** The server's QUIC endpoint: yields each new connection, closes the endpoint once all are gone. */
class QuicTransportListener implements TransportListener {
  readonly addr: Deno.NetAddr;
  #endpoint: Deno.QuicEndpoint | null;
  #listener: Deno.QuicListener | null;
  readonly #handshakeTimeoutMs: number;
  readonly #done = Promise.withResolvers<void>();
  #closed = false;
  #serving = false;
  /** Connections accepted and not yet closed by us: the endpoint outlives the listener until they go. */
  #live = 0;
  /** Connections accepted whose tunnel stream has not arrived. */
  #handshaking = 0;
  /** The listeners a certificate replacement made (held so that they live as long as this one). */
  #replaced: Deno.QuicListener[] = [];

  constructor(endpoint: Deno.QuicEndpoint, listener: Deno.QuicListener, options: TransportListenOptions) {
    this.#endpoint = endpoint;
    this.#listener = listener;
    this.#handshakeTimeoutMs = options.handshakeTimeoutMs;
    const bound = endpoint.addr;
    this.addr = { transport: "udp", hostname: bound.hostname, port: bound.port };
  }

  serve(onConnection: (incoming: IncomingConn) => void): Promise<void> {
    if (!this.#serving && !this.#closed) {
      this.#serving = true;
      void this.#acceptLoop(onConnection);
    }
    return this.#done.promise;
  }

  async #acceptLoop(onConnection: (incoming: IncomingConn) => void): Promise<void> {
    for (;;) {
      const listener = this.#listener;
      if (listener === null) return;
      let incoming: Deno.QuicIncoming;
      try {
        incoming = await listener.incoming();
      } catch {
        return; // The endpoint was closed.
      }
      this.#offer(incoming, onConnection);
    }
  }

  /** Accepts `incoming` (or refuses it beyond the limit) and hands it to the server to admit or refuse. */
  #offer(incoming: Deno.QuicIncoming, onConnection: (incoming: IncomingConn) => void): void {
    const acceptedAtMs = performance.now();
    if (this.#closed || this.#handshaking >= QUIC_MAX_PENDING_HANDSHAKES) {
      try {
        incoming.refuse();
      } catch {
        // Gone already.
      }
      return;
    }
    let conn: Deno.QuicConn;
    let remote: Deno.NetAddr;
    try {
      // 0.5-RTT: a handle now (address, close), the handshake completing behind it.
      conn = incoming.accept({ zeroRtt: true });
      const address = conn.remoteAddr;
      remote = { transport: "udp", hostname: address.hostname, port: address.port };
    } catch {
      return; // The handshake failed at once (no common ALPN, malformed Initial).
    }
    this.#live++;
    this.#handshaking++;
    const slot = new ConnectionSlot(conn, () => this.#handshaking--, () => {
      this.#live--;
      this.#closeEndpointWhenIdle();
    });
    // A connection that ends by itself (idle timeout, the peer's close) stops holding the endpoint.
    const released = () => slot.release(CLOSE_NORMAL, "");
    conn.closed.then(released, released);
    const handshakeTimeoutMs = this.#handshakeTimeoutMs;
    onConnection({
      remoteAddr: remote,
      admit: () =>
        new QuicServerConn(
          slot,
          remote,
          handshakeTimeoutMs - (performance.now() - acceptedAtMs),
          handshakeTimeoutMs,
        ),
      refuse: () => slot.release(CLOSE_REFUSED, "refused"),
    });
  }

  #closeEndpointWhenIdle(): void {
    const endpoint = this.#endpoint;
    if (!this.#closed || this.#live > 0 || endpoint === null) return;
    this.#endpoint = null;
    this.#listener = null;
    closeEndpoint(endpoint);
  }

  /**
   * Presents `certPem`/`keyPem` from the next QUIC handshake on (connections up keep theirs). Deno 2.9.6
   * has no call for it, but a second `listen()` on the endpoint replaces its server configuration, and
   * incoming connections keep arriving where the accept loop waits; a pair it cannot load rejects and the
   * old one stays.
   */
  replaceCertificate(certPem: string, keyPem: string): Promise<void> {
    const endpoint = this.#endpoint;
    if (this.#closed || endpoint === null) {
      return Promise.reject(new Error("the QUIC listener is closed"));
    }
    return settleNow(() => {
      this.#replaced.push(endpoint.listen(serverListenOptions(certPem, keyPem)));
    });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#replaced = [];
    try {
      this.#listener?.stop();
    } catch {
      // Already stopped.
    }
    this.#done.resolve();
    this.#closeEndpointWhenIdle();
  }
}

/** An admitted server-side QUIC connection: ready once the client's tunnel stream arrived. */
class QuicServerConn implements AdmittedConn {
  readonly remoteAddr: Deno.NetAddr;
  readonly #handshake: Promise<QuicStreamConn>;
  readonly #slot: ConnectionSlot;
  #stream: QuicStreamConn | null = null;
  #deadline: ReturnType<typeof setTimeout> | undefined;
  #closed = false;

  constructor(slot: ConnectionSlot, remoteAddr: Deno.NetAddr, remainingMs: number, timeoutMs: number) {
    this.remoteAddr = remoteAddr;
    this.#slot = slot;
    const timedOut = Promise.withResolvers<never>();
    this.#deadline = setTimeout(() => {
      timedOut.reject(new TransportHandshakeTimeoutError(timeoutMs));
      this.#closeWith(CLOSE_HANDSHAKE_TIMEOUT, "handshake timeout");
    }, Math.max(0, remainingMs));
    const arrived = tunnelStream(slot.conn);
    this.#handshake = Promise.race([arrived, timedOut.promise]).then(
      ({ conn, stream }) => {
        clearTimeout(this.#deadline);
        slot.settle();
        const carried = new QuicStreamConn(conn, stream, () => slot.release(CLOSE_NORMAL, ""));
        if (this.#closed) carried.close();
        else this.#stream = carried;
        return carried;
      },
      (error) => {
        clearTimeout(this.#deadline);
        slot.settle();
        this.#closeWith(CLOSE_NORMAL, "");
        throw error;
      },
    );
    // Observed through handshake(); an unobserved rejection must not end the process.
    this.#handshake.catch(() => {});
    arrived.catch(() => {});
  }

  async handshake(): Promise<void> {
    await this.#handshake;
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    return await (this.#stream ?? await this.#handshake).read(buffer);
  }

  async write(data: Uint8Array): Promise<number> {
    return await (this.#stream ?? await this.#handshake).write(data);
  }

  async closeWrite(): Promise<void> {
    await (this.#stream ?? await this.#handshake).closeWrite();
  }

  #closeWith(closeCode: number, reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#deadline);
    // With the tunnel stream up, it closes the connection once what was written got through (linger).
    if (this.#stream !== null) this.#stream.close();
    else this.#slot.release(closeCode, reason);
  }

  close(): void {
    this.#closeWith(CLOSE_NORMAL, "");
  }
}

/**
 * The first bidirectional stream the client opens on `conn` (it reaches us with the client's first
 * bytes, after the client has verified our certificate); rejects when the connection closes first.
 */
async function tunnelStream(
  conn: Deno.QuicConn | null,
): Promise<{ conn: Deno.QuicConn; stream: Deno.QuicBidirectionalStream }> {
  if (conn === null) {
    throw new Deno.errors.ConnectionAborted("QUIC connection closed before the tunnel stream");
  }
  await conn.handshake;
  const streams = conn.incomingBidirectionalStreams.getReader();
  try {
    const first = await streams.read();
    if (first.done) {
      throw new Deno.errors.ConnectionAborted("QUIC connection closed before the tunnel stream");
    }
    return { conn, stream: first.value };
  } finally {
    streams.releaseLock();
  }
}

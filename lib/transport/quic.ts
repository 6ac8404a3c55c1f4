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

import { formatHostPort, isIpAddress, isIpv6 } from "../net/address.ts";
import { classifyBindError, requireIpLiteral } from "../net/tcp.ts";
import { requireUnstableNet } from "../net/unstable.ts";
import type { DuplexConn } from "../net/conn.ts";
import { errorMessage } from "../text.ts";
import {
  type AdmittedConn,
  type DialedConn,
  type IncomingConn,
  type Transport,
  TransportDialError,
  type TransportDialOptions,
  TransportHandshakeTimeoutError,
  type TransportListener,
  type TransportListenOptions,
} from "./transport.ts";
import { displayFingerprint } from "./tls.ts";

/** The ALPN protocol both ends require; a QUIC peer offering anything else fails the handshake. */
export const QUIC_ALPN = "tls-tunnel/1";
/**
 * Connections the server holds in handshake at once (accepted, tunnel stream not yet arrived); beyond,
 * a new one is refused with no handshake state. The server's own pending limits apply below it.
 */
export const QUIC_MAX_PENDING_HANDSHAKES = 256;
/** A QUIC connection whose peer sent nothing for this long is closed (the smaller of both ends' values). */
export const QUIC_IDLE_TIMEOUT_MS = 30_000;
/** Both ends send a QUIC PING after this long without sending, so a quiet tunnel never idles out. */
export const QUIC_KEEPALIVE_INTERVAL_MS = 10_000;

/**
 * How long `close()` waits for the peer's FIN before closing the QUIC connection (which drops anything
 * unacknowledged); see {@linkcode QuicStreamConn}.
 */
export const QUIC_CLOSE_LINGER_MS = 2000;

/** Application close codes sent in the CONNECTION_CLOSE frame. */
const CLOSE_NORMAL = 0;
const CLOSE_REFUSED = 1;
const CLOSE_HANDSHAKE_TIMEOUT = 2;

/** Largest read taken from a QUIC stream at once. */
const READ_CHUNK_BYTES = 64 * 1024;

/** The QUIC connection to the server could not be established; the message says why and what to do. */
export class QuicDialError extends TransportDialError {
  override name = "QuicDialError";
}

/** The `"quic"` transport. */
export const quicTransport: Transport = {
  name: "quic",
  listen: listenQuic,
  dial: dialQuic,
};

// ---------------------------------------------------------------------------------------------------
// Freeing endpoints

type FullCollection = () => void;
let fullCollection: Promise<FullCollection | null> | null = null;
let collectionTimer: ReturnType<typeof setTimeout> | undefined;

/** V8's full collection through `node:v8`/`node:vm` (as in `cli/_idle_gc.ts`), or null. */
function loadFullCollection(): Promise<FullCollection | null> {
  fullCollection ??= (async () => {
    try {
      const { default: v8 } = await import("node:v8");
      const { default: vm } = await import("node:vm");
      v8.setFlagsFromString("--expose-gc");
      const gc: unknown = vm.runInNewContext("gc");
      return typeof gc === "function" ? () => gc() : null;
    } catch {
      return null;
    }
  })();
  return fullCollection;
}

/** When the collections after an endpoint's close run, from its close: the connection ops settle first. */
const COLLECTION_DELAYS_MS = [0, 100, 1000];

/**
 * Closes `endpoint` and, once the caller's references are gone and its connections' last operations have
 * settled, collects garbage so that its UDP socket is really released (see the module doc): a full
 * collection of the small heap a tunnel keeps takes a few milliseconds, and runs only after a close.
 */
function closeEndpoint(endpoint: Deno.QuicEndpoint): void {
  try {
    endpoint.close({ closeCode: CLOSE_NORMAL, reason: "" });
  } catch {
    // Already closed.
  }
  pendingCollections = [...COLLECTION_DELAYS_MS];
  if (collectionTimer === undefined) scheduleCollection(0);
}

let pendingCollections: number[] = [];

function scheduleCollection(elapsedMs: number): void {
  const next = pendingCollections.shift();
  if (next === undefined) return;
  collectionTimer = setTimeout(() => {
    collectionTimer = undefined;
    void loadFullCollection().then((collect) => {
      collect?.();
      if (collectionTimer === undefined) scheduleCollection(next);
    });
  }, Math.max(0, next - elapsedMs));
  // Never what keeps a process alive.
  Deno.unrefTimer(collectionTimer);
}

/** Closes a QUIC connection; safe on one already closed. */
function closeConnection(conn: Deno.QuicConn, closeCode: number, reason: string): void {
  try {
    conn.close({ closeCode, reason });
  } catch {
    // Already closed.
  }
}

// ---------------------------------------------------------------------------------------------------
// The byte stream

/**
 * A {@linkcode DuplexConn} over one bidirectional QUIC stream. `closeWrite` sends the stream's FIN.
 * `close` sends the FIN after what is queued, but closing the QUIC connection at once would throw away
 * whatever was written and not yet acknowledged (a server's last answer before it closes, which TCP
 * would still deliver). So the connection is closed (`onClose`) once both FINs are known to have
 * crossed: at once when the peer's FIN came after ours; when it has not come, as soon as it does (the
 * peer sends it after reading ours, so everything we wrote has arrived); when it came before ours, the
 * peer closes the connection once it has read our FIN. Never later than {@linkcode QUIC_CLOSE_LINGER_MS}.
 */
class QuicStreamConn implements DuplexConn {
  #conn: Deno.QuicConn | null;
  readonly #reader: ReadableStreamBYOBReader;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  #onClose: (() => void) | null;
  /** Our read buffer: a BYOB read transfers it and hands it back in its result. */
  #scratch: ArrayBuffer | null = new ArrayBuffer(READ_CHUNK_BYTES);
  #closed = false;
  #finished = false;
  #finSent = false;
  /** Whether the peer's FIN has been read, and whether ours had been sent by then. */
  #peerFin: "before-ours" | "after-ours" | null = null;

  constructor(conn: Deno.QuicConn, stream: Deno.QuicBidirectionalStream, onClose: () => void) {
    this.#conn = conn;
    this.#reader = stream.readable.getReader({ mode: "byob" });
    this.#writer = stream.writable.getWriter();
    this.#onClose = onClose;
    // A failed write or a cancelled read is seen through the calls; these must not end the process.
    this.#writer.closed.catch(() => {});
    this.#reader.closed.catch(() => {});
  }

  /** One read of at most `maxBytes` into our buffer; null at the end of the stream. */
  async #readChunk(maxBytes: number): Promise<Uint8Array | null> {
    const scratch = this.#scratch ?? new ArrayBuffer(READ_CHUNK_BYTES);
    this.#scratch = null;
    const result = await this.#reader.read(
      new Uint8Array(scratch, 0, Math.min(maxBytes, scratch.byteLength)),
    );
    const view = result.value;
    if (view !== undefined) this.#scratch = view.buffer as ArrayBuffer;
    if (result.done || view === undefined) {
      this.#peerFin ??= this.#finSent ? "after-ours" : "before-ours";
      return null;
    }
    return view;
  }

  async read(buffer: Uint8Array): Promise<number | null> {
    if (this.#closed) return null;
    let view: Uint8Array | null;
    try {
      view = await this.#readChunk(buffer.length);
    } catch (error) {
      if (this.#closed) return null;
      throw new Deno.errors.ConnectionReset(`QUIC stream failed: ${errorMessage(error)}`, { cause: error });
    }
    if (view === null || this.#closed) return null;
    buffer.set(view);
    return view.length;
  }

  async write(data: Uint8Array): Promise<number> {
    if (this.#closed) throw new Deno.errors.BrokenPipe("The QUIC connection is closed");
    try {
      await this.#writer.write(data);
    } catch (error) {
      throw new Deno.errors.BrokenPipe(`QUIC stream write failed: ${errorMessage(error)}`, { cause: error });
    }
    return data.length;
  }

  async closeWrite(): Promise<void> {
    if (this.#closed || this.#finSent) return;
    this.#finSent = true;
    try {
      await this.#writer.close();
    } catch {
      // The stream or the connection is gone: nothing is left to end.
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (!this.#finSent) {
      this.#finSent = true;
      this.#writer.close().catch(() => {});
    }
    const finish = () => {
      if (this.#finished) return;
      this.#finished = true;
      clearTimeout(linger);
      this.#reader.cancel().catch(() => {});
      const onClose = this.#onClose;
      // Nothing here may keep the connection (and so its endpoint) reachable once it is closed.
      this.#onClose = null;
      this.#conn = null;
      onClose?.();
    };
    const linger = setTimeout(finish, QUIC_CLOSE_LINGER_MS);
    this.#conn?.closed.then(finish, finish);
    if (this.#peerFin === "after-ours") finish();
    else if (this.#peerFin === null) this.#drain().then(finish, finish);
    // "before-ours": the peer closes the connection once it has read our FIN.
  }

  /** Reads and drops what the peer still sends, until its FIN. */
  async #drain(): Promise<void> {
    while (!this.#finished && await this.#readChunk(READ_CHUNK_BYTES) !== null) {
      // Dropped: nobody reads a closed connection.
    }
  }
}

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
    listener = endpoint.listen({
      alpnProtocols: [QUIC_ALPN],
      cert: options.certPem,
      key: options.keyPem,
      keepAliveInterval: QUIC_KEEPALIVE_INTERVAL_MS,
      maxIdleTimeout: QUIC_IDLE_TIMEOUT_MS,
      // The tunnel's one stream; a peer cannot make the server hold more.
      maxConcurrentBidirectionalStreams: 1,
      maxConcurrentUnidirectionalStreams: 0,
    });
  } catch (error) {
    closeEndpoint(endpoint);
    return Promise.reject(error);
  }
  const quic = new QuicTransportListener(endpoint, listener, options.handshakeTimeoutMs);
  if (signal?.aborted) quic.close();
  else signal?.addEventListener("abort", () => quic.close(), { once: true });
  return Promise.resolve(quic);
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

  constructor(endpoint: Deno.QuicEndpoint, listener: Deno.QuicListener, handshakeTimeoutMs: number) {
    this.#endpoint = endpoint;
    this.#listener = listener;
    this.#handshakeTimeoutMs = handshakeTimeoutMs;
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

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
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

// ---------------------------------------------------------------------------------------------------
// Client side

/** Dials the server over QUIC and opens the tunnel stream within `options.timeoutMs`. */
async function dialQuic(options: TransportDialOptions, abort?: AbortSignal): Promise<DialedConn> {
  requireUnstableNet('transport = "quic"');
  const where = formatHostPort(options.hostname, options.port);
  if (options.proxy) {
    throw new QuicDialError(
      `transport = "quic" runs over UDP, which ${options.proxy.hop} cannot carry (HTTP CONNECT and SOCKS5 ` +
        `carry TCP); connect directly (list ${options.hostname} in NO_PROXY, or remove proxy_url) or use ` +
        `transport = "tls", "wss" or "http2" through the proxy`,
    );
  }
  if (options.skipVerify && options.pinnedFingerprint === undefined) {
    throw new QuicDialError(
      `skip_verify cannot be used with transport = "quic" (Deno's QUIC client always verifies); pin the ` +
        `server's certificate with server_fingerprint (the server logs it) or set ca_cert_path`,
    );
  }
  const timeout = AbortSignal.timeout(options.timeoutMs);
  const signal = abort ? AbortSignal.any([abort, timeout]) : timeout;
  void loadFullCollection();
  const address = await resolveServer(options.hostname, where, signal, options.timeoutMs, timeout);
  let endpoint: Deno.QuicEndpoint;
  try {
    endpoint = new Deno.QuicEndpoint({ hostname: isIpv6(address) ? "::" : "0.0.0.0", port: 0 });
  } catch (error) {
    throw new QuicDialError(`Cannot open a UDP socket to reach ${where}: ${errorMessage(error)}`, {
      cause: error,
    });
  }
  const onAbort = () => closeEndpoint(endpoint);
  signal.addEventListener("abort", onAbort, { once: true });
  let conn: Deno.QuicConn | null = null;
  try {
    const pin = options.pinnedFingerprint === undefined ? null : pinBytes(options.pinnedFingerprint);
    const connectOptions: Deno.ConnectQuicOptions<false> & {
      serverCertificateHashes?: { algorithm: string; value: Uint8Array }[];
    } = {
      endpoint,
      hostname: address,
      port: options.port,
      serverName: options.serverName ?? options.hostname,
      alpnProtocols: [QUIC_ALPN],
      keepAliveInterval: QUIC_KEEPALIVE_INTERVAL_MS,
      maxIdleTimeout: QUIC_IDLE_TIMEOUT_MS,
      // The server never opens a stream.
      maxConcurrentBidirectionalStreams: 0,
      maxConcurrentUnidirectionalStreams: 0,
    };
    if (pin !== null) connectOptions.serverCertificateHashes = [{ algorithm: "sha-256", value: pin }];
    else if (options.caCertPem) connectOptions.caCerts = [options.caCertPem];
    conn = await Deno.connectQuic(connectOptions);
    if (signal.aborted) throw signal.reason;
    const stream = await conn.createBidirectionalStream();
    if (signal.aborted) throw signal.reason;
    signal.removeEventListener("abort", onAbort);
    const connected = conn;
    return Object.assign(
      new QuicStreamConn(connected, stream, () => {
        closeConnection(connected, CLOSE_NORMAL, "");
        closeEndpoint(endpoint);
      }),
      { remote: where },
    );
  } catch (error) {
    signal.removeEventListener("abort", onAbort);
    if (conn !== null) closeConnection(conn, CLOSE_NORMAL, "");
    closeEndpoint(endpoint);
    throw describeDialError(error, options, where, signal.aborted && timeout.aborted);
  }
}

/** The server's address: an IP literal as is, else the first A (then AAAA) record, within the dial's time. */
async function resolveServer(
  hostname: string,
  where: string,
  signal: AbortSignal,
  timeoutMs: number,
  timeout: AbortSignal,
): Promise<string> {
  const literal = hostname.startsWith("[") && hostname.endsWith("]") ? hostname.slice(1, -1) : hostname;
  if (isIpAddress(literal)) return literal;
  const failures: string[] = [];
  for (const type of ["A", "AAAA"] as const) {
    try {
      const [first] = await Deno.resolveDns(literal, type, { signal });
      if (first !== undefined) return first;
      failures.push(`no ${type} record`);
    } catch (error) {
      if (signal.aborted) {
        throw timeout.aborted
          ? new QuicDialError(`Timed out after ${timeoutMs} ms resolving ${hostname} to reach ${where}`)
          : new QuicDialError(`Aborted resolving ${hostname} to reach ${where}`, { cause: signal.reason });
      }
      failures.push(`${type}: ${errorMessage(error)}`);
    }
  }
  throw new QuicDialError(
    `Cannot resolve server_addr ${hostname} (${failures.join("; ")}); check the name or use an IP address`,
  );
}

/** The pin (hex, colons and `SHA256:` allowed) as the 32 bytes of the digest. */
function pinBytes(pin: string): Uint8Array<ArrayBuffer> {
  const digits = pin.replace(/^sha256:/i, "").replaceAll(":", "").toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(digits)) {
    throw new QuicDialError(`server_fingerprint ${pin} is not a SHA-256 fingerprint (64 hex digits)`);
  }
  return Uint8Array.from(digits.match(/../g) ?? [], (pair) => parseInt(pair, 16));
}

/** The message for a failed dial: what failed and what to do. */
function describeDialError(
  error: unknown,
  options: TransportDialOptions,
  where: string,
  timedOut: boolean,
): QuicDialError {
  if (error instanceof QuicDialError) return error;
  const detail = errorMessage(error);
  if (timedOut || /timed out/i.test(detail)) {
    return new QuicDialError(
      `Timed out connecting to ${where} over QUIC (UDP) after ${options.timeoutMs} ms: is the server ` +
        `running with transport = "quic", and does its firewall let UDP port ${options.port} through?`,
      { cause: error },
    );
  }
  if (/doesn't support any known protocol|no_application_protocol|error 120/i.test(detail)) {
    return new QuicDialError(
      `${where} answers QUIC but not the tunnel's ALPN "${QUIC_ALPN}" (${detail}); is it a tls-tunnel ` +
        `server with transport = "quic"?`,
      { cause: error },
    );
  }
  if (options.pinnedFingerprint !== undefined && /certificate|UnknownIssuer/i.test(detail)) {
    const pinned = displayFingerprint(options.pinnedFingerprint.replace(/^sha256:/i, "").replaceAll(":", ""));
    return new QuicDialError(
      `Server ${where} presented a certificate other than the one server_fingerprint (--fingerprint) pins ` +
        `(${pinned}); refused before sending the key. If the server's certificate was replaced on purpose, ` +
        "pin the new fingerprint (the server logs it at start); otherwise someone may be intercepting the " +
        "connection",
      { cause: error },
    );
  }
  if (/NotValidForName|not valid for name/i.test(detail)) {
    return new QuicDialError(
      `TLS certificate of ${where} was not accepted (${detail}): it is not issued for the name ` +
        `'${options.serverName ?? options.hostname}'; set server_name to a name in its certificate ` +
        "(tls-tunnel cert --alt-names adds names)",
      { cause: error },
    );
  }
  if (/certificate|UnknownIssuer|BadCertificate|CaUsedAsEndEntity/i.test(detail)) {
    const advice = options.caCertPem === undefined
      ? "set ca_cert_path to the server's CA (tls-tunnel cert writes ca.pem)"
      : `it does not chain to the CA in ca_cert_path ${
        options.caCertPath ?? ""
      }; point ca_cert_path at the ` +
        "CA that signed the server's certificate (the ca.pem written with it), or pin it with " +
        "server_fingerprint";
    return new QuicDialError(`TLS certificate of ${where} was not accepted (${detail}); ${advice}`, {
      cause: error,
    });
  }
  if (options.timeoutMs > 0 && /aborted|closed/i.test(detail) && !/by peer/i.test(detail)) {
    return new QuicDialError(`Aborted connecting to ${where} over QUIC`, { cause: error });
  }
  return new QuicDialError(`Cannot connect to ${where} over QUIC: ${detail}`, { cause: error });
}

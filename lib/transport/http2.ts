/**
 * The `"http2"` transport: the tunnel in one HTTP/2 stream, a `POST` on the server's `server_path` whose
 * request body carries the client's bytes and whose response body carries the server's, over TLS (or as
 * h2c in plain text with `behind_proxy`, for a reverse proxy that terminates TLS and speaks HTTP/2 to its
 * upstream). yamux runs unchanged over that byte stream; HTTP/2 flow control applies to it (a reader
 * that falls behind stops the window updates, and so the peer).
 *
 * Server: the TCP accept, NODELAY, admit/refuse and close-in-any-state are `_tcp_listener.ts`'s, as for
 * `tls` (a `node:net` server, `node:tls` over the accepted socket, ALPN `h2` and `http/1.1`); the first
 * bytes then decide: the HTTP/2 connection preface goes to a `node:http2` server, anything else (a browser,
 * `curl --http1.1`, over TLS or h2c) is an HTTP/1.1 request, its head read within the `wss` transport's
 * bounds and answered its ordinary `404` ({@linkcode refuseHttp1Request}), so the port looks like any
 * HTTPS site. The tunnel itself is only ever HTTP/2. Deno 2.9.6's `node:http2` server does not read a `TLSSocket` handed to it
 * (the session starts, no stream ever arrives), so the socket goes through a plain JavaScript `Duplex`
 * ({@linkcode nodeSocketDuplex}); that costs nothing measurable (64 MiB echoed at 38.9 MiB/s against
 * 39.7 MiB/s for bare TLS in the same probe). `http2.createSecureServer` fed the raw socket works too,
 * but was slower in the same probe (38.9 against 47.5 MiB/s) and makes its session only after TLS. The
 * first `POST` (or `CONNECT`) on the path is the tunnel; any other request is answered `404 Not Found`
 * like an ordinary web server, a header list over {@linkcode HTTP2_MAX_HEADER_LIST_BYTES} `431` (Deno's
 * `node:http2` advertises the SETTING but does not enforce it). The peer may hold
 * {@linkcode HTTP2_MAX_CONCURRENT_STREAMS} streams at once and open {@linkcode HTTP2_MAX_OTHER_STREAMS}
 * that are not the tunnel in the connection's life (rapid resets count); beyond that the connection is
 * closed. A PING flood whose answers are not read is closed by `node:http2` itself.
 *
 * Client: the tls transport's dial offering ALPN `h2` (so `ca_cert_path`, `server_fingerprint`,
 * `skip_verify` and the outbound proxy mean the same), then an HTTP/2 session over it
 * ({@linkcode duplexConnStream}) and the `POST`; any answer but `200` fails the dial with the status in
 * the message.
 *
 * Cost: per 64 MiB echoed through a whole tunnel (separate server and client processes), the server used
 * about 1.1 s of CPU against 0.85 s on `tls` and the client 0.85 s against 0.45 s (`node:http2` framing
 * runs in JavaScript); one connection moved about 29 MiB/s each way against 43 MiB/s on `tls`.
 *
 * @module
 */

import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import type {
  ClientHttp2Session,
  ClientHttp2Stream,
  Http2Server,
  Http2Session,
  IncomingHttpHeaders,
  ServerHttp2Stream,
  Settings,
} from "node:http2";
import { type DuplexConn, PrefixedConn } from "../net/conn.ts";
import { type NodeDuplexSocket, NodeSocketConn } from "../net/node_socket_conn.ts";
import { serverTlsWrapper, TcpTransportListener } from "./_tcp_listener.ts";
import { duplexConnStream, nodeSocketDuplex } from "./node_duplex.ts";

export { duplexConnStream, nodeSocketDuplex };
import { tlsTransport } from "./tls.ts";
import { DEFAULT_SERVER_PATH, forwardedAddresses, httpAuthority, refuseHttp1Request } from "./wss.ts";
import {
  type AdmittedConn,
  type DialedConn,
  type Transport,
  TransportDialError,
  type TransportDialOptions,
  TransportHandshakeTimeoutError,
  type TransportListener,
  type TransportListenOptions,
} from "./transport.ts";
import { errorMessage } from "../text.ts";

/** Streams a peer may have open at once: the tunnel plus a few answered 404. */
export const HTTP2_MAX_CONCURRENT_STREAMS = 4;
/** Streams other than the tunnel a connection may open in its life (each is answered 404). */
export const HTTP2_MAX_OTHER_STREAMS = 32;
/** Most bytes of request or response headers (HPACK-decoded) taken from a peer. */
export const HTTP2_MAX_HEADER_LIST_BYTES = 16 * 1024;

/**
 * Flow-control window of the tunnel's stream and of the connection, each direction: what a peer may send
 * before the receiver reads, so the most either side buffers for the other. HTTP/2's default (64 KiB)
 * caps a connection at window / round trip: 0.64 MiB/s measured through a 50 ms relay.
 */
export const HTTP2_WINDOW_BYTES = 8 * 1024 * 1024;

const SETTINGS: Settings = {
  enablePush: false,
  maxConcurrentStreams: HTTP2_MAX_CONCURRENT_STREAMS,
  maxHeaderListSize: HTTP2_MAX_HEADER_LIST_BYTES,
  initialWindowSize: HTTP2_WINDOW_BYTES,
};

/** The `"http2"` transport. */
export const http2Transport: Transport = {
  name: "http2",
  listen: listenHttp2,
  dial: dialHttp2,
};

// ---------------------------------------------------------------------------------------------------
// Node socket ⇄ Duplex adapters

// ---------------------------------------------------------------------------------------------------
// Server side

/** Binds the server's listener: TLS with ALPN `h2` (unless `plainText`), then HTTP/2 on `options.path`. */
function listenHttp2(options: TransportListenOptions, signal?: AbortSignal): Promise<TransportListener> {
  const path = options.path ?? DEFAULT_SERVER_PATH;
  return TcpTransportListener.listen(options, async () => {
    const [http2, wrap] = await Promise.all([
      import("node:http2"),
      // "http/1.1" too: a browser or `curl --http1.1` then gets the 404 an ordinary web server gives, not a
      // TLS alert no web server sends.
      options.plainText ? null : serverTlsWrapper(options, ["h2", "http/1.1"]),
    ]);
    // Plain h2c over whatever socket is handed in (TLS is ours, above); streams are taken per session.
    const h2 = http2.createServer({
      settings: SETTINGS,
      maxHeaderListPairs: 64,
      maxSessionMemory: 4,
      peerMaxConcurrentStreams: HTTP2_MAX_CONCURRENT_STREAMS,
    });
    h2.on("sessionError", () => {});
    return (socket, remoteAddr, remainingMs) =>
      new ServerHttp2Conn(socket, wrap ? wrap(socket) : socket, h2, remoteAddr, {
        remainingMs,
        timeoutMs: options.handshakeTimeoutMs,
        path,
      });
  }, signal);
}

/** An admitted server-side connection: TLS (unless behind a proxy), an HTTP/2 session, the tunnel stream. */
class ServerHttp2Conn implements AdmittedConn {
  readonly #raw: Socket;
  readonly #carrier: NodeDuplexSocket;
  readonly #path: string;
  readonly #handshake = Promise.withResolvers<void>();
  #deadline: ReturnType<typeof setTimeout> | undefined;
  #duplex: Duplex | null = null;
  #session: Http2Session | null = null;
  #tunnel: NodeSocketConn | null = null;
  #otherStreams = 0;
  #closed = false;
  #forwardedFor: readonly string[] = [];

  constructor(
    raw: Socket,
    carrier: NodeDuplexSocket,
    h2: Http2Server,
    readonly remoteAddr: Deno.NetAddr,
    limits: { remainingMs: number; timeoutMs: number; path: string },
  ) {
    this.#raw = raw;
    this.#carrier = carrier;
    this.#path = limits.path;
    // Observed through handshake(); an unobserved rejection must not end the process.
    this.#handshake.promise.catch(() => {});
    this.#deadline = setTimeout(() => {
      this.#handshake.reject(new TransportHandshakeTimeoutError(limits.timeoutMs));
      this.close();
    }, Math.max(0, limits.remainingMs));
    // The TCP connection gone (the peer left, or a reset) ends everything over it.
    carrier.once("close", () => this.close());
    // A failed TLS handshake (or a reset) while the first bytes are awaited must not be an unhandled
    // "error" event; "close" follows it and ends the connection.
    carrier.on("error", () => {});
    void this.#start(h2);
  }

  async #start(h2: Http2Server): Promise<void> {
    // The first bytes decide, over TLS (whatever ALPN said) and h2c alike: the HTTP/2 preface, or else
    // an HTTP/1.1 request, answered as an ordinary web server would.
    const { isHttp2, bytes } = await peekPreface(this.#carrier);
    if (this.#closed) return;
    if (!isHttp2) {
      await this.#refuseHttp1(bytes);
      return;
    }
    const duplex = await nodeSocketDuplex(this.#carrier, bytes);
    if (this.#closed) {
      duplex.destroy();
      return;
    }
    this.#duplex = duplex;
    // node:http2 makes the session in the "connection" handler, synchronously.
    const onSession = (session: Http2Session) => {
      this.#session = session;
      session.on("error", () => {});
      // The connection's window is not a SETTING: it grows by a WINDOW_UPDATE.
      session.setLocalWindowSize(HTTP2_WINDOW_BYTES);
      session.on(
        "stream",
        (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => this.#stream(stream, headers),
      );
      session.once("close", () => this.close());
    };
    h2.once("session", onSession);
    h2.emit("connection", duplex);
    h2.off("session", onSession);
    if (this.#session === null) {
      this.#fail(new Error("node:http2 made no session for the connection"));
      this.close();
    }
  }

  /** Reads the HTTP/1.1 request head (wss's bounds; the handshake deadline bounds the time), answers 404. */
  async #refuseHttp1(bytes: Uint8Array): Promise<void> {
    // The bytes the preface peek took are read again first.
    const conn = new PrefixedConn(new NodeSocketConn(this.#carrier), bytes);
    try {
      const status = await refuseHttp1Request(conn);
      this.#fail(
        new Http1RequestRefusedError(`An HTTP/1.1 request on the HTTP/2 port; answered ${status}`, status),
      );
    } catch (error) {
      this.#fail(error instanceof Error ? error : new Error(String(error)));
    } finally {
      this.close();
    }
  }

  #stream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    stream.on("error", () => {});
    // Deno 2.9.6's node:http2 does not enforce SETTINGS_MAX_HEADER_LIST_SIZE itself (60 KB got through).
    if (headerListBytes(headers) > HTTP2_MAX_HEADER_LIST_BYTES) {
      this.#otherStreams++;
      if (this.#otherStreams > HTTP2_MAX_OTHER_STREAMS) this.close();
      else answerStatus(stream, 431, "Request Header Fields Too Large");
      return;
    }
    const method = headers[":method"];
    const target = (headers[":path"] ?? "").split("?")[0] ?? "";
    const isTunnel = this.#tunnel === null && (method === "POST" || method === "CONNECT") &&
      withoutTrailingSlash(target) === withoutTrailingSlash(this.#path);
    if (!isTunnel) {
      this.#otherStreams++;
      if (this.#otherStreams > HTTP2_MAX_OTHER_STREAMS) {
        this.close();
        return;
      }
      answerNotFound(stream);
      return;
    }
    clearTimeout(this.#deadline);
    stream.respond({ ":status": 200, "content-type": "application/octet-stream" });
    const forwarded = new Map<string, string>();
    for (const name of ["x-forwarded-for", "forwarded"]) {
      const value = headers[name];
      if (typeof value === "string") forwarded.set(name, value);
    }
    this.#forwardedFor = forwardedAddresses(forwarded);
    this.#tunnel = new NodeSocketConn(asNodeSocket(stream));
    // The tunnel's stream gone (reset, or ended both ways) ends the session once what it sent is out.
    stream.once("close", () => this.#session?.close());
    this.#handshake.resolve();
  }

  #fail(error: Error): void {
    this.#handshake.reject(error);
  }

  get forwardedFor(): readonly string[] {
    return this.#forwardedFor;
  }

  handshake(): Promise<void> {
    return this.#handshake.promise;
  }

  read(buffer: Uint8Array): Promise<number | null> {
    return this.#open().read(buffer);
  }

  write(data: Uint8Array): Promise<number> {
    return this.#open().write(data);
  }

  closeWrite(): Promise<void> {
    return this.#open().closeWrite();
  }

  #open(): NodeSocketConn {
    if (this.#tunnel === null) throw new Deno.errors.NotConnected("The HTTP/2 tunnel stream has not arrived");
    return this.#tunnel;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#deadline);
    this.#fail(new Deno.errors.ConnectionAborted("The HTTP/2 connection was closed"));
    this.#tunnel?.close();
    this.#session?.destroy();
    this.#duplex?.destroy();
    this.#carrier.destroy();
    // The TLS layer may not have taken the socket over yet (no byte received): free it directly.
    this.#raw.destroy();
  }
}

/** The client connection preface every HTTP/2 client sends first (RFC 9113 §3.4). */
const HTTP2_PREFACE = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/**
 * Reads from `socket` until its first bytes are the HTTP/2 preface or cannot be (at most one chunk past
 * the first byte that differs), then pauses it with no listener of ours left; resolves with what was
 * read, to be handed on. The end of the stream, or the socket closed, decides "not HTTP/2".
 */
function peekPreface(socket: NodeDuplexSocket): Promise<{ isHttp2: boolean; bytes: Uint8Array }> {
  return new Promise((resolve) => {
    const chunks: Uint8Array[] = [];
    let length = 0;
    let matched = 0;
    const finish = (isHttp2: boolean) => {
      socket.off("data", onData);
      socket.off("end", onEnd);
      socket.off("close", onEnd);
      socket.pause();
      const bytes = new Uint8Array(length);
      let offset = 0;
      for (const chunk of chunks) {
        bytes.set(chunk, offset);
        offset += chunk.length;
      }
      resolve({ isHttp2, bytes });
    };
    // Decided in the "data" handler itself, so no chunk can arrive between the decision and the pause.
    const onData = (chunk: Uint8Array) => {
      chunks.push(chunk);
      length += chunk.length;
      for (const byte of chunk) {
        if (matched === HTTP2_PREFACE.length) break;
        if (byte !== HTTP2_PREFACE[matched]) return finish(false);
        matched++;
      }
      if (matched === HTTP2_PREFACE.length) finish(true);
    };
    const onEnd = () => finish(false);
    socket.on("data", onData);
    socket.on("end", onEnd);
    socket.on("close", onEnd);
  });
}

/** An HTTP/1.1 request on the http2 port: answered `status` (404, or 400/431 for a bad head) and closed. */
export class Http1RequestRefusedError extends Error {
  override name = "Http1RequestRefusedError";
  constructor(message: string, /** The HTTP status answered. */ readonly status: number) {
    super(message);
  }
}

/** Size of a header list as HTTP/2 counts it (RFC 9113 §6.5.2: name, value and 32 bytes per field). */
function headerListBytes(headers: IncomingHttpHeaders): number {
  let bytes = 0;
  for (const [name, value] of Object.entries(headers)) {
    for (const one of Array.isArray(value) ? value : [value ?? ""]) bytes += name.length + one.length + 32;
  }
  return bytes;
}

function answerNotFound(stream: ServerHttp2Stream): void {
  answerStatus(stream, 404, "Not Found");
}

/** Answers like an ordinary web server: the status, a small HTML page, the stream ended. */
function answerStatus(stream: ServerHttp2Stream, status: number, text: string): void {
  const body = `<html><head><title>${status} ${text}</title></head><body><h1>${text}</h1></body></html>\n`;
  try {
    stream.respond({ ":status": status, "content-type": "text/html", "content-length": body.length });
    stream.end(body);
    // A request body nobody reads must not hold the stream's window open: drop it.
    stream.resume();
  } catch {
    stream.destroy();
  }
}

/**
 * An HTTP/2 stream as the socket {@linkcode NodeSocketConn} reads: it uses only what every `Duplex` has
 * (`on`, `write`, `end`, `pause`, …); the types differ only in what `end` returns (`this`).
 */
function asNodeSocket(stream: Duplex): NodeDuplexSocket {
  return stream as unknown as NodeDuplexSocket;
}

function withoutTrailingSlash(path: string): string {
  return path.length > 1 && path.endsWith("/") ? path.slice(0, -1) : path;
}

// ---------------------------------------------------------------------------------------------------
// Client side

/** Dials the server over TLS (as the tls transport does) and opens the tunnel stream on `options.path`. */
async function dialHttp2(options: TransportDialOptions, signal?: AbortSignal): Promise<DialedConn> {
  const startedAtMs = performance.now();
  // ALPN "h2": a TLS-terminating proxy or CDN in front then speaks HTTP/2 to the client.
  const conn = await tlsTransport.dial({ ...options, alpnProtocols: ["h2"] }, signal);
  const host = options.serverName ?? options.hostname;
  const onAbort = () => conn.close();
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    const tunnel = await openHttp2Tunnel(conn, {
      authority: httpAuthority(host, options.port),
      path: options.path ?? DEFAULT_SERVER_PATH,
      scheme: "https",
      timeoutMs: Math.max(1, options.timeoutMs - (performance.now() - startedAtMs)),
      where: conn.remote,
    });
    if (signal?.aborted) {
      tunnel.close();
      throw signal.reason;
    }
    return Object.assign(tunnel, { remote: conn.remote });
  } catch (error) {
    try {
      conn.close();
    } catch {
      // Already closed by the abort or the failed request.
    }
    // Aborted: the request failed because the abort closed the connection, not because of the server.
    if (signal?.aborted && error !== signal.reason) {
      throw new TransportDialError(`Aborted while opening the HTTP/2 tunnel with ${conn.remote}`, {
        cause: error,
      });
    }
    throw error;
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
}

/** Options of {@linkcode openHttp2Tunnel}. */
export interface Http2TunnelOptions {
  /** The `:authority` (`name:port`, the port left out for 443). */
  authority: string;
  /** The request path, e.g. `"/tunnel"`. */
  path: string;
  /** `"https"` over TLS, `"http"` for h2c. */
  scheme: "https" | "http";
  /** Budget for the HTTP/2 preface, the request and the answer; `conn` is closed when it runs out. */
  timeoutMs: number;
  /** The server as dialed, for messages. */
  where: string;
}

/**
 * The tunnel's byte stream over `conn` (connected, TLS or not): an HTTP/2 session, one `POST` on
 * `options.path`, its request body written and its response body read. Closing it ends the session and
 * closes `conn`. The `"http2"` dial uses it over TLS; tests use it over plain TCP to reach a
 * `behind_proxy` server directly.
 */
export class Http2TunnelConn extends NodeSocketConn {
  constructor(stream: ClientHttp2Stream, readonly session: ClientHttp2Session) {
    super(asNodeSocket(stream));
  }

  override close(): void {
    super.close();
    this.session.destroy();
  }
}

/**
 * Opens the tunnel stream over `conn` (see {@linkcode Http2TunnelConn}).
 *
 * @throws {TransportDialError} when the server answers anything but `200`, or not in time
 */
export async function openHttp2Tunnel(
  conn: DuplexConn,
  options: Http2TunnelOptions,
): Promise<Http2TunnelConn> {
  const http2 = await import("node:http2");
  const duplex = await duplexConnStream(conn);
  const session = http2.connect(`${options.scheme}://${options.authority}`, {
    createConnection: () => duplex,
    settings: SETTINGS,
    maxHeaderListPairs: 64,
  });
  session.on("error", () => {});
  session.setLocalWindowSize(HTTP2_WINDOW_BYTES);
  const stream = session.request(
    { ":method": "POST", ":path": options.path, "content-type": "application/octet-stream" },
    { endStream: false },
  );
  stream.on("error", () => {});
  const fail = (message: string, cause?: unknown): TransportDialError => {
    stream.destroy();
    session.destroy();
    duplex.destroy();
    return new TransportDialError(message, cause === undefined ? undefined : { cause });
  };
  let deadline: ReturnType<typeof setTimeout> | undefined;
  try {
    const status = await new Promise<number>((resolve, reject) => {
      deadline = setTimeout(
        () => reject(new Deno.errors.TimedOut(`no answer within ${options.timeoutMs} ms`)),
        options.timeoutMs,
      );
      stream.once("response", (headers: IncomingHttpHeaders) => resolve(Number(headers[":status"] ?? 0)));
      stream.once(
        "close",
        () => reject(new Deno.errors.ConnectionReset("the stream closed before an answer")),
      );
      session.once("close", () => reject(new Deno.errors.ConnectionReset("the session closed")));
      session.once("goaway", (code: number) => reject(new Deno.errors.ConnectionReset(`GOAWAY ${code}`)));
    });
    if (status !== 200) {
      throw fail(
        `The server at ${options.where} answered ${status} to the HTTP/2 tunnel request on ${options.path}; ` +
          `check that server_path is the server's (or the reverse proxy's location) and that the server uses ` +
          `transport = "http2"`,
      );
    }
    return new Http2TunnelConn(stream, session);
  } catch (error) {
    if (error instanceof TransportDialError) throw error;
    const detail = errorMessage(error);
    throw fail(
      `The HTTP/2 tunnel request to ${options.where} on ${options.path} failed: ${detail}; is the server's ` +
        `transport "http2" (an HTTP/1.1-only server or proxy closes the connection at the HTTP/2 preface)?`,
      error,
    );
  } finally {
    clearTimeout(deadline);
  }
}

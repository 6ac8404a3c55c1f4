/**
 * The `"wss"` transport: the tunnel in binary WebSocket messages, after an HTTP/1.1 upgrade on the
 * server's `server_path`, over TLS (or over plain TCP with `behind_proxy`, for a reverse proxy such as
 * nginx that terminates TLS and forwards the upgrade). yamux runs unchanged over the byte stream the
 * messages carry (`websocket.ts`).
 *
 * Server: the TCP accept, NODELAY, admit/refuse and close-in-any-state are `_tcp_listener.ts`'s, as for
 * `tls` (a `node:net` server, `node:tls` over the accepted socket); then the request head is read within
 * {@linkcode MAX_HTTP_HEAD_BYTES} and the handshake budget (from the TCP accept). Anything but a WebSocket
 * upgrade on the path (another path, a plain GET, a bad upgrade) is answered `404 Not Found` like an
 * ordinary web server, a head too large `431`, a malformed one `400`, and the connection is closed.
 * Why not `npm:ws`: under Deno 2.9.6 it needs a hand-made `IncomingMessage` for `handleUpgrade` over a
 * socket accepted by `node:net`; in a one-process echo probe (64 MiB over loopback, no native add-ons) it
 * moved 46 MiB/s each way against 98 MiB/s for `websocket.ts`, run back to back; and its client cannot take
 * the tls transport's connection (CA file, pin, skip_verify checks). Why not
 * `Deno.upgradeWebSocket`: it needs `Deno.serve`, which hands over a request only once its head is
 * complete and offers no header timeout or way to close a connection before that (a probe: a half-sent
 * head stayed open 15 s, until the probe gave up), the same gap that keeps `tls.ts` off `Deno.listenTls`.
 *
 * Client: the tls transport's dial (so `ca_cert_path`, `server_fingerprint` and `skip_verify` mean the
 * same), then the upgrade request; any answer but `101` fails the dial with the status in the message.
 *
 * @module
 */

import type { Socket } from "node:net";
import { type DuplexConn, writeAll } from "../net/conn.ts";
import { formatHostPort, isIpAddress } from "../net/address.ts";
import { type NodeDuplexSocket, NodeSocketConn } from "../net/node_socket_conn.ts";
import { serverTlsWrapper, TcpTransportListener } from "./_tcp_listener.ts";
import { tlsTransport } from "./tls.ts";
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
import {
  headerHasToken,
  HttpHeadError,
  MAX_HTTP_HEAD_BYTES,
  readHttpHead,
  webSocketAccept,
  WebSocketConn,
} from "./websocket.ts";
import { errorMessage } from "../text.ts";

/** The HTTP path of the tunnel when none is configured. */
export const DEFAULT_SERVER_PATH = "/tunnel";
/** Most forwarded addresses kept from `X-Forwarded-For`/`Forwarded` (the nearest to the client win). */
export const MAX_FORWARDED_ADDRESSES = 16;

/** The `"wss"` transport. */
export const wssTransport: Transport = {
  name: "wss",
  listen: listenWss,
  dial: dialWss,
};

/** The WebSocket upgrade was refused or malformed; the server answered `status` and closed. */
export class WebSocketUpgradeRefusedError extends Error {
  override name = "WebSocketUpgradeRefusedError";
  constructor(message: string, /** The HTTP status answered. */ readonly status: number) {
    super(message);
  }
}

// ---------------------------------------------------------------------------------------------------
// Server side

/** Binds the server's listener: TLS (unless `plainText`), then the upgrade, on `options.path`. */
function listenWss(options: TransportListenOptions, signal?: AbortSignal): Promise<TransportListener> {
  const path = options.path ?? DEFAULT_SERVER_PATH;
  return TcpTransportListener.listen(options, async () => {
    const wrap = options.plainText ? null : await serverTlsWrapper(options);
    return (socket, remoteAddr, remainingMs) =>
      new ServerWssConn(socket, wrap ? wrap(socket) : socket, remoteAddr, {
        remainingMs,
        timeoutMs: options.handshakeTimeoutMs,
        path,
      });
  }, signal);
}

/** An admitted server-side connection: TLS (unless behind a proxy), then the upgrade, then WebSocket. */
class ServerWssConn implements AdmittedConn {
  readonly #raw: Socket;
  readonly #inner: NodeSocketConn;
  readonly #handshake: Promise<void>;
  #deadline: ReturnType<typeof setTimeout> | undefined;
  #ws: WebSocketConn | null = null;
  #forwardedFor: readonly string[] = [];

  constructor(
    raw: Socket,
    carrier: NodeDuplexSocket,
    readonly remoteAddr: Deno.NetAddr,
    limits: { remainingMs: number; timeoutMs: number; path: string },
  ) {
    this.#raw = raw;
    this.#inner = new NodeSocketConn(carrier);
    const timedOut = Promise.withResolvers<never>();
    this.#deadline = setTimeout(() => {
      timedOut.reject(new TransportHandshakeTimeoutError(limits.timeoutMs));
      this.close();
    }, Math.max(0, limits.remainingMs));
    this.#handshake = Promise.race([this.#upgrade(limits.path), timedOut.promise]).finally(() =>
      clearTimeout(this.#deadline)
    );
    // Observed through handshake(); an unobserved rejection must not end the process.
    this.#handshake.catch(() => {});
    timedOut.promise.catch(() => {});
  }

  get forwardedFor(): readonly string[] {
    return this.#forwardedFor;
  }

  async #upgrade(path: string): Promise<void> {
    let head;
    try {
      head = await readHttpHead(this.#inner);
    } catch (error) {
      if (error instanceof HttpHeadError) await this.#answer(error.status);
      throw error;
    }
    const problem = upgradeProblem(head.startLine, head.headers, path);
    if (problem !== null) {
      await this.#answer(404);
      throw new WebSocketUpgradeRefusedError(`Not a tunnel upgrade (${problem}); answered 404`, 404);
    }
    const accept = await webSocketAccept(head.headers.get("sec-websocket-key") ?? "");
    await this.#inner.write(
      new TextEncoder().encode(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
          `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
      ),
    );
    this.#forwardedFor = forwardedAddresses(head.headers);
    this.#ws = new WebSocketConn(this.#inner, "server", head.rest);
  }

  /** Answers like an ordinary web server, then closes; the handshake deadline bounds the wait. */
  async #answer(status: number): Promise<void> {
    try {
      await answerHttp1Status(this.#inner, status);
    } finally {
      this.close();
    }
  }

  handshake(): Promise<void> {
    return this.#handshake;
  }

  // The hot path: no extra promise per call once the upgrade is done.
  read(buffer: Uint8Array): Promise<number | null> {
    return this.#ws ? this.#ws.read(buffer) : notUpgraded();
  }

  write(data: Uint8Array): Promise<number> {
    return this.#ws ? this.#ws.write(data) : notUpgraded();
  }

  closeWrite(): Promise<void> {
    return this.#ws ? this.#ws.closeWrite() : notUpgraded();
  }

  close(): void {
    clearTimeout(this.#deadline);
    this.#inner.close();
    // The TLS layer may not have taken the socket over yet (no byte received): free it directly.
    this.#raw.destroy();
  }
}

function notUpgraded(): Promise<never> {
  return Promise.reject(new Deno.errors.NotConnected("The WebSocket upgrade has not completed"));
}

const STATUS_TEXT: Record<number, string> = {
  400: "Bad Request",
  404: "Not Found",
  431: "Request Header Fields Too Large",
};

/**
 * Answers `status` (400, 404 or 431) over `conn` like an ordinary web server (HTTP/1.1, a small HTML
 * page, `Connection: close`), then ends the write side; the caller closes `conn` and bounds the wait.
 * A peer that already left is not an error.
 */
export async function answerHttp1Status(conn: DuplexConn, status: number): Promise<void> {
  const text = STATUS_TEXT[status] ?? "Bad Request";
  const body = `<html><head><title>${status} ${text}</title></head><body><h1>${text}</h1></body></html>\n`;
  try {
    await writeAll(
      conn,
      new TextEncoder().encode(
        `HTTP/1.1 ${status} ${text}\r\nContent-Type: text/html\r\nContent-Length: ${body.length}\r\n` +
          `Connection: close\r\n\r\n${body}`,
      ),
    );
    await conn.closeWrite();
  } catch {
    // The peer left; nothing to answer.
  }
}

/**
 * Reads an HTTP/1.1 request head from `conn` (within {@linkcode MAX_HTTP_HEAD_BYTES}) and answers it as
 * a port that is not the tunnel: `404 Not Found`, or `431`/`400` for a head too large or malformed (see
 * {@linkcode answerHttp1Status}); resolves to the status answered. The caller bounds the time (by closing
 * `conn`) and closes `conn` afterwards. The `"http2"` transport uses it for HTTP/1.1 clients.
 */
export async function refuseHttp1Request(conn: DuplexConn): Promise<number> {
  let status = 404;
  try {
    await readHttpHead(conn);
  } catch (error) {
    if (!(error instanceof HttpHeadError)) throw error;
    status = error.status;
  }
  await answerHttp1Status(conn, status);
  return status;
}

/** Why this request head is not the tunnel's WebSocket upgrade on `path`, or null when it is. */
function upgradeProblem(
  startLine: string,
  headers: ReadonlyMap<string, string>,
  path: string,
): string | null {
  const match = /^GET (\S+) HTTP\/1\.1$/.exec(startLine);
  if (!match) return `request line ${JSON.stringify(startLine.slice(0, 80))} is not GET … HTTP/1.1`;
  const target = (match[1] ?? "").split("?")[0] ?? "";
  // "/tunnel/" and "/tunnel" are one path: the Rust tool's clients write server_path with the slash.
  if (withoutTrailingSlash(target) !== withoutTrailingSlash(path)) {
    return `path ${JSON.stringify(target.slice(0, 80))} is not ${path}`;
  }
  if (!headerHasToken(headers.get("upgrade"), "websocket")) return "no Upgrade: websocket";
  if (!headerHasToken(headers.get("connection"), "upgrade")) return "no Connection: Upgrade";
  if (headers.get("sec-websocket-version") !== "13") return "Sec-WebSocket-Version is not 13";
  if (!/^[A-Za-z0-9+/]{22}==$/.test(headers.get("sec-websocket-key") ?? "")) {
    return "Sec-WebSocket-Key is not 16 bytes in base64";
  }
  return null;
}

function withoutTrailingSlash(path: string): string {
  return path.length > 1 && path.endsWith("/") ? path.slice(0, -1) : path;
}

/**
 * The client addresses claimed by `X-Forwarded-For` (or else `Forwarded: for=`), as IP literals in
 * header order (the client first, each proxy appending its peer); ports, quotes and brackets removed,
 * anything that is not an IP address (`unknown`, an obfuscated name) dropped; at most the last
 * {@linkcode MAX_FORWARDED_ADDRESSES}.
 */
export function forwardedAddresses(headers: ReadonlyMap<string, string>): string[] {
  const xff = headers.get("x-forwarded-for");
  const forwarded = headers.get("forwarded");
  let entries: string[] = [];
  if (xff !== undefined) entries = xff.split(",");
  else if (forwarded !== undefined) {
    for (const element of forwarded.split(",")) {
      for (const pair of element.split(";")) {
        const [key = "", value = ""] = pair.split("=", 2);
        if (key.trim().toLowerCase() === "for") entries.push(value);
      }
    }
  }
  return entries.map(bareAddress).filter((address): address is string => address !== null)
    .slice(-MAX_FORWARDED_ADDRESSES);
}

function bareAddress(entry: string): string | null {
  let text = entry.trim().replace(/^"(.*)"$/, "$1");
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(text);
  if (bracketed) text = bracketed[1] ?? "";
  else if (/^[\d.]+:\d+$/.test(text)) text = text.slice(0, text.lastIndexOf(":"));
  return isIpAddress(text) ? text : null;
}

// ---------------------------------------------------------------------------------------------------
// Client side

/** Dials the server over TLS (as the tls transport does) and upgrades to WebSocket on `options.path`. */
async function dialWss(options: TransportDialOptions, signal?: AbortSignal): Promise<DialedConn> {
  const startedAtMs = performance.now();
  const conn = await tlsTransport.dial(options, signal);
  const host = options.serverName ?? options.hostname;
  // Aborting during the upgrade closes the connection, which fails the upgrade: nothing stays open.
  const onAbort = () => conn.close();
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    const ws = await upgradeWebSocketClient(conn, {
      host: httpAuthority(host, options.port),
      path: options.path ?? DEFAULT_SERVER_PATH,
      timeoutMs: Math.max(1, options.timeoutMs - (performance.now() - startedAtMs)),
      where: conn.remote,
    });
    if (signal?.aborted) throw signal.reason;
    return Object.assign(ws, { remote: conn.remote });
  } catch (error) {
    try {
      conn.close();
    } catch {
      // Already closed by the abort or the failed upgrade.
    }
    throw error;
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
}

/**
 * The HTTP `Host` (or HTTP/2 `:authority`) for a server at `host` and `port`: `name:port`, the port left
 * out for 443, an IPv6 address in brackets.
 */
export function httpAuthority(host: string, port: number): string {
  if (port !== 443) return formatHostPort(host, port);
  return host.includes(":") ? `[${host}]` : host;
}

/** Options of {@linkcode upgradeWebSocketClient}. */
export interface WebSocketClientUpgradeOptions {
  /** The `Host` header (`name:port`, the port left out for 443). */
  host: string;
  /** The request path, e.g. `"/tunnel"`. */
  path: string;
  /** Budget for the request and the answer; `conn` is closed when it runs out. */
  timeoutMs: number;
  /** The server as dialed, for messages. */
  where: string;
}

/**
 * Sends the WebSocket upgrade request over `conn` (already connected, TLS or not) and checks the answer;
 * resolves with the byte stream over WebSocket. The `"wss"` dial uses it over TLS; tests use it over
 * plain TCP to reach a `behind_proxy` server directly.
 *
 * @throws {TransportDialError} when the server answers anything but a valid `101 Switching Protocols`
 */
export async function upgradeWebSocketClient(
  conn: DuplexConn,
  options: WebSocketClientUpgradeOptions,
): Promise<WebSocketConn> {
  const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
  let timedOut = false;
  const deadline = setTimeout(() => {
    timedOut = true;
    conn.close();
  }, options.timeoutMs);
  try {
    const request = `GET ${options.path} HTTP/1.1\r\nHost: ${options.host}\r\nUpgrade: websocket\r\n` +
      `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`;
    const bytes = new TextEncoder().encode(request);
    for (let offset = 0; offset < bytes.length;) offset += await conn.write(bytes.subarray(offset));
    const head = await readHttpHead(conn);
    const status = /^HTTP\/1\.1 (\d{3})(?: (.*))?$/.exec(head.startLine);
    if (status?.[1] !== "101") {
      const answered = status ? `${status[1]} ${status[2] ?? ""}`.trim() : JSON.stringify(head.startLine);
      throw new TransportDialError(
        `The server at ${options.where} answered ${answered} to the WebSocket upgrade on ${options.path}; ` +
          "check that server_path is the server's (or the reverse proxy's location) and that the server " +
          `uses transport = "wss" (a reverse proxy must forward the Upgrade and Connection headers)`,
      );
    }
    const expected = await webSocketAccept(key);
    if (
      !headerHasToken(head.headers.get("upgrade"), "websocket") ||
      head.headers.get("sec-websocket-accept") !== expected
    ) {
      throw new TransportDialError(
        `The server at ${options.where} answered 101 without a valid WebSocket handshake (Upgrade or ` +
          "Sec-WebSocket-Accept wrong); is something other than tls-tunnel answering on that path?",
      );
    }
    return new WebSocketConn(conn, "client", head.rest);
  } catch (error) {
    if (error instanceof TransportDialError) throw error;
    if (timedOut) {
      throw new TransportDialError(
        `Timed out after ${options.timeoutMs} ms waiting for ${options.where} to answer the WebSocket ` +
          `upgrade on ${options.path}`,
        { cause: error },
      );
    }
    const detail = errorMessage(error);
    throw new TransportDialError(
      `The WebSocket upgrade with ${options.where} failed: ${detail} (answers are read up to ` +
        `${MAX_HTTP_HEAD_BYTES} bytes)`,
      { cause: error },
    );
  } finally {
    clearTimeout(deadline);
  }
}

/**
 * The shared HTTP port (`vhost_http_port`): every request is routed by its Host (and the longest
 * location prefixing its path) to an `http` proxy, and carried over a stream to that proxy's client.
 *
 * Per outside connection, requests are read one at a time (a pipelined request waits in the socket until
 * the previous response has been sent). The stream opened for a request is kept for the next request of
 * the same connection while that request goes to the same proxy (the local service's keep-alive
 * connection is reused); a request for another proxy closes it and opens a new one. Bodies stream through
 * both ways, framed by Content-Length or chunked encoding (followed by a scanner, never buffered); an
 * Upgrade answered 101 (WebSocket) turns the connection into a tunnel.
 *
 * Answers of its own: 503 when no tunnel serves the host (or its client is down, or its local service),
 * 401 for a proxy with basic auth, 504 when the response head does not arrive within
 * `request_timeout_secs` of the request's end, 502 when the stream ends without a response, 400/431/501/505
 * for heads it will not forward. A head must arrive within {@linkcode HEAD_TIMEOUT_MS}; an idle keep-alive
 * connection, or a request body that stops arriving, is closed after {@linkcode IDLE_TIMEOUT_MS}.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { type DuplexConn, writeAll } from "../../net/conn.ts";
import { formatAddr, unmapIpv4 } from "../../net/address.ts";
import { hostOfHostHeader } from "../../net/sni.ts";
import { abortQuietly, closeQuietly, pipeBoth } from "../../transport/pipe.ts";
import { secretsEqual } from "../../text.ts";
import {
  type BodyFraming,
  ChunkedScanner,
  forwardedRequestHead,
  headerHasToken,
  headerValues,
  HttpHeadError,
  MAX_HEAD_BYTES,
  parseRequestHead,
  parseResponseHead,
  requestFraming,
  type RequestHead,
  responseFraming,
  type ResponseHead,
} from "./http_head.ts";
import { acceptsHtml, displayHost, statusResponse } from "./pages.ts";
import { VhostListener } from "./listener.ts";
import { BufferedReader } from "./reader.ts";
import type { VhostRouter } from "./router.ts";
import type { VhostStats } from "./stats.ts";
import type { VhostProxyTarget } from "./target.ts";

const logger = getLogger(["tls-tunnel", "server", "vhost"]);

/** Time for a new connection's first request head to arrive in full. */
export const HEAD_TIMEOUT_MS = 10_000;
/** Time an idle keep-alive connection waits for its next request. */
export const IDLE_TIMEOUT_MS = 60_000;
/** Outside connections served at once; beyond it new ones are closed at once. */
export const MAX_HTTP_CONNECTIONS = 10_000;

/** Options of {@linkcode VhostHttpServer}. */
export interface VhostHttpOptions {
  /** IP literal to bind. */
  hostname: string;
  /** Port to bind (0: any free port). */
  port: number;
  /** Routes by host and location. */
  router: VhostRouter<VhostProxyTarget>;
  /** Counters. */
  stats: VhostStats;
  /** Time from a request's end to its response head before a 504. */
  requestTimeoutMs: number;
  /** Head timeout (tests shorten it). */
  headTimeoutMs?: number;
  /** Idle keep-alive timeout (tests shorten it). */
  idleTimeoutMs?: number;
}

/** An open stream to a proxy's client, kept across the requests of one outside connection. */
interface Upstream {
  target: VhostProxyTarget;
  stream: DuplexConn & { reset?(): void };
  reader: BufferedReader;
  done: () => void;
}

/** How an exchange ended: keep the connection, close it, or try again on a new stream. */
type ExchangeEnd = "keep" | "close" | "retry";

/** The shared HTTP port. */
export class VhostHttpServer extends VhostListener {
  /** Binds the port. @throws {BindError} classified */
  constructor(readonly options: VhostHttpOptions) {
    super({
      hostname: options.hostname,
      port: options.port,
      key: "vhost_http_port",
      label: "HTTP vhost",
      maxConnections: MAX_HTTP_CONNECTIONS,
    });
  }

  /** Serves one outside connection's requests; closes it at the end. */
  protected override async handle(conn: Deno.TcpConn): Promise<void> {
    try {
      conn.setNoDelay(true);
    } catch {
      // Gone already: the first read says so.
    }
    try {
      await this.#serveConnection(conn);
    } catch (error) {
      logger.debug("HTTP vhost connection ended: {error}", { error: String(error) });
    } finally {
      closeQuietly(conn);
    }
  }

  async #serveConnection(conn: Deno.TcpConn): Promise<void> {
    const remote = conn.remoteAddr;
    const peer = formatAddr({ ...remote, hostname: unmapIpv4(remote.hostname) });
    const peerHost = unmapIpv4(remote.hostname);
    const outside = new BufferedReader(conn);
    let upstream: Upstream | null = null;
    const dropUpstream = () => {
      if (!upstream) return;
      closeQuietly(upstream.stream);
      upstream.done();
      upstream = null;
    };
    try {
      for (let first = true;; first = false) {
        const head = await this.#readRequestHead(conn, outside, first);
        if (head === null) return;
        let request: RequestHead;
        let framing: BodyFraming;
        try {
          request = parseRequestHead(head);
          framing = requestFraming(request);
        } catch (error) {
          if (!(error instanceof HttpHeadError)) throw error;
          await this.#answer(conn, null, error.status, `Bad request: ${error.message}`, false, true, false);
          return;
        }
        const html = acceptsHtml(headerValues(request.headers, "accept")[0]);
        const headOnly = request.method === "HEAD";
        const wantsKeepAlive = request.minorVersion === 1
          ? !headerHasToken(request.headers, "connection", "close")
          : headerHasToken(request.headers, "connection", "keep-alive");
        // Unread body bytes would be read as the next request: answering without reading it closes.
        const closeAfterOwnAnswer = framing.kind !== "none" || !wantsKeepAlive;
        if (request.method === "CONNECT") {
          // A tunnel through the vhost would carry bytes one way only here; proxies are not served.
          await this.#answer(conn, null, 405, "CONNECT is not served here", html, true, false, [
            "Allow: GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS",
          ]);
          return;
        }
        const located = locate(request);
        if (typeof located === "string") {
          await this.#answer(conn, null, 400, `Bad request: ${located}`, html, true, headOnly);
          return;
        }
        const host = hostOfHostHeader(located.host);
        const shown = displayHost(host ?? located.host);
        const route = host !== null ? this.options.router.match(host, located.path) : null;
        if (!route || route.target.unavailable) {
          await this.#answer(
            conn,
            route?.host ?? null,
            503,
            route
              ? `the service behind ${shown} is not available right now`
              : `no tunnel is serving ${shown} right now`,
            html,
            closeAfterOwnAnswer,
            headOnly,
          );
          if (closeAfterOwnAnswer) return;
          continue;
        }
        const target = route.target;
        if (!authorized(target, request)) {
          await this.#answer(
            conn,
            route.host,
            401,
            `${shown} asks for a user name and password`,
            html,
            closeAfterOwnAnswer,
            headOnly,
            [
              `WWW-Authenticate: Basic realm="${shown}", charset="UTF-8"`,
            ],
          );
          if (closeAfterOwnAnswer) return;
          continue;
        }
        const forwarded = forwardedRequestHead(request, {
          peerHost,
          proto: "http",
          host: located.host,
          ...(target.spec.host_header_rewrite !== undefined
            ? { hostRewrite: target.spec.host_header_rewrite }
            : {}),
        });
        let end: ExchangeEnd = "retry";
        for (let attempt = 0; attempt < 2 && end === "retry"; attempt++) {
          const reused = upstream !== null && upstream.target === target && attempt === 0;
          if (!reused) {
            dropUpstream();
            try {
              const opened = await target.openRoutedStream(peer);
              upstream = { target, ...opened, reader: new BufferedReader(opened.stream) };
            } catch (error) {
              logger.debug("No stream for {host}: {error}", { host: shown, error: String(error) });
              await this.#answer(
                conn,
                route.host,
                503,
                `no tunnel is serving ${shown} right now`,
                html,
                true,
                headOnly,
              );
              return;
            }
          }
          const current = upstream as Upstream | null;
          if (!current) return;
          end = await this.#exchange(
            conn,
            outside,
            current,
            request,
            framing,
            forwarded,
            route.host,
            html,
            reused,
          );
          // A kept-alive stream whose service had closed: once more on a new stream, if no body was sent.
          if (end === "retry" && (!reused || framing.kind !== "none")) {
            await this.#answer(
              conn,
              route.host,
              502,
              `the service behind ${shown} closed the connection without answering`,
              html,
              true,
              headOnly,
            );
            return;
          }
        }
        if (end !== "keep" || !wantsKeepAlive) return;
      }
    } finally {
      dropUpstream();
    }
  }

  /** The next request head within the head (or idle) timeout; null at a clean end or a timeout. */
  async #readRequestHead(
    conn: Deno.TcpConn,
    outside: BufferedReader,
    first: boolean,
  ): Promise<Uint8Array | null> {
    const timeoutMs = first
      ? (this.options.headTimeoutMs ?? HEAD_TIMEOUT_MS)
      : (this.options.idleTimeoutMs ?? IDLE_TIMEOUT_MS);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      closeQuietly(conn);
    }, timeoutMs);
    try {
      return await outside.readHead(MAX_HEAD_BYTES);
    } catch (error) {
      if (timedOut) return null;
      if (error instanceof HttpHeadError) {
        await this.#answer(conn, null, error.status, `Bad request: ${error.message}`, false, true, false);
        return null;
      }
      return null; // the peer reset or ended inside a head
    } finally {
      clearTimeout(timer);
    }
  }

  /** Answers a request itself and counts it. */
  async #answer(
    conn: DuplexConn,
    host: string | null,
    status: number,
    message: string,
    html: boolean,
    close: boolean,
    headOnly: boolean,
    headers: readonly string[] = [],
  ): Promise<void> {
    this.options.stats.request(host, status);
    if (status === 503) this.options.stats.noTunnelTotal++;
    try {
      await writeAll(conn, statusResponse(status, message, { html, close, headOnly, headers }));
    } catch {
      // The peer is gone; nothing to tell it.
    }
  }

  /** One request and its response over `up`. */
  async #exchange(
    conn: Deno.TcpConn,
    outside: BufferedReader,
    up: Upstream,
    request: RequestHead,
    framing: BodyFraming,
    forwarded: Uint8Array,
    host: string,
    html: boolean,
    reused: boolean,
  ): Promise<ExchangeEnd> {
    const counters = up.target.stats;
    try {
      await writeAll(up.stream, forwarded);
    } catch {
      return "retry";
    }
    counters.bytesIn += forwarded.length;
    let bodySent = framing.kind === "none";
    let bodyFailed = false;
    // A body that stops arriving for the idle timeout ends the exchange: a stalled upload must not hold the
    // connection, its stream and the service's connection forever.
    const bodyIdleMs = this.options.idleTimeoutMs ?? IDLE_TIMEOUT_MS;
    const bodyPump = bodySent ? Promise.resolve() : pumpBody(outside, up.stream, framing, (bytes) => {
      counters.bytesIn += bytes;
    }, bodyIdleMs).then(() => {
      bodySent = true;
    }, () => {
      // The outside peer left mid-body, or the stream broke: the exchange cannot complete.
      bodyFailed = true;
      abortQuietly(up.stream);
    });

    // The response head, within request_timeout_secs of the request's end.
    let timedOut = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    void bodyPump.then(() => {
      timer = setTimeout(() => {
        timedOut = true;
        abortQuietly(up.stream);
      }, this.options.requestTimeoutMs);
    });
    let response: ResponseHead;
    let rawHead: Uint8Array;
    try {
      while (true) {
        const head = await up.reader.readHead(MAX_HEAD_BYTES);
        if (head === null) {
          if (timedOut) throw new Error("timed out");
          // Nothing at all came back: a kept-alive service that had closed, or the client could not reach it.
          if (reused) return "retry";
          await this.#answer(
            conn,
            host,
            502,
            `the service behind ${displayHost(host)} closed the connection without answering`,
            html,
            true,
            request.method === "HEAD",
          );
          return "close";
        }
        const parsed = parseResponseHead(head);
        if (parsed.status >= 100 && parsed.status < 200 && parsed.status !== 101) {
          await writeAll(conn, head); // 100 Continue and friends pass through; the final answer follows
          counters.bytesOut += head.length;
          continue;
        }
        response = parsed;
        rawHead = head;
        break;
      }
    } catch {
      clearTimeout(timer);
      if (timedOut) {
        await this.#answer(
          conn,
          host,
          504,
          `the service behind ${displayHost(host)} did not answer within ${
            this.options.requestTimeoutMs / 1000
          } s`,
          html,
          true,
          request.method === "HEAD",
        );
      } else if (!bodyFailed) {
        await this.#answer(
          conn,
          host,
          502,
          `the service behind ${displayHost(host)} sent no valid answer`,
          html,
          true,
          request.method === "HEAD",
        );
      }
      return "close";
    } finally {
      clearTimeout(timer);
    }
    // The timer may still be armed by the body pump's end: a late one must not cut the response.
    void bodyPump.then(() => clearTimeout(timer));
    this.options.stats.request(host, response.status);
    let responseFramingKind: BodyFraming;
    try {
      responseFramingKind = responseFraming(request.method, response);
    } catch {
      return "close";
    }
    // A small answer usually arrives whole: its head and the body bytes already read leave in one write
    // (two writes cost the outside peer a second segment and this loop a second await per request).
    let first = rawHead;
    if (response.status !== 101 && responseFramingKind.kind === "length" && up.reader.hasHeld) {
      const body = await up.reader.next(responseFramingKind.bytes);
      if (body) {
        first = new Uint8Array(rawHead.length + body.length);
        first.set(rawHead);
        first.set(body, rawHead.length);
        const rest = responseFramingKind.bytes - body.length;
        responseFramingKind = rest > 0 ? { kind: "length", bytes: rest } : { kind: "none" };
      }
    }
    await writeAll(conn, first);
    counters.bytesOut += first.length;

    if (response.status === 101) {
      // An upgrade (WebSocket): from here on both ways are raw bytes until either side ends.
      await bodyPump;
      const fromOutside = outside.takeHeld();
      const fromService = up.reader.takeHeld();
      if (fromOutside) await writeAll(up.stream, fromOutside);
      if (fromService) await writeAll(conn, fromService);
      const stream = up.stream;
      up.done();
      await pipeBoth(conn, stream, { counters });
      return "close";
    }
    await pumpBody(up.reader, conn, responseFramingKind, (bytes) => {
      counters.bytesOut += bytes;
    });
    if (responseFramingKind.kind === "close") return "close";
    if (!bodySent) {
      // Answered before the whole body arrived (413, a redirect): the rest cannot be told from a request.
      return "close";
    }
    await bodyPump;
    if (bodyFailed) return "close";
    const keep = response.minorVersion === 1
      ? !headerHasToken(response.headers, "connection", "close")
      : headerHasToken(response.headers, "connection", "keep-alive");
    return keep ? "keep" : "close";
  }
}

/** The host (as written) and path a request names, or why it names none. */
function locate(request: RequestHead): { host: string; path: string } | string {
  const hosts = headerValues(request.headers, "host");
  if (hosts.length > 1) return "more than one Host header";
  if (/^https?:\/\//i.test(request.target)) {
    try {
      const url = new URL(request.target);
      return { host: url.host, path: `${url.pathname}${url.search}` };
    } catch {
      return "malformed absolute request target";
    }
  }
  const host = hosts[0];
  if (host === undefined || host === "") return "no Host header";
  return { host, path: request.target };
}

/** Whether `request` carries the basic auth `target` asks for (any request, when it asks for none). */
function authorized(target: VhostProxyTarget, request: RequestHead): boolean {
  const user = target.spec.http_user;
  const password = target.spec.http_password;
  if (user === undefined || password === undefined) return true;
  const header = headerValues(request.headers, "authorization")[0] ?? "";
  const match = /^Basic\s+([A-Za-z0-9+/=]{1,1024})$/i.exec(header);
  if (!match) return false;
  let decoded: string;
  try {
    decoded = new TextDecoder("utf-8", { fatal: true }).decode(
      Uint8Array.from(atob(match[1] ?? ""), (char) => char.charCodeAt(0)),
    );
  } catch {
    return false;
  }
  const colon = decoded.indexOf(":");
  if (colon === -1) return false;
  // Both compared in full either way: the time taken does not tell which one was wrong.
  const userOk = secretsEqual(decoded.slice(0, colon), user);
  const passwordOk = secretsEqual(decoded.slice(colon + 1), password);
  return userOk && passwordOk;
}

/** Copies one body, framed as `framing`, from `from` to `to`; rejects when either side fails first. */
async function pumpBody(
  from: BufferedReader,
  to: DuplexConn,
  framing: BodyFraming,
  counted: (bytes: number) => void,
  idleMs?: number,
): Promise<void> {
  // With idleMs, each read of the body must bring bytes within it; else the reader's connection is
  // closed, which fails the pending read.
  const next: (maxBytes?: number) => Promise<Uint8Array | null> = idleMs === undefined
    ? (maxBytes?: number) => from.next(maxBytes)
    : async (maxBytes?: number) => {
      const timer = setTimeout(() => closeQuietly(from.conn), idleMs);
      try {
        return await from.next(maxBytes);
      } finally {
        clearTimeout(timer);
      }
    };
  if (framing.kind === "none") return;
  if (framing.kind === "length") {
    let remaining = framing.bytes;
    while (remaining > 0) {
      const chunk = await next(Math.min(remaining, 64 * 1024));
      if (chunk === null) throw new Error(`the body ended ${remaining} bytes early`);
      await writeAll(to, chunk);
      counted(chunk.length);
      remaining -= chunk.length;
    }
    return;
  }
  if (framing.kind === "chunked") {
    const scanner = new ChunkedScanner();
    while (!scanner.done) {
      const chunk = await next();
      if (chunk === null) throw new Error("the chunked body ended before its last chunk");
      const used = scanner.feed(chunk);
      if (used < chunk.length) from.unread(chunk.subarray(used));
      await writeAll(to, chunk.subarray(0, used));
      counted(used);
    }
    return;
  }
  while (true) {
    const chunk = await next();
    if (chunk === null) return;
    await writeAll(to, chunk);
    counted(chunk.length);
  }
}

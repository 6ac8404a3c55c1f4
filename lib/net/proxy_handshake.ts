/**
 * The client's side of the two outbound proxy handshakes, over a connection already open to the proxy:
 * HTTP CONNECT (RFC 9110 §9.3.6, Basic credentials) and SOCKS5 (RFC 1928, user/password of RFC 1929).
 * Once {@linkcode proxyHandshake} resolves, the connection carries bytes to the target as if dialed
 * directly; the caller starts TLS over it.
 *
 * The proxy is a peer like any other: its answer is read with a bound ({@linkcode MAX_PROXY_ANSWER_BYTES}),
 * within the caller's deadline (the signal), and any malformed byte fails the handshake with a
 * {@linkcode OutboundProxyError} that names the hop ("the HTTP proxy 10.0.0.5:3128 answered …").
 * A refused password is {@linkcode OutboundProxyError.permanent}: retrying with the same config cannot help.
 *
 * @module
 */

import type { DuplexConn } from "./conn.ts";
import { writeAll } from "./conn.ts";
import { formatHostPort, isIpv4, isIpv6 } from "./address.ts";
import type { OutboundProxy } from "./proxy_url.ts";
import { errorMessage, quoteForMessage } from "../text.ts";
import { VERSION } from "../version.ts";

/** Most bytes of an HTTP proxy's answer header (status line and fields) read before refusing it. */
export const MAX_PROXY_ANSWER_BYTES = 16 * 1024;

/** The target the proxy is asked to connect to: the tunnel server. */
export interface ProxyTarget {
  /** Host name or IP address (IPv6 without brackets). */
  hostname: string;
  /** Port. */
  port: number;
}

/**
 * Leaving through the outbound proxy failed; the message names the hop and what to do. `permanent`: the
 * proxy refused the credentials (or demands some), which no retry with the same config can fix.
 */
export class OutboundProxyError extends Error {
  override name = "OutboundProxyError";
  constructor(message: string, readonly permanent = false, options?: ErrorOptions) {
    super(message, options);
  }
}

/** True when `error`, or an error in its `cause` chain, is a permanent {@linkcode OutboundProxyError}. */
export function isPermanentProxyError(error: unknown): boolean {
  for (let current = error, depth = 0; current instanceof Error && depth < 8; depth++) {
    if (current instanceof OutboundProxyError) return current.permanent;
    current = current.cause;
  }
  return false;
}

/** The bytes a connection to the proxy needs for the handshake: read and write. */
export type HandshakeConn = Pick<DuplexConn, "read" | "write">;

/**
 * Asks `proxy` (already connected through `conn`) to connect to `target`, within `signal`. On success no
 * byte of the proxy's answer is left unread and none beyond it was received.
 *
 * @throws {OutboundProxyError} naming the hop; the caller closes `conn`
 */
export async function proxyHandshake(
  conn: HandshakeConn,
  proxy: OutboundProxy,
  target: ProxyTarget,
  signal: AbortSignal,
): Promise<void> {
  const reader = new AnswerReader(conn, proxy, signal);
  if (proxy.protocol === "http") await httpConnect(conn, reader, proxy, target, signal);
  else await socks5Connect(conn, reader, proxy, target, signal);
  if (reader.buffered > 0) {
    throw new OutboundProxyError(
      `${proxy.hop} sent ${reader.buffered} bytes after its answer, before the server could speak; ` +
        "is it really a proxy?",
    );
  }
}

// ---------------------------------------------------------------------------------------------------
// Reading the proxy's answer

/** Reads the proxy's answer with a bound and the caller's deadline; keeps what it read beyond a need. */
class AnswerReader {
  #buffer = new Uint8Array(0);
  #total = 0;

  constructor(
    private readonly conn: HandshakeConn,
    private readonly proxy: OutboundProxy,
    private readonly signal: AbortSignal,
  ) {}

  /** Bytes received and not yet consumed. */
  get buffered(): number {
    return this.#buffer.length;
  }

  /** Reads more into the buffer; throws when the proxy closed, the deadline passed or the bound is hit. */
  async #fill(what: string): Promise<void> {
    if (this.#total >= MAX_PROXY_ANSWER_BYTES) {
      throw new OutboundProxyError(
        `${this.proxy.hop} sent an answer over ${MAX_PROXY_ANSWER_BYTES} bytes to ${what}; refused ` +
          "(is it really a proxy?)",
      );
    }
    const chunk = new Uint8Array(Math.min(4096, MAX_PROXY_ANSWER_BYTES - this.#total));
    const count = await withSignal(this.conn.read(chunk), this.signal, this.proxy, what);
    if (count === null || count === 0) {
      throw new OutboundProxyError(`${this.proxy.hop} closed the connection before answering ${what}`);
    }
    this.#total += count;
    const joined = new Uint8Array(this.#buffer.length + count);
    joined.set(this.#buffer);
    joined.set(chunk.subarray(0, count), this.#buffer.length);
    this.#buffer = joined;
  }

  /** Exactly `count` bytes (a SOCKS5 field). */
  async exact(count: number, what: string): Promise<Uint8Array> {
    while (this.#buffer.length < count) await this.#fill(what);
    const taken = this.#buffer.slice(0, count);
    this.#buffer = this.#buffer.slice(count);
    return taken;
  }

  /** Everything up to and including the blank line that ends an HTTP header, as Latin-1 text. */
  async header(what: string): Promise<string> {
    let scanned = 0;
    while (true) {
      const end = headerEnd(this.#buffer, Math.max(0, scanned - 3));
      if (end >= 0) {
        const taken = this.#buffer.slice(0, end);
        this.#buffer = this.#buffer.slice(end);
        return String.fromCharCode(...taken);
      }
      scanned = this.#buffer.length;
      await this.#fill(what);
    }
  }
}

/**
 * Index just past the first `\r\n\r\n` (or bare `\n\n`) at or after `from`, or -1: where an HTTP
 * header ends. Shared with the client's local HTTP proxy (`client/http_proxy_server.ts`), which reads
 * requests as this file reads answers.
 */
export function headerEnd(bytes: Uint8Array, from: number): number {
  for (let index = from; index < bytes.length; index++) {
    if (bytes[index] !== 0x0a) continue;
    if (bytes[index + 1] === 0x0a) return index + 2;
    if (bytes[index + 1] === 0x0d && bytes[index + 2] === 0x0a) return index + 3;
  }
  return -1;
}

/** `promise`, or a rejection naming the hop once `signal` aborts (the caller then closes the connection). */
function withSignal<T>(
  promise: Promise<T>,
  signal: AbortSignal,
  proxy: OutboundProxy,
  what: string,
): Promise<T> {
  const expired = () =>
    new OutboundProxyError(
      signal.reason instanceof DOMException && signal.reason.name === "TimeoutError"
        ? `${proxy.hop} did not answer ${what} in time; is it overloaded, or not a proxy?`
        : `Gave up waiting for ${proxy.hop} to answer ${what}`,
      false,
      { cause: signal.reason },
    );
  if (signal.aborted) {
    promise.catch(() => {});
    return Promise.reject(expired());
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(expired());
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error) => {
        signal.removeEventListener("abort", onAbort);
        reject(
          new OutboundProxyError(
            `The connection to ${proxy.hop} failed while waiting for its answer to ${what}: ${
              errorMessage(error)
            }`,
            false,
            { cause: error },
          ),
        );
      },
    );
  });
}

// ---------------------------------------------------------------------------------------------------
// HTTP CONNECT

const STATUS_LINE = /^HTTP\/1\.[01] (\d{3})(?: ([^\r\n]*))?\r?\n/;

async function httpConnect(
  conn: HandshakeConn,
  reader: AnswerReader,
  proxy: OutboundProxy,
  target: ProxyTarget,
  signal: AbortSignal,
): Promise<void> {
  const authority = formatHostPort(target.hostname, target.port);
  const credentials = proxy.credentials;
  const lines = [
    `CONNECT ${authority} HTTP/1.1`,
    `Host: ${authority}`,
    `User-Agent: tls-tunnel/${VERSION}`,
    "Proxy-Connection: Keep-Alive",
  ];
  if (credentials !== null) {
    const pair = new TextEncoder().encode(`${credentials.username}:${credentials.password}`);
    lines.push(`Proxy-Authorization: Basic ${btoa(String.fromCharCode(...pair))}`);
  }
  const what = `CONNECT ${authority}`;
  await withSignal(
    writeAll(conn, new TextEncoder().encode(`${lines.join("\r\n")}\r\n\r\n`)),
    signal,
    proxy,
    what,
  );
  const header = await reader.header(what);
  const status = STATUS_LINE.exec(header);
  if (status === null) {
    throw new OutboundProxyError(
      `${proxy.hop} answered ${what} with something that is not HTTP (${
        quoteForMessage(header.split("\n")[0] ?? "", 60)
      }); check that proxy_url names an HTTP proxy`,
    );
  }
  const code = Number(status[1]);
  if (code >= 200 && code < 300) return;
  const reason = printable(status[2] ?? "");
  const answered = `${proxy.hop} answered ${code}${reason ? ` ${reason}` : ""}`;
  // 407 is the proxy's way; tinyproxy answers wrong credentials with 401, which means the same here.
  if (code === 407 || code === 401) {
    throw new OutboundProxyError(
      credentials === null
        ? `${answered}; put the credentials in proxy_url (http://user:pass@host:port)`
        : `${answered}; put the credentials in proxy_url (the user name and password given there were refused)`,
      true,
    );
  }
  const hint = code === 403
    ? `the proxy does not allow CONNECT to ${authority} (tinyproxy: ConnectPort ${target.port}; squid: SSL_ports)`
    : code >= 500
    ? `the proxy could not reach ${authority}`
    : `the proxy refused CONNECT ${authority}`;
  throw new OutboundProxyError(`${answered} to ${what}; ${hint}`);
}

/** A proxy's reason phrase for a message: printable ASCII only, cut to 80 characters. */
function printable(text: string): string {
  const clean = text.replace(/[^\x20-\x7e]/g, "?").trim();
  return clean.length > 80 ? `${clean.slice(0, 80)}…` : clean;
}

// ---------------------------------------------------------------------------------------------------
// SOCKS5

/** SOCKS protocol version 5 (RFC 1928), the first byte of every SOCKS5 message. */
export const SOCKS_VERSION = 5;
/** SOCKS5 authentication method: none. */
export const METHOD_NONE = 0x00;
/** SOCKS5 authentication method: user name and password (RFC 1929). */
export const METHOD_USER_PASSWORD = 0x02;
/** SOCKS5 "no acceptable methods". */
export const METHOD_REFUSED = 0xff;

/**
 * RFC 1928 §6's reply codes, as a sentence each; the client's local SOCKS5 proxy
 * (`client/socks5_server.ts`) answers with the same codes.
 */
export const SOCKS_REPLIES: Readonly<Record<number, string>> = {
  1: "general SOCKS server failure",
  2: "connection not allowed by ruleset",
  3: "network unreachable",
  4: "host unreachable",
  5: "connection refused",
  6: "TTL expired",
  7: "command not supported",
  8: "address type not supported",
};

async function socks5Connect(
  conn: HandshakeConn,
  reader: AnswerReader,
  proxy: OutboundProxy,
  target: ProxyTarget,
  signal: AbortSignal,
): Promise<void> {
  const credentials = proxy.credentials;
  const send = (bytes: Uint8Array, what: string) => withSignal(writeAll(conn, bytes), signal, proxy, what);
  const methods = credentials === null ? [METHOD_NONE] : [METHOD_NONE, METHOD_USER_PASSWORD];
  await send(new Uint8Array([SOCKS_VERSION, methods.length, ...methods]), "the greeting");
  const [version = 0, method = 0] = await reader.exact(2, "the SOCKS5 greeting");
  checkVersion(version, proxy);
  if (method === METHOD_REFUSED) {
    throw new OutboundProxyError(
      credentials === null
        ? `${proxy.hop} requires a user name and password; put the credentials in proxy_url ` +
          "(socks5://user:pass@host:port)"
        : `${proxy.hop} accepts none of the authentication methods offered (none, user/password)`,
      true,
    );
  }
  if (!methods.includes(method)) {
    throw new OutboundProxyError(
      `${proxy.hop} chose authentication method 0x${
        hex2(method)
      }, which was not offered; is it a SOCKS5 proxy?`,
    );
  }
  if (method === METHOD_USER_PASSWORD && credentials !== null) {
    const encoder = new TextEncoder();
    const user = encoder.encode(credentials.username);
    const password = encoder.encode(credentials.password);
    await send(new Uint8Array([1, user.length, ...user, password.length, ...password]), "the user name");
    const [authVersion = 0, status = 0] = await reader.exact(2, "the user name and password");
    // RFC 1929 says version 1; some servers echo 5. Anything else is not a SOCKS5 proxy.
    if (authVersion !== 1 && authVersion !== SOCKS_VERSION) checkVersion(authVersion, proxy);
    if (status !== 0) {
      throw new OutboundProxyError(
        `${proxy.hop} refused the user name and password; put the right credentials in proxy_url`,
        true,
      );
    }
  }
  const authority = formatHostPort(target.hostname, target.port);
  await send(connectRequest(target), `CONNECT ${authority}`);
  const what = `CONNECT ${authority}`;
  const [replyVersion = 0, reply = 0, , addressType = 0] = await reader.exact(4, what);
  checkVersion(replyVersion, proxy);
  if (reply !== 0) {
    const meaning = SOCKS_REPLIES[reply] ?? `unknown reply code 0x${hex2(reply)}`;
    throw new OutboundProxyError(`${proxy.hop} could not connect to ${authority}: ${meaning}`);
  }
  // The bound address: read and dropped, so that what follows is the server's first byte.
  if (addressType === 1) await reader.exact(4 + 2, what);
  else if (addressType === 4) await reader.exact(16 + 2, what);
  else if (addressType === 3) {
    const [length = 0] = await reader.exact(1, what);
    await reader.exact(length + 2, what);
  } else {
    throw new OutboundProxyError(
      `${proxy.hop} answered ${what} with an unknown address type 0x${
        hex2(addressType)
      }; is it a SOCKS5 proxy?`,
    );
  }
}

/** SOCKS5 CONNECT for `target`: an IP address as such, a name for the proxy to resolve. */
function connectRequest(target: ProxyTarget): Uint8Array {
  const port = [target.port >> 8, target.port & 0xff];
  if (isIpv4(target.hostname)) {
    return new Uint8Array([SOCKS_VERSION, 1, 0, 1, ...target.hostname.split(".").map(Number), ...port]);
  }
  if (isIpv6(target.hostname)) {
    return new Uint8Array([SOCKS_VERSION, 1, 0, 4, ...ipv6Bytes(target.hostname), ...port]);
  }
  const name = new TextEncoder().encode(target.hostname);
  // A host name is at most 253 characters (checked by the config), under the field's 255.
  return new Uint8Array([SOCKS_VERSION, 1, 0, 3, name.length, ...name, ...port]);
}

/** The 16 bytes of an IPv6 address ({@linkcode isIpv6} holds). */
export function ipv6Bytes(address: string): Uint8Array {
  let text = address;
  const tail = text.slice(text.lastIndexOf(":") + 1);
  if (tail.includes(".")) {
    const [a = 0, b = 0, c = 0, d = 0] = tail.split(".").map(Number);
    text = `${text.slice(0, text.lastIndexOf(":") + 1)}${((a << 8) | b).toString(16)}:${
      ((c << 8) | d).toString(16)
    }`;
  }
  const parse = (part: string) => part === "" ? [] : part.split(":").map((group) => parseInt(group, 16));
  const [headText = "", restText] = text.split("::");
  const head = parse(headText);
  const rest = restText === undefined ? [] : parse(restText);
  const groups = restText === undefined
    ? head
    : [...head, ...new Array<number>(8 - head.length - rest.length).fill(0), ...rest];
  return new Uint8Array(groups.flatMap((group) => [group >> 8, group & 0xff]));
}

function checkVersion(version: number, proxy: OutboundProxy): void {
  if (version === SOCKS_VERSION) return;
  throw new OutboundProxyError(
    `${proxy.hop} answered with version 0x${
      hex2(version)
    }, not SOCKS5 (0x05); check that proxy_url names a ` +
      "SOCKS5 proxy",
  );
}

function hex2(value: number): string {
  return value.toString(16).padStart(2, "0");
}

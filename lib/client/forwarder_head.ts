/**
 * What the forwarders' two local proxies (`http_proxy_server.ts`, `socks5_server.ts`) share: reading a
 * local application's handshake with a byte bound and one deadline for the whole of it (a slowloris that
 * sends one byte a second gets no more time than a silent peer), and the failures a forwarded connection
 * can meet, each with the HTTP status and SOCKS5 reply code the application is answered with.
 *
 * @module
 */

import type { DuplexConn } from "../net/conn.ts";
import { headerEnd } from "../net/proxy_handshake.ts";
import type { OpenRefusal } from "../protocol/open_request.ts";

/** Most bytes of a local application's handshake (HTTP request head, SOCKS5 messages). */
export const MAX_HEAD_BYTES = 16 * 1024;

/** Time a local application has to finish its handshake, from its connection's accept. */
export const HEAD_TIMEOUT_MS = 10_000;

/** Why reading a handshake failed. */
export type HeadErrorKind = "too_large" | "timeout" | "closed" | "malformed";

/** A local application's handshake could not be read; `kind` decides the answer. */
export class HeadError extends Error {
  override name = "HeadError";
  constructor(readonly kind: HeadErrorKind, message: string) {
    super(message);
  }
}

/**
 * Reads a handshake from a local connection: within `limitBytes` in all, before `deadline` aborts. What
 * it read beyond the handshake stays in {@linkcode rest} (the application's first bytes to the destination).
 */
export class HeadReader {
  #buffer = new Uint8Array(0);
  #total = 0;

  constructor(
    private readonly conn: Pick<DuplexConn, "read">,
    private readonly deadline: AbortSignal,
    private readonly limitBytes = MAX_HEAD_BYTES,
  ) {}

  /** Bytes received and not consumed: after the handshake, the first bytes for the destination. */
  rest(): Uint8Array {
    const rest = this.#buffer;
    this.#buffer = new Uint8Array(0);
    return rest;
  }

  async #fill(what: string): Promise<void> {
    if (this.#total >= this.limitBytes) {
      throw new HeadError("too_large", `${what} is over ${this.limitBytes} bytes`);
    }
    const chunk = new Uint8Array(Math.min(4096, this.limitBytes - this.#total));
    const count = await this.#read(chunk, what);
    if (count === null || count === 0) throw new HeadError("closed", `the connection closed during ${what}`);
    this.#total += count;
    const joined = new Uint8Array(this.#buffer.length + count);
    joined.set(this.#buffer);
    joined.set(chunk.subarray(0, count), this.#buffer.length);
    this.#buffer = joined;
  }

  #read(chunk: Uint8Array, what: string): Promise<number | null> {
    const expired = () => new HeadError("timeout", `${what} did not arrive within the handshake deadline`);
    if (this.deadline.aborted) return Promise.reject(expired());
    return new Promise((resolve, reject) => {
      const onAbort = () => reject(expired());
      this.deadline.addEventListener("abort", onAbort, { once: true });
      this.conn.read(chunk).then(
        (count) => {
          this.deadline.removeEventListener("abort", onAbort);
          resolve(count);
        },
        (error: unknown) => {
          this.deadline.removeEventListener("abort", onAbort);
          reject(new HeadError("closed", `the connection failed during ${what}: ${String(error)}`));
        },
      );
    });
  }

  /** Exactly `count` bytes. */
  async exact(count: number, what: string): Promise<Uint8Array> {
    while (this.#buffer.length < count) await this.#fill(what);
    const taken = this.#buffer.slice(0, count);
    this.#buffer = this.#buffer.slice(count);
    return taken;
  }

  /** An HTTP head: everything up to and including the blank line that ends it. */
  async httpHead(what: string): Promise<Uint8Array> {
    let scanned = 0;
    while (true) {
      const end = headerEnd(this.#buffer, Math.max(0, scanned - 3));
      if (end >= 0) {
        const head = this.#buffer.slice(0, end);
        this.#buffer = this.#buffer.slice(end);
        return head;
      }
      scanned = this.#buffer.length;
      await this.#fill(what);
    }
  }
}

/**
 * Why a forwarded connection failed, as the local application is told: each kind has an HTTP status
 * ({@linkcode HTTP_FAILURE_STATUS}) and a SOCKS5 reply code ({@linkcode SOCKS_FAILURE_REPLY}).
 */
export type FailureKind =
  | "bad_request"
  | "request_timeout"
  | "head_too_large"
  | "auth_required"
  | "forbidden"
  | "unreachable"
  | "refused"
  | "timeout"
  | "busy"
  | "rate_limited"
  | "tunnel_down"
  | "unsupported";

/** A forwarded connection that did not get through: the kind, and the reason the application reads. */
export interface ForwardFailure {
  /** What kind of failure (the answer depends on it; also the `result` label of the counters). */
  kind: FailureKind;
  /** For people: what failed and why. */
  reason: string;
}

/** HTTP status and reason phrase per failure. */
export const HTTP_FAILURE_STATUS: Readonly<Record<FailureKind, readonly [number, string]>> = {
  bad_request: [400, "Bad Request"],
  request_timeout: [408, "Request Timeout"],
  head_too_large: [431, "Request Header Fields Too Large"],
  auth_required: [407, "Proxy Authentication Required"],
  forbidden: [403, "Forbidden"],
  unreachable: [502, "Bad Gateway"],
  refused: [502, "Bad Gateway"],
  timeout: [504, "Gateway Timeout"],
  busy: [503, "Service Unavailable"],
  rate_limited: [429, "Too Many Requests"],
  tunnel_down: [503, "Service Unavailable"],
  unsupported: [501, "Not Implemented"],
};

/** SOCKS5 reply code per failure (RFC 1928 §6). */
export const SOCKS_FAILURE_REPLY: Readonly<Record<FailureKind, number>> = {
  bad_request: 0x01,
  request_timeout: 0x01,
  head_too_large: 0x01,
  auth_required: 0x02,
  forbidden: 0x02, // connection not allowed by ruleset
  unreachable: 0x04, // host unreachable
  refused: 0x05, // connection refused
  timeout: 0x04,
  busy: 0x01, // general failure
  rate_limited: 0x01,
  tunnel_down: 0x03, // network unreachable: the way out is down
  unsupported: 0x07, // command not supported
};

/**
 * The failure a server's refusal means. The reply has one code for every way of not reaching the
 * destination (`UNREACHABLE`); the server words its reasons so that a timeout ("took longer") and a
 * refused connection ("refused the connection") can be told apart (`server/forward_destination.ts`).
 */
export function failureOfRefusal(refusal: OpenRefusal): ForwardFailure {
  const reason = `the server refused (${refusal.code}): ${refusal.reason}`;
  switch (refusal.code) {
    case "DISABLED":
    case "DENIED":
    case "FORBIDDEN_DESTINATION":
      return { kind: "forbidden", reason };
    case "UNREACHABLE":
      if (/took longer/.test(refusal.reason)) return { kind: "timeout", reason };
      if (/refused the connection/.test(refusal.reason)) return { kind: "refused", reason };
      return { kind: "unreachable", reason };
    case "LIMIT":
      return { kind: "busy", reason };
    case "RATE_LIMITED":
      return { kind: "rate_limited", reason };
    case "NOT_FOUND":
      return { kind: "unreachable", reason };
    case "BAD_REQUEST":
      return { kind: "bad_request", reason };
  }
}

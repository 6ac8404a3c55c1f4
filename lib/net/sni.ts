/**
 * Host names for virtual hosts, and the server name (SNI) of a TLS ClientHello, read by hand: the https
 * vhost routes a connection by the name its ClientHello asks for without terminating TLS, so it must
 * read that name from bytes a stranger sent. Pure functions over bytes and strings, no sockets.
 *
 * The ClientHello parser is bounded ({@linkcode MAX_CLIENT_HELLO_BYTES}), accepts a handshake message
 * split across several TLS records and records split across reads (it says how far it got, the caller
 * reads more), and answers "invalid" for anything that is not a well-formed ClientHello: wrong record
 * type, lengths that disagree, an oversized message, a server name that is not a DNS name.
 *
 * @example Routing a connection by its first bytes
 * ```ts
 * import { readClientHelloSni } from "./sni.ts";
 *
 * const result = readClientHelloSni(new Uint8Array([0x16, 0x03, 0x01, 0x00]));
 * console.log(result.status); // "incomplete": read more bytes and ask again
 * ```
 *
 * @module
 */

import { isHostname, isIpAddress } from "./address.ts";

/** Largest ClientHello (all its records, headers included) read before giving up on a connection. */
export const MAX_CLIENT_HELLO_BYTES = 32 * 1024;

/** TLS record content type of handshake messages. */
const RECORD_HANDSHAKE = 0x16;
/** Handshake message type of a ClientHello. */
const HANDSHAKE_CLIENT_HELLO = 0x01;
/** Extension type of `server_name` (RFC 6066 §3). */
const EXTENSION_SERVER_NAME = 0x0000;
/** `name_type` of a host name in the `server_name` extension. */
const NAME_TYPE_HOST_NAME = 0x00;
/** Largest TLS record payload a peer may send (2^14 bytes, RFC 8446 §5.1). */
const MAX_RECORD_PAYLOAD = 16 * 1024;

/** The outcome of reading a ClientHello from the bytes received so far. */
export type ClientHelloSni =
  /** More bytes are needed; read more (up to {@linkcode MAX_CLIENT_HELLO_BYTES}) and call again. */
  | { status: "incomplete" }
  /** A whole ClientHello: its host name (lower case, no trailing dot), or null without SNI. */
  | { status: "ok"; serverName: string | null }
  /** Not a ClientHello, or a malformed or oversized one. */
  | { status: "invalid"; reason: string };

/**
 * Reads the SNI host name of the TLS ClientHello at the start of `bytes` (everything the peer sent so
 * far). Never throws.
 */
export function readClientHelloSni(bytes: Uint8Array): ClientHelloSni {
  // Reassemble the handshake message from its records: a ClientHello may be split over several.
  const message: Uint8Array[] = [];
  let messageBytes = 0;
  let expected: number | null = null;
  let offset = 0;
  while (true) {
    if (expected !== null && messageBytes >= expected) break;
    if (bytes.length - offset < 5) return incompleteOrTooBig(bytes);
    const type = bytes[offset] ?? 0;
    const major = bytes[offset + 1] ?? 0;
    const length = ((bytes[offset + 3] ?? 0) << 8) | (bytes[offset + 4] ?? 0);
    if (type !== RECORD_HANDSHAKE) {
      return { status: "invalid", reason: `record type ${type} is not a handshake (22)` };
    }
    if (major !== 3) return { status: "invalid", reason: `record version ${major}.x is not TLS (3.x)` };
    if (length === 0 || length > MAX_RECORD_PAYLOAD) {
      return { status: "invalid", reason: `record length ${length} is outside 1-${MAX_RECORD_PAYLOAD}` };
    }
    if (offset + 5 + length > MAX_CLIENT_HELLO_BYTES) {
      return { status: "invalid", reason: `ClientHello exceeds ${MAX_CLIENT_HELLO_BYTES} bytes` };
    }
    // A partial record is used as far as it goes: the handshake header may already be readable.
    const available = Math.min(length, bytes.length - offset - 5);
    message.push(bytes.subarray(offset + 5, offset + 5 + available));
    messageBytes += available;
    if (expected === null && messageBytes >= 4) {
      const head = concat(message, 4);
      if (head[0] !== HANDSHAKE_CLIENT_HELLO) {
        return { status: "invalid", reason: `handshake type ${head[0]} is not a ClientHello (1)` };
      }
      const bodyLength = ((head[1] ?? 0) << 16) | ((head[2] ?? 0) << 8) | (head[3] ?? 0);
      if (bodyLength + 4 > MAX_CLIENT_HELLO_BYTES) {
        return { status: "invalid", reason: `ClientHello of ${bodyLength} bytes exceeds the limit` };
      }
      expected = bodyLength + 4;
    }
    if (available < length) {
      if (expected !== null && messageBytes >= expected) break;
      return { status: "incomplete" };
    }
    offset += 5 + length;
  }
  const whole = concat(message, expected);
  return parseClientHelloBody(whole.subarray(4));
}

function incompleteOrTooBig(bytes: Uint8Array): ClientHelloSni {
  return bytes.length >= MAX_CLIENT_HELLO_BYTES
    ? { status: "invalid", reason: `ClientHello exceeds ${MAX_CLIENT_HELLO_BYTES} bytes` }
    : { status: "incomplete" };
}

/** The first `length` bytes of the parts, joined. */
function concat(parts: readonly Uint8Array[], length: number): Uint8Array {
  const joined = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    if (at >= length) break;
    const take = part.subarray(0, length - at);
    joined.set(take, at);
    at += take.length;
  }
  return joined;
}

/** A bounds-checked reader over a ClientHello body: every read past the end throws {@linkcode Truncated}. */
class Cursor {
  #at = 0;
  constructor(readonly bytes: Uint8Array) {}

  get remaining(): number {
    return this.bytes.length - this.#at;
  }

  u8(): number {
    if (this.remaining < 1) throw new Truncated();
    return this.bytes[this.#at++] ?? 0;
  }

  u16(): number {
    return (this.u8() << 8) | this.u8();
  }

  take(length: number): Uint8Array {
    if (this.remaining < length) throw new Truncated();
    const part = this.bytes.subarray(this.#at, this.#at + length);
    this.#at += length;
    return part;
  }
}

class Truncated extends Error {}

function parseClientHelloBody(body: Uint8Array): ClientHelloSni {
  try {
    const cursor = new Cursor(body);
    cursor.take(2 + 32); // legacy_version, random
    const sessionIdLength = cursor.u8();
    if (sessionIdLength > 32) return { status: "invalid", reason: "session id longer than 32 bytes" };
    cursor.take(sessionIdLength);
    const suitesLength = cursor.u16();
    if (suitesLength < 2 || suitesLength % 2 !== 0) {
      return {
        status: "invalid",
        reason: `cipher suites length ${suitesLength} is not a positive even number`,
      };
    }
    cursor.take(suitesLength);
    const compressionLength = cursor.u8();
    if (compressionLength < 1) return { status: "invalid", reason: "no compression methods" };
    cursor.take(compressionLength);
    if (cursor.remaining === 0) return { status: "ok", serverName: null }; // no extensions at all
    const extensions = new Cursor(cursor.take(cursor.u16()));
    if (cursor.remaining !== 0) return { status: "invalid", reason: "bytes after the extensions" };
    let serverName: string | null = null;
    let seen = false;
    while (extensions.remaining > 0) {
      const type = extensions.u16();
      const data = extensions.take(extensions.u16());
      if (type !== EXTENSION_SERVER_NAME) continue;
      if (seen) return { status: "invalid", reason: "two server_name extensions" };
      seen = true;
      const parsed = parseServerNameExtension(data);
      if (typeof parsed !== "string" && parsed !== null) return parsed;
      serverName = parsed;
    }
    return { status: "ok", serverName };
  } catch (error) {
    if (error instanceof Truncated) return { status: "invalid", reason: "a length runs past its field" };
    throw error;
  }
}

function parseServerNameExtension(data: Uint8Array): string | null | ClientHelloSni {
  if (data.length === 0) return null; // a server's empty echo; from a client it names nothing
  const cursor = new Cursor(data);
  const list = new Cursor(cursor.take(cursor.u16()));
  if (cursor.remaining !== 0) return { status: "invalid", reason: "bytes after the server name list" };
  let hostName: string | null = null;
  while (list.remaining > 0) {
    const nameType = list.u8();
    const name = list.take(list.u16());
    if (nameType !== NAME_TYPE_HOST_NAME || hostName !== null) continue;
    // A DNS name is ASCII: anything else (UTF-8, controls) is refused rather than decoded.
    if (name.length === 0 || name.length > 255 || name.some((byte) => byte < 0x21 || byte > 0x7e)) {
      return { status: "invalid", reason: "server name is not a printable ASCII host name" };
    }
    const normalized = normalizeDomain(String.fromCharCode(...name));
    if (normalized === null) return { status: "invalid", reason: "server name is not a DNS host name" };
    hostName = normalized;
  }
  return hostName;
}

/**
 * `text` as a virtual host's name: lower case, without a trailing dot; null when it is not a DNS host
 * name (an IP address, an empty or over-long name, a label with characters other than letters, digits
 * and `-`).
 *
 * @example
 * ```ts
 * import { normalizeDomain } from "./sni.ts";
 * console.log(normalizeDomain("App.Example.COM.")); // "app.example.com"
 * console.log(normalizeDomain("10.0.0.1")); // null
 * ```
 */
export function normalizeDomain(text: string): string | null {
  if (text.length === 0 || text.length > 254 || isIpAddress(text) || !isHostname(text)) return null;
  const lower = text.toLowerCase();
  return lower.endsWith(".") ? lower.slice(0, -1) : lower;
}

/**
 * The host name of an HTTP `Host` header value (`app.example.com:8080` → `app.example.com`), normalized
 * as {@linkcode normalizeDomain}; null for an IP literal, a malformed port or anything else that cannot
 * name a virtual host.
 */
export function hostOfHostHeader(value: string): string | null {
  const text = value.trim();
  if (text.startsWith("[")) return null; // an IPv6 literal names no virtual host
  const colon = text.lastIndexOf(":");
  if (colon === -1) return normalizeDomain(text);
  const port = text.slice(colon + 1);
  if (!/^\d{1,5}$/.test(port) || Number(port) > 65535) return null;
  return normalizeDomain(text.slice(0, colon));
}

/**
 * The header at the start of every data stream the server opens for an outside connection: it names
 * the proxy and the outside peer, so the client knows which local service to connect.
 *
 * ```
 * +---------+----------------+---------------------------+
 * | version | length (u16 BE) | JSON (UTF-8), length bytes |
 * |  0x01   |                 | {"proxy":..,"peer_addr":..} |
 * +---------+----------------+---------------------------+
 * ```
 *
 * @module
 */

import type { DuplexConn } from "../net/conn.ts";
import { NAME_PATTERN, quoteForMessage, unsafeCharacter } from "../text.ts";

/** Version byte of the stream header. */
export const STREAM_HEADER_VERSION = 1;
/** Largest JSON body of a stream header. */
export const STREAM_HEADER_MAX_BYTES = 4096;
/** Longest `peer_addr` accepted ("[IPv6]:port" needs at most 47 characters). */
export const PEER_ADDR_MAX_CHARS = 64;
/** Fixed prefix: version byte + u16 length. */
export const STREAM_HEADER_PREFIX_BYTES = 3;

/** What the server tells the client about an outside connection. */
export interface StreamHeader {
  /** Name of the proxy the connection arrived on. */
  proxy: string;
  /** Outside peer as "host:port" (IPv6 in brackets). */
  peer_addr: string;
  /** Server-side sequence number of the connection, for correlating logs. */
  conn_id: number;
}

/** Shared by every header: one per connection would be garbage on the connection-setup path. */
const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

/** The bytes at the start of a data stream are not a valid header. */
export class StreamHeaderError extends Error {
  override name = "StreamHeaderError";
}

/** Encodes a header into its wire bytes. */
export function encodeStreamHeader(header: StreamHeader): Uint8Array {
  const body = utf8Encoder.encode(JSON.stringify(header));
  if (body.length > STREAM_HEADER_MAX_BYTES) {
    throw new StreamHeaderError(`Stream header of ${body.length} bytes exceeds ${STREAM_HEADER_MAX_BYTES}`);
  }
  const bytes = new Uint8Array(STREAM_HEADER_PREFIX_BYTES + body.length);
  bytes[0] = STREAM_HEADER_VERSION;
  new DataView(bytes.buffer).setUint16(1, body.length);
  bytes.set(body, STREAM_HEADER_PREFIX_BYTES);
  return bytes;
}

/** Parses a header's JSON body, validating every field. */
export function decodeStreamHeaderBody(body: Uint8Array): StreamHeader {
  let value: unknown;
  try {
    value = JSON.parse(utf8Decoder.decode(body));
  } catch (error) {
    throw new StreamHeaderError(`Stream header is not UTF-8 JSON: ${(error as Error).message}`);
  }
  if (typeof value !== "object" || value === null) {
    throw new StreamHeaderError("Stream header is not an object");
  }
  const { proxy, peer_addr, conn_id } = value as Record<string, unknown>;
  if (typeof proxy !== "string" || proxy.length === 0) {
    throw new StreamHeaderError("Stream header lacks `proxy`");
  }
  if (!NAME_PATTERN.test(proxy)) {
    throw new StreamHeaderError(`Stream header's proxy ${quoteForMessage(proxy)} is not a valid name`);
  }
  if (typeof peer_addr !== "string") throw new StreamHeaderError("Stream header lacks `peer_addr`");
  // "[IPv6]:port" is at most 47 characters; the rest is a peer's invention.
  if (peer_addr.length > PEER_ADDR_MAX_CHARS || unsafeCharacter(peer_addr) !== null) {
    throw new StreamHeaderError(
      `Stream header's peer_addr ${quoteForMessage(peer_addr)} is not an address (at most ` +
        `${PEER_ADDR_MAX_CHARS} characters, no control or bidi characters)`,
    );
  }
  if (typeof conn_id !== "number" || !Number.isSafeInteger(conn_id)) {
    throw new StreamHeaderError("Stream header lacks an integer `conn_id`");
  }
  return { proxy, peer_addr, conn_id };
}

/** Reads exactly `length` bytes from `conn`, or throws when it ends first. */
async function readExactly(conn: DuplexConn, length: number): Promise<Uint8Array> {
  const bytes = new Uint8Array(length);
  let offset = 0;
  while (offset < length) {
    const count = await conn.read(bytes.subarray(offset));
    if (count === null) {
      throw new StreamHeaderError(`Stream ended after ${offset} of ${length} header bytes`);
    }
    offset += count;
  }
  return bytes;
}

/**
 * Reads a header from the start of `conn`, consuming exactly its bytes, so what follows is the outside
 * connection's data.
 */
export async function readStreamHeader(conn: DuplexConn): Promise<StreamHeader> {
  const prefix = await readExactly(conn, STREAM_HEADER_PREFIX_BYTES);
  if (prefix[0] !== STREAM_HEADER_VERSION) {
    throw new StreamHeaderError(`Stream header version ${prefix[0]} is not ${STREAM_HEADER_VERSION}`);
  }
  const length = new DataView(prefix.buffer).getUint16(1);
  if (length === 0 || length > STREAM_HEADER_MAX_BYTES) {
    throw new StreamHeaderError(`Stream header length ${length} is outside 1-${STREAM_HEADER_MAX_BYTES}`);
  }
  return decodeStreamHeaderBody(await readExactly(conn, length));
}

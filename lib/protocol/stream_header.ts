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

import { z } from "zod";
import type { DuplexConn } from "../net/conn.ts";
import { describeMessageError, wireName, wireText } from "./fields.ts";

/** Version byte of the stream header. */
export const STREAM_HEADER_VERSION = 1;
/** Largest JSON body of a stream header. */
export const STREAM_HEADER_MAX_BYTES = 4096;
/** Longest `peer_addr` accepted ("[IPv6]:port" needs at most 47 characters). */
export const PEER_ADDR_MAX_CHARS = 64;
/** Fixed prefix: version byte + u16 length. */
export const STREAM_HEADER_PREFIX_BYTES = 3;

/**
 * What the server tells the client about an outside connection: the header's JSON body, checked by the
 * client against this schema (unknown fields are dropped).
 */
export const StreamHeader = z.object({
  /** Name of the proxy the connection arrived on: a name. */
  proxy: wireName,
  /** Outside peer as "host:port" (IPv6 in brackets; at most 47 characters, the rest is a peer's invention). */
  peer_addr: wireText(1, PEER_ADDR_MAX_CHARS),
  /** The connection's number among its proxy's, from 1, for correlating logs and `proxy_connect_result`. */
  conn_id: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
});
/** What the server tells the client about an outside connection. */
export type StreamHeader = z.infer<typeof StreamHeader>;

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
  const header = StreamHeader.safeParse(value);
  if (!header.success) {
    throw new StreamHeaderError(`Stream header is malformed: ${describeMessageError(header.error)}`);
  }
  return header.data;
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

/**
 * The open request at the start of every stream the **client** opens after authenticating (visitors,
 * forwarders), and the server's reply on the same stream. Specified in README.md §5b.
 *
 * ```
 * +---------+-----------------------------+----------------------------------+
 * | version | length (u16 BE, 1-4096)     | JSON (UTF-8), length bytes       |
 * |  0x02   |                             | {"kind":"visit",...} / {"ok":..} |
 * +---------+-----------------------------+----------------------------------+
 * ```
 *
 * The request and the reply share the framing; the version byte 0x02 differs from the stream header's 0x01,
 * so a stream in the wrong direction or of the wrong kind is told apart by its first byte.
 *
 * @module
 */

import { z } from "zod";
import type { DuplexConn } from "../net/conn.ts";
import { describeMessageError, wireHost, wireName, wireReportCut, wireText } from "./fields.ts";

/** Version byte of an open request and of its reply. */
export const OPEN_REQUEST_VERSION = 2;
/** Largest JSON body of an open request or reply. */
export const OPEN_REQUEST_MAX_BYTES = 4096;
/** Fixed prefix: version byte + u16 length. */
export const OPEN_REQUEST_PREFIX_BYTES = 3;
/** Longest `secret_key` a visit request carries. */
export const SECRET_KEY_MAX_CHARS = 1024;
/** Longest destination host name (RFC 1035's 253) a forward request carries. */
export const FORWARD_HOST_MAX_CHARS = 253;
/** Longest `reason` of a refusal (longer is cut with `…`). */
export const OPEN_REASON_MAX_CHARS = 512;

/**
 * Who reaches a proxy: `public` (bound on the server), `private` (not bound; visitors only, by
 * `(name, publish_port)`), `both`.
 */
export const PROXY_VISIBILITIES = ["public", "private", "both"] as const;

/** The kinds of client-opened stream. */
export const OPEN_KINDS = ["visit", "forward"] as const;
/** A kind of client-opened stream. */
export type OpenKind = typeof OPEN_KINDS[number];

/** A visitor asks for a private proxy of another client, named as the Rust tool does: `(name, publish_port)`. */
export const VisitRequest = z.object({
  /** Always `"visit"`. */
  kind: z.literal("visit"),
  /** The target proxy's name. */
  name: wireName,
  /** The target proxy's `publish_port` (its registered port, bound or not). */
  publish_port: z.number().int().min(0).max(65535),
  /** The owning client's name, when several clients have a proxy of this name and port. */
  client: wireName.optional(),
  /** The proxy's `secret_key`, when it has one. */
  secret_key: wireText(1, SECRET_KEY_MAX_CHARS).optional(),
});
/** A visitor asks for a private proxy of another client. */
export type VisitRequest = z.infer<typeof VisitRequest>;

/** A forwarder asks the server to connect to `host:port` and carry the bytes. */
export const ForwardRequest = z.object({
  /** Always `"forward"`. */
  kind: z.literal("forward"),
  /** The client's `[[forwarders]]` name (logs, metrics). */
  forwarder: wireName,
  /** The destination: an IP address or host name (the server resolves it, never blocking). */
  host: wireHost.pipe(z.string().max(FORWARD_HOST_MAX_CHARS)),
  /** The destination port, 1–65535. */
  port: z.number().int().min(1).max(65535),
});
/** A forwarder asks the server to connect to `host:port`. */
export type ForwardRequest = z.infer<typeof ForwardRequest>;

/** Any open request, told apart by `kind`. */
export const OpenRequest = z.discriminatedUnion("kind", [VisitRequest, ForwardRequest]);
/** Any open request. */
export type OpenRequest = z.infer<typeof OpenRequest>;

/** Why the server refused an open request. */
export const OPEN_REFUSAL_CODES = [
  "NOT_FOUND",
  "DENIED",
  "DISABLED",
  "FORBIDDEN_DESTINATION",
  "UNREACHABLE",
  "RATE_LIMITED",
  "LIMIT",
  "BAD_REQUEST",
] as const;
/** Why the server refused an open request. */
export type OpenRefusalCode = typeof OPEN_REFUSAL_CODES[number];

/** The server's reply: `{"ok":true}`, then bytes both ways; or a refusal, then the server closes the stream. */
export const OpenReply = z.discriminatedUnion("ok", [
  z.object({ ok: z.literal(true) }),
  z.object({
    ok: z.literal(false),
    code: z.enum(OPEN_REFUSAL_CODES),
    reason: wireReportCut(OPEN_REASON_MAX_CHARS),
  }),
]);
/** The server's reply to an open request. */
export type OpenReply = z.infer<typeof OpenReply>;
/** A refusal: the `ok: false` reply. */
export type OpenRefusal = Extract<OpenReply, { ok: false }>;

/** The bytes at the start of a client-opened stream (or its reply) are not a valid open request (reply). */
export class OpenRequestError extends Error {
  override name = "OpenRequestError";
  /** The refusal code a server answers this with: `BAD_REQUEST`. */
  readonly code: OpenRefusalCode = "BAD_REQUEST";
}

/** Shared by every request: one per stream would be garbage on the connection-setup path. */
const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

function encodeFrame(value: unknown, what: string): Uint8Array {
  const body = utf8Encoder.encode(JSON.stringify(value));
  if (body.length > OPEN_REQUEST_MAX_BYTES) {
    throw new OpenRequestError(`${what} of ${body.length} bytes exceeds ${OPEN_REQUEST_MAX_BYTES}`);
  }
  const bytes = new Uint8Array(OPEN_REQUEST_PREFIX_BYTES + body.length);
  bytes[0] = OPEN_REQUEST_VERSION;
  new DataView(bytes.buffer).setUint16(1, body.length);
  bytes.set(body, OPEN_REQUEST_PREFIX_BYTES);
  return bytes;
}

function parseJson(body: Uint8Array, what: string): unknown {
  try {
    return JSON.parse(utf8Decoder.decode(body));
  } catch (error) {
    throw new OpenRequestError(`${what} is not UTF-8 JSON: ${(error as Error).message}`);
  }
}

/** Encodes an open request into its wire bytes (checked against the schema first). */
export function encodeOpenRequest(request: OpenRequest): Uint8Array {
  const checked = OpenRequest.safeParse(request);
  if (!checked.success) {
    throw new OpenRequestError(`Open request is malformed: ${describeMessageError(checked.error)}`);
  }
  return encodeFrame(checked.data, "Open request");
}

/** Encodes the server's reply into its wire bytes (a refusal's reason is cut to its bound). */
export function encodeOpenReply(reply: OpenReply): Uint8Array {
  const value = reply.ok ? { ok: true } : {
    ok: false,
    code: reply.code,
    reason: reply.reason.length > OPEN_REASON_MAX_CHARS
      ? `${reply.reason.slice(0, OPEN_REASON_MAX_CHARS)}…`
      : reply.reason,
  };
  return encodeFrame(value, "Open reply");
}

/**
 * Parses an open request's JSON body, validating every field. An unknown `kind` is refused with a message
 * that names it (escaped), so the server can answer `BAD_REQUEST` saying which kind it does not know.
 */
export function decodeOpenRequestBody(body: Uint8Array): OpenRequest {
  const value = parseJson(body, "Open request");
  const request = OpenRequest.safeParse(value);
  if (!request.success) {
    throw new OpenRequestError(`Open request is malformed: ${describeMessageError(request.error)}`);
  }
  return request.data;
}

/** Parses the server's reply body, validating every field (the reason comes back escaped). */
export function decodeOpenReplyBody(body: Uint8Array): OpenReply {
  const value = parseJson(body, "Open reply");
  const reply = OpenReply.safeParse(value);
  if (!reply.success) {
    throw new OpenRequestError(`Open reply is malformed: ${describeMessageError(reply.error)}`);
  }
  return reply.data;
}

/** Reads exactly `length` bytes from `conn`, or throws when it ends first. */
async function readExactly(conn: DuplexConn, length: number, what: string): Promise<Uint8Array> {
  const bytes = new Uint8Array(length);
  let offset = 0;
  while (offset < length) {
    const count = await conn.read(bytes.subarray(offset));
    if (count === null) {
      throw new OpenRequestError(`Stream ended after ${offset} of ${length} ${what} bytes`);
    }
    offset += count;
  }
  return bytes;
}

async function readFrame(conn: DuplexConn, what: string): Promise<Uint8Array> {
  const prefix = await readExactly(conn, OPEN_REQUEST_PREFIX_BYTES, what);
  if (prefix[0] !== OPEN_REQUEST_VERSION) {
    throw new OpenRequestError(`${what} version ${prefix[0]} is not ${OPEN_REQUEST_VERSION}`);
  }
  const length = new DataView(prefix.buffer).getUint16(1);
  if (length === 0 || length > OPEN_REQUEST_MAX_BYTES) {
    throw new OpenRequestError(`${what} length ${length} is outside 1-${OPEN_REQUEST_MAX_BYTES}`);
  }
  return await readExactly(conn, length, what);
}

/**
 * Reads an open request from the start of `conn`, consuming exactly its bytes, so what follows is the
 * carried connection's data. The caller bounds the wait (the server closes a stream that does not send
 * its request in time).
 */
export async function readOpenRequest(conn: DuplexConn): Promise<OpenRequest> {
  return decodeOpenRequestBody(await readFrame(conn, "Open request"));
}

/** Reads the server's reply from `conn`, consuming exactly its bytes. */
export async function readOpenReply(conn: DuplexConn): Promise<OpenReply> {
  return decodeOpenReplyBody(await readFrame(conn, "Open reply"));
}

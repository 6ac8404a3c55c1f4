/**
 * WebSocket (RFC 6455) as the `"wss"` transport needs it: the HTTP/1.1 upgrade on both sides, with bounds,
 * and {@linkcode WebSocketConn}, which carries one byte stream (yamux) in binary messages over any
 * {@linkcode DuplexConn} (TLS, or plain TCP behind a TLS-terminating proxy).
 *
 * The byte stream is the concatenation of the payloads of the binary messages, in order; message
 * boundaries mean nothing. A text message, a reserved opcode or RSV bit, an unmasked frame from a client
 * (or a masked one from a server), a control frame over 125 bytes and a message over
 * {@linkcode MAX_MESSAGE_BYTES} each end the connection with the matching close code. A ping is answered
 * with a pong; a close frame is the end of the peer's stream (half-close: `closeWrite()` sends ours).
 *
 * @module
 */

import type { DuplexConn } from "../net/conn.ts";

/** Largest message (all its fragments) a peer may send; past it the connection closes with 1009. */
export const MAX_MESSAGE_BYTES = 1024 * 1024;
/** Payload of the frames this side writes: a larger `write` is cut into frames of this size. */
export const MAX_WRITE_FRAME_BYTES = 256 * 1024;
/** Largest HTTP request or response head (request line and headers) read during the upgrade. */
export const MAX_HTTP_HEAD_BYTES = 8 * 1024;
/** Most header lines in that head. */
export const MAX_HTTP_HEADERS = 64;

const WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const OPCODE_CONTINUATION = 0x0;
const OPCODE_TEXT = 0x1;
const OPCODE_BINARY = 0x2;
const OPCODE_CLOSE = 0x8;
const OPCODE_PING = 0x9;
const OPCODE_PONG = 0xa;

/** The peer broke the WebSocket protocol; the connection has been closed with {@linkcode closeCode}. */
export class WebSocketProtocolError extends Error {
  override name = "WebSocketProtocolError";
  constructor(message: string, /** The close code sent (1002, 1003, 1009). */ readonly closeCode: number) {
    super(message);
  }
}

/** An HTTP head that did not fit its bounds or could not be parsed; `status` is what a server answers. */
export class HttpHeadError extends Error {
  override name = "HttpHeadError";
  constructor(message: string, /** 400 or 431. */ readonly status: number) {
    super(message);
  }
}

/** A parsed HTTP/1.1 request or response head: the start line and the headers (names lower-cased). */
export interface HttpHead {
  /** The first line, e.g. `GET /tunnel HTTP/1.1` or `HTTP/1.1 101 Switching Protocols`. */
  readonly startLine: string;
  /** Header values by lower-cased name; repeated headers joined with `, ` as HTTP allows. */
  readonly headers: ReadonlyMap<string, string>;
  /** Bytes read past the head (the first frames); may be empty. */
  readonly rest: Uint8Array;
}

/**
 * Reads an HTTP head (up to the empty line) from `conn`, at most {@linkcode MAX_HTTP_HEAD_BYTES} and
 * {@linkcode MAX_HTTP_HEADERS} lines; the caller bounds the time (by closing `conn`).
 *
 * @throws {HttpHeadError} when the head is too large (431), malformed (400) or the stream ends first
 */
export async function readHttpHead(conn: DuplexConn): Promise<HttpHead> {
  const buffer = new Uint8Array(MAX_HTTP_HEAD_BYTES + 4096);
  let filled = 0;
  let scanFrom = 0;
  for (;;) {
    const count = await conn.read(buffer.subarray(filled));
    if (count === null) {
      throw new HttpHeadError("the connection ended before the HTTP head was complete", 400);
    }
    filled += count;
    const end = indexOfHeadEnd(buffer, Math.max(0, scanFrom - 3), filled);
    if (end >= 0) {
      if (end > MAX_HTTP_HEAD_BYTES) throw tooLarge();
      return { ...parseHead(buffer.subarray(0, end)), rest: buffer.slice(end + 4, filled) };
    }
    if (filled > MAX_HTTP_HEAD_BYTES) throw tooLarge();
    scanFrom = filled;
  }
}

function tooLarge(): HttpHeadError {
  return new HttpHeadError(`the HTTP head is larger than ${MAX_HTTP_HEAD_BYTES} bytes`, 431);
}

function indexOfHeadEnd(buffer: Uint8Array, from: number, to: number): number {
  for (let index = from; index + 3 < to; index++) {
    if (
      buffer[index] === 13 && buffer[index + 1] === 10 && buffer[index + 2] === 13 && buffer[index + 3] === 10
    ) {
      return index;
    }
  }
  return -1;
}

function parseHead(bytes: Uint8Array): Omit<HttpHead, "rest"> {
  // latin1: every byte is one character, so nothing in the head can fail to decode.
  const lines = new TextDecoder("latin1").decode(bytes).split("\r\n");
  const startLine = lines[0] ?? "";
  if (lines.length - 1 > MAX_HTTP_HEADERS) {
    throw new HttpHeadError(`the HTTP head has more than ${MAX_HTTP_HEADERS} headers`, 431);
  }
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    const name = line.slice(0, colon).toLowerCase();
    if (colon <= 0 || !/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(name)) {
      throw new HttpHeadError(`malformed HTTP header line ${JSON.stringify(line.slice(0, 80))}`, 400);
    }
    const value = line.slice(colon + 1).trim();
    const previous = headers.get(name);
    headers.set(name, previous === undefined ? value : `${previous}, ${value}`);
  }
  return { startLine, headers };
}

/** Whether the comma-separated header value `list` holds `token` (case-insensitive). */
export function headerHasToken(list: string | undefined, token: string): boolean {
  return list !== undefined && list.split(",").some((item) => item.trim().toLowerCase() === token);
}

/** `Sec-WebSocket-Accept` for the client's `Sec-WebSocket-Key`. */
export async function webSocketAccept(key: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-1", new TextEncoder().encode(key + WEBSOCKET_GUID));
  return btoa(String.fromCharCode(...new Uint8Array(digest)));
}

/** XORs `data` in place with the 4-byte `mask`, as if `data` started at byte `position` of the payload. */
export function applyMask(data: Uint8Array, mask: Uint8Array, position: number): void {
  let index = 0;
  const length = data.length;
  // Byte by byte until 4-byte aligned in memory, then 32 bits at a time with the mask rotated to the
  // payload position there (frames and reads start anywhere: a 14-byte header, a partial read).
  while (index < length && (data.byteOffset + index) % 4 !== 0) {
    data[index] = (data[index] ?? 0) ^ (mask[(position + index) % 4] ?? 0);
    index++;
  }
  const words = (length - index) >>> 2;
  if (words > 0) {
    const word = new Uint32Array(data.buffer, data.byteOffset + index, words);
    const shift = position + index;
    // The rotated mask as the platform reads 4 bytes into a 32-bit word (any endianness).
    const key = new Uint32Array(
      new Uint8Array([0, 1, 2, 3].map((offset) => mask[(shift + offset) % 4] ?? 0)).buffer,
    )[0] ?? 0;
    for (let w = 0; w < words; w++) word[w] = (word[w] ?? 0) ^ key;
    index += words * 4;
  }
  while (index < length) {
    data[index] = (data[index] ?? 0) ^ (mask[(position + index) % 4] ?? 0);
    index++;
  }
}

/** Which end of the WebSocket this is: a client masks what it sends, a server requires masked frames. */
export type WebSocketRole = "client" | "server";

/**
 * A byte stream carried in binary WebSocket messages over `inner` (after the upgrade). Reads deliver the
 * payloads in order; writes send binary frames of at most {@linkcode MAX_WRITE_FRAME_BYTES}.
 */
export class WebSocketConn implements DuplexConn {
  readonly #inner: DuplexConn;
  readonly #role: WebSocketRole;
  /** Received bytes not parsed yet: `#buffer[#start, #end)`. */
  #buffer = new Uint8Array(64 * 1024);
  #start = 0;
  #end = 0;
  /** Payload bytes of the current data frame still to deliver, its mask and the position in it. */
  #payloadLeft = 0;
  #mask: Uint8Array | null = null;
  #maskPosition = 0;
  /** Bytes of the current message so far (all fragments) and whether one is in progress. */
  #messageBytes = 0;
  #inMessage = false;
  #peerClosed = false;
  #closeSent = false;
  #pongPending = false;
  #error: Error | null = null;
  /** Serialises writes: each frame goes out whole, even over a short-writing `inner`. */
  #writing: Promise<unknown> = Promise.resolve();

  /** Wraps `inner` after the upgrade; `initial` are bytes already read past the HTTP head. */
  constructor(inner: DuplexConn, role: WebSocketRole, initial: Uint8Array = new Uint8Array(0)) {
    this.#inner = inner;
    this.#role = role;
    if (initial.length > this.#buffer.length) this.#buffer = new Uint8Array(initial.length);
    this.#buffer.set(initial);
    this.#end = initial.length;
  }

  /** Reads payload bytes of binary messages; `null` once the peer sent its close frame or left. */
  async read(target: Uint8Array): Promise<number | null> {
    for (;;) {
      if (this.#error) throw this.#error;
      if (this.#payloadLeft > 0) {
        if (this.#end === this.#start) {
          // Nothing buffered: bulk payload goes from `inner` straight into the caller's buffer (one copy
          // less), never past this frame's payload.
          const count = await this.#inner.read(
            target.subarray(0, Math.min(target.length, this.#payloadLeft)),
          );
          if (count === null) return null;
          return this.#took(target.subarray(0, count));
        }
        const take = Math.min(this.#payloadLeft, this.#end - this.#start, target.length);
        target.set(this.#buffer.subarray(this.#start, this.#start + take));
        this.#start += take;
        return this.#took(target.subarray(0, take));
      }
      if (this.#peerClosed) return null;
      // A control frame was handled, or a data frame's payload is ready: loop (never recurse, so a flood
      // of pings or empty frames costs time, not a growing chain of promises).
      if ((await this.#nextFrame()) === "end") return null;
    }
  }

  /** Unmasks `payload` (bytes of the current frame now in the caller's buffer); returns its length. */
  #took(payload: Uint8Array): number {
    if (this.#mask) applyMask(payload, this.#mask, this.#maskPosition);
    this.#payloadLeft -= payload.length;
    this.#maskPosition += payload.length;
    return payload.length;
  }

  /** Reads more bytes from `inner` into the buffer; false at its end of stream. */
  async #fill(): Promise<boolean> {
    if (this.#start === this.#end) this.#start = this.#end = 0;
    else if (this.#buffer.length - this.#end < 4096) {
      // Room for a whole read again: move the unread tail to the front.
      this.#buffer.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
    }
    const count = await this.#inner.read(this.#buffer.subarray(this.#end));
    if (count === null) return false;
    this.#end += count;
    return true;
  }

  /** Ensures `bytes` unparsed bytes are buffered; false if the stream ended first. */
  async #need(bytes: number): Promise<boolean> {
    while (this.#end - this.#start < bytes) {
      if (!(await this.#fill())) return false;
    }
    return true;
  }

  /**
   * Parses the next frame header and handles a control frame whole: `"end"` at end of stream (a close
   * frame, or `inner` ended), `"control"` after a ping or pong, `"data"` once a data frame's payload is
   * ready to be read.
   */
  async #nextFrame(): Promise<"end" | "control" | "data"> {
    if (!(await this.#need(2))) return "end";
    const first = this.#buffer[this.#start] ?? 0;
    const second = this.#buffer[this.#start + 1] ?? 0;
    const fin = (first & 0x80) !== 0;
    const opcode = first & 0x0f;
    const masked = (second & 0x80) !== 0;
    let length = second & 0x7f;
    const headerBytes = 2 + (length === 126 ? 2 : length === 127 ? 8 : 0) + (masked ? 4 : 0);
    if (!(await this.#need(headerBytes))) return "end";
    const view = new DataView(this.#buffer.buffer, this.#buffer.byteOffset + this.#start + 2);
    if (length === 126) length = view.getUint16(0);
    else if (length === 127) {
      const big = view.getBigUint64(0);
      length = big > BigInt(MAX_MESSAGE_BYTES) ? MAX_MESSAGE_BYTES + 1 : Number(big);
    }
    if ((first & 0x70) !== 0) this.#fail("a frame has reserved bits set (no extension was agreed)", 1002);
    if (masked !== (this.#role === "server")) {
      this.#fail(this.#role === "server" ? "a client frame is not masked" : "a server frame is masked", 1002);
    }
    const mask = masked ? this.#buffer.slice(this.#start + headerBytes - 4, this.#start + headerBytes) : null;
    this.#start += headerBytes;
    if (opcode >= 0x8) return (await this.#controlFrame(opcode, fin, length, mask)) ? "control" : "end";
    if (opcode === OPCODE_TEXT) {
      this.#fail("a text message arrived; the tunnel is carried in binary messages", 1003);
    }
    if (opcode !== OPCODE_BINARY && opcode !== OPCODE_CONTINUATION) {
      this.#fail(`a frame has the reserved opcode ${opcode}`, 1002);
    }
    if ((opcode === OPCODE_CONTINUATION) !== this.#inMessage) {
      this.#fail(
        opcode === OPCODE_CONTINUATION
          ? "a continuation frame starts no message"
          : "a new message interrupts a fragmented one",
        1002,
      );
    }
    this.#messageBytes = (this.#inMessage ? this.#messageBytes : 0) + length;
    if (this.#messageBytes > MAX_MESSAGE_BYTES) {
      this.#fail(`a message exceeds ${MAX_MESSAGE_BYTES} bytes`, 1009);
    }
    this.#inMessage = !fin;
    this.#payloadLeft = length;
    this.#mask = mask;
    this.#maskPosition = 0;
    return "data";
  }

  async #controlFrame(
    opcode: number,
    fin: boolean,
    length: number,
    mask: Uint8Array | null,
  ): Promise<boolean> {
    if (!fin || length > 125) this.#fail("a control frame is fragmented or longer than 125 bytes", 1002);
    if (!(await this.#need(length))) return false;
    const payload = this.#buffer.slice(this.#start, this.#start + length);
    this.#start += length;
    if (mask) applyMask(payload, mask, 0);
    if (opcode === OPCODE_PING) {
      // One pong at a time (RFC 6455 allows answering only the latest ping): a peer that pings without
      // reading cannot queue pongs without bound.
      if (!this.#closeSent && !this.#pongPending) {
        this.#pongPending = true;
        void this.#send(OPCODE_PONG, payload).catch(() => {}).finally(() => (this.#pongPending = false));
      }
      return true;
    }
    if (opcode === OPCODE_PONG) return true;
    if (opcode !== OPCODE_CLOSE) this.#fail(`a frame has the reserved opcode ${opcode}`, 1002);
    this.#peerClosed = true;
    return false;
  }

  /** Sends a close frame with `code`, closes, and throws the protocol error (as the read's result). */
  #fail(message: string, code: number): never {
    const error = new WebSocketProtocolError(
      `WebSocket protocol error: ${message}; closed with ${code}`,
      code,
    );
    this.#error = error;
    const payload = new Uint8Array([code >> 8, code & 0xff]);
    void this.#send(OPCODE_CLOSE, payload).catch(() => {}).finally(() => this.#inner.close());
    this.#closeSent = true;
    throw error;
  }

  /** Writes `data` as binary frames; resolves to its length once `inner` took them. */
  async write(data: Uint8Array): Promise<number> {
    if (this.#error) throw this.#error;
    if (this.#closeSent) throw new Deno.errors.BrokenPipe("The WebSocket was half-closed (close frame sent)");
    for (let offset = 0; offset < data.length; offset += MAX_WRITE_FRAME_BYTES) {
      await this.#send(OPCODE_BINARY, data.subarray(offset, offset + MAX_WRITE_FRAME_BYTES));
    }
    return data.length;
  }

  /** One frame, header and payload in one buffer (one write: no split-write stall), masked by a client. */
  #send(opcode: number, payload: Uint8Array): Promise<void> {
    const extended = payload.length < 126 ? 0 : payload.length < 65536 ? 2 : 8;
    const maskBytes = this.#role === "client" ? 4 : 0;
    const headerBytes = 2 + extended + maskBytes;
    const frame = new Uint8Array(headerBytes + payload.length);
    frame[0] = 0x80 | opcode;
    frame[1] = (maskBytes ? 0x80 : 0) | (extended === 0 ? payload.length : extended === 2 ? 126 : 127);
    const view = new DataView(frame.buffer);
    if (extended === 2) view.setUint16(2, payload.length);
    else if (extended === 8) view.setBigUint64(2, BigInt(payload.length));
    frame.set(payload, headerBytes);
    if (maskBytes) {
      const mask = crypto.getRandomValues(new Uint8Array(4));
      frame.set(mask, 2 + extended);
      applyMask(frame.subarray(headerBytes), mask, 0);
    }
    const sent = this.#writing.then(() => writeWhole(this.#inner, frame));
    this.#writing = sent.catch(() => {});
    return sent;
  }

  /** Half-close: sends a close frame (1000); the peer reads end of stream, and reading goes on. */
  async closeWrite(): Promise<void> {
    if (this.#closeSent) return;
    this.#closeSent = true;
    await this.#send(OPCODE_CLOSE, new Uint8Array([0x03, 0xe8]));
  }

  /** Closes the underlying connection at once. */
  close(): void {
    this.#inner.close();
  }
}

async function writeWhole(conn: DuplexConn, data: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < data.length) offset += await conn.write(offset === 0 ? data : data.subarray(offset));
}

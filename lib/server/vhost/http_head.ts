/**
 * HTTP/1.x message heads and body framing for the HTTP vhost, read by hand and bounded: a request head
 * is at most {@linkcode MAX_HEAD_BYTES} with at most {@linkcode MAX_HEADER_LINES} header lines; the
 * framing of a body (RFC 9112 §6) is decided from the head, and a chunked body is followed by a
 * pass-through scanner that finds its end without buffering or changing a byte. Pure functions over
 * bytes, no sockets.
 *
 * Strictness is on the side of refusing what two parsers could read differently (request smuggling):
 * both `Transfer-Encoding` and `Content-Length`, differing `Content-Length`s, a `Transfer-Encoding`
 * whose last coding is not `chunked` on a request, obsolete line folding and control characters are
 * refused with 400.
 *
 * @module
 */

/** Largest message head (request or response line plus headers plus the blank line). */
export const MAX_HEAD_BYTES = 16 * 1024;
/** Most header lines in one head. */
export const MAX_HEADER_LINES = 100;
/** Longest chunk-size line (size, extensions) or trailer section of a chunked body. */
export const MAX_CHUNK_LINE_BYTES = 4096;

/** A head that cannot be served, with the status to answer it with. */
export class HttpHeadError extends Error {
  override name = "HttpHeadError";
  constructor(
    /** 400 malformed, 431 too large, 501 unsupported transfer coding, 505 version. */
    readonly status: 400 | 431 | 501 | 505,
    message: string,
  ) {
    super(message);
  }
}

/** One header line as received: its name in the sender's spelling, its value without surrounding spaces. */
export interface HttpHeader {
  name: string;
  value: string;
}

/** A request head. */
export interface RequestHead {
  method: string;
  /** The request target as sent (origin form `/path?q`, or absolute form `http://host/path`). */
  target: string;
  /** 0 for HTTP/1.0, 1 for HTTP/1.1. */
  minorVersion: 0 | 1;
  headers: HttpHeader[];
}

/** A response head. */
export interface ResponseHead {
  minorVersion: 0 | 1;
  status: number;
  headers: HttpHeader[];
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** Header value characters: HTAB, visible ASCII, space, obs-text. */
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const latin1 = new TextDecoder("latin1");

/**
 * Where the head at the start of `bytes` ends (the index just past its blank line), or -1 when its end
 * has not arrived. Lines may end in CRLF or a bare LF.
 */
export function findHeadEnd(bytes: Uint8Array, from = 0): number {
  for (let i = Math.max(from, 1); i < bytes.length; i++) {
    if (bytes[i] !== 0x0a) continue;
    if (bytes[i - 1] === 0x0a) return i + 1;
    if (bytes[i - 1] === 0x0d && i >= 2 && bytes[i - 2] === 0x0a) return i + 1;
  }
  return -1;
}

function splitLines(head: Uint8Array): string[] {
  const text = latin1.decode(head);
  const lines = text.split("\n").map((line) => line.endsWith("\r") ? line.slice(0, -1) : line);
  while (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  return lines;
}

function parseHeaders(lines: string[]): HttpHeader[] {
  if (lines.length > MAX_HEADER_LINES) {
    throw new HttpHeadError(431, `${lines.length} header lines; at most ${MAX_HEADER_LINES} are read`);
  }
  const headers: HttpHeader[] = [];
  for (const line of lines) {
    if (line.startsWith(" ") || line.startsWith("\t")) {
      throw new HttpHeadError(400, "obsolete line folding in a header");
    }
    const colon = line.indexOf(":");
    const name = colon > 0 ? line.slice(0, colon) : "";
    if (!TOKEN.test(name)) throw new HttpHeadError(400, "a header line without a valid name");
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "");
    if (!FIELD_VALUE.test(value)) throw new HttpHeadError(400, `header ${name} holds control characters`);
    headers.push({ name, value });
  }
  return headers;
}

function parseVersion(text: string): 0 | 1 {
  if (text === "HTTP/1.1") return 1;
  if (text === "HTTP/1.0") return 0;
  if (/^HTTP\/\d\.\d$/.test(text)) throw new HttpHeadError(505, `${text} is not served here; use HTTP/1.1`);
  throw new HttpHeadError(400, "malformed HTTP version");
}

/** Parses a request head (the bytes {@linkcode findHeadEnd} delimited). @throws {HttpHeadError} */
export function parseRequestHead(head: Uint8Array): RequestHead {
  if (head.length > MAX_HEAD_BYTES) {
    throw new HttpHeadError(431, `request head of ${head.length} bytes; at most ${MAX_HEAD_BYTES} are read`);
  }
  const [requestLine = "", ...rest] = splitLines(head);
  const parts = requestLine.split(" ");
  if (parts.length !== 3) throw new HttpHeadError(400, "malformed request line");
  const [method = "", target = "", version = ""] = parts;
  if (!TOKEN.test(method) || method.length > 32) throw new HttpHeadError(400, "malformed method");
  if (!/^[\x21-\x7e]{1,8192}$/.test(target)) throw new HttpHeadError(400, "malformed request target");
  return { method, target, minorVersion: parseVersion(version), headers: parseHeaders(rest) };
}

/** Parses a response head. @throws {HttpHeadError} (the vhost answers a malformed response with 502) */
export function parseResponseHead(head: Uint8Array): ResponseHead {
  if (head.length > MAX_HEAD_BYTES) {
    throw new HttpHeadError(431, `response head of ${head.length} bytes; at most ${MAX_HEAD_BYTES} are read`);
  }
  const [statusLine = "", ...rest] = splitLines(head);
  const match = /^(HTTP\/\d\.\d) (\d{3})(?: .*)?$/.exec(statusLine);
  if (!match) throw new HttpHeadError(400, "malformed status line");
  return {
    minorVersion: parseVersion(match[1] ?? ""),
    status: Number(match[2]),
    headers: parseHeaders(rest),
  };
}

/** The values of header `name` (any letter case), in order. */
export function headerValues(headers: readonly HttpHeader[], name: string): string[] {
  const lower = name.toLowerCase();
  return headers.filter((header) => header.name.toLowerCase() === lower).map((header) => header.value);
}

/** Whether a comma-separated header (`Connection`, `Upgrade`) lists `token`, in any letter case. */
export function headerHasToken(headers: readonly HttpHeader[], name: string, token: string): boolean {
  const lower = token.toLowerCase();
  return headerValues(headers, name).some((value) =>
    value.split(",").some((item) => item.trim().toLowerCase() === lower)
  );
}

/** How a message's body is delimited. */
export type BodyFraming =
  | { kind: "none" }
  | { kind: "length"; bytes: number }
  | { kind: "chunked" }
  /** Until the sender closes (responses only). */
  | { kind: "close" };

function contentLength(headers: readonly HttpHeader[]): number | null {
  const values = headerValues(headers, "content-length").flatMap((value) => value.split(","))
    .map((value) => value.trim());
  if (values.length === 0) return null;
  const first = values[0] ?? "";
  if (!/^\d{1,15}$/.test(first) || values.some((value) => value !== first)) {
    throw new HttpHeadError(400, "malformed or conflicting Content-Length");
  }
  return Number(first);
}

/** The last transfer coding, lower case, or null without `Transfer-Encoding`. */
function lastCoding(headers: readonly HttpHeader[]): string | null {
  const codings = headerValues(headers, "transfer-encoding").flatMap((value) => value.split(","))
    .map((value) => value.trim().toLowerCase()).filter((value) => value !== "");
  if (headerValues(headers, "transfer-encoding").length === 0) return null;
  return codings[codings.length - 1] ?? "";
}

/** The framing of a request's body. @throws {HttpHeadError} for ambiguous or unsupported framing */
export function requestFraming(head: RequestHead): BodyFraming {
  const coding = lastCoding(head.headers);
  const length = contentLength(head.headers);
  if (coding !== null) {
    if (length !== null) throw new HttpHeadError(400, "both Transfer-Encoding and Content-Length");
    if (head.minorVersion === 0) throw new HttpHeadError(400, "Transfer-Encoding in an HTTP/1.0 request");
    if (coding !== "chunked") throw new HttpHeadError(501, `transfer coding ${coding} is not chunked`);
    return { kind: "chunked" };
  }
  return length === null || length === 0 ? { kind: "none" } : { kind: "length", bytes: length };
}

/**
 * The framing of a response's body to a request of `method` (RFC 9112 §6.3). A 101 is handled by the
 * caller (the connection becomes a tunnel).
 *
 * @throws {HttpHeadError} for conflicting Content-Lengths
 */
export function responseFraming(method: string, head: ResponseHead): BodyFraming {
  if (method === "HEAD" || head.status < 200 || head.status === 204 || head.status === 304) {
    return { kind: "none" };
  }
  if (method === "CONNECT" && head.status < 300) return { kind: "close" };
  const coding = lastCoding(head.headers);
  if (coding !== null) return coding === "chunked" ? { kind: "chunked" } : { kind: "close" };
  const length = contentLength(head.headers);
  if (length === null) return { kind: "close" };
  return length === 0 ? { kind: "none" } : { kind: "length", bytes: length };
}

/** A chunked body is malformed. */
export class ChunkedBodyError extends Error {
  override name = "ChunkedBodyError";
}

const enum State {
  Size,
  Extension,
  SizeLf,
  Data,
  DataCr,
  DataLf,
  TrailerStart,
  Trailer,
  FinalLf,
  Done,
}

/**
 * Follows a chunked body as its bytes pass through, to find where it ends; never buffers or changes a
 * byte. Bounded: chunk sizes of at most 15 hex digits, size lines and trailers of at most
 * {@linkcode MAX_CHUNK_LINE_BYTES}.
 */
export class ChunkedScanner {
  #state = State.Size;
  #digits = 0;
  #size = 0;
  #lineBytes = 0;
  #trailerBytes = 0;

  /** Whether the whole body (last chunk and trailers) has passed. */
  get done(): boolean {
    return this.#state === State.Done;
  }

  /**
   * Scans `bytes`, the body's next bytes; returns how many of them belong to the body (all of them, or
   * fewer when it ended inside them).
   *
   * @throws {ChunkedBodyError} malformed or over a bound
   */
  feed(bytes: Uint8Array): number {
    let i = 0;
    while (i < bytes.length && this.#state !== State.Done) {
      if (this.#state === State.Data) {
        const take = Math.min(this.#size, bytes.length - i);
        this.#size -= take;
        i += take;
        if (this.#size === 0) this.#state = State.DataCr;
        continue;
      }
      const byte = bytes[i++] ?? 0;
      this.#step(byte);
    }
    return i;
  }

  #step(byte: number): void {
    switch (this.#state) {
      case State.Size: {
        const digit = hexValue(byte);
        if (digit >= 0) {
          if (++this.#digits > 15) throw new ChunkedBodyError("chunk size of more than 15 hex digits");
          this.#size = this.#size * 16 + digit;
          return;
        }
        if (this.#digits === 0) throw new ChunkedBodyError("chunk size missing");
        this.#lineBytes = this.#digits;
        if (byte === 0x0d) this.#state = State.SizeLf;
        else if (byte === 0x0a) this.#endSizeLine();
        else if (byte === 0x3b || byte === 0x20 || byte === 0x09) this.#state = State.Extension;
        else throw new ChunkedBodyError("malformed chunk size line");
        return;
      }
      case State.Extension:
        if (++this.#lineBytes > MAX_CHUNK_LINE_BYTES) throw new ChunkedBodyError("chunk extension too long");
        if (byte === 0x0d) this.#state = State.SizeLf;
        else if (byte === 0x0a) this.#endSizeLine();
        else if (byte < 0x20 && byte !== 0x09) throw new ChunkedBodyError("control character in chunk line");
        return;
      case State.SizeLf:
        if (byte !== 0x0a) throw new ChunkedBodyError("CR without LF in chunk size line");
        this.#endSizeLine();
        return;
      case State.DataCr:
        if (byte === 0x0a) this.#nextChunk();
        else if (byte === 0x0d) this.#state = State.DataLf;
        else throw new ChunkedBodyError("chunk data not followed by CRLF");
        return;
      case State.DataLf:
        if (byte !== 0x0a) throw new ChunkedBodyError("chunk data not followed by CRLF");
        this.#nextChunk();
        return;
      case State.TrailerStart:
        if (byte === 0x0d) this.#state = State.FinalLf;
        else if (byte === 0x0a) this.#state = State.Done;
        else {
          this.#countTrailer();
          this.#state = State.Trailer;
        }
        return;
      case State.Trailer:
        this.#countTrailer();
        if (byte === 0x0a) this.#state = State.TrailerStart;
        return;
      case State.FinalLf:
        if (byte !== 0x0a) throw new ChunkedBodyError("CR without LF after the trailers");
        this.#state = State.Done;
        return;
      default:
        return;
    }
  }

  #countTrailer(): void {
    if (++this.#trailerBytes > MAX_CHUNK_LINE_BYTES) throw new ChunkedBodyError("trailers too long");
  }

  #endSizeLine(): void {
    if (this.#size === 0) {
      this.#state = State.TrailerStart;
      return;
    }
    this.#state = State.Data;
  }

  #nextChunk(): void {
    this.#state = State.Size;
    this.#digits = 0;
    this.#size = 0;
  }
}

function hexValue(byte: number): number {
  if (byte >= 0x30 && byte <= 0x39) return byte - 0x30;
  if (byte >= 0x41 && byte <= 0x46) return byte - 0x37;
  if (byte >= 0x61 && byte <= 0x66) return byte - 0x57;
  return -1;
}

/**
 * The request head to send to the client's service: `X-Forwarded-For`/`-Proto`/`-Host` replaced by the
 * outside peer's (a value the outside sent is not kept: the vhost is the edge), the Host rewritten when
 * asked. Everything else as received, in order, with CRLF line ends.
 */
export function forwardedRequestHead(
  head: RequestHead,
  options: { peerHost: string; proto: "http" | "https"; host: string; hostRewrite?: string },
): Uint8Array {
  const dropped = new Set(["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"]);
  const lines = [`${head.method} ${head.target} HTTP/1.${head.minorVersion}`];
  for (const header of head.headers) {
    const lower = header.name.toLowerCase();
    if (dropped.has(lower)) continue;
    if (lower === "host" && options.hostRewrite !== undefined) {
      lines.push(`${header.name}: ${options.hostRewrite}`);
      continue;
    }
    lines.push(`${header.name}: ${header.value}`);
  }
  lines.push(`X-Forwarded-For: ${options.peerHost}`);
  lines.push(`X-Forwarded-Proto: ${options.proto}`);
  lines.push(`X-Forwarded-Host: ${options.host}`);
  const text = lines.join("\r\n") + "\r\n\r\n";
  // Header values may hold obs-text (bytes 0x80-0xff, read as latin1): written back as the same bytes.
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i) & 0xff;
  return bytes;
}

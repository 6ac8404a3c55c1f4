/**
 * The local HTTP proxy of a `proxy_type = "http"` forwarder: reads one request head from a local
 * application and says where it goes. Two forms (RFC 9110 §9.3.6, RFC 9112 §3.2.2):
 *
 * - `CONNECT host:port HTTP/1.1`: a tunnel; answered `200 Connection Established` once the destination is
 *   reached, then bytes both ways (HTTPS, or anything else).
 * - an absolute-URI request (`GET http://host:port/path HTTP/1.1`): the head is rewritten to origin-form
 *   (`GET /path HTTP/1.1`, `Host` set to the URI's authority, hop-by-hop fields dropped) and sent to the
 *   destination with `Connection: close`. **One request per connection**: the origin closes after its
 *   answer, so a keep-alive client opens a new connection (and a new forwarded stream) per request; bytes
 *   pipelined after the first request go to the same origin unrewritten, which an origin that honours
 *   `Connection: close` ignores.
 *
 * The head is read within {@linkcode MAX_HEAD_BYTES} and {@linkcode HEAD_TIMEOUT_MS} in all; every field is
 * checked (token characters, no line folding, no control bytes, at most {@linkcode MAX_HEADER_FIELDS}
 * fields, one unambiguous body length), and what fails is answered with a status and a reason body.
 * With `username`/`password` set, `Proxy-Authorization: Basic` must carry them (compared in constant time)
 * or the answer is 407.
 *
 * @module
 */

import { formatHostPort, isHost, isIpv6 } from "../net/address.ts";
import { secretsEqual } from "../text.ts";
import { type ForwardFailure, type HeadReader, HTTP_FAILURE_STATUS } from "./forwarder_head.ts";

export { HEAD_TIMEOUT_MS, MAX_HEAD_BYTES } from "./forwarder_head.ts";

/** Most header fields of one request. */
export const MAX_HEADER_FIELDS = 100;

/** The answer to a CONNECT whose destination was reached. */
export const CONNECT_ESTABLISHED: Uint8Array = new TextEncoder().encode(
  "HTTP/1.1 200 Connection Established\r\n\r\n",
);

/** Where a local application's request goes, and what to send first. */
export interface HttpProxyRequest {
  /** `"connect"`: a tunnel; `"forward"`: one rewritten request. */
  kind: "connect" | "forward";
  /** Destination host (an IPv6 address without brackets). */
  host: string;
  /** Destination port. */
  port: number;
  /** For `"forward"`: the rewritten head, to send to the destination before anything else. */
  head: Uint8Array | null;
}

/** User name and password the proxy requires. */
export interface ProxyCredentials {
  /** User name. */
  username: string;
  /** Password. */
  password: string;
}

/** The request head could not be accepted; `failure` is the answer. */
export class HttpProxyRefusal extends Error {
  override name = "HttpProxyRefusal";
  constructor(readonly failure: ForwardFailure) {
    super(failure.reason);
  }
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const REQUEST_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) ([\x21-\x7e]+) HTTP\/1\.([01])$/;
/** Hop-by-hop fields (RFC 9110 §7.6.1) and the proxy's own, never passed to the origin. */
const HOP_BY_HOP = new Set([
  "connection",
  "proxy-connection",
  "keep-alive",
  "proxy-authorization",
  "proxy-authenticate",
  "te",
  "trailer",
  "upgrade",
]);

function refuse(kind: ForwardFailure["kind"], reason: string): never {
  throw new HttpProxyRefusal({ kind, reason });
}

/** `host:port` or `[v6]:port` → its parts (port required), or null. */
export function parseAuthority(text: string, defaultPort?: number): { host: string; port: number } | null {
  const match = /^\[([0-9A-Fa-f:.]+)\](?::(\d{1,5}))?$/.exec(text) ??
    /^([^:\[\]@]+)(?::(\d{1,5}))?$/.exec(text);
  if (match === null) return null;
  const host = match[1] ?? "";
  const portText = match[2];
  if (text.startsWith("[") ? !isIpv6(host) : !isHost(host)) return null;
  const port = portText === undefined ? defaultPort : Number(portText);
  if (port === undefined || !Number.isInteger(port) || port < 1 || port > 65535) return null;
  return { host, port };
}

/** One header field as received. */
interface Field {
  name: string;
  lower: string;
  value: string;
}

/**
 * Parses a request head (Latin-1 text, up to and including its blank line) into where it goes; throws
 * {@linkcode HttpProxyRefusal} with the answer when it is not acceptable.
 */
export function parseHttpProxyHead(text: string, credentials: ProxyCredentials | null): HttpProxyRequest {
  const lines = text.replace(/\r?\n\r?\n$/, "").split(/\r?\n/);
  const requestLine = lines.shift() ?? "";
  const request = REQUEST_LINE.exec(requestLine);
  if (request === null) refuse("bad_request", "the request line is not `METHOD target HTTP/1.x`");
  const [, method = "", target = "", minor = "1"] = request;
  if (lines.length > MAX_HEADER_FIELDS) {
    refuse("bad_request", `the request has ${lines.length} header fields; at most ${MAX_HEADER_FIELDS}`);
  }
  const fields: Field[] = [];
  for (const line of lines) {
    if (/^[ \t]/.test(line)) refuse("bad_request", "folded header lines (obs-fold) are not accepted");
    const colon = line.indexOf(":");
    const name = colon > 0 ? line.slice(0, colon) : "";
    // Control characters other than tab (CR, NUL, DEL…) in a value are how requests get smuggled.
    // deno-lint-ignore no-control-regex -- control bytes are exactly what is looked for
    if (!TOKEN.test(name) || /[\x00-\x08\x0a-\x1f\x7f]/.test(line)) {
      refuse("bad_request", "a header field is malformed");
    }
    fields.push({ name, lower: name.toLowerCase(), value: line.slice(colon + 1).trim() });
  }
  if (credentials !== null) checkCredentials(fields, credentials);
  if (method === "CONNECT") {
    const authority = parseAuthority(target);
    if (authority === null) refuse("bad_request", "CONNECT needs a target `host:port`");
    return { kind: "connect", ...authority, head: null };
  }
  if (/^https:\/\//i.test(target)) {
    refuse("bad_request", "an https:// URI must be reached with CONNECT (the proxy does not speak TLS)");
  }
  const uri = /^http:\/\/([^\/?#]*)([\/?][^#]*)?(?:#.*)?$/i.exec(target);
  if (uri === null) {
    refuse("bad_request", "this is a proxy: send CONNECT host:port, or an absolute http:// URI");
  }
  const authorityText = uri[1] ?? "";
  const authority = parseAuthority(authorityText, 80);
  if (authority === null) refuse("bad_request", "the URI's host (or port) is not valid");
  const path = uri[2] ?? "/";
  checkBodyLength(fields);
  const listed = new Set(
    fields.filter((field) => field.lower === "connection")
      .flatMap((field) => field.value.split(",").map((token) => token.trim().toLowerCase())),
  );
  const kept = fields.filter((field) =>
    !HOP_BY_HOP.has(field.lower) && !listed.has(field.lower) && field.lower !== "host"
  );
  const head = [
    `${method} ${path.startsWith("?") ? `/${path}` : path} HTTP/1.${minor}`,
    `Host: ${authorityText}`,
    ...kept.map((field) => `${field.name}: ${field.value}`),
    "Connection: close",
    "",
    "",
  ].join("\r\n");
  return { kind: "forward", ...authority, head: latin1Bytes(head) };
}

/** Refuses a request whose body length two parsers could read differently (request smuggling). */
function checkBodyLength(fields: Field[]): void {
  const lengths = fields.filter((field) => field.lower === "content-length").map((field) => field.value);
  const encodings = fields.filter((field) => field.lower === "transfer-encoding");
  if (lengths.length > 0 && encodings.length > 0) {
    refuse("bad_request", "Content-Length and Transfer-Encoding together are not accepted");
  }
  if (lengths.some((value) => !/^\d{1,15}$/.test(value)) || new Set(lengths).size > 1) {
    refuse("bad_request", "Content-Length is malformed or given twice with different values");
  }
  const codings = encodings.flatMap((field) =>
    field.value.split(",").map((coding) => coding.trim().toLowerCase())
  );
  if (codings.length > 0 && codings[codings.length - 1] !== "chunked") {
    refuse("bad_request", "a request's Transfer-Encoding must end with chunked");
  }
}

function checkCredentials(fields: Field[], credentials: ProxyCredentials): void {
  const header = fields.find((field) => field.lower === "proxy-authorization")?.value ?? "";
  const basic = /^Basic +([A-Za-z0-9+/]+={0,2})$/i.exec(header);
  let presented = "";
  if (basic !== null) {
    try {
      const bytes = Uint8Array.from(atob(basic[1] ?? ""), (char) => char.charCodeAt(0));
      presented = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch {
      presented = "";
    }
  }
  const expected = `${credentials.username}:${credentials.password}`;
  if (!secretsEqual(presented, expected)) {
    refuse(
      "auth_required",
      header === "" ? "this proxy needs a user name and password" : "the user name or password is wrong",
    );
  }
}

function latin1Bytes(text: string): Uint8Array {
  return Uint8Array.from(text, (char) => char.charCodeAt(0) & 0xff);
}

/**
 * Reads the request head through `reader` and parses it ({@linkcode parseHttpProxyHead}). What the
 * application sent after the head stays in the reader (`rest()`).
 *
 * @throws {HttpProxyRefusal} for a request to refuse
 * @throws {HeadError} when the head is too large, too slow, or the connection ended
 */
export async function readHttpProxyRequest(
  reader: HeadReader,
  credentials: ProxyCredentials | null,
): Promise<HttpProxyRequest> {
  const head = await reader.httpHead("the request head");
  return parseHttpProxyHead(String.fromCharCode(...head), credentials);
}

/** The answer for a failure: its status, a one-line reason body, `Connection: close`. */
export function httpFailureResponse(failure: ForwardFailure): Uint8Array {
  const [status, phrase] = HTTP_FAILURE_STATUS[failure.kind];
  // deno-lint-ignore no-control-regex -- a reason never carries a line break into the answer
  const body = new TextEncoder().encode(`${failure.reason.replace(/[\x00-\x1f\x7f]/g, " ")}\n`);
  const lines = [
    `HTTP/1.1 ${status} ${phrase}`,
    "Content-Type: text/plain; charset=utf-8",
    `Content-Length: ${body.length}`,
    "Connection: close",
    "X-Tls-Tunnel-Result: " + failure.kind,
  ];
  if (failure.kind === "auth_required") lines.push(`Proxy-Authenticate: Basic realm="tls-tunnel"`);
  const head = new TextEncoder().encode(`${lines.join("\r\n")}\r\n\r\n`);
  const bytes = new Uint8Array(head.length + body.length);
  bytes.set(head);
  bytes.set(body, head.length);
  return bytes;
}

/** `host:port` of a request, for logs. */
export function describeHttpTarget(request: Pick<HttpProxyRequest, "host" | "port">): string {
  return formatHostPort(request.host, request.port);
}

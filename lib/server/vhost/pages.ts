/**
 * The answers the HTTP vhost gives itself (no route, client down, timeout, auth, malformed request):
 * a short HTML page when the request's `Accept` asks for `text/html`, plain text otherwise. The host
 * name is a stranger's input: it is escaped in HTML and cut short, and it is ASCII anyway (the head
 * parser refuses control characters and only DNS names are routed).
 *
 * @module
 */

const REASONS: Readonly<Record<number, string>> = {
  400: "Bad Request",
  401: "Unauthorized",
  405: "Method Not Allowed",
  408: "Request Timeout",
  431: "Request Header Fields Too Large",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  505: "HTTP Version Not Supported",
};

/** `text` with the characters that mean something in HTML escaped. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}

/** A host name as shown on a page: printable ASCII only, at most 253 characters. */
export function displayHost(host: string): string {
  const printable = host.replace(/[^\x21-\x7e]/g, "?");
  return printable.length > 253 ? `${printable.slice(0, 253)}…` : printable;
}

/** Options of {@linkcode statusResponse}. */
export interface StatusResponseOptions {
  /** Whether the request's Accept asks for HTML. */
  html: boolean;
  /** Whether the connection closes after this answer. */
  close: boolean;
  /** Extra header lines (e.g. `WWW-Authenticate: …`), already valid. */
  headers?: readonly string[];
  /** HEAD request: the head only. */
  headOnly?: boolean;
}

/** A complete HTTP/1.1 response with a short page saying `message`. */
export function statusResponse(status: number, message: string, options: StatusResponseOptions): Uint8Array {
  const reason = REASONS[status] ?? "Error";
  const body = options.html
    ? `<!doctype html>\n<html><head><meta charset="utf-8"><title>${status} ${reason}</title></head>` +
      `<body><h1>${status} ${reason}</h1><p>${escapeHtml(message)}</p><hr><p>tls-tunnel</p></body></html>\n`
    : `${message}\n`;
  const bodyBytes = new TextEncoder().encode(body);
  const lines = [
    `HTTP/1.1 ${status} ${reason}`,
    `Content-Type: ${options.html ? "text/html" : "text/plain"}; charset=utf-8`,
    `Content-Length: ${bodyBytes.length}`,
    "Cache-Control: no-store",
    `Connection: ${options.close ? "close" : "keep-alive"}`,
    ...(options.headers ?? []),
  ];
  const head = new TextEncoder().encode(lines.join("\r\n") + "\r\n\r\n");
  if (options.headOnly) return head;
  const bytes = new Uint8Array(head.length + bodyBytes.length);
  bytes.set(head);
  bytes.set(bodyBytes, head.length);
  return bytes;
}

/** Whether an `Accept` header value asks for HTML. */
export function acceptsHtml(accept: string | undefined): boolean {
  return accept !== undefined && /\btext\/html\b/i.test(accept);
}

/**
 * What every answer of the stats endpoint shares: headers that keep it out of caches and frames and
 * stop content sniffing, the HTML pages' Content-Security-Policy (everything from the endpoint itself,
 * no inline script or style), and JSON answers (errors included) in one shape.
 *
 * @module
 */

/** Headers of every answer: never cached, never sniffed, no Referer sent onwards. */
export const COMMON_HEADERS: Readonly<Record<string, string>> = {
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

/**
 * Headers of the HTML pages (dashboard and login form). The CSP allows only what the endpoint serves
 * itself (`/dashboard.js`, `/dashboard.css`, `/favicon.svg`, the API), so an injected string could not
 * load or run anything even if it became markup.
 */
export const HTML_HEADERS: Readonly<Record<string, string>> = {
  ...COMMON_HEADERS,
  "content-type": "text/html; charset=utf-8",
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
  "x-frame-options": "DENY",
};

/** A JSON answer (`indent` for `?pretty`), with {@linkcode COMMON_HEADERS} and any `extraHeaders`. */
export function json(
  body: unknown,
  status = 200,
  extraHeaders: Record<string, string> = {},
  indent?: number,
): Response {
  return new Response(JSON.stringify(body, null, indent) + "\n", {
    status,
    headers: { ...COMMON_HEADERS, "content-type": "application/json; charset=utf-8", ...extraHeaders },
  });
}

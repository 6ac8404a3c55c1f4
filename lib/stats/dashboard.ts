/**
 * The live dashboard served at `/` by the stats endpoint, its static assets (`/dashboard.css`,
 * `/dashboard.js`, `/favicon.svg`) and its login form. The page, stylesheet, icon and script are real
 * files in `lib/stats/dashboard/` (the script is browser TypeScript, app.ts), embedded as string
 * constants by `scripts/build_dashboard.ts` into `_dashboard_assets.ts`, so `deno compile` and
 * `deno bundle` carry them and nothing is fetched from elsewhere.
 *
 * @module
 */

import { DASHBOARD_CSS, DASHBOARD_HTML, DASHBOARD_JS, FAVICON_SVG, LOGIN_HTML } from "./_dashboard_assets.ts";
import { COMMON_HEADERS, HTML_HEADERS } from "./http_responses.ts";

export { DASHBOARD_CSS, DASHBOARD_HTML, DASHBOARD_JS, FAVICON_SVG } from "./_dashboard_assets.ts";

/** The token form shown at `/` when the endpoint has a `stats_token` and the browser has not logged in. */
export function loginPage(error: string | null): string {
  const shown = error === null ? "" : `<p class="error">${escapeHtml(error)}</p>`;
  // A function, so that `$&` or `$'` in the error stays text instead of a replacement pattern.
  return LOGIN_HTML.replace("<!--error-->", () => shown);
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}

/** Static assets: code, not data, so served without a token (the login page needs its stylesheet). */
const ASSETS: ReadonlyMap<string, { body: string; type: string }> = new Map([
  ["/dashboard.css", { body: DASHBOARD_CSS, type: "text/css; charset=utf-8" }],
  ["/dashboard.js", { body: DASHBOARD_JS, type: "text/javascript; charset=utf-8" }],
  ["/favicon.svg", { body: FAVICON_SVG, type: "image/svg+xml" }],
]);

/** The answer for a static asset's path (no body for `HEAD`); null for any other path. */
export function assetResponse(path: string, isHead: boolean): Response | null {
  const asset = ASSETS.get(path);
  if (asset === undefined) return null;
  return new Response(isHead ? null : asset.body, {
    headers: {
      ...COMMON_HEADERS,
      "content-type": asset.type,
    },
  });
}

/** `GET /` (and `/index.html`) for an authorized browser: the page, under the strict CSP. */
export function dashboardResponse(isHead: boolean): Response {
  return new Response(isHead ? null : DASHBOARD_HTML, { headers: HTML_HEADERS });
}

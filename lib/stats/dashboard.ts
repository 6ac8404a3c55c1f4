/**
 * The live dashboard served at `/` by the stats endpoint, and its login form. The page, stylesheet,
 * icon and script are real files in `lib/stats/dashboard/` (the script is browser TypeScript, app.ts),
 * embedded as string constants by `scripts/build_dashboard.ts` into `_dashboard_assets.ts`, so
 * `deno compile` and `deno bundle` carry them and nothing is fetched from elsewhere.
 *
 * @module
 */

import { LOGIN_HTML } from "./_dashboard_assets.ts";

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

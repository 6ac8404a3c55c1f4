/// <reference lib="dom" />
/**
 * The dashboard's script, browser TypeScript: `scripts/build_dashboard.ts` bundles it (with the
 * formatters it imports) into `lib/stats/_dashboard_assets.ts`, served as `/dashboard.js`. This folder is
 * a workspace member whose `deno.json` gives it the DOM library instead of Deno's, so `deno check`
 * checks it as browser code and the DOM types do not leak into the rest of the tree.
 *
 * The first paint comes from one `GET /api/stats`, before the event stream is opened (so the page is
 * filled at once, not when the first event arrives); then it follows `/api/events` (server-sent events),
 * falling back to polling `/api/stats` when the stream cannot be opened. When the stream ends and
 * `/api/stats` does not answer either, the server (or client) has stopped: the page says so, with the time
 * of the numbers still shown, instead of leaving them frozen as if live. It builds every element with `textContent` and text nodes, never from HTML strings,
 * because client names, ids and error messages come from the network.
 *
 * Hooks for tests and scripts: each client card has `data-client` (name) and `data-state`
 * (`connected` | `disconnected` | `offline`: a `[[server.clients]]` entry without a session), each proxy
 * row `data-proxy` and `data-status` and its last-hour sparkline `svg.proxy-spark`, the live indicator
 * `#live[data-state]` (`live` | `polling` | `connecting` | `offline` | `stopped`), the notice
 * `#stopped` (shown while the endpoint is down), `body[data-role]`, and `body[data-first-paint]`
 * (`api` when the first render came from `/api/stats`, `events` from the stream).
 *
 * The pieces live beside this file: the page state (`state.ts`), rates (`rates.ts`), the proxies table
 * (`proxy_table.ts`), the server and client views (`server_view.ts`, `client_view.ts`), drawing a snapshot
 * and the stopped notice (`render.ts`), the connection to the endpoint (`connection.ts`) and the DOM
 * helpers (`dom.ts`). This entry point starts the connection and the clock that keeps ages moving.
 *
 * @module
 */

import { formatDuration } from "../format.ts";
import { start } from "./connection.ts";
import { $, setLive } from "./dom.ts";
import { now, state } from "./state.ts";

// Keeps ages and the reconnect countdown moving between snapshots, and flags a stalled feed.
setInterval(() => {
  const last = state.last;
  if (!last) return;
  if (last.role === "client" && last.state === "waiting" && last.next_attempt_at_ms) {
    const sub = document.getElementById("banner-sub");
    if (sub) {
      sub.textContent = "reconnecting in " +
        (Math.max(0, last.next_attempt_at_ms - now()) / 1000).toFixed(1) + " s";
    }
  }
  const live = $("live").getAttribute("data-state");
  if (Date.now() - state.lastUpdate > 5000 && live !== "offline" && live !== "stopped") {
    setLive("offline", "no update for " + formatDuration(Date.now() - state.lastUpdate, "spaced"));
  }
}, 250);

void start();

/// <reference lib="dom" />
/**
 * Draws one snapshot on the page (header, role view, recent events) and shows or hides the notice that
 * the endpoint has stopped. Browser TypeScript, bundled with app.ts.
 *
 * @module
 */

import type { ServedStats } from "../snapshot.ts";
import { formatClock, formatDuration } from "../format.ts";
import { renderClient } from "./client_view.ts";
import { $, h, replace, setLive } from "./dom.ts";
import { updateRates } from "./rates.ts";
import { renderServer } from "./server_view.ts";
import { state } from "./state.ts";

/** The recent events, newest first; those newer than the last drawn flash. */
function renderEvents(snap: ServedStats): void {
  const events = (snap.recent_events || []).slice(-40).reverse();
  const newest = state.newestEvent;
  $("events-hint").textContent = events.length ? "newest first" : "";
  if (events.length === 0) {
    replace($("events"), h("li", { class: "empty", text: "Nothing yet." }));
    return;
  }
  replace(
    $("events"),
    events.map((e) =>
      h(
        "li",
        { class: state.last && e.time_ms > newest ? "new" : "" },
        h("time", { text: formatClock(e.time_ms), title: new Date(e.time_ms).toString() }),
        h("span", { class: "lvl " + e.level, text: e.level }),
        h("span", { class: "code", text: e.code + (e.client ? " · " + e.client : "") }),
        h("span", { text: e.message }),
      )
    ),
  );
  const first = events[0];
  if (first) state.newestEvent = Math.max(state.newestEvent, first.time_ms);
}

/** Draws `snap`; `source` says where it came from (recorded for the first paint). */
export function render(snap: ServedStats, source: "api" | "events"): void {
  if (!document.body.hasAttribute("data-first-paint")) document.body.setAttribute("data-first-paint", source);
  showStopped(false);
  state.skewMs = snap.now_ms - Date.now();
  state.lastUpdate = Date.now();
  document.body.setAttribute("data-role", snap.role);
  $("role").textContent = snap.role;
  document.title = "tls-tunnel " + snap.role +
    (snap.role === "server" ? " · " + snap.clients.length + " client(s)" : " · " + snap.state);
  replace(
    $("meta"),
    document.createTextNode("v" + snap.version + " · "),
    h("b", { class: "mono", text: snap.role === "server" ? snap.listen_addr : snap.server_addr }),
    document.createTextNode(" · up " + formatDuration(snap.now_ms - snap.started_at_ms, "spaced")),
  );
  const totals = updateRates(snap);
  if (snap.role === "server") {
    $("banner").hidden = true;
    renderServer(snap, totals);
  } else renderClient(snap, totals);
  renderEvents(snap);
  state.last = snap;
}

/**
 * Shows or hides the "stopped" notice. Shown, it names the time of the numbers left on the page, which
 * are dimmed: they are the last ones the endpoint gave, not live.
 */
export function showStopped(stopped: boolean): void {
  const notice = $("stopped");
  if (notice.hidden === !stopped) return;
  notice.hidden = !stopped;
  document.body.classList.toggle("endpoint-down", stopped);
  if (!stopped) return;
  const last = state.last;
  const role = last?.role ?? "server";
  replace(
    notice,
    h("b", { text: "The " + role + " has stopped" }),
    document.createTextNode(
      " — its stats endpoint no longer answers. " +
        (last ? "The numbers below are the last ones, from " + formatClock(last.now_ms) + "." : "") +
        " This page reconnects by itself when it is back.",
    ),
  );
  setLive("stopped", role + " stopped");
}

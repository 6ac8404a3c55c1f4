/// <reference lib="dom" />
/**
 * The dashboard's server view: summary cards, then one card per client (connected; recently
 * disconnected, kept for a while; configured but offline), each with its proxies. Browser TypeScript,
 * bundled with app.ts.
 *
 * @module
 */

import type { ClientSnapshot, OfflineClientSnapshot, ServedStats, ServerSnapshot } from "../snapshot.ts";
import { formatClock, formatDuration, formatRate, formatRtt } from "../format.ts";
import { $, card, h, pill, replace, sparkline } from "./dom.ts";
import { proxyTable } from "./proxy_table.ts";
import { forwardsArticle } from "./forwarders_view.ts";
import { clientStreamsArticle } from "./visitors_view.ts";
import { groupsArticle } from "./groups_view.ts";
import { listenersArticle, vhostArticle } from "./ports_view.ts";
import { now, plural, type Rate, state } from "./state.ts";

/** How long a disconnected client stays on the page. */
const KEEP_GONE_MS = 10 * 60 * 1000;

/** Orders clients by name. */
function byName(a: ClientSnapshot, b: ClientSnapshot): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/** Draws a server's snapshot: its cards and its clients. */
export function renderServer(snap: ServerSnapshot & ServedStats, totals: Rate): void {
  const t = now();
  const present = new Set<string>();
  snap.clients.forEach((c) => {
    present.add(c.name);
    state.gone.delete(c.name);
  });
  if (state.last && state.last.role === "server") {
    state.last.clients.forEach((c) => {
      if (!present.has(c.name) && !state.gone.has(c.name)) {
        state.gone.set(c.name, { client: c, goneAt: snap.now_ms });
      }
    });
  }
  for (const [name, gone] of state.gone) {
    if (snap.now_ms - gone.goneAt > KEEP_GONE_MS) state.gone.delete(name);
  }

  let active = 0, total = 0, failed = 0, proxies = 0, up = 0, streams = 0;
  snap.clients.forEach((c) => {
    streams += c.streams;
    c.proxies.forEach((p) => {
      proxies++;
      if (p.status === "healthy") up++;
      active += p.active_connections;
      total += p.total_connections;
      failed += p.failed_connections;
    });
  });
  const goneCount = state.gone.size;
  replace(
    $("cards"),
    card(
      "Clients",
      snap.clients.length,
      "connected",
      goneCount
        ? goneCount + " recently disconnected"
        : plural(snap.sessions_total, "session") + " since start",
      goneCount ? "warn" : "",
    ),
    card(
      "Proxies",
      up,
      "/ " + proxies + " healthy",
      plural(streams, "yamux stream") + " open",
      up < proxies ? "warn" : "",
    ),
    card("Connections", active, "active", total + " total · " + failed + " failed", ""),
    card("Inbound", formatRate(totals.in), "", "from outside peers", "", sparkline(state.sparkIn, "#3fb950")),
    card(
      "Outbound",
      formatRate(totals.out),
      "",
      "back to outside peers",
      "",
      sparkline(state.sparkOut, "#58a6ff"),
    ),
    card("Auth failures", snap.auth_failures_total, "", "since start", snap.auth_failures_total ? "bad" : ""),
  );

  $("list-title").textContent = "Clients";
  const offlineCount = (snap.offline_clients ?? []).filter((entry) => !state.gone.has(entry.name)).length;
  $("list-hint").textContent = snap.clients.length + " connected" +
    (goneCount ? ", " + goneCount + " disconnected" : "") +
    (offlineCount ? ", " + offlineCount + " offline" : "");
  const cards = snap.clients.slice().sort(byName).map((c) =>
    h(
      "article",
      { class: "client", "data-client": c.name, "data-state": "connected" },
      h(
        "div",
        { class: "client-head" },
        h("span", { class: "client-name" }, h("span", { class: "dot" }), c.name),
        h("span", { class: "fact" }, "from ", h("b", { class: "mono", text: c.remote_addr })),
        h(
          "span",
          { class: "fact", title: new Date(c.connected_since_ms).toString() },
          "connected ",
          h("b", { text: formatDuration(t - c.connected_since_ms, "spaced") }),
          " ago",
        ),
        h("span", { class: "fact" }, "rtt ", h("b", { text: formatRtt(c.rtt_ms) })),
        h(
          "span",
          { class: "fact" },
          h("b", { text: String(c.streams) }),
          c.streams === 1 ? " stream" : " streams",
        ),
        h("span", {
          class: "fact mono",
          text: c.client_id === c.name ? c.session_id : c.client_id + " · " + c.session_id,
        }),
        h("span", { class: "state-pill" }, pill("connected")),
      ),
      proxyTable(c.proxies, c.name, false),
    )
  );
  const goneCards = [...state.gone.keys()].sort().map((name) => {
    const g = state.gone.get(name);
    if (g === undefined) return null;
    return h(
      "article",
      { class: "client", "data-client": name, "data-state": "disconnected" },
      h(
        "div",
        { class: "client-head" },
        h("span", { class: "client-name" }, h("span", { class: "dot" }), name),
        h("span", { class: "fact" }, "was at ", h("b", { class: "mono", text: g.client.remote_addr })),
        h(
          "span",
          { class: "fact" },
          "disconnected at ",
          h("b", { text: formatClock(g.goneAt) }),
          " (" + formatDuration(t - g.goneAt, "spaced") + " ago)",
        ),
        h("span", { class: "state-pill" }, pill("disconnected")),
      ),
      proxyTable(g.client.proxies, name, true),
    );
  });
  const offline = (snap.offline_clients ?? []).filter((entry) => !state.gone.has(entry.name));
  const offlineCards = offline.map((entry) => offlineCard(entry, t));
  const all = [...cards, ...goneCards.filter((el) => el !== null), ...offlineCards];
  const ports = [vhostArticle(snap.vhost), listenersArticle(snap.listeners)].filter((el) => el !== null);
  if (all.length === 0) {
    replace(
      $("clients"),
      h(
        "div",
        { class: "empty" },
        "No clients connected yet. Start one with ",
        h("code", { text: "tls-tunnel client -c client.toml" }),
        ".",
      ),
      ports,
    );
  } else {
    replace(
      $("clients"),
      all,
      ports,
      groupsArticle(snap.groups),
      forwardsArticle(snap.forwards, snap.forwards_active),
      clientStreamsArticle(snap.client_opened_streams),
    );
  }
}

/** A `[[server.clients]]` entry without a session: offline, and when it was last seen. */
function offlineCard(entry: OfflineClientSnapshot, t: number): HTMLElement {
  const seen = entry.last_seen_ms === null
    ? h("span", { class: "fact" }, "not seen since the server started")
    : h(
      "span",
      { class: "fact", title: new Date(entry.last_seen_ms).toString() },
      "last seen ",
      h("b", { text: formatDuration(t - entry.last_seen_ms, "spaced") }),
      " ago (" + formatClock(entry.last_seen_ms) + ")",
    );
  return h(
    "article",
    { class: "client offline", "data-client": entry.name, "data-state": "offline" },
    h(
      "div",
      { class: "client-head" },
      h("span", { class: "client-name" }, h("span", { class: "dot" }), entry.name),
      seen,
      h("span", { class: "state-pill" }, pill("offline")),
    ),
  );
}

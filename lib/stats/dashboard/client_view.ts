/// <reference lib="dom" />
/**
 * The dashboard's client view: the connection banner (connected, reconnecting with a countdown,
 * connecting, stopped), summary cards and the client's proxies. Browser TypeScript, bundled with app.ts.
 *
 * @module
 */

import type { ClientRoleSnapshot, ServedStats } from "../snapshot.ts";
import { formatRate, formatRtt } from "../format.ts";
import { $, card, h, pill, replace, sparkline } from "./dom.ts";
import { proxyTable } from "./proxy_table.ts";
import { now, plural, type Rate, state } from "./state.ts";

/** Draws a client's snapshot: its banner, its cards and its proxies. */
export function renderClient(snap: ClientRoleSnapshot & ServedStats, totals: Rate): void {
  const banner = $("banner");
  banner.hidden = false;
  banner.setAttribute("data-state", snap.state);
  let title: string;
  let sub: string;
  if (snap.state === "connected") {
    title = "Connected to " + snap.server_addr;
    sub = "rtt " + formatRtt(snap.rtt_ms) + " · " + plural(snap.sessions_total, "session") + " since start";
  } else if (snap.state === "waiting") {
    const left = snap.next_attempt_at_ms ? Math.max(0, snap.next_attempt_at_ms - now()) : 0;
    title = "Disconnected from " + snap.server_addr;
    sub = "reconnecting in " + (left / 1000).toFixed(1) + " s";
  } else if (snap.state === "connecting") {
    title = "Connecting to " + snap.server_addr + "…";
    sub = "TLS, authentication, proxy registration";
  } else {
    title = "Stopped";
    sub = "the client is shutting down";
  }
  replace(
    banner,
    h("span", { class: "big-dot" }),
    h("div", null, h("div", { text: title }), h("div", { class: "sub", id: "banner-sub", text: sub })),
    h("span", { class: "push-right" }, pill(snap.state)),
  );

  let active = 0, total = 0, failed = 0, up = 0;
  snap.proxies.forEach((p) => {
    if (p.status === "healthy") up++;
    active += p.active_connections;
    total += p.total_connections;
    failed += p.failed_connections;
  });
  replace(
    $("cards"),
    card(
      "Proxies",
      up,
      "/ " + snap.proxies.length + " healthy",
      plural(snap.sessions_total, "session") + " since start",
      up < snap.proxies.length ? "warn" : "",
    ),
    card("Connections", active, "active", total + " total · " + failed + " failed", ""),
    card(
      "Inbound",
      formatRate(totals.in),
      "",
      "towards local services",
      "",
      sparkline(state.sparkIn, "#3fb950"),
    ),
    card(
      "Outbound",
      formatRate(totals.out),
      "",
      "back through the tunnel",
      "",
      sparkline(state.sparkOut, "#58a6ff"),
    ),
    card("Round trip", formatRtt(snap.rtt_ms), "", "keepalive to the server", ""),
  );
  $("list-title").textContent = "Proxies";
  $("list-hint").textContent = snap.proxies.length + " configured";
  replace(
    $("clients"),
    h(
      "article",
      {
        class: "client",
        "data-client": "",
        "data-state": snap.state === "connected" ? "connected" : "disconnected",
      },
      proxyTable(snap.proxies, "", false),
    ),
  );
}

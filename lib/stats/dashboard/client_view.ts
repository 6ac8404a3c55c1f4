/// <reference lib="dom" />
/**
 * The dashboard's client view: the connection banner (connected, reconnecting with a countdown,
 * connecting, stopped), summary cards and the client's proxies. Browser TypeScript, bundled with app.ts.
 *
 * @module
 */

import type { ClientRoleSnapshot, ClientServerSnapshot, ServedStats } from "../snapshot.ts";
import { formatRate, formatRtt } from "../format.ts";
import { $, card, h, pill, replace, sparkline } from "./dom.ts";
import { proxyTable } from "./proxy_table.ts";
import { forwardersArticle } from "./forwarders_view.ts";
import { visitorsArticle } from "./visitors_view.ts";
import { serverRateKey } from "./rates.ts";
import { now, plural, type Rate, state } from "./state.ts";

/** Draws a client's snapshot: its banner, its cards and its proxies. */
export function renderClient(snap: ClientRoleSnapshot & ServedStats, totals: Rate): void {
  const banner = $("banner");
  banner.hidden = false;
  banner.setAttribute("data-state", snap.state);
  let title: string;
  let sub: string;
  const servers = snap.servers;
  const connectedServers = servers?.filter((s) => s.state === "connected").length ?? 0;
  if (servers && snap.state === "connected") {
    // Several servers: connected while any one is; the list below shows each.
    title = "Connected to " + connectedServers + " of " + servers.length + " servers";
    sub = "rtt " + formatRtt(snap.rtt_ms) + " · " + plural(snap.sessions_total, "session") + " since start";
  } else if (snap.state === "connected") {
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
    servers
      ? card(
        "Servers",
        connectedServers,
        "/ " + servers.length + " connected",
        "a session to each",
        connectedServers < servers.length ? "warn" : "",
      )
      : card("Round trip", formatRtt(snap.rtt_ms), "", "keepalive to the server", ""),
  );
  if (servers) {
    $("list-title").textContent = "Servers";
    $("list-hint").textContent = snap.proxies.length + " proxies configured, registered on each server";
    replace(
      $("clients"),
      ...servers.map(serverArticle),
      forwardersArticle(snap.forwarders),
      visitorsArticle(snap.visitors),
    );
    return;
  }
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
    forwardersArticle(snap.forwarders),
    visitorsArticle(snap.visitors),
  );
}

/** One server of a client with several: its name, address, state and its own copy of the proxies. */
function serverArticle(server: ClientServerSnapshot): HTMLElement {
  const connected = server.state === "connected";
  const left = server.next_attempt_at_ms ? Math.max(0, server.next_attempt_at_ms - now()) : null;
  return h(
    "article",
    { class: "client", "data-server": server.name, "data-state": connected ? "connected" : "disconnected" },
    h(
      "div",
      { class: "client-head" },
      h("span", { class: "client-name" }, h("span", { class: "dot" }), server.name),
      h("span", { class: "fact" }, h("b", { class: "mono", text: server.server_addr })),
      connected && h("span", { class: "fact" }, "rtt ", h("b", { text: formatRtt(server.rtt_ms) })),
      h("span", { class: "fact" }, plural(server.sessions_total, "session")),
      server.state === "waiting" && left !== null &&
        h("span", { class: "fact" }, "retry in ", h("b", { text: (left / 1000).toFixed(1) + " s" })),
      server.last_error !== undefined && h("span", { class: "fact", text: server.last_error }),
      connected && server.session_id !== null && h("span", { class: "fact mono", text: server.session_id }),
      h("span", { class: "state-pill" }, pill(server.state)),
    ),
    proxyTable(server.proxies, serverRateKey(server.name), !connected),
  );
}

/// <reference lib="dom" />
/**
 * The dashboard's shared ports on the server view: the tunnel listeners (`[server]` and
 * `[[server.listeners]]`: transport, address, connections and sessions) and the HTTP/HTTPS vhost ports
 * (routes host → client/proxy, requests by status, 503s and 504s, https routed and refused). Browser
 * TypeScript, bundled with app.ts. Host, client and proxy names come from the wire: text nodes only.
 *
 * @module
 */

import type { ListenerSnapshot, VhostSnapshot } from "../snapshot.ts";
import { dataTable, h } from "./dom.ts";

/** A card with a title, facts beside it and one table. */
function tableArticle(
  marker: string,
  title: string,
  facts: HTMLElement[],
  headings: string[],
  rows: HTMLElement[],
): HTMLElement {
  return h(
    "article",
    { class: "client", [marker]: "", "data-state": "connected" },
    h("div", { class: "client-head" }, h("span", { class: "client-name", text: title }), facts),
    dataTable("visitors", headings, rows),
  );
}

/** A fact of a card head: `label` then its value in bold. */
function fact(label: string, value: string, bad = false): HTMLElement {
  return h("span", { class: "fact" + (bad ? " bad" : "") }, label + " ", h("b", { text: value }));
}

/** The server's tunnel listeners as an article; null with at most one (the head already says where). */
export function listenersArticle(listeners: ListenerSnapshot[] | undefined): HTMLElement | null {
  if (listeners === undefined || listeners.length < 2) return null;
  const rows = listeners.map((listener) =>
    h(
      "tr",
      { "data-listener": `${listener.transport} ${listener.listen_addr}` },
      h("td", null, h("b", { text: listener.transport }), listener.behind_proxy ? " (behind proxy)" : ""),
      h("td", { class: "mono", text: listener.listen_addr }),
      h("td", { class: "mono", text: listener.transport === "tls" ? "–" : listener.server_path }),
      h("td", { class: "num", text: String(listener.connections_total) }),
      h("td", { class: "num", text: String(listener.sessions_total) }),
    )
  );
  return tableArticle(
    "data-listeners",
    "Tunnel listeners",
    [],
    ["Transport", "Address", "Path", "Connections", "Sessions"],
    rows,
  );
}

/** Sums `count` over entries. */
function total(entries: Array<{ count: number }>): number {
  return entries.reduce((sum, entry) => sum + entry.count, 0);
}

/**
 * The vhost ports as an article: one row per route (host and location → client/proxy) with its
 * requests by status (http) or routed connections (https); requests for hosts without a route (503s)
 * get a row of their own. Null without vhost ports.
 */
export function vhostArticle(vhost: VhostSnapshot | undefined): HTMLElement | null {
  if (vhost === undefined) return null;
  const byHost = new Map<string, Array<{ status: number; count: number }>>();
  for (const entry of vhost.http_requests) {
    const list = byHost.get(entry.host) ?? [];
    list.push({ status: entry.status, count: entry.count });
    byHost.set(entry.host, list);
  }
  const routed = new Map(vhost.https_connections.map((entry) => [entry.host, entry.count]));
  const statuses = (host: string): string =>
    (byHost.get(host) ?? []).map((entry) => `${entry.status}: ${entry.count}`).join(" · ") || "–";
  const shown = new Set<string>();
  const rows = (vhost.route_list ?? []).map((route) => {
    shown.add(`${route.kind} ${route.host}`);
    const served = route.group !== undefined ? `group ${route.group}` : `${route.client} / ${route.proxy}`;
    return h(
      "tr",
      { "data-route": `${route.kind} ${route.host}${route.location === "/" ? "" : route.location}` },
      h("td", { text: route.kind }),
      h("td", { class: "mono", text: route.host + (route.location === "/" ? "" : route.location) }),
      h("td", { text: served }),
      h(
        "td",
        { class: "num" },
        route.kind === "http" ? statuses(route.host) : `${routed.get(route.host) ?? 0} routed`,
      ),
    );
  });
  // Hosts with counters but no route now (their client left); "" counts the requests that matched no
  // route at all (the 503s; the stats keep no unknown host names, so a flood cannot grow them).
  for (const host of byHost.keys()) {
    if (shown.has(`http ${host}`)) continue;
    shown.add(`http ${host}`);
    rows.push(h(
      "tr",
      { "data-route": `http ${host}`, "data-unrouted": "" },
      h("td", { text: "http" }),
      h("td", { class: "mono", text: host === "" ? "(any host without a route)" : host }),
      h("td", { text: host === "" ? "no tunnel" : "no route now" }),
      h("td", { class: "num", text: statuses(host) }),
    ));
  }
  const ports = [
    ...(vhost.http_addr !== null ? [fact("http", vhost.http_addr)] : []),
    ...(vhost.https_addr !== null ? [fact("https", vhost.https_addr)] : []),
  ];
  return tableArticle(
    "data-vhost",
    "Virtual hosts",
    [
      ...ports,
      fact("routes", String(vhost.routes)),
      fact("requests", String(total(vhost.http_requests))),
      fact("503 no tunnel", String(vhost.http_no_tunnel_total), vhost.http_no_tunnel_total > 0),
      fact("504 timeout", String(vhost.http_timeouts_total), vhost.http_timeouts_total > 0),
      fact("https routed", String(total(vhost.https_connections))),
      fact("refused", String(vhost.https_refused_total), vhost.https_refused_total > 0),
    ],
    ["Kind", "Host", "Client / proxy", "Requests by status"],
    rows,
  );
}

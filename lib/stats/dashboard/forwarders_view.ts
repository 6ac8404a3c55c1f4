/// <reference lib="dom" />
/**
 * The dashboard's forwarders: on a client, its `[[forwarders]]` (local proxy, active connections, results
 * by route, bytes); on the server, the clients' forwarded connections by forwarder and result. Browser
 * TypeScript, bundled with app.ts.
 *
 * @module
 */

import type { ForwardCountSnapshot, ForwarderSnapshot } from "../snapshot.ts";
import { formatBytes } from "../format.ts";
import { dataTable, h, resultCounts } from "./dom.ts";

/** A client's forwarders as an article, or null without any. */
export function forwardersArticle(forwarders: ForwarderSnapshot[] | undefined): HTMLElement | null {
  if (forwarders === undefined || forwarders.length === 0) return null;
  const rows = forwarders.map((forwarder) =>
    h(
      "tr",
      { "data-forwarder": forwarder.name },
      h("td", null, h("b", { text: forwarder.name })),
      h("td", { class: "mono", text: `${forwarder.proxy_type} ${forwarder.listen_addr ?? "–"}` }),
      h("td", { class: "num", text: String(forwarder.active_connections) }),
      h("td", { text: resultCounts(forwarder.results.proxy ?? {}) }),
      h("td", { text: resultCounts(forwarder.results.direct ?? {}) }),
      h("td", { text: resultCounts(forwarder.results.none ?? {}) }),
      h("td", {
        class: "num",
        text: formatBytes(forwarder.bytes_out) + " / " + formatBytes(forwarder.bytes_in),
      }),
    )
  );
  return h(
    "article",
    { class: "client", "data-forwarders": "", "data-state": "connected" },
    h("div", { class: "client-head" }, h("span", { class: "client-name", text: "Forwarders" })),
    dataTable("forwarders", [
      "Forwarder",
      "Local proxy",
      "Active",
      "Through the server",
      "Direct",
      "Refused locally",
      "Out / in",
    ], rows),
  );
}

/** The server's forwarded connections by client and forwarder, or null when there were none. */
export function forwardsArticle(
  forwards: ForwardCountSnapshot[] | undefined,
  active: number | undefined,
): HTMLElement | null {
  if (forwards === undefined || forwards.length === 0) return null;
  const grouped = new Map<string, { client: string; forwarder: string; counts: Record<string, number> }>();
  for (const entry of forwards) {
    const key = `${entry.client}\u0000${entry.forwarder}`;
    const group = grouped.get(key) ?? { client: entry.client, forwarder: entry.forwarder, counts: {} };
    group.counts[entry.result] = entry.count;
    grouped.set(key, group);
  }
  const rows = [...grouped.values()].map((group) =>
    h(
      "tr",
      { "data-forward": `${group.client}/${group.forwarder}` },
      h("td", null, h("b", { text: group.client })),
      h("td", { text: group.forwarder }),
      h("td", { text: resultCounts(group.counts) }),
    )
  );
  return h(
    "article",
    { class: "client", "data-forwards": "", "data-state": "connected" },
    h(
      "div",
      { class: "client-head" },
      h("span", { class: "client-name", text: "Forwarded connections" }),
      h("span", { class: "fact" }, h("b", { text: String(active ?? 0) }), " open now"),
    ),
    dataTable("forwarders", ["Client", "Forwarder", "Results since start"], rows),
  );
}

/// <reference lib="dom" />
/**
 * The dashboard's visitors: on a client, its `[[visitors]]` (local port, target, connections, refusals by
 * reason, bytes, last error); on the server, the streams clients opened (visits, forwards) by kind and
 * result. Browser TypeScript, bundled with app.ts.
 *
 * @module
 */

import type { VisitorSnapshot } from "../snapshot.ts";
import { formatBytes } from "../format.ts";
import { dataTable, h, resultCounts } from "./dom.ts";

/** A client's visitors as an article, or null without any. */
export function visitorsArticle(visitors: VisitorSnapshot[] | undefined): HTMLElement | null {
  if (visitors === undefined || visitors.length === 0) return null;
  const rows = visitors.map((visitor) =>
    h(
      "tr",
      { "data-visitor": `${visitor.name}/${visitor.bind}` },
      h("td", { class: "mono", text: visitor.listen_addr ?? visitor.bind }),
      h(
        "td",
        null,
        h("b", { text: visitor.name }),
        ` :${visitor.publish_port}`,
        visitor.client ? ` of ${visitor.client}` : "",
      ),
      h("td", { class: "num", text: String(visitor.active_connections) }),
      h("td", { class: "num", text: String(visitor.total_connections) }),
      h("td", { text: resultCounts(visitor.refused) }),
      h("td", { class: "num", text: formatBytes(visitor.bytes_in) + " / " + formatBytes(visitor.bytes_out) }),
      h("td", { text: visitor.last_error ?? "" }),
    )
  );
  return h(
    "article",
    { class: "client", "data-visitors": "", "data-state": "connected" },
    h("div", { class: "client-head" }, h("span", { class: "client-name", text: "Visitors" })),
    dataTable(
      "visitors",
      ["Local port", "Target proxy", "Active", "Total", "Refused", "Sent / received", "Last error"],
      rows,
    ),
  );
}

/** The server's client-opened streams by kind (visit, forward) and result, or null when there were none. */
export function clientStreamsArticle(
  opened: Record<string, Record<string, number>> | undefined,
): HTMLElement | null {
  if (opened === undefined || Object.keys(opened).length === 0) return null;
  const rows = Object.entries(opened).map(([kind, results]) =>
    h(
      "tr",
      { "data-opened": kind },
      h("td", null, h("b", { text: kind })),
      h("td", { text: resultCounts(results) }),
    )
  );
  return h(
    "article",
    { class: "client", "data-opened-streams": "", "data-state": "connected" },
    h(
      "div",
      { class: "client-head" },
      h("span", { class: "client-name", text: "Client-opened streams (visits, forwards)" }),
    ),
    dataTable("visitors", ["Kind", "Results since start"], rows),
  );
}

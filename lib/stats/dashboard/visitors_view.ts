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
import { h } from "./dom.ts";

/** `{ok: 3, denied: 1}` → `"ok 3 · denied 1"`, ok first. */
function counts(entries: Record<string, number>): string {
  return Object.entries(entries)
    .sort(([a], [b]) => (a === "ok" ? -1 : b === "ok" ? 1 : a.localeCompare(b)))
    .map(([result, count]) => `${result} ${count}`).join(" · ") || "–";
}

function table(head: string[], rows: HTMLElement[]): HTMLElement {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "visitors" },
      h("thead", null, h("tr", null, head.map((text) => h("th", { text })))),
      h("tbody", null, rows),
    ),
  );
}

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
      h("td", { text: counts(visitor.refused) }),
      h("td", { class: "num", text: formatBytes(visitor.bytes_in) + " / " + formatBytes(visitor.bytes_out) }),
      h("td", { text: visitor.last_error ?? "" }),
    )
  );
  return h(
    "article",
    { class: "client", "data-visitors": "", "data-state": "connected" },
    h("div", { class: "client-head" }, h("span", { class: "client-name", text: "Visitors" })),
    table(
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
      h("td", { text: counts(results) }),
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
    table(["Kind", "Results since start"], rows),
  );
}

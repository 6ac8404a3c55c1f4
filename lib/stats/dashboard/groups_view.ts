/// <reference lib="dom" />
/**
 * The dashboard's groups of clients (README "Groups"): per group, its port or hosts, policy, members with
 * their health and open connections, and its counters. Browser TypeScript, bundled with app.ts.
 *
 * @module
 */

import type { GroupSnapshot } from "../snapshot.ts";
import { dataTable, h } from "./dom.ts";

/** The server's groups as an article, or null without any. */
export function groupsArticle(groups: GroupSnapshot[] | undefined): HTMLElement | null {
  if (groups === undefined || groups.length === 0) return null;
  const rows = groups.map((group) => {
    const healthy = group.members.filter((member) => member.healthy).length;
    return h(
      "tr",
      { "data-group": `${group.kind}/${group.name}` },
      h("td", null, h("b", { text: group.name }), ` ${group.kind}`),
      h("td", { class: "mono", text: group.hosts?.length ? group.hosts.join(", ") : group.publish_addr }),
      h("td", { text: group.lb_policy }),
      h("td", { class: "num", text: `${healthy} / ${group.members.length}` }),
      h(
        "td",
        null,
        group.members.map((member) =>
          h("span", {
            class: "fact",
            "data-healthy": String(member.healthy),
            text: `${member.client} (${member.active_connections}${member.healthy ? "" : ", unhealthy"}) `,
          })
        ),
      ),
      h("td", { class: "num", text: String(group.connections_total) }),
      h("td", { class: "num", text: String(group.refused_total) }),
    );
  });
  return h(
    "article",
    { class: "client", "data-groups": "", "data-state": "connected" },
    h("div", { class: "client-head" }, h("span", { class: "client-name", text: "Groups" })),
    dataTable(
      "visitors",
      ["Group", "Port or hosts", "Policy", "Healthy", "Members (open)", "Total", "Refused"],
      rows,
    ),
  );
}

/// <reference lib="dom" />
/**
 * The dashboard's table of proxies (one per client card, or the client's own): status, published and
 * local addresses, connection counts, bytes, rates and each proxy's last-hour sparkline. Browser
 * TypeScript, bundled with app.ts.
 *
 * @module
 */

import type { ProxySnapshot, ThroughputSnapshot } from "../snapshot.ts";
import { formatBytes, formatRate } from "../format.ts";
import { h, pill, sparkline } from "./dom.ts";
import { state } from "./state.ts";

/**
 * The proxy's last hour (bytes both ways per minute) as an inline SVG sparkline; its title says the
 * hour's total and the busiest minute.
 */
function proxySpark(throughput: ThroughputSnapshot | undefined): HTMLElement {
  if (throughput === undefined) return h("span", { class: "rate", text: "–" });
  const values = throughput.bytes_in.map((bytesIn, index) => bytesIn + (throughput.bytes_out[index] ?? 0));
  const svg = sparkline(values, "#58a6ff", values.length);
  svg.setAttribute("class", "spark proxy-spark");
  const total = values.reduce((sum, value) => sum + value, 0);
  const peak = Math.max(0, ...values);
  const minutes = Math.round(values.length * throughput.bucket_secs / 60);
  svg.setAttribute("data-total-bytes", String(Math.round(total)));
  const title = document.createElementNS("http://www.w3.org/2000/svg", "title");
  title.textContent = "last " + minutes + " min: " + formatBytes(total) + " both ways, busiest minute " +
    formatBytes(peak);
  svg.appendChild(title);
  return h("span", { class: "spark-cell" }, svg);
}

/** The classes of the table's columns, in order (widths in style.css). */
const PROXY_COLUMN_CLASSES = [
  "c-status",
  "c-proxy",
  "c-target",
  "c-num",
  "c-num",
  "c-num",
  "c-bytes",
  "c-bytes",
  "c-rate",
  "c-spark",
];

/**
 * The proxies as a table; `keyPrefix` is the client's name (the rates' key), `goneClient` draws them as
 * closed (their client disconnected).
 */
export function proxyTable(proxies: ProxySnapshot[], keyPrefix: string, goneClient: boolean): HTMLElement {
  if (proxies.length === 0) return h("div", { class: "empty", text: "No proxies registered." });
  const head = h(
    "tr",
    null,
    h("th", { text: "Status" }),
    h("th", { text: "Proxy" }),
    h("th", { text: "Published → local target" }),
    h("th", { class: "num", text: "Active" }),
    h("th", { class: "num", text: "Total" }),
    h("th", { class: "num", text: "Failed" }),
    h("th", { class: "num", text: "In" }),
    h("th", { class: "num", text: "Out" }),
    h("th", { class: "num", text: "Rate in / out" }),
    h("th", { text: "Last hour" }),
  );
  const body: HTMLElement[] = [];
  proxies.forEach((p) => {
    const status = goneClient ? "closed" : p.status;
    const rate = goneClient
      ? { in: 0, out: 0 }
      : state.rates.get(keyPrefix + "\u0000" + p.name) ?? { in: 0, out: 0 };
    const hot = rate.in + rate.out > 1024;
    body.push(h(
      "tr",
      { class: p.last_error ? "has-error" : "", "data-proxy": p.name, "data-status": status },
      h("td", null, pill(status)),
      h("td", { title: p.name }, h("b", { text: p.name })),
      h(
        "td",
        { class: "mono" },
        (p.publish_addr || "?") + ":" + (p.publish_port || "–") + (p.udp ? "/udp" : ""),
        h("span", { class: "arrow", text: "→" }),
        p.local_addr + ":" + p.local_port,
      ),
      h("td", { class: "num", text: String(goneClient ? 0 : p.active_connections) }),
      h("td", { class: "num", text: String(p.total_connections) }),
      h("td", { class: "num", text: String(p.failed_connections) }),
      h("td", { class: "num", text: formatBytes(p.bytes_in), title: p.bytes_in + " bytes" }),
      h("td", { class: "num", text: formatBytes(p.bytes_out), title: p.bytes_out + " bytes" }),
      h(
        "td",
        { class: "num" },
        h("span", {
          class: "rate" + (hot ? " hot" : ""),
          text: formatRate(rate.in) + " / " + formatRate(rate.out),
        }),
      ),
      h("td", null, proxySpark(p.throughput)),
    ));
    if (p.udp) {
      // A udp proxy's flows and datagrams: Active/Total above count its flows.
      const drops = Object.entries(p.udp.dropped).filter(([, count]) => count > 0);
      const dropped = drops.reduce((sum, [, count]) => sum + count, 0);
      body.push(h(
        "tr",
        { class: "udp-row", "data-udp": p.name },
        h(
          "td",
          { colspan: "10" },
          h("span", { class: "err-label", text: "udp" }),
          `${p.udp.flows_open} flows open (${p.udp.flows_total} in all, ${p.udp.flows_idle_closed} idle, ` +
            `${p.udp.flows_evicted} evicted) · ${p.udp.datagrams_in} datagrams in, ${p.udp.datagrams_out} out · ` +
            `${dropped} dropped` +
            (drops.length > 0
              ? " (" + drops.map(([reason, count]) => `${reason} ${count}`).join(", ") + ")"
              : ""),
        ),
      ));
    }
    if (p.last_error) {
      body.push(h(
        "tr",
        { class: "err-row" },
        h("td", { colspan: "10" }, h("span", { class: "err-label", text: "last error" }), p.last_error),
      ));
    }
  });
  const cols = h("colgroup", null, PROXY_COLUMN_CLASSES.map((c) => h("col", { class: c })));
  return h(
    "div",
    { class: "table-wrap" },
    h("table", null, cols, h("thead", null, head), h("tbody", null, body)),
  );
}

/// <reference lib="dom" />
/**
 * The dashboard's DOM helpers: elements built from text only ({@linkcode h}: data never becomes markup),
 * status pills, summary cards and throughput sparklines. Browser TypeScript, bundled into
 * `/dashboard.js` with app.ts.
 *
 * @module
 */

import { statusLabel } from "../format.ts";

/** Points of the throughput sparklines (one per rate computation). */
export const SPARK_POINTS = 60;

/** Attributes of {@linkcode h}; null, undefined and false leave the attribute out. */
type Attrs = Record<string, string | null | undefined | false>;
/** Children of {@linkcode h}: strings become text nodes; null, undefined and false are skipped. */
type Child = Node | string | null | undefined | false;

/** The element `#id` of the page; throws when the page lacks it. */
export function $(id: string): HTMLElement {
  const el = document.getElementById(id);
  if (el === null) throw new Error(`the dashboard page has no #${id}`);
  return el;
}

/** Builds an element. `text` sets its text content; data never becomes markup. */
export function h(tag: string, attrs: Attrs | null, ...children: Array<Child | Child[]>): HTMLElement {
  const el = document.createElement(tag);
  if (attrs) {
    for (const key of Object.keys(attrs)) {
      const value = attrs[key];
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") el.className = value;
      else if (key === "text") el.textContent = value;
      else el.setAttribute(key, value);
    }
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) {
      child.forEach((c) => {
        if (c) el.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
      });
    } else el.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return el;
}

/** Replaces the children of `el`. */
export function replace(el: HTMLElement, ...children: Array<Node | Node[] | null>): void {
  while (el.firstChild) el.removeChild(el.firstChild);
  for (const child of children) {
    if (Array.isArray(child)) child.forEach((c) => el.appendChild(c));
    else if (child) el.appendChild(child);
  }
}

/** A coloured status pill (`healthy`, `bind_failed`, `connected`, …). */
export function pill(kind: string): HTMLElement {
  return h("span", { class: "pill " + kind, text: statusLabel(kind) });
}

/** Sets the live indicator in the top bar (`live`, `polling`, `connecting`, `offline`). */
export function setLive(kind: string, text: string): void {
  $("live").setAttribute("data-state", kind);
  $("live-text").textContent = text;
}

/**
 * `values` as an inline SVG sparkline of `points` slots (default {@linkcode SPARK_POINTS}: the summary
 * cards' last rate computations; a proxy's last hour has one per minute), scaled to their maximum, the
 * newest on the right.
 */
export function sparkline(values: number[], color: string, points: number = SPARK_POINTS): SVGSVGElement {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 " + (points - 1) + " 30");
  svg.setAttribute("preserveAspectRatio", "none");
  const base = document.createElementNS(ns, "line");
  base.setAttribute("x1", "0");
  base.setAttribute("x2", String(points - 1));
  base.setAttribute("y1", "29.5");
  base.setAttribute("y2", "29.5");
  base.setAttribute("stroke", color);
  base.setAttribute("stroke-opacity", "0.35");
  base.setAttribute("vector-effect", "non-scaling-stroke");
  svg.appendChild(base);
  if (values.length < 2) return svg;
  const max = Math.max(...values, 1);
  const offset = points - values.length;
  const pts = values.map((v, i) => (offset + i) + "," + (29 - v / max * 26).toFixed(2));
  const area = document.createElementNS(ns, "path");
  area.setAttribute("d", "M" + offset + ",30 L" + pts.join(" L") + " L" + (points - 1) + ",30 Z");
  area.setAttribute("fill", color);
  area.setAttribute("fill-opacity", "0.16");
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", pts.join(" "));
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", color);
  line.setAttribute("stroke-width", "1.4");
  line.setAttribute("vector-effect", "non-scaling-stroke");
  svg.appendChild(area);
  svg.appendChild(line);
  return svg;
}

/** A summary card: label, big value with its unit, a footnote and an optional sparkline. */
export function card(
  label: string,
  value: string | number,
  unit: string,
  foot: string,
  extraClass: string,
  spark?: SVGSVGElement,
): HTMLElement {
  return h(
    "div",
    { class: "card" + (extraClass ? " " + extraClass : "") },
    h("div", { class: "label", text: label }),
    h("div", { class: "value" }, String(value), unit ? h("small", { text: unit }) : null),
    foot ? h("div", { class: "foot", text: foot }) : null,
    spark ?? null,
  );
}

/** A scrolling table of class `tableClass`: one heading row, then `rows`. */
export function dataTable(tableClass: string, head: string[], rows: HTMLElement[]): HTMLElement {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: tableClass },
      h("thead", null, h("tr", null, head.map((text) => h("th", { text })))),
      h("tbody", null, rows),
    ),
  );
}

/** Counts by result, `{ok: 3, denied: 1}` → `"ok 3 · denied 1"`: ok first, the rest by name; "–" for none. */
export function resultCounts(counts: Record<string, number>): string {
  return Object.entries(counts)
    .sort(([a], [b]) => (a === "ok" ? -1 : b === "ok" ? 1 : a.localeCompare(b)))
    .map(([result, count]) => `${result} ${count}`).join(" · ") || "–";
}

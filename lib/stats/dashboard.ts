/**
 * The live dashboard served at `/` by the stats endpoint: HTML, CSS, a script and an icon as string
 * constants, so `deno compile` and `deno bundle` carry them and nothing is fetched from elsewhere.
 *
 * The script follows `/api/events` (server-sent events) and falls back to polling `/api/stats` when the
 * stream cannot be opened. It builds every element with `textContent`, never from HTML strings, because
 * client names, ids and error messages come from the network.
 *
 * Hooks for tests and scripts: each client card has `data-client` (name) and `data-state`
 * (`connected` | `disconnected`), each proxy row `data-proxy` and `data-status`, the live indicator
 * `#live[data-state]` (`live` | `polling` | `connecting` | `offline`), and `body[data-role]`.
 *
 * @module
 */

/** The page. Everything it loads is served by the stats endpoint itself. */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="dark">
<title>tls-tunnel dashboard</title>
<link rel="icon" href="/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/dashboard.css">
<script src="/dashboard.js" defer></script>
</head>
<body data-role="">
<header class="topbar">
  <div class="brand">
    <img src="/favicon.svg" alt="" width="26" height="26">
    <span class="brand-name">tls-tunnel</span>
    <span id="role" class="role-badge">…</span>
  </div>
  <div id="meta" class="meta"></div>
  <div id="live" class="live" data-state="connecting" title="Connection of this page to the stats endpoint">
    <span class="dot"></span><span id="live-text">connecting…</span>
  </div>
</header>
<main>
  <section id="banner" class="banner" hidden></section>
  <section id="cards" class="cards" aria-label="Summary"></section>
  <section class="panel">
    <div class="panel-head"><h2 id="list-title">Clients</h2><span id="list-hint" class="hint"></span></div>
    <div id="clients"></div>
  </section>
  <section class="panel">
    <div class="panel-head"><h2>Recent events</h2><span id="events-hint" class="hint"></span></div>
    <ol id="events" class="events"></ol>
  </section>
</main>
<footer class="footer">
  <span>JSON: <a href="/api/stats?pretty">/api/stats</a></span>
  <span>Prometheus: <a href="/metrics">/metrics</a></span>
  <span>Health: <a href="/healthz">/healthz</a></span>
  <span>Terminal: <code>tls-tunnel top</code></span>
</footer>
</body>
</html>
`;

/** The icon: a lock inside a tunnel arch. */
export const FAVICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">
<defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1">
<stop offset="0" stop-color="#58a6ff"/><stop offset="1" stop-color="#3fb950"/></linearGradient></defs>
<rect width="32" height="32" rx="8" fill="#0d1117"/>
<path d="M5 27V16a11 11 0 0 1 22 0v11" fill="none" stroke="url(#g)" stroke-width="3" stroke-linecap="round"/>
<rect x="11" y="16" width="10" height="8" rx="2" fill="url(#g)"/>
<path d="M13 16v-2a3 3 0 0 1 6 0v2" fill="none" stroke="url(#g)" stroke-width="2"/>
</svg>
`;

/** The stylesheet: a dark theme; status colours match `top`'s. */
export const DASHBOARD_CSS = `:root {
  color-scheme: dark;
  --bg: #0d1117; --panel: #161b22; --panel-2: #1c2230; --line: #30363d; --text: #e6edf3; --muted: #8b949e;
  --faint: #6e7681; --accent: #58a6ff; --green: #3fb950; --amber: #d29922; --red: #f85149; --blue: #58a6ff;
  --grey: #6e7681; --radius: 10px;
  --mono: ui-monospace, SFMono-Regular, "SF Mono", Menlo, Consolas, "Liberation Mono", monospace;
}
* { box-sizing: border-box; }
[hidden] { display: none !important; }
html, body { margin: 0; background: var(--bg); color: var(--text); }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
code, .mono { font-family: var(--mono); font-size: 12.5px; }
.topbar { position: sticky; top: 0; z-index: 5; display: flex; align-items: center; gap: 18px;
  padding: 12px 24px; background: rgba(13,17,23,.92); backdrop-filter: blur(6px); border-bottom: 1px solid var(--line); }
.brand { display: flex; align-items: center; gap: 10px; }
.brand-name { font-weight: 700; font-size: 17px; letter-spacing: .2px; }
.role-badge { font-size: 11px; text-transform: uppercase; letter-spacing: .8px; padding: 2px 8px; border-radius: 999px;
  background: #1f6feb33; color: #79c0ff; border: 1px solid #1f6feb66; }
.meta { flex: 1; color: var(--muted); font-size: 13px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.meta b { color: var(--text); font-weight: 600; }
.live { display: flex; align-items: center; gap: 8px; font-size: 12.5px; color: var(--muted); padding: 4px 10px;
  border: 1px solid var(--line); border-radius: 999px; background: var(--panel); }
.live .dot { width: 8px; height: 8px; border-radius: 50%; background: var(--grey); }
.live[data-state="live"] .dot { background: var(--green); box-shadow: 0 0 0 0 #3fb95088; animation: pulse 2s infinite; }
.live[data-state="polling"] .dot { background: var(--blue); }
.live[data-state="connecting"] .dot { background: var(--amber); }
.live[data-state="offline"] .dot { background: var(--red); }
.live[data-state="offline"] { color: var(--red); border-color: #f8514966; }
@keyframes pulse { 0% { box-shadow: 0 0 0 0 #3fb95088; } 70% { box-shadow: 0 0 0 7px #3fb95000; } 100% { box-shadow: 0 0 0 0 #3fb95000; } }
main { max-width: 1280px; margin: 0 auto; padding: 20px 24px 8px; display: flex; flex-direction: column; gap: 18px; }
.banner { display: flex; align-items: center; gap: 14px; padding: 14px 18px; border-radius: var(--radius);
  border: 1px solid var(--line); background: var(--panel); font-size: 15px; }
.banner .big-dot { width: 12px; height: 12px; border-radius: 50%; flex: none; }
.banner[data-state="connected"] { border-color: #3fb95066; background: linear-gradient(90deg, #3fb95018, var(--panel) 60%); }
.banner[data-state="connected"] .big-dot { background: var(--green); }
.banner[data-state="waiting"] { border-color: #d2992266; background: linear-gradient(90deg, #d2992220, var(--panel) 60%); }
.banner[data-state="waiting"] .big-dot { background: var(--amber); }
.banner[data-state="connecting"] .big-dot { background: var(--blue); }
.banner[data-state="stopped"] .big-dot { background: var(--grey); }
.banner .sub { color: var(--muted); font-size: 13px; }
.push-right { margin-left: auto; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(180px, 1fr)); gap: 12px; }
.card { background: var(--panel); border: 1px solid var(--line); border-radius: var(--radius); padding: 12px 14px;
  position: relative; overflow: hidden; min-height: 84px; }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .6px; }
.card .value { font-size: 26px; font-weight: 650; margin-top: 2px; font-variant-numeric: tabular-nums; }
.card .value small { font-size: 13px; color: var(--muted); font-weight: 500; margin-left: 4px; }
.card .foot { color: var(--faint); font-size: 12px; margin-top: 2px; }
.card svg.spark { position: absolute; left: 0; right: 0; bottom: 0; width: 100%; height: 34px; opacity: .9; }
.card.warn .value { color: var(--amber); }
.card.bad .value { color: var(--red); }
.panel { background: var(--panel); border: 1px solid var(--line); border-radius: var(--radius); padding: 14px 16px; }
.panel-head { display: flex; align-items: baseline; gap: 12px; margin-bottom: 10px; }
.panel h2 { margin: 0; font-size: 15px; font-weight: 650; }
.hint { color: var(--muted); font-size: 12.5px; }
.empty { color: var(--muted); padding: 18px 4px; text-align: center; }
.client { border: 1px solid var(--line); border-radius: 8px; margin-bottom: 12px; background: var(--panel-2); overflow: hidden;
  transition: opacity .3s, border-color .3s; }
.client:last-child { margin-bottom: 0; }
.client-head { display: flex; flex-wrap: wrap; align-items: center; gap: 6px 14px; padding: 10px 14px;
  border-bottom: 1px solid var(--line); }
.client-name { font-weight: 650; font-size: 15px; display: flex; align-items: center; gap: 8px; }
.client-name .dot { width: 10px; height: 10px; border-radius: 50%; background: var(--green); box-shadow: 0 0 8px #3fb95088; }
.client .fact { color: var(--muted); font-size: 12.5px; }
.client .fact b { color: var(--text); font-weight: 550; }
.client .state-pill { margin-left: auto; }
.client[data-state="disconnected"] { border-color: #f8514966; opacity: .72; }
.client[data-state="disconnected"] .client-name .dot { background: var(--red); box-shadow: 0 0 8px #f8514988; }
.client[data-state="disconnected"] .client-head { background: #f851490f; }
table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; table-layout: fixed; }
col.c-status { width: 132px; } col.c-proxy { width: 13%; } col.c-num { width: 66px; }
col.c-bytes { width: 92px; } col.c-rate { width: 176px; }
td { overflow: hidden; text-overflow: ellipsis; }
th, td { text-align: left; padding: 7px 10px; border-bottom: 1px solid #30363d88; white-space: nowrap; }
th { color: var(--muted); font-weight: 550; font-size: 11.5px; text-transform: uppercase; letter-spacing: .5px; }
tr:last-child td { border-bottom: none; }
td.num, th.num { text-align: right; }
tr.has-error td { border-bottom: none; }
tr.err-row td { white-space: normal; color: #ff9b94; font-size: 12.5px; padding: 0 10px 9px 152px; }
.err-label { color: var(--faint); text-transform: uppercase; font-size: 10.5px; letter-spacing: .5px; margin-right: 8px; }
.arrow { color: var(--muted); margin: 0 7px; font-family: system-ui, sans-serif; }
.pill { display: inline-flex; align-items: center; gap: 6px; font-size: 12px; font-weight: 600; padding: 2px 9px;
  border-radius: 999px; border: 1px solid; }
.pill::before { content: ""; width: 7px; height: 7px; border-radius: 50%; background: currentColor; }
.pill.healthy, .pill.connected { color: var(--green); border-color: #3fb95055; background: #3fb95014; }
.pill.pending, .pill.connecting { color: var(--blue); border-color: #58a6ff55; background: #58a6ff14; }
.pill.unhealthy, .pill.waiting { color: var(--amber); border-color: #d2992255; background: #d2992214; }
.pill.bind_failed, .pill.disconnected { color: var(--red); border-color: #f8514955; background: #f8514914; }
.pill.closed, .pill.stopped { color: var(--grey); border-color: #6e768155; background: #6e768114; }
.rate { color: var(--muted); font-size: 12px; }
.rate.hot { color: var(--accent); }
.events { list-style: none; margin: 0; padding: 0; max-height: 340px; overflow: auto; }
.events li { display: grid; grid-template-columns: 76px 74px 250px 1fr; gap: 10px; align-items: baseline;
  padding: 6px 4px; border-bottom: 1px solid #30363d66; font-size: 13px; }
.events li:last-child { border-bottom: none; }
.events li.new { animation: flash 1.6s ease-out; }
@keyframes flash { from { background: #1f6feb33; } to { background: transparent; } }
.events time { color: var(--faint); font-family: var(--mono); font-size: 12px; }
.events .code { font-family: var(--mono); font-size: 12px; color: var(--muted); overflow: hidden; text-overflow: ellipsis;
  white-space: nowrap; }
.lvl { font-size: 11px; font-weight: 700; text-transform: uppercase; letter-spacing: .5px; }
.lvl.info { color: var(--blue); } .lvl.warning { color: var(--amber); } .lvl.error { color: var(--red); }
.footer { max-width: 1280px; margin: 0 auto; padding: 10px 24px 26px; color: var(--faint); font-size: 12.5px;
  display: flex; flex-wrap: wrap; gap: 22px; }
.login { max-width: 380px; margin: 12vh auto; background: var(--panel); border: 1px solid var(--line);
  border-radius: var(--radius); padding: 26px; }
.login h1 { font-size: 18px; margin: 0 0 6px; display: flex; align-items: center; gap: 10px; }
.login p { color: var(--muted); margin: 0 0 16px; }
.login input { width: 100%; padding: 9px 11px; border-radius: 8px; border: 1px solid var(--line); background: var(--bg);
  color: var(--text); font: inherit; margin-bottom: 12px; }
.login button { width: 100%; padding: 9px; border: 0; border-radius: 8px; background: #238636; color: #fff;
  font: inherit; font-weight: 600; cursor: pointer; }
.login .error { color: var(--red); }
@media (max-width: 760px) {
  .meta { display: none; }
  .events li { grid-template-columns: 64px 64px 1fr; }
  .events .code { display: none; }
  .table-wrap { overflow-x: auto; }
  table { min-width: 980px; }
}
`;

/** The script. Plain ES2020 without template literals, so it can live in this TS string unchanged. */
export const DASHBOARD_JS = String.raw`"use strict";
(function () {
  var KEEP_GONE_MS = 10 * 60 * 1000;
  var SPARK_POINTS = 60;
  var state = {
    last: null,          // last snapshot
    prevBytes: {},       // "client\u0000proxy" -> {in, out, t}
    rates: {},           // same key -> {in, out} bytes/s
    gone: {},            // client name -> {client, goneAt}
    sparkIn: [], sparkOut: [],
    newestEvent: 0,
    skewMs: 0,           // endpoint clock - browser clock
    rateAt: undefined,   // endpoint time of the last rate computation
    lastUpdate: 0,
  };

  function $(id) { return document.getElementById(id); }
  function h(tag, attrs) {
    var el = document.createElement(tag);
    if (attrs) {
      for (var key in attrs) {
        if (!Object.prototype.hasOwnProperty.call(attrs, key)) continue;
        var value = attrs[key];
        if (value === null || value === undefined || value === false) continue;
        if (key === "class") el.className = value;
        else if (key === "text") el.textContent = value;
        else if (key.indexOf("data-") === 0 || key === "title" || key === "datetime" || key === "colspan") el.setAttribute(key, String(value));
        else el[key] = value;
      }
    }
    for (var i = 2; i < arguments.length; i++) {
      var child = arguments[i];
      if (child === null || child === undefined || child === false) continue;
      if (Array.isArray(child)) child.forEach(function (c) { if (c) el.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
      else el.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return el;
  }
  function replace(el) {
    while (el.firstChild) el.removeChild(el.firstChild);
    for (var i = 1; i < arguments.length; i++) {
      var child = arguments[i];
      if (Array.isArray(child)) child.forEach(function (c) { if (c) el.appendChild(c); });
      else if (child) el.appendChild(child);
    }
  }

  function fmtBytes(n) {
    if (n < 1024) return n + " B";
    var units = ["KiB", "MiB", "GiB", "TiB"];
    var value = n / 1024, i = 0;
    while (value >= 1024 && i < units.length - 1) { value /= 1024; i++; }
    return value.toFixed(value < 10 ? 2 : value < 100 ? 1 : 0) + " " + units[i];
  }
  function fmtRate(n) { return n < 0.5 ? "0 B/s" : fmtBytes(Math.round(n)) + "/s"; }
  function fmtDuration(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    var d = Math.floor(s / 86400), hh = Math.floor(s % 86400 / 3600), mm = Math.floor(s % 3600 / 60), ss = s % 60;
    if (d > 0) return d + "d " + hh + "h";
    if (hh > 0) return hh + "h " + (mm < 10 ? "0" : "") + mm + "m";
    if (mm > 0) return mm + "m " + (ss < 10 ? "0" : "") + ss + "s";
    return ss + "s";
  }
  function fmtTime(ms) {
    var d = new Date(ms);
    function two(n) { return (n < 10 ? "0" : "") + n; }
    return two(d.getHours()) + ":" + two(d.getMinutes()) + ":" + two(d.getSeconds());
  }
  function fmtRtt(ms) { return ms === null || ms === undefined ? "–" : ms < 10 ? ms.toFixed(2) + " ms" : Math.round(ms) + " ms"; }
  function plural(n, word) { return n + " " + word + (n === 1 ? "" : "s"); }
  function now() { return Date.now() + state.skewMs; }
  function statusLabel(s) { return s === "bind_failed" ? "bind failed" : s; }
  function pill(kind, text) { return h("span", { class: "pill " + kind, text: text || statusLabel(kind) }); }

  function setLive(kind, text) {
    var live = $("live");
    live.setAttribute("data-state", kind);
    $("live-text").textContent = text;
  }

  // ---- rates -------------------------------------------------------------------------------------
  function proxyRows(snap) {
    var rows = [];
    if (snap.role === "server") {
      snap.clients.forEach(function (c) { c.proxies.forEach(function (p) { rows.push({ key: c.name + "\u0000" + p.name, p: p }); }); });
    } else {
      snap.proxies.forEach(function (p) { rows.push({ key: "\u0000" + p.name, p: p }); });
    }
    return rows;
  }
  // Rates are byte deltas over at least RATE_WINDOW_MS of the endpoint's clock, so the extra snapshots
  // pushed right after an event do not turn a few bytes into a spike.
  var RATE_WINDOW_MS = 800;
  function updateRates(snap) {
    var t = snap.now_ms, totalIn = 0, totalOut = 0;
    var due = state.rateAt === undefined || t - state.rateAt >= RATE_WINDOW_MS;
    var next = due ? {} : state.prevBytes;
    proxyRows(snap).forEach(function (row) {
      var prev = state.prevBytes[row.key];
      var rate = state.rates[row.key] || { in: 0, out: 0 };
      if (due) {
        rate = { in: 0, out: 0 };
        if (prev && t > prev.t && row.p.bytes_in >= prev.in && row.p.bytes_out >= prev.out) {
          var dt = (t - prev.t) / 1000;
          rate = { in: (row.p.bytes_in - prev.in) / dt, out: (row.p.bytes_out - prev.out) / dt };
        }
        state.rates[row.key] = rate;
      }
      if (due || !prev) next[row.key] = { in: row.p.bytes_in, out: row.p.bytes_out, t: t };
      totalIn += rate.in; totalOut += rate.out;
    });
    state.prevBytes = next;
    if (due) {
      state.rateAt = t;
      state.sparkIn.push(totalIn); state.sparkOut.push(totalOut);
      if (state.sparkIn.length > SPARK_POINTS) { state.sparkIn.shift(); state.sparkOut.shift(); }
    }
    return { in: totalIn, out: totalOut };
  }

  function sparkline(values, color) {
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("viewBox", "0 0 " + (SPARK_POINTS - 1) + " 30");
    svg.setAttribute("preserveAspectRatio", "none");
    var base = document.createElementNS(ns, "line");
    base.setAttribute("x1", "0"); base.setAttribute("x2", String(SPARK_POINTS - 1)); base.setAttribute("y1", "29.5"); base.setAttribute("y2", "29.5");
    base.setAttribute("stroke", color); base.setAttribute("stroke-opacity", "0.35"); base.setAttribute("vector-effect", "non-scaling-stroke");
    svg.appendChild(base);
    if (values.length < 2) return svg;
    var max = Math.max.apply(null, values.concat([1]));
    var offset = SPARK_POINTS - values.length;
    var pts = values.map(function (v, i) { return (offset + i) + "," + (29 - v / max * 26).toFixed(2); });
    var area = document.createElementNS(ns, "path");
    area.setAttribute("d", "M" + offset + ",30 L" + pts.join(" L") + " L" + (SPARK_POINTS - 1) + ",30 Z");
    area.setAttribute("fill", color); area.setAttribute("fill-opacity", "0.16");
    var line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", pts.join(" "));
    line.setAttribute("fill", "none"); line.setAttribute("stroke", color); line.setAttribute("stroke-width", "1.4");
    line.setAttribute("vector-effect", "non-scaling-stroke");
    svg.appendChild(area); svg.appendChild(line);
    return svg;
  }

  function card(label, value, unit, foot, extraClass, spark) {
    return h("div", { class: "card" + (extraClass ? " " + extraClass : "") },
      h("div", { class: "label", text: label }),
      h("div", { class: "value" }, String(value), unit ? h("small", { text: unit }) : null),
      foot ? h("div", { class: "foot", text: foot }) : null,
      spark || null);
  }

  // ---- proxies table -----------------------------------------------------------------------------
  function proxyTable(proxies, keyPrefix, goneClient) {
    if (proxies.length === 0) return h("div", { class: "empty", text: "No proxies registered." });
    var head = h("tr", null,
      h("th", { text: "Status" }), h("th", { text: "Proxy" }), h("th", { text: "Published → local target" }),
      h("th", { class: "num", text: "Active" }), h("th", { class: "num", text: "Total" }),
      h("th", { class: "num", text: "Failed" }), h("th", { class: "num", text: "In" }),
      h("th", { class: "num", text: "Out" }), h("th", { class: "num", text: "Rate in / out" }));
    var body = [];
    proxies.forEach(function (p) {
      var status = goneClient ? "closed" : p.status;
      var rate = goneClient ? { in: 0, out: 0 } : (state.rates[keyPrefix + "\u0000" + p.name] || { in: 0, out: 0 });
      var hot = rate.in + rate.out > 1024;
      body.push(h("tr", { class: p.last_error ? "has-error" : "", "data-proxy": p.name, "data-status": status },
        h("td", null, pill(status)),
        h("td", { title: p.name }, h("b", { text: p.name })),
        h("td", { class: "mono" },
          (p.publish_addr || "?") + ":" + (p.publish_port || "–"), h("span", { class: "arrow", text: "→" }),
          p.local_addr + ":" + p.local_port),
        h("td", { class: "num", text: String(goneClient ? 0 : p.active_connections) }),
        h("td", { class: "num", text: String(p.total_connections) }),
        h("td", { class: "num", text: String(p.failed_connections) }),
        h("td", { class: "num", text: fmtBytes(p.bytes_in), title: p.bytes_in + " bytes" }),
        h("td", { class: "num", text: fmtBytes(p.bytes_out), title: p.bytes_out + " bytes" }),
        h("td", { class: "num" }, h("span", { class: "rate" + (hot ? " hot" : ""), text: fmtRate(rate.in) + " / " + fmtRate(rate.out) }))));
      if (p.last_error) {
        body.push(h("tr", { class: "err-row" }, h("td", { colspan: 9 }, h("span", { class: "err-label", text: "last error" }), p.last_error)));
      }
    });
    var cols = h("colgroup", null, ["c-status", "c-proxy", "c-target", "c-num", "c-num", "c-num", "c-bytes", "c-bytes", "c-rate"].map(function (c) { return h("col", { class: c }); }));
    return h("div", { class: "table-wrap" }, h("table", null, cols, h("thead", null, head), h("tbody", null, body)));
  }

  // ---- server view -------------------------------------------------------------------------------
  function renderServer(snap, totals) {
    var t = now();
    var present = {};
    snap.clients.forEach(function (c) { present[c.name] = true; delete state.gone[c.name]; });
    if (state.last && state.last.role === "server") {
      state.last.clients.forEach(function (c) {
        if (!present[c.name] && !state.gone[c.name]) state.gone[c.name] = { client: c, goneAt: snap.now_ms };
      });
    }
    Object.keys(state.gone).forEach(function (name) { if (snap.now_ms - state.gone[name].goneAt > KEEP_GONE_MS) delete state.gone[name]; });

    var active = 0, total = 0, failed = 0, proxies = 0, up = 0, streams = 0;
    snap.clients.forEach(function (c) {
      streams += c.streams;
      c.proxies.forEach(function (p) { proxies++; if (p.status === "healthy") up++; active += p.active_connections; total += p.total_connections; failed += p.failed_connections; });
    });
    var goneCount = Object.keys(state.gone).length;
    replace($("cards"),
      card("Clients", snap.clients.length, "connected", goneCount ? goneCount + " recently disconnected" : plural(snap.sessions_total, "session") + " since start", goneCount ? "warn" : ""),
      card("Proxies", up, "/ " + proxies + " healthy", plural(streams, "yamux stream") + " open", up < proxies ? "warn" : ""),
      card("Connections", active, "active", total + " total · " + failed + " failed"),
      card("Inbound", fmtRate(totals.in), "", "from outside peers", "", sparkline(state.sparkIn, "#3fb950")),
      card("Outbound", fmtRate(totals.out), "", "back to outside peers", "", sparkline(state.sparkOut, "#58a6ff")),
      card("Auth failures", snap.auth_failures_total, "", "since start", snap.auth_failures_total ? "bad" : ""));

    $("list-title").textContent = "Clients";
    $("list-hint").textContent = snap.clients.length + " connected" + (goneCount ? ", " + goneCount + " disconnected" : "");
    var cards = snap.clients.slice().sort(function (a, b) { return a.name < b.name ? -1 : a.name > b.name ? 1 : 0; }).map(function (c) {
      return h("article", { class: "client", "data-client": c.name, "data-state": "connected" },
        h("div", { class: "client-head" },
          h("span", { class: "client-name" }, h("span", { class: "dot" }), c.name),
          h("span", { class: "fact" }, "from ", h("b", { class: "mono", text: c.remote_addr })),
          h("span", { class: "fact", title: new Date(c.connected_since_ms).toString() }, "connected ", h("b", { text: fmtDuration(t - c.connected_since_ms) }), " ago"),
          h("span", { class: "fact" }, "rtt ", h("b", { text: fmtRtt(c.rtt_ms) })),
          h("span", { class: "fact" }, h("b", { text: String(c.streams) }), c.streams === 1 ? " stream" : " streams"),
          h("span", { class: "fact mono", text: c.client_id === c.name ? c.session_id : c.client_id + " · " + c.session_id }),
          h("span", { class: "state-pill" }, pill("connected"))),
        proxyTable(c.proxies, c.name, false));
    });
    var goneCards = Object.keys(state.gone).sort().map(function (name) {
      var g = state.gone[name];
      return h("article", { class: "client", "data-client": name, "data-state": "disconnected" },
        h("div", { class: "client-head" },
          h("span", { class: "client-name" }, h("span", { class: "dot" }), name),
          h("span", { class: "fact" }, "was at ", h("b", { class: "mono", text: g.client.remote_addr })),
          h("span", { class: "fact" }, "disconnected at ", h("b", { text: fmtTime(g.goneAt) }), " (" + fmtDuration(t - g.goneAt) + " ago)"),
          h("span", { class: "state-pill" }, pill("disconnected"))),
        proxyTable(g.client.proxies, name, true));
    });
    var all = cards.concat(goneCards);
    if (all.length === 0) {
      replace($("clients"), h("div", { class: "empty" }, "No clients connected yet. Start one with ", h("code", { text: "tls-tunnel client -c client.toml" }), "."));
    } else replace($("clients"), all);
  }

  // ---- client view -------------------------------------------------------------------------------
  function renderClient(snap, totals) {
    var banner = $("banner");
    banner.hidden = false;
    banner.setAttribute("data-state", snap.state);
    var title, sub;
    if (snap.state === "connected") { title = "Connected to " + snap.server_addr; sub = "rtt " + fmtRtt(snap.rtt_ms) + " · " + plural(snap.sessions_total, "session") + " since start"; }
    else if (snap.state === "waiting") {
      var left = snap.next_attempt_at_ms ? Math.max(0, snap.next_attempt_at_ms - now()) : 0;
      title = "Disconnected from " + snap.server_addr; sub = "reconnecting in " + (left / 1000).toFixed(1) + " s";
    } else if (snap.state === "connecting") { title = "Connecting to " + snap.server_addr + "…"; sub = "TLS, authentication, proxy registration"; }
    else { title = "Stopped"; sub = "the client is shutting down"; }
    replace(banner, h("span", { class: "big-dot" }), h("div", null, h("div", { text: title }), h("div", { class: "sub", id: "banner-sub", text: sub })), h("span", { class: "push-right" }, pill(snap.state)));

    var active = 0, total = 0, failed = 0, up = 0;
    snap.proxies.forEach(function (p) { if (p.status === "healthy") up++; active += p.active_connections; total += p.total_connections; failed += p.failed_connections; });
    replace($("cards"),
      card("Proxies", up, "/ " + snap.proxies.length + " healthy", plural(snap.sessions_total, "session") + " since start", up < snap.proxies.length ? "warn" : ""),
      card("Connections", active, "active", total + " total · " + failed + " failed"),
      card("Inbound", fmtRate(totals.in), "", "towards local services", "", sparkline(state.sparkIn, "#3fb950")),
      card("Outbound", fmtRate(totals.out), "", "back through the tunnel", "", sparkline(state.sparkOut, "#58a6ff")),
      card("Round trip", fmtRtt(snap.rtt_ms), "", "keepalive to the server"));
    $("list-title").textContent = "Proxies";
    $("list-hint").textContent = snap.proxies.length + " configured";
    replace($("clients"), h("article", { class: "client", "data-client": "", "data-state": snap.state === "connected" ? "connected" : "disconnected" }, proxyTable(snap.proxies, "", false)));
  }

  function renderEvents(snap) {
    var events = (snap.recent_events || []).slice(-40).reverse();
    var newest = state.newestEvent;
    $("events-hint").textContent = events.length ? "newest first" : "";
    if (events.length === 0) { replace($("events"), h("li", { class: "empty", text: "Nothing yet." })); return; }
    replace($("events"), events.map(function (e) {
      return h("li", { class: state.last && e.time_ms > newest ? "new" : "" },
        h("time", { text: fmtTime(e.time_ms), title: new Date(e.time_ms).toString() }),
        h("span", { class: "lvl " + e.level, text: e.level }),
        h("span", { class: "code", text: e.code + (e.client ? " · " + e.client : "") }),
        h("span", { text: e.message }));
    }));
    if (events[0]) state.newestEvent = Math.max(state.newestEvent, events[0].time_ms);
  }

  function render(snap) {
    state.skewMs = snap.now_ms - Date.now();
    state.lastUpdate = Date.now();
    document.body.setAttribute("data-role", snap.role);
    $("role").textContent = snap.role;
    document.title = "tls-tunnel " + snap.role + (snap.role === "server" ? " · " + snap.clients.length + " client(s)" : " · " + snap.state);
    var meta = $("meta");
    replace(meta,
      document.createTextNode("v" + snap.version + " · "),
      h("b", { class: "mono", text: snap.role === "server" ? snap.listen_addr : snap.server_addr }),
      document.createTextNode(" · up " + fmtDuration(snap.now_ms - snap.started_at_ms)));
    var totals = updateRates(snap);
    if (snap.role === "server") { $("banner").hidden = true; renderServer(snap, totals); }
    else renderClient(snap, totals);
    renderEvents(snap);
    state.last = snap;
  }

  // ---- transport: SSE, falling back to polling ----------------------------------------------------
  var source = null, pollTimer = null, failures = 0;
  function poll() {
    fetch("/api/stats", { credentials: "same-origin", cache: "no-store" }).then(function (response) {
      if (response.status === 401) { location.reload(); return null; }
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    }).then(function (snap) {
      if (!snap) return;
      failures = 0;
      setLive("polling", "polling");
      render(snap);
    }).catch(function () {
      failures++;
      setLive("offline", "endpoint unreachable – retrying");
    }).finally(function () {
      pollTimer = setTimeout(poll, failures ? 3000 : 2000);
    });
  }
  function connect() {
    if (!window.EventSource) { poll(); return; }
    var opened = false;
    source = new EventSource("/api/events");
    source.addEventListener("snapshot", function (message) {
      opened = true;
      setLive("live", "live");
      try { render(JSON.parse(message.data)); } catch (error) { console.error(error); }
    });
    source.onerror = function () {
      if (!opened) {
        source.close(); source = null;
        poll();
        return;
      }
      setLive(source.readyState === 2 ? "offline" : "connecting", "reconnecting…");
      if (source.readyState === 2) { source = null; setTimeout(connect, 3000); }
    };
  }

  // Keeps ages and the reconnect countdown moving between snapshots, and flags a stalled feed.
  setInterval(function () {
    if (!state.last) return;
    if (state.last.role === "client" && state.last.state === "waiting" && state.last.next_attempt_at_ms) {
      var sub = document.getElementById("banner-sub");
      if (sub) sub.textContent = "reconnecting in " + (Math.max(0, state.last.next_attempt_at_ms - now()) / 1000).toFixed(1) + " s";
    }
    if (Date.now() - state.lastUpdate > 5000 && $("live").getAttribute("data-state") !== "offline") {
      setLive("offline", "no update for " + fmtDuration(Date.now() - state.lastUpdate));
    }
  }, 250);

  connect();
})();
`;

/** The token form shown at `/` when the endpoint has a `stats_token` and the browser has not logged in. */
export function loginPage(error: string | null): string {
  const escaped = error === null ? "" : `<p class="error">${escapeHtml(error)}</p>`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="dark">
<title>tls-tunnel dashboard · sign in</title>
<link rel="icon" href="/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/dashboard.css">
</head>
<body>
<form class="login" method="post" action="/login">
  <h1><img src="/favicon.svg" alt="" width="24" height="24"> tls-tunnel dashboard</h1>
  <p>This stats endpoint is protected by a token (<code>stats_token</code> in the config).</p>
  ${escaped}
  <input type="password" name="token" placeholder="stats token" autocomplete="current-password" autofocus required>
  <button type="submit">Open dashboard</button>
</form>
</body>
</html>
`;
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}

/// <reference lib="dom" />
/**
 * The dashboard's script, browser TypeScript: `scripts/build_dashboard.ts` bundles it (with the
 * formatters it imports) into `lib/stats/_dashboard_assets.ts`, served as `/dashboard.js`. This folder is
 * a workspace member whose `deno.json` gives it the DOM library instead of Deno's, so `deno check`
 * checks it as browser code and the DOM types do not leak into the rest of the tree.
 *
 * The first paint comes from one `GET /api/stats`, before the event stream is opened (so the page is
 * filled at once, not when the first event arrives); then it follows `/api/events` (server-sent events),
 * falling back to polling `/api/stats` when the stream cannot be opened. When the stream ends and
 * `/api/stats` does not answer either, the server (or client) has stopped: the page says so, with the time
 * of the numbers still shown, instead of leaving them frozen as if live. It builds every element with `textContent` and text nodes, never from HTML strings,
 * because client names, ids and error messages come from the network.
 *
 * Hooks for tests and scripts: each client card has `data-client` (name) and `data-state`
 * (`connected` | `disconnected` | `offline`: a `[[server.clients]]` entry without a session), each proxy
 * row `data-proxy` and `data-status` and its last-hour sparkline `svg.proxy-spark`, the live indicator
 * `#live[data-state]` (`live` | `polling` | `connecting` | `offline` | `stopped`), the notice
 * `#stopped` (shown while the endpoint is down), `body[data-role]`, and `body[data-first-paint]`
 * (`api` when the first render came from `/api/stats`, `events` from the stream).
 *
 * @module
 */

import type {
  ClientRoleSnapshot,
  ClientSnapshot,
  OfflineClientSnapshot,
  ProxySnapshot,
  ServedStats,
  ServerSnapshot,
  ThroughputSnapshot,
} from "../snapshot.ts";
import { formatBytes, formatClock, formatDuration, formatRate, formatRtt } from "../format.ts";
import { $, card, h, pill, replace, setLive, SPARK_POINTS, sparkline } from "./dom.ts";

/** How long a disconnected client stays on the page. */
const KEEP_GONE_MS = 10 * 60 * 1000;
/**
 * Rates are byte deltas over at least this much of the endpoint's clock, so the extra snapshots pushed
 * right after an event do not turn a few bytes into a spike.
 */
const RATE_WINDOW_MS = 800;

/** Bytes per second, both ways. */
interface Rate {
  in: number;
  out: number;
}

const state = {
  /** The last snapshot rendered. */
  last: null as ServedStats | null,
  /** "client\0proxy" → the byte counters and endpoint time of the last rate computation. */
  prevBytes: new Map<string, { in: number; out: number; t: number }>(),
  /** Same key → the rate computed then. */
  rates: new Map<string, Rate>(),
  /** Client name → the client as last seen, and when it disappeared (endpoint time). */
  gone: new Map<string, { client: ClientSnapshot; goneAt: number }>(),
  sparkIn: [] as number[],
  sparkOut: [] as number[],
  /** Time of the newest event shown, so newer ones flash. */
  newestEvent: 0,
  /** Endpoint clock minus browser clock. */
  skewMs: 0,
  /** Endpoint time of the last rate computation. */
  rateAt: undefined as number | undefined,
  /** Browser time of the last snapshot. */
  lastUpdate: 0,
};

function plural(n: number, word: string): string {
  return n + " " + word + (n === 1 ? "" : "s");
}

/** The endpoint's clock, estimated from the browser's. */
function now(): number {
  return Date.now() + state.skewMs;
}

// ---- rates -------------------------------------------------------------------------------------

function proxyRows(snap: ServedStats): Array<{ key: string; p: ProxySnapshot }> {
  const rows: Array<{ key: string; p: ProxySnapshot }> = [];
  if (snap.role === "server") {
    snap.clients.forEach((c) => c.proxies.forEach((p) => rows.push({ key: c.name + "\u0000" + p.name, p })));
  } else {
    snap.proxies.forEach((p) => rows.push({ key: "\u0000" + p.name, p }));
  }
  return rows;
}

/** Updates the per-proxy rates and the sparklines; returns the total rates. */
function updateRates(snap: ServedStats): Rate {
  const t = snap.now_ms;
  let totalIn = 0;
  let totalOut = 0;
  const due = state.rateAt === undefined || t - state.rateAt >= RATE_WINDOW_MS;
  const next = due ? new Map<string, { in: number; out: number; t: number }>() : state.prevBytes;
  proxyRows(snap).forEach((row) => {
    const prev = state.prevBytes.get(row.key);
    let rate = state.rates.get(row.key) ?? { in: 0, out: 0 };
    if (due) {
      rate = { in: 0, out: 0 };
      if (prev && t > prev.t && row.p.bytes_in >= prev.in && row.p.bytes_out >= prev.out) {
        const dt = (t - prev.t) / 1000;
        rate = { in: (row.p.bytes_in - prev.in) / dt, out: (row.p.bytes_out - prev.out) / dt };
      }
      state.rates.set(row.key, rate);
    }
    if (due || !prev) next.set(row.key, { in: row.p.bytes_in, out: row.p.bytes_out, t });
    totalIn += rate.in;
    totalOut += rate.out;
  });
  state.prevBytes = next;
  if (due) {
    state.rateAt = t;
    state.sparkIn.push(totalIn);
    state.sparkOut.push(totalOut);
    if (state.sparkIn.length > SPARK_POINTS) {
      state.sparkIn.shift();
      state.sparkOut.shift();
    }
  }
  return { in: totalIn, out: totalOut };
}

// ---- proxies table -----------------------------------------------------------------------------

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

function proxyTable(proxies: ProxySnapshot[], keyPrefix: string, goneClient: boolean): HTMLElement {
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
        (p.publish_addr || "?") + ":" + (p.publish_port || "–"),
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

// ---- server view -------------------------------------------------------------------------------

function byName(a: ClientSnapshot, b: ClientSnapshot): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

function renderServer(snap: ServerSnapshot & ServedStats, totals: Rate): void {
  const t = now();
  const present = new Set<string>();
  snap.clients.forEach((c) => {
    present.add(c.name);
    state.gone.delete(c.name);
  });
  if (state.last && state.last.role === "server") {
    state.last.clients.forEach((c) => {
      if (!present.has(c.name) && !state.gone.has(c.name)) {
        state.gone.set(c.name, { client: c, goneAt: snap.now_ms });
      }
    });
  }
  for (const [name, gone] of state.gone) {
    if (snap.now_ms - gone.goneAt > KEEP_GONE_MS) state.gone.delete(name);
  }

  let active = 0, total = 0, failed = 0, proxies = 0, up = 0, streams = 0;
  snap.clients.forEach((c) => {
    streams += c.streams;
    c.proxies.forEach((p) => {
      proxies++;
      if (p.status === "healthy") up++;
      active += p.active_connections;
      total += p.total_connections;
      failed += p.failed_connections;
    });
  });
  const goneCount = state.gone.size;
  replace(
    $("cards"),
    card(
      "Clients",
      snap.clients.length,
      "connected",
      goneCount
        ? goneCount + " recently disconnected"
        : plural(snap.sessions_total, "session") + " since start",
      goneCount ? "warn" : "",
    ),
    card(
      "Proxies",
      up,
      "/ " + proxies + " healthy",
      plural(streams, "yamux stream") + " open",
      up < proxies ? "warn" : "",
    ),
    card("Connections", active, "active", total + " total · " + failed + " failed", ""),
    card("Inbound", formatRate(totals.in), "", "from outside peers", "", sparkline(state.sparkIn, "#3fb950")),
    card(
      "Outbound",
      formatRate(totals.out),
      "",
      "back to outside peers",
      "",
      sparkline(state.sparkOut, "#58a6ff"),
    ),
    card("Auth failures", snap.auth_failures_total, "", "since start", snap.auth_failures_total ? "bad" : ""),
  );

  $("list-title").textContent = "Clients";
  const offlineCount = (snap.offline_clients ?? []).filter((entry) => !state.gone.has(entry.name)).length;
  $("list-hint").textContent = snap.clients.length + " connected" +
    (goneCount ? ", " + goneCount + " disconnected" : "") +
    (offlineCount ? ", " + offlineCount + " offline" : "");
  const cards = snap.clients.slice().sort(byName).map((c) =>
    h(
      "article",
      { class: "client", "data-client": c.name, "data-state": "connected" },
      h(
        "div",
        { class: "client-head" },
        h("span", { class: "client-name" }, h("span", { class: "dot" }), c.name),
        h("span", { class: "fact" }, "from ", h("b", { class: "mono", text: c.remote_addr })),
        h(
          "span",
          { class: "fact", title: new Date(c.connected_since_ms).toString() },
          "connected ",
          h("b", { text: formatDuration(t - c.connected_since_ms, "spaced") }),
          " ago",
        ),
        h("span", { class: "fact" }, "rtt ", h("b", { text: formatRtt(c.rtt_ms) })),
        h(
          "span",
          { class: "fact" },
          h("b", { text: String(c.streams) }),
          c.streams === 1 ? " stream" : " streams",
        ),
        h("span", {
          class: "fact mono",
          text: c.client_id === c.name ? c.session_id : c.client_id + " · " + c.session_id,
        }),
        h("span", { class: "state-pill" }, pill("connected")),
      ),
      proxyTable(c.proxies, c.name, false),
    )
  );
  const goneCards = [...state.gone.keys()].sort().map((name) => {
    const g = state.gone.get(name);
    if (g === undefined) return null;
    return h(
      "article",
      { class: "client", "data-client": name, "data-state": "disconnected" },
      h(
        "div",
        { class: "client-head" },
        h("span", { class: "client-name" }, h("span", { class: "dot" }), name),
        h("span", { class: "fact" }, "was at ", h("b", { class: "mono", text: g.client.remote_addr })),
        h(
          "span",
          { class: "fact" },
          "disconnected at ",
          h("b", { text: formatClock(g.goneAt) }),
          " (" + formatDuration(t - g.goneAt, "spaced") + " ago)",
        ),
        h("span", { class: "state-pill" }, pill("disconnected")),
      ),
      proxyTable(g.client.proxies, name, true),
    );
  });
  const offline = (snap.offline_clients ?? []).filter((entry) => !state.gone.has(entry.name));
  const offlineCards = offline.map((entry) => offlineCard(entry, t));
  const all = [...cards, ...goneCards.filter((el) => el !== null), ...offlineCards];
  if (all.length === 0) {
    replace(
      $("clients"),
      h(
        "div",
        { class: "empty" },
        "No clients connected yet. Start one with ",
        h("code", { text: "tls-tunnel client -c client.toml" }),
        ".",
      ),
    );
  } else replace($("clients"), all);
}

/** A `[[server.clients]]` entry without a session: offline, and when it was last seen. */
function offlineCard(entry: OfflineClientSnapshot, t: number): HTMLElement {
  const seen = entry.last_seen_ms === null
    ? h("span", { class: "fact" }, "not seen since the server started")
    : h(
      "span",
      { class: "fact", title: new Date(entry.last_seen_ms).toString() },
      "last seen ",
      h("b", { text: formatDuration(t - entry.last_seen_ms, "spaced") }),
      " ago (" + formatClock(entry.last_seen_ms) + ")",
    );
  return h(
    "article",
    { class: "client offline", "data-client": entry.name, "data-state": "offline" },
    h(
      "div",
      { class: "client-head" },
      h("span", { class: "client-name" }, h("span", { class: "dot" }), entry.name),
      seen,
      h("span", { class: "state-pill" }, pill("offline")),
    ),
  );
}

// ---- client view -------------------------------------------------------------------------------

function renderClient(snap: ClientRoleSnapshot & ServedStats, totals: Rate): void {
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

function renderEvents(snap: ServedStats): void {
  const events = (snap.recent_events || []).slice(-40).reverse();
  const newest = state.newestEvent;
  $("events-hint").textContent = events.length ? "newest first" : "";
  if (events.length === 0) {
    replace($("events"), h("li", { class: "empty", text: "Nothing yet." }));
    return;
  }
  replace(
    $("events"),
    events.map((e) =>
      h(
        "li",
        { class: state.last && e.time_ms > newest ? "new" : "" },
        h("time", { text: formatClock(e.time_ms), title: new Date(e.time_ms).toString() }),
        h("span", { class: "lvl " + e.level, text: e.level }),
        h("span", { class: "code", text: e.code + (e.client ? " · " + e.client : "") }),
        h("span", { text: e.message }),
      )
    ),
  );
  const first = events[0];
  if (first) state.newestEvent = Math.max(state.newestEvent, first.time_ms);
}

function render(snap: ServedStats, source: "api" | "events"): void {
  if (!document.body.hasAttribute("data-first-paint")) document.body.setAttribute("data-first-paint", source);
  showStopped(false);
  state.skewMs = snap.now_ms - Date.now();
  state.lastUpdate = Date.now();
  document.body.setAttribute("data-role", snap.role);
  $("role").textContent = snap.role;
  document.title = "tls-tunnel " + snap.role +
    (snap.role === "server" ? " · " + snap.clients.length + " client(s)" : " · " + snap.state);
  replace(
    $("meta"),
    document.createTextNode("v" + snap.version + " · "),
    h("b", { class: "mono", text: snap.role === "server" ? snap.listen_addr : snap.server_addr }),
    document.createTextNode(" · up " + formatDuration(snap.now_ms - snap.started_at_ms, "spaced")),
  );
  const totals = updateRates(snap);
  if (snap.role === "server") {
    $("banner").hidden = true;
    renderServer(snap, totals);
  } else renderClient(snap, totals);
  renderEvents(snap);
  state.last = snap;
}

// ---- transport: a first GET, then SSE, falling back to polling -----------------------------------

let failures = 0;

/**
 * Shows or hides the "stopped" notice. Shown, it names the time of the numbers left on the page, which
 * are dimmed: they are the last ones the endpoint gave, not live.
 */
function showStopped(stopped: boolean): void {
  const notice = $("stopped");
  if (notice.hidden === !stopped) return;
  notice.hidden = !stopped;
  document.body.classList.toggle("endpoint-down", stopped);
  if (!stopped) return;
  const last = state.last;
  const role = last?.role ?? "server";
  replace(
    notice,
    h("b", { text: "The " + role + " has stopped" }),
    document.createTextNode(
      " — its stats endpoint no longer answers. " +
        (last ? "The numbers below are the last ones, from " + formatClock(last.now_ms) + "." : "") +
        " This page reconnects by itself when it is back.",
    ),
  );
  setLive("stopped", role + " stopped");
}

/** One `GET /api/stats`: the snapshot, or null when the endpoint does not answer with one. */
async function fetchStats(): Promise<ServedStats | null> {
  try {
    const response = await fetch("/api/stats", { credentials: "same-origin", cache: "no-store" });
    if (response.status === 401) {
      location.reload();
      return null;
    }
    if (!response.ok) return null;
    return await response.json() as ServedStats;
  } catch {
    return null;
  }
}

async function poll(): Promise<void> {
  const snap = await fetchStats();
  if (snap) {
    failures = 0;
    setLive("polling", "polling");
    render(snap, "api");
  } else {
    failures++;
    showStopped(true);
  }
  setTimeout(poll, failures ? 3000 : 2000);
}

function openStream(): void {
  if (typeof EventSource === "undefined") {
    void poll();
    return;
  }
  let opened = false;
  const stream = new EventSource("/api/events");
  stream.addEventListener("snapshot", (message) => {
    opened = true;
    setLive("live", "live");
    try {
      render(JSON.parse(message.data) as ServedStats, "events");
    } catch (error) {
      console.error(error);
    }
  });
  stream.onerror = () => {
    if (!opened) {
      stream.close();
      void poll();
      return;
    }
    // The stream ended: ask /api/stats whether the endpoint is still there (a proxy cut the stream) or
    // gone (the process stopped). EventSource keeps retrying on its own either way.
    setLive("connecting", "reconnecting…");
    void fetchStats().then((snap) => {
      if (snap) render(snap, "api");
      else showStopped(true);
    });
    if (stream.readyState === EventSource.CLOSED) setTimeout(openStream, 3000);
  };
}

/** The first paint from `/api/stats`, then the live stream. */
async function start(): Promise<void> {
  const snap = await fetchStats();
  if (snap) render(snap, "api");
  else showStopped(true);
  openStream();
}

// Keeps ages and the reconnect countdown moving between snapshots, and flags a stalled feed.
setInterval(() => {
  const last = state.last;
  if (!last) return;
  if (last.role === "client" && last.state === "waiting" && last.next_attempt_at_ms) {
    const sub = document.getElementById("banner-sub");
    if (sub) {
      sub.textContent = "reconnecting in " +
        (Math.max(0, last.next_attempt_at_ms - now()) / 1000).toFixed(1) + " s";
    }
  }
  const live = $("live").getAttribute("data-state");
  if (Date.now() - state.lastUpdate > 5000 && live !== "offline" && live !== "stopped") {
    setLive("offline", "no update for " + formatDuration(Date.now() - state.lastUpdate, "spaced"));
  }
}, 250);

void start();

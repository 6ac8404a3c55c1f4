/**
 * Renders a stats snapshot in the Prometheus text exposition format (version 0.0.4): `# HELP` and
 * `# TYPE` per family, counters ending in `_total`, sizes in bytes, durations in seconds.
 *
 * Server series:
 *
 * | name | type | labels |
 * | --- | --- | --- |
 * | `tls_tunnel_info` | gauge (always 1) | `role`, `version` |
 * | `tls_tunnel_start_time_seconds` | gauge | |
 * | `tls_tunnel_clients_connected` | gauge | |
 * | `tls_tunnel_sessions_total` | counter | |
 * | `tls_tunnel_auth_failures_total` | counter | |
 * | `tls_tunnel_connections_pending` | gauge | |
 * | `tls_tunnel_connections_refused_total` | counter | `reason` (`pending_limit`, `pending_per_ip_limit`) |
 * | `tls_tunnel_listener_connections_total` | counter | `transport`, `listen_addr` (one series per tunnel listener) |
 * | `tls_tunnel_listener_sessions_total` | counter | `transport`, `listen_addr` |
 * | `tls_tunnel_client_opened_streams_total` | counter | `kind` (`visit`, `forward`, `unknown`), `result` (`ok`, `denied`, `not_found`, …) |
 * | `tls_tunnel_forwarded_connections_total` | counter | `client`, `forwarder`, `result` (`ok`, `disabled`, `forbidden_destination`, `unreachable`, `limit`, `rate_limited`) |
 * | `tls_tunnel_forwarded_connections_active` | gauge | |
 * | `tls_tunnel_rate_limited_total` | counter | `kind` (`tunnel`: new tunnel connections per source address; `outside`: new outside connections per client) (with `[server.rate_limit]` only) |
 * | `tls_tunnel_streams_active` | gauge | |
 * | `tls_tunnel_client_streams_active` | gauge | `client` |
 * | `tls_tunnel_client_rtt_seconds` | gauge | `client` |
 * | `tls_tunnel_client_connected_since_seconds` | gauge | `client` |
 * | `tls_tunnel_proxy_*` | see below | `client`, `proxy` |
 * | `tls_tunnel_stream_open_latency_seconds` | histogram | |
 * | `tls_tunnel_vhost_routes` | gauge | (with `vhost_http_port`/`vhost_https_port` only, as the next five) |
 * | `tls_tunnel_vhost_http_requests_total` | counter | `vhost` (routed host, `""` for none), `status` |
 * | `tls_tunnel_vhost_http_no_tunnel_total` | counter | |
 * | `tls_tunnel_vhost_http_timeouts_total` | counter | |
 * | `tls_tunnel_vhost_https_connections_total` | counter | `vhost` |
 * | `tls_tunnel_vhost_https_refused_total` | counter | |
 * | `tls_tunnel_group_members` | gauge | `group`, `kind` (`tcp`, `http`, `https`) (only while a group exists, as the next three) |
 * | `tls_tunnel_group_members_healthy` | gauge | `group`, `kind` |
 * | `tls_tunnel_group_connections_total` | counter | `group`, `kind` |
 * | `tls_tunnel_group_refused_total` | counter | `group`, `kind` |
 *
 * Client series: `tls_tunnel_info`, `tls_tunnel_start_time_seconds`, `tls_tunnel_client_connected`,
 * `tls_tunnel_client_state{state}`, `tls_tunnel_client_sessions_total`, `tls_tunnel_client_reconnects_total`,
 * `tls_tunnel_client_connect_failures_total` (attempts that ended without a registered session),
 * `tls_tunnel_client_rtt_seconds`, `tls_tunnel_client_next_attempt_seconds`, and the proxy series
 * labelled with `proxy` only. A client with several servers (`[client] servers`) adds
 * `tls_tunnel_client_server_{connected,state,sessions_total,connect_failures_total,rtt_seconds,
 * next_attempt_seconds}{server}` and labels its proxy series `server`, `proxy` (one series per server).
 * A client with `[[visitors]]` adds `tls_tunnel_visitor_{connections_active,connections_total,sent_bytes_total,
 * received_bytes_total}{visitor,bind}` and `tls_tunnel_visitor_refused_total{visitor,bind,reason}`; with
 * several servers also `tls_tunnel_visitor_server_visits_total{visitor,bind,server}` and
 * `tls_tunnel_visitor_server_refused_total{visitor,bind,server,reason}`.
 * A client with `[[forwarders]]` adds `tls_tunnel_forwarder_connections_total{forwarder,route,result}`,
 * `tls_tunnel_forwarder_connections_active{forwarder}`, `tls_tunnel_forwarder_sent_bytes_total{forwarder}`
 * and `tls_tunnel_forwarder_received_bytes_total{forwarder}`.
 *
 * Labels name what was configured, never what changes per connection: no peer address (its port is
 * ephemeral, so every reconnect would start a new series), and no label that repeats another.
 *
 * Both roles add the standard process series when they can be read ({@linkcode ProcessMetrics}):
 * `process_resident_memory_bytes`, `process_cpu_seconds_total`, `process_open_fds`, `process_max_fds`,
 * `process_start_time_seconds`.
 *
 * Proxy series: `tls_tunnel_proxy_info` (1, with publish and local address labels),
 * `tls_tunnel_proxy_up`, `tls_tunnel_proxy_status{status}` (a state set: 1 for the current status, 0 for
 * the others), `tls_tunnel_proxy_connections_active`, `tls_tunnel_proxy_connections_total`,
 * `tls_tunnel_proxy_connections_failed_total`, `tls_tunnel_proxy_received_bytes_total` (from outside
 * peers towards the local service) and `tls_tunnel_proxy_sent_bytes_total` (back towards the peers).
 * `udp` proxies add `tls_tunnel_proxy_udp_flows_open`, `_udp_flows_total`, `_udp_flows_closed_total{reason}`,
 * `_udp_datagrams_total{direction}` and `_udp_datagrams_dropped_total{reason}`. Proxies with
 * `max_connections` add `tls_tunnel_proxy_connections_over_limit_total`.
 *
 * @module
 */

import type { ProcessMetrics } from "./process_metrics.ts";
// Every proxy status, for the `tls_tunnel_proxy_status` state set.
import { PROXY_STATUSES } from "../protocol/proxy_status.ts";
import type {
  BackendSnapshot,
  ClientRoleSnapshot,
  ClientServerSnapshot,
  ForwarderSnapshot,
  GroupSnapshot,
  HistogramSnapshot,
  ProxySnapshot,
  ServerSnapshot,
  StatsSnapshot,
  VhostSnapshot,
  VisitorSnapshot,
} from "./snapshot.ts";

/** The `Content-Type` of the text exposition format. */
export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Every client state, for the `tls_tunnel_client_state` state set. */
export const CLIENT_STATES: readonly string[] = ["connecting", "connected", "waiting", "stopped"];

/** Label names to values; values are escaped on output. */
export type Labels = Record<string, string>;

/** Escapes a label value: backslash, double quote and line feed, as the format requires. */
export function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** Escapes `# HELP` text: backslash and line feed. */
function escapeHelp(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

/** Formats a sample value; the format spells the non-finite values `NaN`, `+Inf`, `-Inf`. */
export function formatSampleValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

function formatLabels(labels: Labels): string {
  const entries = Object.entries(labels);
  if (entries.length === 0) return "";
  return `{${entries.map(([name, value]) => `${name}="${escapeLabelValue(value)}"`).join(",")}}`;
}

/** Collects families in order; each family's HELP/TYPE is written once, before its first sample. */
class Exposition {
  readonly #lines: string[] = [];
  readonly #declared = new Set<string>();

  /** Declares a family (idempotent). */
  family(name: string, type: "counter" | "gauge" | "histogram", help: string): this {
    if (!this.#declared.has(name)) {
      this.#declared.add(name);
      this.#lines.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`);
    }
    return this;
  }

  /** Adds one sample line. */
  sample(name: string, labels: Labels, value: number): this {
    this.#lines.push(`${name}${formatLabels(labels)} ${formatSampleValue(value)}`);
    return this;
  }

  /** Declares a family and adds one sample. */
  single(name: string, type: "counter" | "gauge", help: string, value: number, labels: Labels = {}): this {
    return this.family(name, type, help).sample(name, labels, value);
  }

  toString(): string {
    return this.#lines.length === 0 ? "" : this.#lines.join("\n") + "\n";
  }
}

/** One family per proxy metric, samples for every proxy (families stay contiguous, as required). */
function renderProxies(out: Exposition, proxies: Array<{ labels: Labels; proxy: ProxySnapshot }>): void {
  if (proxies.length === 0) return;
  out.family(
    "tls_tunnel_proxy_info",
    "gauge",
    "Always 1; labels carry the proxy's published address and local target",
  );
  for (const { labels, proxy } of proxies) {
    out.sample("tls_tunnel_proxy_info", {
      ...labels,
      publish_addr: proxy.publish_addr,
      publish_port: String(proxy.publish_port),
      local_addr: proxy.local_addr,
      local_port: String(proxy.local_port),
    }, 1);
  }
  out.family("tls_tunnel_proxy_up", "gauge", "1 when the proxy is healthy (accepting connections), else 0");
  for (const { labels, proxy } of proxies) {
    out.sample("tls_tunnel_proxy_up", labels, proxy.status === "healthy" ? 1 : 0);
  }
  out.family("tls_tunnel_proxy_status", "gauge", "Proxy status as a state set: 1 for the current status");
  for (const { labels, proxy } of proxies) {
    for (const status of PROXY_STATUSES) {
      out.sample("tls_tunnel_proxy_status", { ...labels, status }, proxy.status === status ? 1 : 0);
    }
  }
  const numeric: Array<[string, "counter" | "gauge", string, (proxy: ProxySnapshot) => number]> = [
    [
      "tls_tunnel_proxy_connections_active",
      "gauge",
      "Outside connections being carried now",
      (proxy) => proxy.active_connections,
    ],
    [
      "tls_tunnel_proxy_connections_total",
      "counter",
      "Outside connections accepted",
      (proxy) => proxy.total_connections,
    ],
    [
      "tls_tunnel_proxy_connections_failed_total",
      "counter",
      "Connections refused or failed before carrying data",
      (proxy) => proxy.failed_connections,
    ],
    [
      "tls_tunnel_proxy_bind_retries_total",
      "counter",
      "Failed bind attempts of the published port that were retried",
      (proxy) => proxy.bind_retries,
    ],
    [
      "tls_tunnel_proxy_received_bytes_total",
      "counter",
      "Bytes received from outside peers and carried towards the local service (counted live)",
      (proxy) => proxy.bytes_in,
    ],
    [
      "tls_tunnel_proxy_sent_bytes_total",
      "counter",
      "Bytes from the local service sent back to outside peers (counted live)",
      (proxy) => proxy.bytes_out,
    ],
  ];
  for (const [name, type, help, read] of numeric) {
    out.family(name, type, help);
    for (const { labels, proxy } of proxies) out.sample(name, labels, read(proxy));
  }
  renderUdp(out, proxies);
  const limited = proxies.filter(({ proxy }) => proxy.over_limit_connections !== undefined);
  if (limited.length > 0) {
    out.family(
      "tls_tunnel_proxy_connections_over_limit_total",
      "counter",
      "Outside connections closed at once because the proxy carried max_connections",
    );
    for (const { labels, proxy } of limited) {
      out.sample("tls_tunnel_proxy_connections_over_limit_total", labels, proxy.over_limit_connections ?? 0);
    }
  }
}

/** Groups of clients serving one port or domain (`groups` in the snapshot; only when there is one). */
function renderGroups(out: Exposition, groups: readonly GroupSnapshot[]): void {
  if (groups.length === 0) return;
  const series: Array<[string, "counter" | "gauge", string, (group: GroupSnapshot) => number]> = [
    [
      "tls_tunnel_group_members",
      "gauge",
      "Members (client proxies) of the group now",
      (g) => g.members.length,
    ],
    [
      "tls_tunnel_group_members_healthy",
      "gauge",
      "Members of the group that take new connections now (not reported unhealthy)",
      (g) => g.members.filter((member) => member.healthy).length,
    ],
    [
      "tls_tunnel_group_connections_total",
      "counter",
      "Outside connections (vhost: requests' streams) handed to a member since the group formed",
      (g) => g.connections_total,
    ],
    [
      "tls_tunnel_group_refused_total",
      "counter",
      "Outside connections reset because no member of the group could take them",
      (g) => g.refused_total,
    ],
  ];
  for (const [name, type, help, read] of series) {
    out.family(name, type, help);
    for (const group of groups) out.sample(name, { group: group.name, kind: group.kind }, read(group));
  }
}

/** Flow and datagram series of `udp` proxies (only when there is one). */
function renderUdp(out: Exposition, proxies: Array<{ labels: Labels; proxy: ProxySnapshot }>): void {
  const udp = proxies.flatMap(({ labels, proxy }) => proxy.udp ? [{ labels, udp: proxy.udp }] : []);
  if (udp.length === 0) return;
  out.family("tls_tunnel_proxy_udp_flows_open", "gauge", "UDP flows (outside peer addresses) open now");
  for (const { labels, udp: u } of udp) out.sample("tls_tunnel_proxy_udp_flows_open", labels, u.flows_open);
  out.family("tls_tunnel_proxy_udp_flows_total", "counter", "UDP flows opened");
  for (const { labels, udp: u } of udp) out.sample("tls_tunnel_proxy_udp_flows_total", labels, u.flows_total);
  out.family(
    "tls_tunnel_proxy_udp_flows_closed_total",
    "counter",
    "UDP flows closed by the proxy, by reason: idle (udp_idle_timeout_secs) or evicted (max_udp_flows)",
  );
  for (const { labels, udp: u } of udp) {
    out.sample("tls_tunnel_proxy_udp_flows_closed_total", { ...labels, reason: "idle" }, u.flows_idle_closed);
    out.sample("tls_tunnel_proxy_udp_flows_closed_total", { ...labels, reason: "evicted" }, u.flows_evicted);
  }
  out.family(
    "tls_tunnel_proxy_udp_datagrams_total",
    "counter",
    "Datagrams carried: in = from outside peers towards the local service, out = back",
  );
  for (const { labels, udp: u } of udp) {
    out.sample("tls_tunnel_proxy_udp_datagrams_total", { ...labels, direction: "in" }, u.datagrams_in);
    out.sample("tls_tunnel_proxy_udp_datagrams_total", { ...labels, direction: "out" }, u.datagrams_out);
  }
  out.family("tls_tunnel_proxy_udp_datagrams_dropped_total", "counter", "Datagrams not carried, by reason");
  for (const { labels, udp: u } of udp) {
    for (const [reason, count] of Object.entries(u.dropped)) {
      out.sample("tls_tunnel_proxy_udp_datagrams_dropped_total", { ...labels, reason }, count);
    }
  }
}

function renderHistogram(out: Exposition, name: string, help: string, histogram: HistogramSnapshot): void {
  out.family(name, "histogram", help);
  histogram.bounds_secs.forEach((bound, index) => {
    out.sample(`${name}_bucket`, { le: formatSampleValue(bound) }, histogram.cumulative_counts[index] ?? 0);
  });
  out.sample(`${name}_bucket`, { le: "+Inf" }, histogram.count);
  out.sample(`${name}_sum`, {}, histogram.sum_secs);
  out.sample(`${name}_count`, {}, histogram.count);
}

/** The shared HTTP/HTTPS vhost ports' series (`vhost` in the snapshot). */
function renderVhost(out: Exposition, vhost: VhostSnapshot): void {
  out.single(
    "tls_tunnel_vhost_routes",
    "gauge",
    "Host names (and locations) routed on the vhost ports now",
    vhost.routes,
  );
  if (vhost.http_requests.length > 0) {
    out.family(
      "tls_tunnel_vhost_http_requests_total",
      "counter",
      "HTTP requests answered on the vhost port, by routed host (empty: no route) and status",
    );
    for (const entry of vhost.http_requests) {
      out.sample(
        "tls_tunnel_vhost_http_requests_total",
        { vhost: entry.host, status: String(entry.status) },
        entry.count,
      );
    }
  }
  out.single(
    "tls_tunnel_vhost_http_no_tunnel_total",
    "counter",
    "HTTP requests answered 503: no tunnel serves the host, or its client or service is down",
    vhost.http_no_tunnel_total,
  );
  out.single(
    "tls_tunnel_vhost_http_timeouts_total",
    "counter",
    "HTTP requests answered 504: no response head within request_timeout_secs",
    vhost.http_timeouts_total,
  );
  if (vhost.https_connections.length > 0) {
    out.family(
      "tls_tunnel_vhost_https_connections_total",
      "counter",
      "HTTPS connections routed by SNI, by host",
    );
    for (const entry of vhost.https_connections) {
      out.sample("tls_tunnel_vhost_https_connections_total", { vhost: entry.host }, entry.count);
    }
  }
  out.single(
    "tls_tunnel_vhost_https_refused_total",
    "counter",
    "HTTPS connections closed after the ClientHello: unknown or no SNI, malformed, too slow",
    vhost.https_refused_total,
  );
}

function renderServer(out: Exposition, snapshot: ServerSnapshot): void {
  out.single(
    "tls_tunnel_clients_connected",
    "gauge",
    "Clients with an authenticated session now",
    snapshot.clients.length,
  );
  out.single(
    "tls_tunnel_sessions_total",
    "counter",
    "Client sessions authenticated since start",
    snapshot.sessions_total,
  );
  out.single(
    "tls_tunnel_auth_failures_total",
    "counter",
    "Failed client authentications since start",
    snapshot.auth_failures_total,
  );
  out.single(
    "tls_tunnel_connections_pending",
    "gauge",
    "Connections to the tunnel port accepted and not yet authenticated",
    snapshot.pending_connections,
  );
  out.family(
    "tls_tunnel_connections_refused_total",
    "counter",
    "Connections to the tunnel port closed at once because a pending-connection limit was reached",
  );
  for (const [reason, count] of Object.entries(snapshot.connections_refused)) {
    out.sample("tls_tunnel_connections_refused_total", { reason }, count);
  }
  if (snapshot.listeners !== undefined && snapshot.listeners.length > 0) {
    out.family(
      "tls_tunnel_listener_connections_total",
      "counter",
      "Connections accepted on each tunnel listener (admitted or refused by the shared pending limits)",
    );
    for (const listener of snapshot.listeners) {
      out.sample(
        "tls_tunnel_listener_connections_total",
        { transport: listener.transport, listen_addr: listener.listen_addr },
        listener.connections_total,
      );
    }
    out.family(
      "tls_tunnel_listener_sessions_total",
      "counter",
      "Client sessions authenticated through each tunnel listener since start",
    );
    for (const listener of snapshot.listeners) {
      out.sample(
        "tls_tunnel_listener_sessions_total",
        { transport: listener.transport, listen_addr: listener.listen_addr },
        listener.sessions_total,
      );
    }
  }
  if (snapshot.client_opened_streams !== undefined) {
    out.family(
      "tls_tunnel_client_opened_streams_total",
      "counter",
      "Streams clients opened (kind visit: visitors; forward: forwarders), by result: ok or the refusal code",
    );
    for (const [kind, results] of Object.entries(snapshot.client_opened_streams)) {
      for (const [result, count] of Object.entries(results)) {
        out.sample("tls_tunnel_client_opened_streams_total", { kind, result }, count);
      }
    }
  }
  renderServerForwards(out, snapshot);
  out.single(
    "tls_tunnel_streams_active",
    "gauge",
    "yamux streams open now over all client sessions (control streams included)",
    snapshot.clients.reduce((sum, client) => sum + client.streams, 0),
  );
  if (snapshot.clients.length > 0) {
    out.family(
      "tls_tunnel_client_streams_active",
      "gauge",
      "yamux streams open now in this client's session",
    );
    for (const client of snapshot.clients) {
      out.sample("tls_tunnel_client_streams_active", { client: client.name }, client.streams);
    }
    out.family(
      "tls_tunnel_client_connected_since_seconds",
      "gauge",
      "When the client's session authenticated (Unix time, seconds)",
    );
    for (const client of snapshot.clients) {
      out.sample(
        "tls_tunnel_client_connected_since_seconds",
        { client: client.name },
        client.connected_since_ms / 1000,
      );
    }
    const measured = snapshot.clients.filter((client) => client.rtt_ms !== null);
    if (measured.length > 0) {
      out.family("tls_tunnel_client_rtt_seconds", "gauge", "Last keepalive round trip to the client");
      for (const client of measured) {
        out.sample("tls_tunnel_client_rtt_seconds", { client: client.name }, (client.rtt_ms ?? 0) / 1000);
      }
    }
  }
  renderProxies(
    out,
    snapshot.clients.flatMap((client) =>
      client.proxies.map((proxy) => ({ labels: { client: client.name, proxy: proxy.name }, proxy }))
    ),
  );
  renderHistogram(
    out,
    "tls_tunnel_stream_open_latency_seconds",
    "Time to open a stream to the client for an outside connection",
    snapshot.stream_open_latency,
  );
  if (snapshot.vhost) renderVhost(out, snapshot.vhost);
  renderGroups(out, snapshot.groups ?? []);
}

function renderClient(out: Exposition, snapshot: ClientRoleSnapshot, nowMs: number): void {
  out.single(
    "tls_tunnel_client_connected",
    "gauge",
    "1 while the client has a registered session with the server",
    snapshot.state === "connected" ? 1 : 0,
  );
  out.family("tls_tunnel_client_state", "gauge", "Client state as a state set: 1 for the current state");
  for (const state of CLIENT_STATES) {
    out.sample("tls_tunnel_client_state", { state }, snapshot.state === state ? 1 : 0);
  }
  out.single(
    "tls_tunnel_client_sessions_total",
    "counter",
    "Sessions established with the server since start",
    snapshot.sessions_total,
  );
  out.single(
    "tls_tunnel_client_reconnects_total",
    "counter",
    "Sessions established after the first one (successful reconnects)",
    Math.max(0, snapshot.sessions_total - 1),
  );
  out.single(
    "tls_tunnel_client_connect_failures_total",
    "counter",
    "Attempts to reach the server that ended without a registered session (dial, TLS, auth or registration)",
    snapshot.connect_failures_total ?? 0,
  );
  if (snapshot.rtt_ms !== null) {
    out.single(
      "tls_tunnel_client_rtt_seconds",
      "gauge",
      "Last keepalive round trip to the server",
      snapshot.rtt_ms / 1000,
    );
  }
  if (snapshot.next_attempt_at_ms !== null) {
    out.single(
      "tls_tunnel_client_next_attempt_seconds",
      "gauge",
      "Seconds until the next reconnect attempt, while waiting",
      Math.max(0, (snapshot.next_attempt_at_ms - nowMs) / 1000),
    );
  }
  if (snapshot.servers !== undefined) {
    // Several servers: each server's session and its proxies, labelled by server.
    renderClientServers(out, snapshot.servers, nowMs);
    renderProxies(
      out,
      snapshot.servers.flatMap((server) =>
        server.proxies.map((proxy) => ({ labels: { server: server.name, proxy: proxy.name }, proxy }))
      ),
    );
  } else {
    renderProxies(out, snapshot.proxies.map((proxy) => ({ labels: { proxy: proxy.name }, proxy })));
  }
  renderBackends(out, snapshot.proxies);
  if (snapshot.forwarders !== undefined) renderForwarders(out, snapshot.forwarders);
  if (snapshot.visitors !== undefined) renderVisitors(out, snapshot.visitors);
}

/** The server's forwarded connections and rate-limit refusals. */
function renderServerForwards(out: Exposition, snapshot: ServerSnapshot): void {
  if (snapshot.forwards !== undefined && snapshot.forwards.length > 0) {
    out.family(
      "tls_tunnel_forwarded_connections_total",
      "counter",
      "Connections of clients' forwarders by client, forwarder and result: ok or the refusal code",
    );
    for (const entry of snapshot.forwards) {
      out.sample(
        "tls_tunnel_forwarded_connections_total",
        { client: entry.client, forwarder: entry.forwarder, result: entry.result },
        entry.count,
      );
    }
  }
  if (snapshot.forwards_active !== undefined) {
    out.single(
      "tls_tunnel_forwarded_connections_active",
      "gauge",
      "Forwarded connections open now",
      snapshot.forwards_active,
    );
  }
  if (snapshot.rate_limited !== undefined) {
    out.family(
      "tls_tunnel_rate_limited_total",
      "counter",
      "New connections refused by [server.rate_limit]: to the tunnel port (tunnel) or outside ones (outside)",
    );
    out.sample("tls_tunnel_rate_limited_total", { kind: "tunnel" }, snapshot.rate_limited.tunnel_connections);
    out.sample(
      "tls_tunnel_rate_limited_total",
      { kind: "outside" },
      snapshot.rate_limited.outside_connections,
    );
  }
}

/** The client's forwarders (`tls_tunnel_forwarder_*{forwarder}`). */
function renderForwarders(out: Exposition, forwarders: ForwarderSnapshot[]): void {
  if (forwarders.length === 0) return;
  out.family(
    "tls_tunnel_forwarder_connections_total",
    "counter",
    "Local connections of a forwarder by route (proxy, direct, none: refused before routing) and result",
  );
  for (const forwarder of forwarders) {
    for (const [route, results] of Object.entries(forwarder.results)) {
      for (const [result, count] of Object.entries(results)) {
        out.sample(
          "tls_tunnel_forwarder_connections_total",
          { forwarder: forwarder.name, route, result },
          count,
        );
      }
    }
  }
  const numeric: Array<[string, "counter" | "gauge", string, (forwarder: ForwarderSnapshot) => number]> = [
    [
      "tls_tunnel_forwarder_connections_active",
      "gauge",
      "Local connections a forwarder handles or carries now",
      (forwarder) => forwarder.active_connections,
    ],
    [
      "tls_tunnel_forwarder_sent_bytes_total",
      "counter",
      "Bytes from local applications towards destinations",
      (forwarder) => forwarder.bytes_out,
    ],
    [
      "tls_tunnel_forwarder_received_bytes_total",
      "counter",
      "Bytes from destinations back to local applications",
      (forwarder) => forwarder.bytes_in,
    ],
  ];
  for (const [name, type, help, read] of numeric) {
    out.family(name, type, help);
    for (const forwarder of forwarders) out.sample(name, { forwarder: forwarder.name }, read(forwarder));
  }
}

/** The client's visitors (`tls_tunnel_visitor_*{visitor,bind}`: two visitors of one proxy differ by bind). */
function renderVisitors(out: Exposition, visitors: VisitorSnapshot[]): void {
  if (visitors.length === 0) return;
  const labels = (visitor: VisitorSnapshot) => ({ visitor: visitor.name, bind: visitor.bind });
  out.family(
    "tls_tunnel_visitor_refused_total",
    "counter",
    "Local connections of a visitor not carried, by reason: the server's refusal code, no_session or failed",
  );
  for (const visitor of visitors) {
    for (const [reason, count] of Object.entries(visitor.refused)) {
      out.sample("tls_tunnel_visitor_refused_total", { ...labels(visitor), reason }, count);
    }
  }
  const numeric: Array<[string, "counter" | "gauge", string, (visitor: VisitorSnapshot) => number]> = [
    [
      "tls_tunnel_visitor_connections_active",
      "gauge",
      "Local connections a visitor carries now",
      (v) => v.active_connections,
    ],
    [
      "tls_tunnel_visitor_connections_total",
      "counter",
      "Local connections a visitor accepted",
      (v) => v.total_connections,
    ],
    [
      "tls_tunnel_visitor_sent_bytes_total",
      "counter",
      "Bytes from local applications to the target",
      (v) => v.bytes_in,
    ],
    [
      "tls_tunnel_visitor_received_bytes_total",
      "counter",
      "Bytes from the target to local applications",
      (v) => v.bytes_out,
    ],
  ];
  for (const [name, type, help, read] of numeric) {
    out.family(name, type, help);
    for (const visitor of visitors) out.sample(name, labels(visitor), read(visitor));
  }
  // Several servers: each server's share of the visitor's connections.
  if (!visitors.some((visitor) => visitor.servers !== undefined)) return;
  out.family(
    "tls_tunnel_visitor_server_visits_total",
    "counter",
    "Local connections of a visitor this server carried (a client of several servers)",
  );
  for (const visitor of visitors) {
    for (const server of visitor.servers ?? []) {
      out.sample(
        "tls_tunnel_visitor_server_visits_total",
        { ...labels(visitor), server: server.name },
        server.visits,
      );
    }
  }
  out.family(
    "tls_tunnel_visitor_server_refused_total",
    "counter",
    "A server's refusals and failures of a visitor's connections, by reason (the next server was asked)",
  );
  for (const visitor of visitors) {
    for (const server of visitor.servers ?? []) {
      for (const [reason, count] of Object.entries(server.refused)) {
        out.sample(
          "tls_tunnel_visitor_server_refused_total",
          { ...labels(visitor), server: server.name, reason },
          count,
        );
      }
    }
  }
}

/** Per-server series of a client with several servers (`tls_tunnel_client_server_*{server}`). */
function renderClientServers(out: Exposition, servers: ClientServerSnapshot[], nowMs: number): void {
  out.family(
    "tls_tunnel_client_server_connected",
    "gauge",
    "1 while the client has a registered session with this server",
  );
  for (const server of servers) {
    out.sample(
      "tls_tunnel_client_server_connected",
      { server: server.name },
      server.state === "connected" ? 1 : 0,
    );
  }
  out.family("tls_tunnel_client_server_state", "gauge", "Session state per server as a state set");
  for (const server of servers) {
    for (const state of [...CLIENT_STATES, "refused"]) {
      out.sample(
        "tls_tunnel_client_server_state",
        { server: server.name, state },
        server.state === state ? 1 : 0,
      );
    }
  }
  out.family("tls_tunnel_client_server_sessions_total", "counter", "Sessions established with this server");
  for (const server of servers) {
    out.sample("tls_tunnel_client_server_sessions_total", { server: server.name }, server.sessions_total);
  }
  out.family(
    "tls_tunnel_client_server_connect_failures_total",
    "counter",
    "Attempts to reach this server that ended without a registered session",
  );
  for (const server of servers) {
    out.sample(
      "tls_tunnel_client_server_connect_failures_total",
      { server: server.name },
      server.connect_failures_total,
    );
  }
  const measured = servers.filter((server) => server.rtt_ms !== null);
  if (measured.length > 0) {
    out.family("tls_tunnel_client_server_rtt_seconds", "gauge", "Last keepalive round trip to this server");
    for (const server of measured) {
      out.sample(
        "tls_tunnel_client_server_rtt_seconds",
        { server: server.name },
        (server.rtt_ms ?? 0) / 1000,
      );
    }
  }
  const waiting = servers.filter((server) => server.next_attempt_at_ms !== null);
  if (waiting.length > 0) {
    out.family(
      "tls_tunnel_client_server_next_attempt_seconds",
      "gauge",
      "Seconds until the next reconnect attempt to this server, while waiting",
    );
    for (const server of waiting) {
      out.sample(
        "tls_tunnel_client_server_next_attempt_seconds",
        { server: server.name },
        Math.max(0, ((server.next_attempt_at_ms ?? nowMs) - nowMs) / 1000),
      );
    }
  }
}

/** Per-backend series of proxies that balance over several local backends (`local_backends`). */
function renderBackends(out: Exposition, proxies: ProxySnapshot[]): void {
  const rows = proxies.flatMap((proxy) =>
    (proxy.backends ?? []).map((backend) => ({
      labels: { proxy: proxy.name, backend: backend.address },
      backend,
    }))
  );
  if (rows.length === 0) return;
  const families: Array<[string, "counter" | "gauge", string, (backend: BackendSnapshot) => number]> = [
    [
      "tls_tunnel_backend_up",
      "gauge",
      "1 unless the backend is skipped after a failed connect",
      (b) => b.cooling_down ? 0 : 1,
    ],
    [
      "tls_tunnel_backend_connections_active",
      "gauge",
      "Connections to the backend open now",
      (b) => b.active_connections,
    ],
    [
      "tls_tunnel_backend_connections_total",
      "counter",
      "Connections made to the backend",
      (b) => b.successes,
    ],
    [
      "tls_tunnel_backend_connect_failures_total",
      "counter",
      "Connects to the backend that failed",
      (b) => b.failures,
    ],
  ];
  for (const [name, type, help, read] of families) {
    out.family(name, type, help);
    for (const { labels, backend } of rows) out.sample(name, labels, read(backend));
  }
}

/** The standard process series, each only when it could be read. */
function renderProcess(out: Exposition, process: ProcessMetrics): void {
  const series: Array<[string, "counter" | "gauge", string, number | undefined]> = [
    [
      "process_cpu_seconds_total",
      "counter",
      "Total user and system CPU time spent in seconds",
      process.cpuSecondsTotal,
    ],
    ["process_resident_memory_bytes", "gauge", "Resident memory size in bytes", process.residentMemoryBytes],
    ["process_open_fds", "gauge", "Number of open file descriptors", process.openFds],
    ["process_max_fds", "gauge", "Maximum number of open file descriptors", process.maxFds],
    [
      "process_start_time_seconds",
      "gauge",
      "Start time of the process since unix epoch in seconds",
      process.startTimeSeconds,
    ],
  ];
  for (const [name, type, help, value] of series) {
    if (value !== undefined) out.single(name, type, help, value);
  }
}

/**
 * Renders `snapshot` in the Prometheus text format. Pure: the same snapshot, `nowMs` and `process` give
 * the same text. `nowMs` only matters for the client's reconnect countdown; `process` holds the process
 * metrics read for this scrape ({@linkcode readProcessMetrics}), none by default.
 */
export function renderPrometheus(
  snapshot: StatsSnapshot,
  nowMs: number = Date.now(),
  process: ProcessMetrics = {},
): string {
  const out = new Exposition();
  out.single(
    "tls_tunnel_info",
    "gauge",
    "Always 1; labels carry the role and software version",
    1,
    { role: snapshot.role, version: snapshot.version },
  );
  out.single(
    "tls_tunnel_start_time_seconds",
    "gauge",
    "When this process started (Unix time, seconds)",
    snapshot.started_at_ms / 1000,
  );
  if (snapshot.role === "server") renderServer(out, snapshot);
  else renderClient(out, snapshot, nowMs);
  renderProcess(out, process);
  return out.toString();
}

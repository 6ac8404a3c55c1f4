/**
 * Point-in-time views of a server's or client's state, as served by the stats endpoint and read by
 * the dashboard and `top`. Plain JSON-ready data; the roles build them (`snapshot()`), the stats
 * module serves and renders them.
 *
 * @module
 */

import type { ProxyStatus } from "./proxy_stats.ts";

/** One proxy's state and counters. */
export interface ProxySnapshot {
  /** Proxy name. */
  name: string;
  /** Published address on the server. */
  publish_addr: string;
  /** Published port (the bound one; 0 while not bound). */
  publish_port: number;
  /** The client-side target. */
  local_addr: string;
  /** The client-side target port. */
  local_port: number;
  /** Current status. */
  status: ProxyStatus;
  /** Last error, for people. */
  last_error: string | null;
  /** Outside connections open now. */
  active_connections: number;
  /** Outside connections since the proxy was published. */
  total_connections: number;
  /** Connections refused or failed before carrying data. */
  failed_connections: number;
  /** Failed bind attempts of the published port that the server retried (0 on the client). */
  bind_retries: number;
  /** The client's local backends when it balances over several (client side only). */
  backends?: BackendSnapshot[];
  /** Bytes from outside peers towards the local service. */
  bytes_in: number;
  /** Bytes from the local service towards outside peers. */
  bytes_out: number;
  /**
   * Bytes per minute over the last hour (on the server counted across the client's reconnects). Absent
   * from endpoints older than this field.
   */
  throughput?: ThroughputSnapshot;
  /** Flows and datagrams of a `udp` proxy (absent for the other kinds). */
  udp?: UdpSnapshot;
  /** The group it serves in with other clients (server side; absent when none). */
  group?: string;
  /** Its `max_connections` (server side; absent when unlimited). */
  max_connections?: number;
  /** Outside connections closed at once because `max_connections` were carried (with `max_connections`). */
  over_limit_connections?: number;
}

/** A `udp` proxy's flows and datagrams (its connection counters count flows, its bytes their payloads). */
export interface UdpSnapshot {
  /** Flows (outside peer addresses with a stream to the client) open now. */
  flows_open: number;
  /** Flows opened since the proxy started. */
  flows_total: number;
  /** Flows closed to make room under `max_udp_flows` (the one idle longest goes first). */
  flows_evicted: number;
  /** Flows closed after `udp_idle_timeout_secs` without a datagram. */
  flows_idle_closed: number;
  /** Datagrams carried from outside peers towards the local service. */
  datagrams_in: number;
  /** Datagrams carried from the local service back to outside peers. */
  datagrams_out: number;
  /**
   * Datagrams not carried, by reason: `oversized` (> 65,507 bytes), `empty`, `queue_full` (the flow's
   * stream did not keep up), `no_flow` (no stream for the peer), `send_failed`, `foreign_source`.
   */
  dropped: Record<string, number>;
}

/** A proxy's recent throughput: bytes per fixed bucket, oldest first, the last bucket still filling. */
export interface ThroughputSnapshot {
  /** Width of one bucket, seconds. */
  bucket_secs: number;
  /** End of the newest bucket (ms since epoch). */
  end_ms: number;
  /** Bytes from outside peers towards the local service, per bucket. */
  bytes_in: number[];
  /** Bytes from the local service towards outside peers, per bucket. */
  bytes_out: number[];
}

/** A `[[server.clients]]` entry without a session now. */
export interface OfflineClientSnapshot {
  /** Its name. */
  name: string;
  /** When its last session ended (ms since epoch); null when it has not connected since the server started. */
  last_seen_ms: number | null;
}

/** One local backend of a client's proxy (with `local_backends`). */
export interface BackendSnapshot {
  /** "host:port". */
  address: string;
  /** Connections to it open now. */
  active_connections: number;
  /** Connections to it that were made. */
  successes: number;
  /** Connects to it that failed. */
  failures: number;
  /** Whether it is being skipped after a failure. */
  cooling_down: boolean;
}

/** One connected client, as the server sees it. */
export interface ClientSnapshot {
  /** Display name (the `[[server.clients]]` name or the client_id). */
  name: string;
  /** The id the client sent. */
  client_id: string;
  /** Server-side session id. */
  session_id: string;
  /** "host:port" of the client's connection. */
  remote_addr: string;
  /**
   * Transport of the listener its session came through (`"tls"`, `"wss"`, …); absent from endpoints older
   * than this field.
   */
  transport?: string;
  /** When it authenticated (ms since epoch). */
  connected_since_ms: number;
  /** Last keepalive round trip, ms. */
  rtt_ms: number | null;
  /** yamux streams open now (including the control stream). */
  streams: number;
  /** Its proxies. */
  proxies: ProxySnapshot[];
}

/** A notification or event shown in the dashboard's "recent" list. */
export interface EventSnapshot {
  /** When (ms since epoch). */
  time_ms: number;
  /** "info" | "warning" | "error". */
  level: "info" | "warning" | "error";
  /** Machine code, e.g. CLIENT_CONNECTED, PROXY_BIND_RETRY. */
  code: string;
  /** For people. */
  message: string;
  /** The client it concerns, if any. */
  client?: string;
  /** Structured details (a notification's `data`), if any. */
  data?: Record<string, unknown>;
}

/** Histogram of stream open latency (server opens a stream for an outside connection). */
export interface HistogramSnapshot {
  /** Upper bounds of the buckets, in seconds (Prometheus `le`), ascending; +Inf is implied. */
  bounds_secs: number[];
  /** Cumulative counts per bound, same length as `bounds_secs`. */
  cumulative_counts: number[];
  /** Observations in all. */
  count: number;
  /** Sum of observations, seconds. */
  sum_secs: number;
}

/** One tunnel listener of the server: one port clients reach it on, with one transport. */
export interface ListenerSnapshot {
  /** Transport name (`"tls"`, `"wss"`, `"http2"`, …). */
  transport: string;
  /** "host:port" it is bound to. */
  listen_addr: string;
  /** HTTP path of the tunnel (used by transports over HTTP). */
  server_path: string;
  /** Plain text for a reverse proxy that terminates TLS. */
  behind_proxy: boolean;
  /** Connections accepted on it since start (admitted or refused by the shared pending limits). */
  connections_total: number;
  /** Sessions that authenticated through it since start. */
  sessions_total: number;
}

/** The server's state. */
export interface ServerSnapshot {
  role: "server";
  /** Software version. */
  version: string;
  /** When the server started (ms since epoch). */
  started_at_ms: number;
  /** "host:port" of the (first) tunnel listener. */
  listen_addr: string;
  /**
   * Every tunnel listener (`[server]`'s and `[[server.listeners]]`), in config order; absent from
   * endpoints older than this field.
   */
  listeners?: ListenerSnapshot[];
  /** Connected clients. */
  clients: ClientSnapshot[];
  /** `[[server.clients]]` entries without a session now (absent from endpoints older than this field). */
  offline_clients?: OfflineClientSnapshot[];
  /** Clients that authenticated since start. */
  sessions_total: number;
  /** Authentication failures since start. */
  auth_failures_total: number;
  /** Connections to the tunnel port not yet authenticated, now. */
  pending_connections: number;
  /** Connections closed at once since start because a pending limit was reached, by reason. */
  connections_refused: Record<"pending_limit" | "pending_per_ip_limit", number>;
  /** Stream open latency. */
  stream_open_latency: HistogramSnapshot;
  /**
   * Streams clients opened (visitors: kind `visit`; forwarders: `forward`), by kind and result (`ok`, or a
   * refusal code in lower case: `denied`, `not_found`, `limit`, …; kind `unknown` before the request was
   * read), since start. Absent from endpoints older than this field.
   */
  client_opened_streams?: Record<string, Record<string, number>>;
  /** Forwarded connections (`[[forwarders]]`) by client, forwarder and result, since start. */
  forwards?: ForwardCountSnapshot[];
  /** Forwarded connections open now. */
  forwards_active?: number;
  /**
   * New connections refused by `[server.rate_limit]` since start: to the tunnel port (per source address),
   * and outside connections (published ports, forwards; per client). Absent without a rate limit.
   */
  rate_limited?: { tunnel_connections: number; outside_connections: number };
  /** Most recent events, newest last (bounded). */
  recent_events: EventSnapshot[];
  /** The shared HTTP/HTTPS vhost ports' counters; absent when neither port is configured. */
  vhost?: VhostSnapshot;
  /**
   * Groups of clients serving one port (`tcp`) or domain (`http`/`https`) now, with their members;
   * absent from endpoints older than this field.
   */
  groups?: GroupSnapshot[];
}

/** One group of clients (`group`/`group_key` on their proxies), as `/api/stats` → `groups` shows it. */
export interface GroupSnapshot {
  /** The group's name. */
  name: string;
  /** `"tcp"` (a shared port), or `"http"`/`"https"` (a shared domain on the vhost port). */
  kind: "tcp" | "http" | "https";
  /** `host:port` of the group's port (the vhost port for http/https groups). */
  publish_addr: string;
  /** The host names of an http/https group (absent for tcp). */
  hosts?: string[];
  /** How new connections (requests' streams) are spread over the members. */
  lb_policy: string;
  /** Outside connections (or routed streams) handed to a member since the group formed. */
  connections_total: number;
  /** Outside connections reset because no member could take one. */
  refused_total: number;
  /** The members, in joining order. */
  members: Array<{
    /** The member's client name. */
    client: string;
    /** Its proxy's name. */
    proxy: string;
    /** False while the client reports the proxy's local service down (it is skipped then). */
    healthy: boolean;
    /** Outside connections it carries now. */
    active_connections: number;
  }>;
}

/** One route of a vhost port: a host (and, for http, a path prefix) and the proxy serving it. */
export interface VhostRouteSnapshot {
  /** `"http"` or `"https"`. */
  kind: "http" | "https";
  /** The host name. */
  host: string;
  /** The path prefix (`"/"` for every path; always `"/"` for https). */
  location: string;
  /** The serving client's name; on a group's route `group 'NAME'` (its members are in `groups`). */
  client: string;
  /** The serving proxy's name; on a group's route the group's name. */
  proxy: string;
  /** The group holding the route, when a group does. */
  group?: string;
}

/** The vhost counters in the stats endpoint's form (`/api/stats` → `vhost`). */
export interface VhostSnapshot {
  /** `host:port` of the HTTP vhost listener, or null without one. */
  http_addr: string | null;
  /** `host:port` of the HTTPS vhost listener, or null without one. */
  https_addr: string | null;
  /** Host names routed now (http and https). */
  routes: number;
  /**
   * The routes themselves (http first, then https; by host), at most 200: which client's proxy serves
   * each host and location. Absent from endpoints older than this field.
   */
  route_list?: VhostRouteSnapshot[];
  /** HTTP requests answered, by host (`""`: no route) and status code. */
  http_requests: Array<{ host: string; status: number; count: number }>;
  /** 503s for a host no tunnel serves (or whose client is down). */
  http_no_tunnel_total: number;
  /** 504s: the client's service did not answer within `request_timeout_secs`. */
  http_timeouts_total: number;
  /** HTTPS connections routed by SNI, by host. */
  https_connections: Array<{ host: string; count: number }>;
  /** HTTPS connections closed after the ClientHello: unknown SNI, no SNI, malformed or too slow. */
  https_refused_total: number;
}

/** One counter of the server's forwarded connections. */
export interface ForwardCountSnapshot {
  /** The client's name. */
  client: string;
  /** The client's `[[forwarders]]` name. */
  forwarder: string;
  /** `"ok"`, or the refusal code in lower case (`"disabled"`, `"forbidden_destination"`, `"unreachable"`…). */
  result: string;
  /** Connections with that result since start. */
  count: number;
}

/** One `[[forwarders]]` entry of the client: its local proxy and counters. */
export interface ForwarderSnapshot {
  /** `[[forwarders]]` name. */
  name: string;
  /** `"http"` or `"socks5"`. */
  proxy_type: string;
  /** `host:port` the local proxy listens on (null until bound). */
  listen_addr: string | null;
  /** Local connections being handled or carried now. */
  active_connections: number;
  /**
   * Results since start, by route (`"proxy"`: through the server, `"direct"`, `"none"`: refused before a
   * route was chosen) and result (`"ok"`, `"forbidden"`, `"unreachable"`, `"refused"`, `"timeout"`,
   * `"busy"`, `"rate_limited"`, `"tunnel_down"`, `"bad_request"`, `"request_timeout"`, `"head_too_large"`,
   * `"auth_required"`, `"unsupported"`).
   */
  results: Record<string, Record<string, number>>;
  /** Bytes from local applications towards destinations. */
  bytes_out: number;
  /** Bytes from destinations back to local applications. */
  bytes_in: number;
}

/** One `[[visitors]]` entry of a client: its local port and what became of its connections. */
export interface VisitorSnapshot {
  /** The target proxy's name. */
  name: string;
  /** The target proxy's `publish_port`. */
  publish_port: number;
  /** The owning client named in the config (`client`), or null. */
  client: string | null;
  /** `host:port` as configured (`bind_addr:bind_port`); the label of its series. */
  bind: string;
  /** `host:port` the visitor listens on (null until bound). */
  listen_addr: string | null;
  /** Local connections carried now. */
  active_connections: number;
  /** Local connections accepted since start. */
  total_connections: number;
  /** Local connections not carried, by reason: the server's refusal code in lower case (`denied`, `not_found`, …), `no_session`, `failed`. */
  refused: Record<string, number>;
  /** Bytes from local applications to the target. */
  bytes_in: number;
  /** Bytes from the target back to local applications. */
  bytes_out: number;
  /** The last refusal or failure, for people. */
  last_error: string | null;
  /** With several servers (`[client] servers`): each server's share, once the visitor asked it. */
  servers?: VisitorServerSnapshot[];
}

/** One server's share of a visitor's connections (a client of several servers). */
export interface VisitorServerSnapshot {
  /** The server's name (`[[client.servers]]` name, or `host:port`). */
  name: string;
  /** Local connections this server carried. */
  visits: number;
  /** This server's refusals and failures, by reason (its refusal code in lower case, `failed`). */
  refused: Record<string, number>;
}

/** One server of a client that keeps sessions to several (`[client] servers`). */
export interface ClientServerSnapshot {
  /** The server's name (`[[client.servers]]` name, or `host:port`). */
  name: string;
  /** "host:port" dialed. */
  server_addr: string;
  /** "connecting" | "connected" | "waiting" | "stopped" | "refused" (refused for good; the others carry on). */
  state: string;
  /** Why the server refused the client for good, when it did. */
  last_error?: string;
  /** When the next reconnect attempt to it is due, while waiting (ms since epoch). */
  next_attempt_at_ms: number | null;
  /** Sessions established with it since start. */
  sessions_total: number;
  /** Attempts to reach it that ended without a registered session. */
  connect_failures_total: number;
  /** Last keepalive round trip to it, ms. */
  rtt_ms: number | null;
  /** The server's id of the current session, while connected. */
  session_id: string | null;
  /** The proxies as published on this server. */
  proxies: ProxySnapshot[];
}

/** The client's state. */
export interface ClientRoleSnapshot {
  role: "client";
  /** Software version. */
  version: string;
  /** When the client started (ms since epoch). */
  started_at_ms: number;
  /** "host:port" of the server. */
  server_addr: string;
  /** "connecting" | "connected" | "waiting" | "stopped". */
  state: string;
  /** When the next reconnect attempt is due, while waiting (ms since epoch). */
  next_attempt_at_ms: number | null;
  /** Sessions established since start. */
  sessions_total: number;
  /**
   * Attempts to reach the server that ended without a registered session (dial, TLS, auth or
   * registration failed) since start. Absent from endpoints older than this field.
   */
  connect_failures_total?: number;
  /** Last keepalive round trip, ms. */
  rtt_ms: number | null;
  /** Its proxies (with several servers: merged over them, counters summed, healthy when any server has it so). */
  proxies: ProxySnapshot[];
  /** Most recent events, newest last (bounded). */
  recent_events: EventSnapshot[];
  /**
   * Each server's own state and proxies, when the client keeps sessions to several servers (absent with
   * one server, where the fields above are that server's).
   */
  servers?: ClientServerSnapshot[];
  /** Its `[[forwarders]]` (absent without any). */
  forwarders?: ForwarderSnapshot[];
  /** Its `[[visitors]]` (absent without any). */
  visitors?: VisitorSnapshot[];
}

/** What a stats endpoint serves. */
export type StatsSnapshot = ServerSnapshot | ClientRoleSnapshot;

/** What `GET /api/stats` returns: the snapshot plus the endpoint's clock, for countdowns and ages. */
export type ServedStats = StatsSnapshot & {
  /** The endpoint's time when the snapshot was taken (ms since epoch). */
  now_ms: number;
};

/**
 * `tls-tunnel template server|client [-o FILE]`: a fully commented config, every key with its default and
 * meaning. The defaults are rendered from `DEFAULTS` (lib/config/defaults.ts), the values the schema
 * applies, so the template cannot drift from them. Each template carries a freshly generated auth_key, so a template used as-is is not a config
 * with a published secret.
 *
 * @module
 */

import { DEFAULTS } from "../config/defaults.ts";
import { VHOST_DEFAULTS } from "../config/_vhost.ts";
import { type CommandOutput, processOutput } from "./_command_output.ts";
import { errorMessage } from "../text.ts";

/** Column of the `# default` remarks. */
const REMARK_COLUMN = 42;

/** A value in TOML spelling, as the templates write it (strings, numbers, booleans, arrays, inline tables). */
export function toml(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(toml).join(", ")}]`;
  if (typeof value === "object" && value !== null) {
    return `{ ${Object.entries(value).map(([key, inner]) => `${key} = ${toml(inner)}`).join(", ")} }`;
  }
  return String(value);
}

function remark(line: string, text: string): string {
  return `${line.padEnd(Math.max(REMARK_COLUMN, line.length + 3))}${text}`;
}

/** `# key = value   # default`: a key that may be left out, shown with its default (from DEFAULTS). */
function commentedDefault(key: string, value: unknown): string {
  return remark(`# ${key} = ${toml(value)}`, "# default");
}

/** `key = value   # default value`: a key written out with its default value (from DEFAULTS). */
function liveDefault(key: string, value: unknown): string {
  return remark(`${key} = ${toml(value)}`, `# default ${toml(value)}`);
}

/** The kinds of template. */
export type TemplateKind = "server" | "client";

/** A random key for auth_key: 24 random bytes, base64url (32 characters). */
export function randomAuthKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(24));
  return btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_");
}

/** The commented server template, with `authKey` as its shared key. */
export function serverTemplate(authKey: string): string {
  const bindAddr = toml(DEFAULTS.server.bind_addr);
  return `# tls-tunnel server config. Check it with: tls-tunnel check -c server.toml
# Keys marked "default" may be left out; commented-out lines show the default or an example.

[server]
# Address and port of the tunnel's TLS listener, which clients dial. An IP address, never a host name:
# "0.0.0.0" listens on every interface (default ${bindAddr}); 0 as port lets the system pick one.
bind_addr = ${bindAddr}
bind_port = ${toml(DEFAULTS.server.bind_port)}

# The certificate chain and private key the server presents (PEM). Set both, or neither: without them a
# throw-away certificate is generated at every start, and clients need skip_verify = true.
# \`tls-tunnel cert\` creates cert.pem, key.pem and ca.pem (ca.pem goes to the client's ca_cert_path).
# cert_path = "cert.pem"
# key_path = "key.pem"

# Shared key any client may present (at least 16 characters). Copy it to the client's auth_key.
# Optional when [[server.clients]] below gives each client its own key. Env: TLS_TUNNEL_AUTH_KEY.
auth_key = "${authKey}"

# Ports a client using the shared auth_key may publish: ports and ranges, comma-separated.
${commentedDefault("allow_ports", DEFAULTS.server.allow_ports)}

# Address a proxy is published on when it names no publish_addr: an IP address, never a host name.
# Several servers on one host each set their own (e.g. "192.0.2.10" and "192.0.2.11") to publish the
# same port.
${commentedDefault("default_publish_addr", DEFAULTS.server.default_publish_addr)}

# Most proxies one client may register.
${commentedDefault("max_proxies_per_client", DEFAULTS.server.max_proxies_per_client)}

# Connections one client may have open at once that it opened itself (the connections of its
# visitors and forwarders); beyond it new ones are refused (LIMIT).
${commentedDefault("max_client_streams", DEFAULTS.server.max_client_streams)}

# Seconds a new connection has, from TCP accept, to finish TLS and authenticate before it is closed.
${commentedDefault("handshake_timeout_secs", DEFAULTS.server.handshake_timeout_secs)}

# How clients reach the tunnel: "tls" (TLS over TCP), "wss" (WebSocket upgrade on server_path) or "http2"
# (one HTTP/2 stream on server_path), both over TLS; anything else on the port is answered 404 like a web
# server. behind_proxy = true (with "wss" or "http2") serves plain-text WebSocket (or h2c) to a reverse
# proxy (nginx, Caddy, a CDN) that terminates TLS; the client's
# address then comes from X-Forwarded-For/Forwarded, believed only from a peer in trusted_proxies.
# "quic" (experimental): QUIC over UDP on bind_port (a UDP port), run with deno run --unstable-net.
${commentedDefault("transport", DEFAULTS.server.transport)}
${commentedDefault("server_path", DEFAULTS.server.server_path)}
${commentedDefault("behind_proxy", DEFAULTS.server.behind_proxy)}
${commentedDefault("trusted_proxies", DEFAULTS.server.trusted_proxies)}

# Connections not yet authenticated, at most in all and from one address; beyond them a new connection
# is closed at once (counted in tls_tunnel_connections_refused_total{reason}).
${commentedDefault("max_pending_connections", DEFAULTS.server.max_pending_connections)}
${commentedDefault("max_pending_per_ip", DEFAULTS.server.max_pending_per_ip)}

# Keepalive: a ping every interval; a session whose ping is not answered within the timeout is dead and
# its published ports are released. The timeout must be greater than the interval.
${commentedDefault("keepalive_interval_secs", DEFAULTS.server.keepalive_interval_secs)}
${commentedDefault("keepalive_timeout_secs", DEFAULTS.server.keepalive_timeout_secs)}

# Stats endpoint (JSON, Prometheus /metrics, /healthz, dashboard). Off unless stats_port is set.
# stats_token is required when stats_addr is reachable from other machines (not 127.0.0.1/::1).
${commentedDefault("stats_addr", DEFAULTS.server.stats_addr)}
# stats_port = 9090
# stats_token = "another-long-random-secret"   # Env: TLS_TUNNEL_STATS_TOKEN

# Seconds the server remembers a client's ports after it disconnects, to give them back on reconnect.
${commentedDefault("sticky_ports_ttl_secs", DEFAULTS.server.sticky_ports_ttl_secs)}

# Outside connections in a row that the client could not carry to its local service (refused, timed
# out) before the server marks the proxy unhealthy; the next one that gets through makes it healthy.
${commentedDefault("unhealthy_after_failures", DEFAULTS.server.unhealthy_after_failures)}

# Shared HTTP and HTTPS ports for proxies with proxy_type = "http" / "https": many clients share them,
# each request (http, by Host and path) or connection (https, by the TLS SNI; TLS is not terminated)
# goes to the proxy that names its host. Off unless the port is set. subdomain_host lets a proxy say
# subdomain = "app" for app.<subdomain_host>. A request whose response has not begun within
# request_timeout_secs gets a 504.
${commentedDefault("vhost_http_addr", VHOST_DEFAULTS.vhost_http_addr)}
# vhost_http_port = 80
${commentedDefault("vhost_https_addr", VHOST_DEFAULTS.vhost_https_addr)}
# vhost_https_port = 443
# subdomain_host = "tunnel.example.com"
${commentedDefault("request_timeout_secs", VHOST_DEFAULTS.request_timeout_secs)}

# Forwarding for clients' [[forwarders]] (local HTTP/SOCKS5 proxies that leave through this server): off
# unless allow_forward = true. Private, loopback and link-local destinations are refused (so a client
# cannot reach this server's own networks) unless forward_allow_private = true. A client may have
# max_forwards_per_client forwarded connections at once; each gets forward_connect_timeout_secs to
# reach its destination.
${commentedDefault("allow_forward", DEFAULTS.server.allow_forward)}
${commentedDefault("forward_allow_private", DEFAULTS.server.forward_allow_private)}
${commentedDefault("max_forwards_per_client", DEFAULTS.server.max_forwards_per_client)}
${commentedDefault("forward_connect_timeout_secs", DEFAULTS.server.forward_connect_timeout_secs)}

# Optional rate limit (the Rust tls-tunnel's keys): token buckets on new connections, one per source
# address for tunnel connections and one per client for outside connections (published ports and
# forwards). Over the limit a connection is refused, counted and logged (once per 10 s). Absent: none.
# [server.rate_limit]
${commentedDefault("requests_per_second", DEFAULTS.server.rate_limit.requests_per_second)}
${commentedDefault("burst_size", DEFAULTS.server.rate_limit.burst_size)}

# How the server retries a published port it could not bind (port in use, …): the delay doubles from
# initial_delay_secs up to max_delay_secs, for max_retries retries (0 = no retry). The client is told
# about every retry and about the final failure.
[server.bind_retry]
${commentedDefault("max_retries", DEFAULTS.server.bind_retry.max_retries)}
${commentedDefault("initial_delay_secs", DEFAULTS.server.bind_retry.initial_delay_secs)}
${commentedDefault("max_delay_secs", DEFAULTS.server.bind_retry.max_delay_secs)}

# Optional alerts: POST each event as JSON to a webhook (chat, paging, a script). events may list
# CLIENT_CONNECTED, CLIENT_DISCONNECTED, AUTH_FAILED, PROXY_BIND_FAILED, PORT_CHANGED,
# PROXY_UNHEALTHY, PROXY_HEALTHY.
# [server.notify]
# webhook_url = "https://alerts.example.com/tls-tunnel"
# webhook_token = "a-long-random-secret"  # sent as Authorization: Bearer …
${commentedDefault("events", DEFAULTS.server.notify.events)}
${commentedDefault("timeout_secs", DEFAULTS.server.notify.timeout_secs)}

# Named clients, each with its own key and allowed ports (repeat the block for more clients).
# name: unique, shown in logs and stats; auth_key: unique, at least 16 characters;
# allow_ports: default = the server's allow_ports; max_proxies: default = max_proxies_per_client.
# allow_visit: clients whose private proxies this client's [[visitors]] may reach ("*": any); without
# it, only clients that authenticated with the same key.
# [[server.clients]]
# name = "office"
# auth_key = "a-key-only-the-office-client-knows"
# allow_ports = "20000-20100"
# max_proxies = 8
# allow_visit = ["laptop"]

# More listeners: the same server on other ports and transports at once, sharing its clients, published
# ports, stats and pending limits (repeat the block for more). transport and bind_port are required;
# bind_addr, server_path, behind_proxy and trusted_proxies (default: [server]'s) as in [server]. When
# [server] writes transport, bind_addr or bind_port (as this file does), that listener comes first;
# when it writes none of them, the entries are all. No two may share a port on overlapping addresses.
# [[server.listeners]]
# transport = "wss"
# bind_addr = "0.0.0.0"
# bind_port = 443
`;
}

/** The commented client template, with `authKey` as its key. */
export function clientTemplate(authKey: string): string {
  return `# tls-tunnel client config. Check it with: tls-tunnel check -c client.toml
# Keys marked "default" may be left out; commented-out lines show the default or an example.

[client]
# The server's host name or address, and its tunnel port (the server's bind_port).
# Env: TLS_TUNNEL_SERVER_ADDR, TLS_TUNNEL_SERVER_PORT.
server_addr = "tunnel.example.com"
${liveDefault("server_port", DEFAULTS.client.server_port)}

# Name the server's certificate must carry (default: server_addr).
# server_name = "tunnel.example.com"

# Several servers at once, instead of server_addr (not both): the client keeps a session to each,
# registers its proxies on each and reconnects each on its own. The keys above (server_port,
# server_name, ca_cert_path, server_fingerprint, transport, server_path) are every entry's defaults.
# servers = ["a.example.com:8443", "b.example.com:8443"]
# Or one table per server (after the [client] keys), each key optional but server_addr:
#   [[client.servers]]
#   name = "a"
#   server_addr = "a.example.com"
#   server_port = 8443
#   server_name = "a.example.com"
#   ca_cert_path = "ca-a.pem"
#   server_fingerprint = "SHA256:…"
#   transport = "tls"
#   server_path = "/tunnel"

# Certificate verification. For a server using \`tls-tunnel cert\` files, point ca_cert_path at its
# ca.pem. Without ca_cert_path the system's CAs are used (e.g. for a Let's Encrypt certificate).
# skip_verify = true turns verification off: only for tests, anyone on the path could impersonate the
# server. Do not combine it with ca_cert_path.
# ca_cert_path = "ca.pem"
${liveDefault("skip_verify", DEFAULTS.client.skip_verify)}

# Or pin the server's certificate by its SHA-256 fingerprint, as \`tls-tunnel cert\` and the server print
# it ("AB:CD:…", 32 hex pairs) or as "SHA256:" followed by 64 hex digits.
# server_fingerprint = "SHA256:…"

# "tls" (TLS over TCP), "wss" (WebSocket over TLS) or "http2" (one HTTP/2 stream over TLS), the last two
# on server_path: the server's, or the location a reverse proxy forwards to it. All verify the server the
# same way (ca_cert_path, pin, skip_verify). "quic" (experimental): QUIC over UDP, run with
# deno run --unstable-net; ca_cert_path or a pin (no skip_verify), no proxy_url.
${commentedDefault("transport", DEFAULTS.client.transport)}
${commentedDefault("server_path", DEFAULTS.client.server_path)}

# Leave through an outbound proxy: HTTP CONNECT or SOCKS5, with optional credentials (never logged).
# Without it, HTTPS_PROXY (or ALL_PROXY) is used unless NO_PROXY lists server_addr, as curl does.
# proxy_url = "http://user:pass@proxy.example.com:3128"    # or "socks5://[user:pass@]host:1080"

# The key the server expects: its shared auth_key or this client's [[server.clients]] key.
# Env: TLS_TUNNEL_AUTH_KEY.
auth_key = "${authKey}"

# Stable id of this client across reconnects (default: derived from the host and this config). Each running
# copy of a client needs its own: a second copy with the id of a connected one is refused and exits.
# client_id = "office-laptop"

# Attempts to reach a local service for each outside connection, and the pause between them.
# Env: TLS_TUNNEL_LOCAL_CONNECT_RETRIES, TLS_TUNNEL_LOCAL_RETRY_DELAY_MS.
${commentedDefault("local_connect_retries", DEFAULTS.client.local_connect_retries)}
${commentedDefault("local_retry_delay_ms", DEFAULTS.client.local_retry_delay_ms)}

# Keepalive of the tunnel session; the timeout must be greater than the interval.
${commentedDefault("keepalive_interval_secs", DEFAULTS.client.keepalive_interval_secs)}
${commentedDefault("keepalive_timeout_secs", DEFAULTS.client.keepalive_timeout_secs)}

# The client's own stats endpoint; off unless stats_port is set. stats_token is required when
# stats_addr is reachable from other machines (not 127.0.0.1/::1).
${commentedDefault("stats_addr", DEFAULTS.client.stats_addr)}
# stats_port = 9091
# stats_token = "a-long-random-secret"    # Env: TLS_TUNNEL_STATS_TOKEN

# Reconnecting after the server is lost: the delay starts at initial_delay_secs, is multiplied by
# multiplier after each failed attempt up to max_delay_secs, and spread by ±jitter (0-1).
# max_attempts = 0 retries forever. Env: TLS_TUNNEL_RECONNECT_DELAY_SECS (initial_delay_secs).
[client.reconnect]
${commentedDefault("initial_delay_secs", DEFAULTS.client.reconnect.initial_delay_secs)}
${commentedDefault("max_delay_secs", DEFAULTS.client.reconnect.max_delay_secs)}
${commentedDefault("multiplier", DEFAULTS.client.reconnect.multiplier)}
${commentedDefault("jitter", DEFAULTS.client.reconnect.jitter)}
${commentedDefault("max_attempts", DEFAULTS.client.reconnect.max_attempts)}

# Optional: ask the server to retry a busy publish_port less than it would (it never retries more
# than its own [server.bind_retry]). Unset keys take the server's value.
# [client.bind_retry]
# max_retries = 3
# initial_delay_secs = 2
# max_delay_secs = 10

# One [[proxies]] block per service to publish on the server (repeat the block for more).
[[proxies]]
# Unique name: letters, digits, '.', '_' or '-'.
name = "web"
# "tcp" (SSH, databases, HTTP on a port of its own …), "udp" (DNS, games, WireGuard …; both sides then
# need deno run --unstable-net), or "http" / "https" (web sites by host name on the server's shared
# vhost ports; see the keys at the end).
${commentedDefault("proxy_type", DEFAULTS.proxy.proxy_type)}
# Address (an IP address of the server, never a host name) and port the server publishes on.
# Without publish_addr the server's default_publish_addr (${
    toml(DEFAULTS.server.default_publish_addr)
  } unless it sets another)
# is used. publish_port = 0 lets the server pick a free port.
# publish_addr = "127.0.0.1"
publish_port = 8080
# Ports to try when publish_port is taken (or 0), and whether to let the system pick a port when the
# whole range is taken too.
# publish_port_range = "20000-20100"
${commentedDefault("fallback_to_system_port", DEFAULTS.proxy.fallback_to_system_port)}
# The local service the client forwards to.
${liveDefault("local_addr", DEFAULTS.proxy.local_addr)}
local_port = 3000
# Or, instead of local_addr/local_port, several copies of the service to spread connections over; a
# backend that refuses is skipped for a few seconds and the connection goes to the next one.
# local_backends = ["127.0.0.1:3000", "127.0.0.1:3001", "[::1]:3002"]
# How each connection picks its backend: "round_robin" (in turn), "least_connections" (fewest open),
# or "ip_hash" (one outside host always reaches the same backend while it is up).
${commentedDefault("lb_policy", DEFAULTS.proxy.lb_policy)}
# Optional TCP health check of the local service, reported to the server (not for udp proxies).
# health_check = ${toml(DEFAULTS.proxy.health_check)}
# http and https proxies (proxy_type = "http" / "https") have no publish_port: the server routes by host
# name on its vhost_http_port / vhost_https_port. They name custom_domains and/or a subdomain (under the
# server's subdomain_host); http ones may route by path prefix (locations, longest first), rewrite the
# Host the service sees, and ask outside requests for basic auth (http_user with http_password).
# custom_domains = ["app.example.com"]
# subdomain = "app"
# locations = ["/", "/api"]
# host_header_rewrite = "localhost"
# http_user = "ann"
# http_password = "a-long-secret"
# Serve one published port (tcp) or domain (http/https) together with other clients: every member names
# the same group and group_key (a shared secret; tcp members the same explicit publish_port). The server
# spreads new connections over the members by lb_policy and frees the port when the last one leaves.
# group = "web"
# group_key = "a-long-random-secret-shared-by-the-members"
# Tell the local service who the outside peer is: a PROXY protocol header ("v1" text, "v2" binary) before
# each connection's bytes (the service must expect it, e.g. nginx's listen ... proxy_protocol).
# proxy_protocol = "v1"
# Most bytes per second through this proxy, both directions together (KB/MB/GB, 1,024-based); no limit
# when absent. Most outside connections the server carries at once for it; beyond, they are closed.
# bandwidth_limit = "10MB"
# max_connections = 100

# Who reaches the proxy: "public" (bound on the server's publish_port), "private" (not bound; only other
# clients' [[visitors]] reach it, by name and publish_port) or "both". secret_key: what visitors must
# present (private or both).
${commentedDefault("visibility", DEFAULTS.proxy.visibility)}
# secret_key = "a-secret-for-visitors"

# A udp proxy: the client and the server then run with deno run --unstable-net. A flow (one outside
# peer address) without a datagram for udp_idle_timeout_secs is dropped on both sides; at most
# max_udp_flows are kept (the one idle longest makes room for a new peer).
# [[proxies]]
# name = "dns"
# proxy_type = "udp"
# publish_port = 5353
# local_port = 53
${commentedDefault("udp_idle_timeout_secs", DEFAULTS.proxy.udp_idle_timeout_secs)}
${commentedDefault("max_udp_flows", DEFAULTS.proxy.max_udp_flows)}

# Visitors: a local port that reaches another client's private proxy through the server (repeat the
# block for more). name and publish_port name the target proxy; client names its owner when several
# clients have one of that name and port; secret_key is the proxy's, when it has one.
# [[visitors]]
# name = "db"
# publish_port = 5432
${commentedDefault("bind_addr", DEFAULTS.visitors.bind_addr)}
# bind_port = 15432
# secret_key = "a-secret-for-visitors"
# client = "office"

# Forwarders: a local HTTP or SOCKS5 proxy whose connections leave through the server (which needs
# allow_forward = true). proxy_type "http" serves CONNECT and absolute-URI requests (one request per
# connection), "socks5" serves CONNECT. username and password (both or neither) are then required by
# the local proxy. Beyond max_connections local connections at once, new ones are refused.
# [[forwarders]]
# name = "exit"
# proxy_type = "socks5"
${commentedDefault("bind_addr", DEFAULTS.forwarders.bind_addr)}
# bind_port = 1080
# username = "alice"
# password = "a-long-secret"
${commentedDefault("max_connections", DEFAULTS.forwarders.max_connections)}
# Optional routing: these destinations are connected by the client itself ("direct") instead of
# through the server. Checked in order: domains (exact, "*.x" = x and below, ".x" = below only), IP
# addresses and networks, then the country of the address from a MaxMind .mmdb (GeoLite2-Country).
# [forwarders.routing]
# geoip_db = "GeoLite2-Country.mmdb"
# direct_countries = ["CN", "HK"]
# proxy_countries = []
# direct_ips = ["192.168.0.0/16", "10.0.0.0/8"]
# proxy_ips = []
# direct_domains = ["*.example.cn"]
# proxy_domains = []
${commentedDefault("default_strategy", DEFAULTS.forwarders.routing.default_strategy)}
`;
}

/** Options of {@link templateCommand}. */
export interface TemplateOptions {
  /** `server` or `client`. */
  kind: string;
  /** Write here instead of stdout; an existing file is never overwritten. */
  outputPath?: string;
}

/**
 * Prints or writes a template.
 *
 * @returns 0 on success, 1 when the output file exists or cannot be written, 2 for an unknown kind.
 */
export async function templateCommand(
  options: TemplateOptions,
  io: CommandOutput = processOutput,
): Promise<number> {
  const kind = options.kind.toLowerCase();
  if (kind !== "server" && kind !== "client") {
    io.err(
      `tls-tunnel: unknown template kind "${options.kind}"; use \`template server\` or \`template client\``,
    );
    return 2;
  }
  const text = kind === "server" ? serverTemplate(randomAuthKey()) : clientTemplate(randomAuthKey());
  if (options.outputPath === undefined) {
    io.out(text.trimEnd());
    return 0;
  }
  try {
    await Deno.writeTextFile(options.outputPath, text, { createNew: true, mode: 0o600 });
  } catch (error) {
    if (error instanceof Deno.errors.AlreadyExists) {
      io.err(`tls-tunnel: ${options.outputPath} already exists; not overwriting it. Choose another -o path.`);
    } else {
      io.err(
        `tls-tunnel: cannot write ${options.outputPath}: ${errorMessage(error)}`,
      );
    }
    return 1;
  }
  // One call, so that --log-format json prints the report as one record.
  const report: string[] = [];
  report.push(`Wrote a ${kind} template to ${options.outputPath} (with a fresh auth_key). Check it with:`);
  report.push(`  tls-tunnel check -c ${options.outputPath}`);
  io.err(report.join("\n"));
  return 0;
}

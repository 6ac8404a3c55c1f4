/**
 * Every default of the config files, in one place and in their TOML spelling: the schema applies them,
 * the cross-key rules name them in messages, `tls-tunnel template` writes them out, and a test keeps the
 * README's figures equal to them. Changing a default is one edit here.
 *
 * @module
 */

/** Default values, in TOML spelling, shared by the schemas, the rules, the templates and the docs. */
export const DEFAULTS = {
  server: {
    bind_addr: "0.0.0.0",
    bind_port: 8443,
    allow_ports: "1024-65535",
    default_publish_addr: "0.0.0.0",
    max_proxies_per_client: 64,
    max_client_streams: 256,
    handshake_timeout_secs: 10,
    max_pending_connections: 1024,
    max_pending_per_ip: 32,
    keepalive_interval_secs: 10,
    keepalive_timeout_secs: 30,
    stats_addr: "127.0.0.1",
    sticky_ports_ttl_secs: 600,
    unhealthy_after_failures: 3,
    bind_retry: { max_retries: 10, initial_delay_secs: 2, max_delay_secs: 60 },
    notify: { events: ["PROXY_BIND_FAILED", "CLIENT_DISCONNECTED"], timeout_secs: 5 },
    transport: "tls",
    server_path: "/tunnel",
    behind_proxy: false,
    trusted_proxies: ["127.0.0.0/8", "::1"],
    vhost_http_addr: "0.0.0.0",
    vhost_https_addr: "0.0.0.0",
    request_timeout_secs: 60,
    allow_forward: false,
    forward_allow_private: false,
    max_forwards_per_client: 256,
    forward_connect_timeout_secs: 10,
    rate_limit: { requests_per_second: 100, burst_size: 200 },
  },
  client: {
    server_port: 8443,
    skip_verify: false,
    local_connect_retries: 3,
    local_retry_delay_ms: 1000,
    keepalive_interval_secs: 10,
    keepalive_timeout_secs: 30,
    stats_addr: "127.0.0.1",
    reconnect: { initial_delay_secs: 5, max_delay_secs: 60, multiplier: 2, jitter: 0.2, max_attempts: 0 },
    transport: "tls",
    server_path: "/tunnel",
  },
  forwarders: {
    bind_addr: "127.0.0.1",
    max_connections: 256,
    routing: { default_strategy: "proxy" },
  },
  visitors: {
    bind_addr: "127.0.0.1",
  },
  proxy: {
    visibility: "public",
    proxy_type: "tcp",
    fallback_to_system_port: false,
    local_addr: "127.0.0.1",
    lb_policy: "round_robin",
    health_check: { interval_secs: 10, timeout_secs: 3 },
    udp_idle_timeout_secs: 60,
    max_udp_flows: 1024,
  },
} as const;

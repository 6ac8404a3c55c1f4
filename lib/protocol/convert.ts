/**
 * Conversions between the config's shapes (camelCase, `lib/config/types.ts`) and the wire's (snake_case,
 * `control.ts`), in one place for both roles: the client turns its proxies and `[client.bind_retry]` into
 * `register_proxies` params, the server turns a request's `bind_retry` back into the config's shape.
 *
 * @module
 */

import type { BindRetryConfig, ProxyConfig } from "../config/types.ts";
import { DEFAULTS } from "../config/defaults.ts";
import type { BindRetryRequest, ProxySpecRequest } from "./control.ts";

/**
 * A configured proxy in its wire form (the fields `register_proxies` carries; local backends, the load
 * balancing policy and health checks stay on the client). Without `publish_addr` the server publishes on
 * its `default_publish_addr`.
 */
export function toProxySpec(proxy: ProxyConfig): ProxySpecRequest {
  const spec: ProxySpecRequest = {
    name: proxy.name,
    proxy_type: proxy.proxyType,
    ...(proxy.publishAddr !== undefined ? { publish_addr: proxy.publishAddr } : {}),
    publish_port: proxy.publishPort,
    local_addr: proxy.localAddr,
    local_port: proxy.localPort,
  };
  if (proxy.publishPortRange) spec.publish_port_range = { ...proxy.publishPortRange };
  if (proxy.fallbackToSystemPort) spec.fallback_to_system_port = true;
  // Visitors (README.md §5b): sent only when not the default, so older servers see the same request.
  if (proxy.visibility !== undefined && proxy.visibility !== "public") spec.visibility = proxy.visibility;
  if (proxy.secretKey !== undefined) spec.secret_key = proxy.secretKey;
  // Routing of http/https proxies (README.md §4.2); the config's rules keep these off tcp proxies.
  if (proxy.customDomains?.length) spec.custom_domains = [...proxy.customDomains];
  if (proxy.subdomain !== undefined) spec.subdomain = proxy.subdomain;
  if (proxy.locations?.length) spec.locations = [...proxy.locations];
  if (proxy.hostHeaderRewrite !== undefined) spec.host_header_rewrite = proxy.hostHeaderRewrite;
  if (proxy.httpUser !== undefined) spec.http_user = proxy.httpUser;
  if (proxy.httpPassword !== undefined) spec.http_password = proxy.httpPassword;
  // Groups (README.md §4.2): the server balances the group's connections by lb_policy.
  if (proxy.group !== undefined) {
    spec.group = proxy.group;
    if (proxy.groupKey !== undefined) spec.group_key = proxy.groupKey;
    spec.lb_policy = proxy.lbPolicy;
  }
  if (proxy.maxConnections !== undefined) spec.max_connections = proxy.maxConnections;
  if (proxy.proxyType === "udp") {
    // The server keeps flows as the client does: both drop them after the same idle time.
    spec.udp_idle_timeout_secs = proxy.udpIdleTimeoutSecs ?? DEFAULTS.proxy.udp_idle_timeout_secs;
    spec.max_udp_flows = proxy.maxUdpFlows ?? DEFAULTS.proxy.max_udp_flows;
  }
  return spec;
}

/**
 * A client's `[client.bind_retry]` in its wire form: only the values it sets.
 *
 * @example
 * ```ts
 * import { fromBindRetryRequest, toBindRetryRequest } from "./convert.ts";
 * const wire = toBindRetryRequest({ maxRetries: 3 });
 * console.log(wire); // { max_retries: 3 }
 * console.log(fromBindRetryRequest(wire)); // { maxRetries: 3 }
 * ```
 */
export function toBindRetryRequest(request: Partial<BindRetryConfig>): BindRetryRequest {
  const wire: BindRetryRequest = {};
  if (request.maxRetries !== undefined) wire.max_retries = request.maxRetries;
  if (request.initialDelaySecs !== undefined) wire.initial_delay_secs = request.initialDelaySecs;
  if (request.maxDelaySecs !== undefined) wire.max_delay_secs = request.maxDelaySecs;
  return wire;
}

/** A `register_proxies` request's `bind_retry` in the config's shape: only the values it sets. */
export function fromBindRetryRequest(request: BindRetryRequest | undefined): Partial<BindRetryConfig> {
  const config: Partial<BindRetryConfig> = {};
  if (request?.max_retries !== undefined) config.maxRetries = request.max_retries;
  if (request?.initial_delay_secs !== undefined) config.initialDelaySecs = request.initial_delay_secs;
  if (request?.max_delay_secs !== undefined) config.maxDelaySecs = request.max_delay_secs;
  return config;
}

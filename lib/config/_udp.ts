/**
 * Cross-key rules of `udp` proxies (`[[proxies]]` with `proxy_type = "udp"`): the flow keys belong to
 * udp proxies only, and a udp proxy has no `health_check` (that check connects over TCP).
 *
 * @module
 */

import type { ConfigIssue } from "./errors.ts";

/** The keys only a `udp` proxy takes. */
export const UDP_PROXY_KEYS = ["udp_idle_timeout_secs", "max_udp_flows"] as const;

/**
 * The issues of one `[[proxies]]` entry at `prefix` (e.g. `proxies[2]`) whose `proxy_type` (or `type`)
 * is `proxyType`.
 */
export function udpProxyRules(
  proxy: Record<string, unknown>,
  prefix: string,
  proxyType: string | undefined,
): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  if (proxyType !== "udp") {
    for (const key of UDP_PROXY_KEYS) {
      if (!(key in proxy)) continue;
      issues.push({
        path: `${prefix}.${key}`,
        message: `${key} applies to proxy_type = "udp" only (this proxy is ${
          JSON.stringify(proxyType ?? "tcp")
        })`,
        hint: `remove ${key}, or set proxy_type = "udp" if the local service speaks UDP`,
      });
    }
  } else {
    if ("health_check" in proxy) {
      issues.push({
        path: `${prefix}.health_check`,
        message: 'health_check connects over TCP, so a proxy_type = "udp" proxy cannot have one',
        hint: "remove health_check from this proxy",
      });
    }
    if ("visibility" in proxy && proxy.visibility !== "public") {
      issues.push({
        path: `${prefix}.visibility`,
        message: `visibility = ${
          JSON.stringify(proxy.visibility)
        }: a proxy_type = "udp" proxy is public only (visitors reach TCP proxies only)`,
        hint: 'remove visibility, or set visibility = "public"',
      });
    }
  }
  return issues;
}

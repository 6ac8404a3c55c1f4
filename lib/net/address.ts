/**
 * Syntax checks for host names and IP addresses, as written in configs and certificates.
 * They check spelling only: whether a name resolves or an address is local is found out when the roles
 * bind or connect.
 *
 * @module
 */

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const HOSTNAME_LABEL = /^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$/;

/** True for a dotted-quad IPv4 address such as `127.0.0.1`. */
export function isIpv4(value: string): boolean {
  return IPV4.test(value);
}

/** True for an IPv6 address such as `::1` or `fe80::1` (no brackets, no zone). */
export function isIpv6(value: string): boolean {
  if (!value.includes(":") || !/^[0-9A-Fa-f:.]+$/.test(value)) return false;
  const doubleColons = value.split("::").length - 1;
  if (doubleColons > 1) return false;
  let groups = value.split(":");
  const last = groups[groups.length - 1] ?? "";
  let expected = 8;
  if (last.includes(".")) {
    if (!isIpv4(last)) return false;
    groups = groups.slice(0, -1);
    expected = 6;
  }
  if (doubleColons === 0) {
    return groups.length === expected && groups.every((g) => /^[0-9A-Fa-f]{1,4}$/.test(g));
  }
  const nonEmpty = groups.filter((g) => g !== "");
  return nonEmpty.length < expected && nonEmpty.every((g) => /^[0-9A-Fa-f]{1,4}$/.test(g));
}

/** True for an IPv4 or IPv6 address. */
export function isIpAddress(value: string): boolean {
  return isIpv4(value) || isIpv6(value);
}

/** True for a DNS host name such as `tunnel.example.com` or `localhost`. */
export function isHostname(value: string): boolean {
  if (value.length === 0 || value.length > 253) return false;
  const labels = (value.endsWith(".") ? value.slice(0, -1) : value).split(".");
  return labels.every((label) => HOSTNAME_LABEL.test(label)) &&
    !/^\d+$/.test(labels[labels.length - 1] ?? "");
}

/** True for an IP address or a host name. */
export function isHost(value: string): boolean {
  return isIpAddress(value) || isHostname(value);
}

/** True for an address only this machine can reach: 127.0.0.0/8, ::1 or `localhost`. */
export function isLoopback(value: string): boolean {
  const lower = value.toLowerCase();
  return lower === "localhost" || lower === "::1" || (isIpv4(value) && value.startsWith("127.")) ||
    lower === "0:0:0:0:0:0:0:1";
}

/** True for an address that binds every interface (`0.0.0.0`, `::`). */
export function isWildcard(value: string): boolean {
  return value === "0.0.0.0" || value === "::" || value === "0:0:0:0:0:0:0:0";
}

/**
 * True when two listeners on the same port and these addresses would conflict: same address, or one of
 * them binds every interface.
 */
export function addressesOverlap(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase() || isWildcard(a) || isWildcard(b);
}

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

/**
 * The eight 16-bit groups of an IPv6 address (`::ffff:127.0.0.1` → `[0, 0, 0, 0, 0, 0xffff, 0x7f00, 1]`),
 * or null when `value` is not one ({@linkcode isIpv6}).
 */
export function ipv6Groups(value: string): number[] | null {
  if (!isIpv6(value)) return null;
  let text = value;
  const lastColon = text.lastIndexOf(":");
  const tail = text.slice(lastColon + 1);
  if (tail.includes(".")) {
    // The dotted-quad tail (already checked by isIpv6) becomes the last two groups.
    const [a = 0, b = 0, c = 0, d = 0] = tail.split(".").map(Number);
    text = `${text.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const parse = (part: string): number[] => part === "" ? [] : part.split(":").map((g) => parseInt(g, 16));
  const halves = text.split("::");
  const head = parse(halves[0] ?? "");
  if (halves.length === 1) return head;
  const rest = parse(halves[1] ?? "");
  return [...head, ...new Array<number>(8 - head.length - rest.length).fill(0), ...rest];
}

/**
 * True for an address only this machine can reach: `localhost` (any case), an IPv4 address in
 * 127.0.0.0/8, the IPv6 loopback `::1` in any spelling (`0:0:0:0:0:0:0:1`, `0::1`), and an IPv4-mapped
 * loopback (`::ffff:127.0.0.1`, which an IPv6 socket sees for an IPv4 loopback peer). An IPv6 address may
 * come in brackets (`[::1]`, as in a URL). Anything else, including a wildcard (`0.0.0.0`, `::`) and a
 * malformed address (`127.1`, `127.0.0.256`), is not loopback: a caller that skips a check for loopback
 * must never skip it by mistake.
 */
export function isLoopback(value: string): boolean {
  if (value.toLowerCase() === "localhost") return true;
  if (isIpv4(value)) return value.startsWith("127.");
  const bare = value.startsWith("[") && value.endsWith("]") ? value.slice(1, -1) : value;
  const groups = ipv6Groups(bare);
  if (groups === null || groups.slice(0, 5).some((group) => group !== 0)) return false;
  const [sixth, seventh = 0, eighth] = groups.slice(5);
  return (sixth === 0 && seventh === 0 && eighth === 1) || (sixth === 0xffff && seventh >> 8 === 127);
}

/**
 * `host:port` as URLs, logs and error messages write it: an IPv6 address in brackets (`[::1]:443`), so the
 * port cannot be read as one more group of the address. A name or IPv4 address is written as is.
 */
export function formatHostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** A Deno address as {@linkcode formatHostPort} writes it; a Unix socket as its transport's name. */
export function formatAddr(addr: Deno.Addr): string {
  if (addr.transport !== "tcp" && addr.transport !== "udp") return String(addr.transport);
  return formatHostPort(addr.hostname, addr.port);
}

/**
 * The host of a `host:port` text such as a peer address (`[::1]:5000` → `::1`, `10.0.0.7:5000` →
 * `10.0.0.7`); the text itself when it has no port (`::1`, `unknown`).
 */
export function hostOfHostPort(hostPort: string): string {
  const bracketed = /^\[([^\]]*)\](?::\d+)?$/.exec(hostPort);
  if (bracketed) return bracketed[1] ?? hostPort;
  const colons = hostPort.split(":").length - 1;
  return colons === 1 ? hostPort.slice(0, hostPort.lastIndexOf(":")) : hostPort;
}

/** `::ffff:192.0.2.1` (an IPv4 peer on a dual-stack socket) → `192.0.2.1`; other addresses unchanged. */
export function unmapIpv4(host: string): string {
  return /^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(host) ? host.slice(7) : host;
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

/**
 * IP networks written as CIDR (`10.0.0.0/8`, `::1/128`) or a bare address (one host), and whether an
 * address belongs to one: the server's `trusted_proxies` (whose `X-Forwarded-For` it believes).
 *
 * @example
 * ```ts
 * import { cidrContains, parseCidr } from "./cidr.ts";
 *
 * const loopback = parseCidr("127.0.0.0/8");
 * if (loopback !== null) console.log(cidrContains(loopback, "127.0.0.5")); // true
 * ```
 *
 * @module
 */

import { ipv6Groups, isIpv4, unmapIpv4 } from "./address.ts";

/** A parsed network: the address as 4 or 16 bytes and the prefix length in bits. */
export interface Cidr {
  /** The network's address bytes (4 for IPv4, 16 for IPv6). */
  readonly bytes: Uint8Array;
  /** Leading bits that must match. */
  readonly prefixBits: number;
  /** As written, for messages. */
  readonly text: string;
}

/** The 4 or 16 bytes of an IP address (an IPv4-mapped IPv6 address as IPv4), or null when it is none. */
export function ipBytes(address: string): Uint8Array | null {
  const bare = unmapIpv4(address.startsWith("[") && address.endsWith("]") ? address.slice(1, -1) : address);
  if (isIpv4(bare)) return new Uint8Array(bare.split(".").map(Number));
  const groups = ipv6Groups(bare);
  if (groups === null) return null;
  const bytes = new Uint8Array(16);
  groups.forEach((group, index) => {
    bytes[index * 2] = group >> 8;
    bytes[index * 2 + 1] = group & 0xff;
  });
  return bytes;
}

/** `"10.0.0.0/8"`, `"::1"`, `"fd00::/8"` → a {@linkcode Cidr}; null when it is not one. */
export function parseCidr(text: string): Cidr | null {
  const slash = text.indexOf("/");
  const bytes = ipBytes(slash < 0 ? text : text.slice(0, slash));
  if (bytes === null) return null;
  const maxBits = bytes.length * 8;
  if (slash < 0) return { bytes, prefixBits: maxBits, text };
  const bitsText = text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(bitsText) || Number(bitsText) > maxBits) return null;
  return { bytes, prefixBits: Number(bitsText), text };
}

/** Whether `address` (an IP literal; anything else is in no network) is inside `cidr`. */
export function cidrContains(cidr: Cidr, address: string): boolean {
  const bytes = ipBytes(address);
  if (bytes === null || bytes.length !== cidr.bytes.length) return false;
  let bits = cidr.prefixBits;
  for (let index = 0; bits > 0; index++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if (((bytes[index] ?? 0) & mask) !== ((cidr.bytes[index] ?? 0) & mask)) return false;
  }
  return true;
}

/**
 * The client's address behind reverse proxies: `peer` itself unless it is in `trusted`; then, walking
 * `forwardedFor` (client first, each proxy appending its peer, as `X-Forwarded-For` is written) from the
 * nearest hop, the first address not in `trusted` (an untrusted hop could have written anything before
 * it), or the farthest one when every hop is trusted. Without forwarded addresses, `peer`.
 */
export function clientBehindProxies(
  peer: string,
  forwardedFor: readonly string[],
  trusted: readonly Cidr[],
): string {
  const isTrusted = (address: string) => trusted.some((network) => cidrContains(network, address));
  if (!isTrusted(peer) || forwardedFor.length === 0) return peer;
  for (let index = forwardedFor.length - 1; index >= 0; index--) {
    const hop = forwardedFor[index] ?? peer;
    if (!isTrusted(hop) || index === 0) return unmapIpv4(hop);
  }
  return peer;
}

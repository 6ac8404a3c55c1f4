/**
 * PROXY protocol headers (HAProxy's spec, versions 1 and 2): what a proxy with `proxy_protocol = "v1"`
 * or `"v2"` writes first on each connection to its local service, so the service (nginx, HAProxy,
 * Postfix…) sees the outside peer's address instead of the tunnel client's. Pure encoders, no sockets.
 *
 * - v1: one line of text, `PROXY TCP4 <src> <dst> <sport> <dport>\r\n` (`TCP6` for IPv6), at most 107
 *   bytes; `PROXY UNKNOWN\r\n` when an address is not an IP literal.
 * - v2: the 12-byte signature, `0x21` (version 2, PROXY command), the family and transport (`0x11`
 *   TCP/IPv4, `0x21` TCP/IPv6, `0x12`/`0x22` for UDP), the address block's length (u16 big-endian: 12 for
 *   IPv4, 36 for IPv6), then source and destination addresses and ports. An address that is not an IP
 *   literal gives the LOCAL command with family UNSPEC and no address block.
 *
 * When one address is IPv4 and the other IPv6, the IPv4 one is written IPv4-mapped (`::ffff:a.b.c.d`) so
 * both are of one family, as the spec requires; an IPv4-mapped address with an IPv4 partner is unmapped.
 *
 * @example The header for a peer seen on a published port
 * ```ts
 * import { encodeProxyHeader } from "./proxy_protocol_header.ts";
 *
 * const line = encodeProxyHeader("v1", {
 *   source: { host: "203.0.113.7", port: 51000 },
 *   destination: { host: "198.51.100.1", port: 8080 },
 * });
 * console.log(new TextDecoder().decode(line)); // "PROXY TCP4 203.0.113.7 198.51.100.1 51000 8080\r\n"
 * ```
 *
 * @module
 */

import { ipBytes } from "../net/cidr.ts";

/** The versions a proxy may send. */
export type ProxyProtocolVersion = "v1" | "v2";

/** One end of the connection: an IP literal (IPv6 with or without brackets) and a port. */
export interface ProxyEndpoint {
  host: string;
  port: number;
}

/** What a header says. */
export interface ProxyHeaderInfo {
  /** The outside peer. */
  source: ProxyEndpoint;
  /** Where the peer connected to (the published address and port). */
  destination: ProxyEndpoint;
  /** The transport (`tcp` unless said; `udp` only changes v2's transport nibble). */
  transport?: "tcp" | "udp";
}

/** The v2 signature: `\r\n\r\n\0\r\nQUIT\n`. */
export const PROXY_V2_SIGNATURE: Uint8Array = new Uint8Array([
  0x0d,
  0x0a,
  0x0d,
  0x0a,
  0x00,
  0x0d,
  0x0a,
  0x51,
  0x55,
  0x49,
  0x54,
  0x0a,
]);

/** Longest v1 line, CRLF included (the spec's bound). */
export const PROXY_V1_MAX_BYTES = 107;

/** The two addresses as bytes of one family, or null when either is not an IP literal. */
function addressPair(info: ProxyHeaderInfo): { source: Uint8Array; destination: Uint8Array } | null {
  let source = ipBytes(info.source.host);
  let destination = ipBytes(info.destination.host);
  if (source === null || destination === null) return null;
  if (!validPort(info.source.port) || !validPort(info.destination.port)) return null;
  if (source.length !== destination.length) {
    // One IPv4, one IPv6: the IPv4 one goes IPv4-mapped, so both are IPv6.
    if (source.length === 4) source = mapped(source);
    else destination = mapped(destination);
  }
  return { source, destination };
}

function validPort(port: number): boolean {
  return Number.isInteger(port) && port >= 0 && port <= 65535;
}

/** `::ffff:a.b.c.d` as 16 bytes. */
function mapped(ipv4: Uint8Array): Uint8Array {
  const bytes = new Uint8Array(16);
  bytes[10] = 0xff;
  bytes[11] = 0xff;
  bytes.set(ipv4, 12);
  return bytes;
}

/** An address in v1's text form: dotted IPv4, or eight lower-case hex groups for IPv6. */
function addressText(bytes: Uint8Array): string {
  if (bytes.length === 4) return Array.from(bytes).join(".");
  const groups: string[] = [];
  for (let index = 0; index < 16; index += 2) {
    groups.push((((bytes[index] ?? 0) << 8) | (bytes[index + 1] ?? 0)).toString(16));
  }
  return groups.join(":");
}

/** The v1 line for `info` (`PROXY UNKNOWN\r\n` when an address is not an IP literal). */
export function encodeProxyV1(info: ProxyHeaderInfo): Uint8Array {
  const pair = addressPair(info);
  const line = pair === null
    ? "PROXY UNKNOWN\r\n"
    : `PROXY ${pair.source.length === 4 ? "TCP4" : "TCP6"} ${addressText(pair.source)} ${
      addressText(pair.destination)
    } ${info.source.port} ${info.destination.port}\r\n`;
  return new TextEncoder().encode(line);
}

/** The v2 header for `info` (LOCAL, no addresses, when an address is not an IP literal). */
export function encodeProxyV2(info: ProxyHeaderInfo): Uint8Array {
  const pair = addressPair(info);
  if (pair === null) {
    const local = new Uint8Array(16);
    local.set(PROXY_V2_SIGNATURE, 0);
    local[12] = 0x20; // version 2, LOCAL
    local[13] = 0x00; // UNSPEC
    return local; // length 0
  }
  const ipv4 = pair.source.length === 4;
  const addressBytes = ipv4 ? 12 : 36;
  const header = new Uint8Array(16 + addressBytes);
  const view = new DataView(header.buffer);
  header.set(PROXY_V2_SIGNATURE, 0);
  header[12] = 0x21; // version 2, PROXY
  header[13] = ((ipv4 ? 0x1 : 0x2) << 4) | (info.transport === "udp" ? 0x2 : 0x1);
  view.setUint16(14, addressBytes);
  header.set(pair.source, 16);
  header.set(pair.destination, 16 + pair.source.length);
  const ports = 16 + pair.source.length * 2;
  view.setUint16(ports, info.source.port);
  view.setUint16(ports + 2, info.destination.port);
  return header;
}

/** The header of `version` for `info`. */
export function encodeProxyHeader(version: ProxyProtocolVersion, info: ProxyHeaderInfo): Uint8Array {
  return version === "v1" ? encodeProxyV1(info) : encodeProxyV2(info);
}

/**
 * `"host:port"` (a stream header's `peer_addr`, IPv6 in brackets) as an endpoint, or null when it has no
 * port.
 */
export function parseHostPort(text: string): ProxyEndpoint | null {
  const bracketed = /^\[([^\]]+)\]:(\d{1,5})$/.exec(text);
  const plain = bracketed ? null : /^([^:]+):(\d{1,5})$/.exec(text);
  const match = bracketed ?? plain;
  if (!match || match[1] === undefined || match[2] === undefined) return null;
  const port = Number(match[2]);
  return validPort(port) ? { host: match[1], port } : null;
}

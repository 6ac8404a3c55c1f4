/**
 * Where a forwarded connection may go, and getting there: the server's half of the forwarders (issue 15).
 * A client asks for `host:port`; the server resolves the name itself with `Deno.resolveDns` under a
 * deadline (never the blocking system resolver), drops every address that points inside the server's own
 * networks (loopback, private, link-local, unspecified, multicast, reserved; IPv4 and IPv6, including the
 * IPv6 forms that carry an IPv4 address) unless `forward_allow_private` says otherwise, and connects to the
 * addresses left, by IP literal, so a name that resolves differently a second later (DNS rebinding) cannot
 * reach what was checked out.
 *
 * @example
 * ```ts
 * import { forbiddenAddressKind } from "./forward_destination.ts";
 *
 * console.log(forbiddenAddressKind("10.1.2.3")); // "private"
 * console.log(forbiddenAddressKind("::ffff:127.0.0.1")); // "loopback"
 * console.log(forbiddenAddressKind("93.184.215.14")); // null
 * ```
 *
 * @module
 */

import { formatHostPort, isIpAddress } from "../net/address.ts";
import { ipBytes } from "../net/cidr.ts";
import { errorMessage } from "../text.ts";

/** Why an address is outside what a forwarded connection may reach. */
export type ForbiddenAddressKind =
  | "unspecified"
  | "loopback"
  | "private"
  | "link-local"
  | "multicast"
  | "reserved";

/** One IPv4 network of the table below: first byte values and prefix. */
interface V4Range {
  readonly bytes: readonly [number, number, number, number];
  readonly prefixBits: number;
  readonly kind: ForbiddenAddressKind;
}

/** IPv4 networks a forwarded connection may not reach (RFC 6890's special-purpose registry, mostly). */
const V4_FORBIDDEN: readonly V4Range[] = [
  { bytes: [0, 0, 0, 0], prefixBits: 8, kind: "unspecified" },
  { bytes: [10, 0, 0, 0], prefixBits: 8, kind: "private" },
  { bytes: [100, 64, 0, 0], prefixBits: 10, kind: "private" }, // carrier-grade NAT, RFC 6598
  { bytes: [127, 0, 0, 0], prefixBits: 8, kind: "loopback" },
  { bytes: [169, 254, 0, 0], prefixBits: 16, kind: "link-local" },
  { bytes: [172, 16, 0, 0], prefixBits: 12, kind: "private" },
  { bytes: [192, 0, 0, 0], prefixBits: 24, kind: "reserved" }, // IETF protocol assignments
  { bytes: [192, 168, 0, 0], prefixBits: 16, kind: "private" },
  { bytes: [198, 18, 0, 0], prefixBits: 15, kind: "private" }, // benchmarking, often lab networks
  { bytes: [224, 0, 0, 0], prefixBits: 4, kind: "multicast" },
  { bytes: [240, 0, 0, 0], prefixBits: 4, kind: "reserved" }, // includes 255.255.255.255
];

function v4Kind(bytes: Uint8Array): ForbiddenAddressKind | null {
  for (const range of V4_FORBIDDEN) {
    let bits = range.prefixBits;
    let inside = true;
    for (let index = 0; bits > 0; index++, bits -= 8) {
      const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
      if (((bytes[index] ?? 0) & mask) !== (range.bytes[index] ?? 0)) {
        inside = false;
        break;
      }
    }
    if (inside) return range.kind;
  }
  return null;
}

function allZero(bytes: Uint8Array, from: number, to: number): boolean {
  for (let index = from; index < to; index++) if (bytes[index] !== 0) return false;
  return true;
}

function v6Kind(bytes: Uint8Array): ForbiddenAddressKind | null {
  const [first = 0, second = 0] = bytes;
  if (allZero(bytes, 0, 10)) {
    const mapped = bytes[10] === 0xff && bytes[11] === 0xff;
    if (mapped) return v4Kind(bytes.subarray(12));
    if (allZero(bytes, 10, 12)) {
      if (allZero(bytes, 12, 16)) return "unspecified";
      if (allZero(bytes, 12, 15) && bytes[15] === 1) return "loopback";
      // ::a.b.c.d, the deprecated IPv4-compatible form: judged by the IPv4 address it carries, and
      // reserved in any case (no one routes it).
      return v4Kind(bytes.subarray(12)) ?? "reserved";
    }
  }
  // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) reach the IPv4 address they embed.
  if (first === 0x00 && second === 0x64 && bytes[2] === 0xff && bytes[3] === 0x9b && allZero(bytes, 4, 12)) {
    return v4Kind(bytes.subarray(12));
  }
  if (first === 0x20 && second === 0x02) return v4Kind(bytes.subarray(2, 6));
  if ((first & 0xfe) === 0xfc) return "private"; // fc00::/7, unique local
  if (first === 0xfe && (second & 0xc0) === 0x80) return "link-local"; // fe80::/10
  if (first === 0xfe && (second & 0xc0) === 0xc0) return "private"; // fec0::/10, old site-local
  if (first === 0xff) return "multicast";
  if (first === 0x01 && second === 0x00 && allZero(bytes, 2, 8)) return "reserved"; // 100::/64 discard
  return null;
}

/**
 * The kind of network `address` (an IP literal, brackets allowed) belongs to when a forwarded connection
 * may not reach it, or null when it may. Anything that is not an IP address is `"reserved"`: a caller
 * must never let through what it could not read.
 */
export function forbiddenAddressKind(address: string): ForbiddenAddressKind | null {
  const bytes = ipBytes(address);
  if (bytes === null) return "reserved";
  return bytes.length === 4 ? v4Kind(bytes) : v6Kind(bytes);
}

/** True for names that mean this machine whatever DNS says (RFC 6761): `localhost` and `*.localhost`. */
export function isLocalhostName(host: string): boolean {
  const name = host.toLowerCase().replace(/\.$/, "");
  return name === "localhost" || name.endsWith(".localhost");
}

/** Why a destination was refused, as the open request's refusal codes say it. */
export type DestinationFailureCode = "FORBIDDEN_DESTINATION" | "UNREACHABLE";

/** Reaching a forwarded connection's destination failed; `code` is the refusal to answer with. */
export class DestinationError extends Error {
  override name = "DestinationError";
  constructor(readonly code: DestinationFailureCode, message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/** Options of {@linkcode connectDestination}. */
export interface DestinationOptions {
  /** `forward_allow_private`: private, loopback and link-local destinations are allowed. */
  allowPrivate: boolean;
  /** Deadline of the name lookup. */
  resolveTimeoutMs: number;
  /** Deadline of the TCP connect (all addresses together). */
  connectTimeoutMs: number;
  /** Ends the attempt early (the client's session ended). */
  signal?: AbortSignal;
  /** The resolver (tests replace it); default `Deno.resolveDns`. */
  resolveDns?: (name: string, type: "A" | "AAAA", options: { signal: AbortSignal }) => Promise<string[]>;
}

/** Addresses a name resolves to (A and AAAA, IPv4 first), within `timeoutMs`. */
export async function resolveHost(
  host: string,
  timeoutMs: number,
  options: Pick<DestinationOptions, "signal" | "resolveDns"> = {},
): Promise<string[]> {
  if (isIpAddress(host)) return [host];
  if (isLocalhostName(host)) return ["127.0.0.1", "::1"];
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(new DOMException("timed out", "TimeoutError")), timeoutMs);
  const onAbort = () => controller.abort(options.signal?.reason);
  options.signal?.addEventListener("abort", onAbort, { once: true });
  const resolve = options.resolveDns ??
    ((name: string, type: "A" | "AAAA", opts: { signal: AbortSignal }) => Deno.resolveDns(name, type, opts));
  try {
    const answers = await Promise.allSettled([
      resolve(host, "A", { signal: controller.signal }),
      resolve(host, "AAAA", { signal: controller.signal }),
    ]);
    const addresses = answers.flatMap((answer) => answer.status === "fulfilled" ? answer.value : []);
    if (addresses.length > 0) return addresses.filter(isIpAddress);
    if (controller.signal.aborted) {
      throw new DestinationError(
        "UNREACHABLE",
        `Resolving ${host} took longer than ${timeoutMs} ms; the server's resolver is slow or unreachable`,
      );
    }
    const firstError = answers.find((answer) => answer.status === "rejected");
    throw new DestinationError(
      "UNREACHABLE",
      `${host} does not resolve${
        firstError?.status === "rejected" ? ` (${errorMessage(firstError.reason)})` : ""
      }; check the name`,
    );
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener("abort", onAbort);
  }
}

/**
 * The addresses of `host` a forwarded connection may reach (in resolver order), or a
 * {@linkcode DestinationError}: `FORBIDDEN_DESTINATION` when every address is forbidden,
 * `UNREACHABLE` when the name does not resolve in time.
 */
export async function allowedAddresses(host: string, options: DestinationOptions): Promise<string[]> {
  const addresses = await resolveHost(host, options.resolveTimeoutMs, options);
  if (options.allowPrivate) return addresses;
  const allowed: string[] = [];
  let refusal: string | null = null;
  for (const address of addresses) {
    const kind = forbiddenAddressKind(address);
    if (kind === null) allowed.push(address);
    else refusal ??= `${address} is a ${kind} address`;
  }
  if (allowed.length > 0) return allowed;
  const named = isIpAddress(host) ? "" : `${host} resolves to `;
  throw new DestinationError(
    "FORBIDDEN_DESTINATION",
    `${named}${refusal ?? "no address"}: the server does not forward into its own networks ` +
      "(forward_allow_private = false)",
  );
}

/**
 * Resolves and checks `host` ({@linkcode allowedAddresses}), then connects to its allowed addresses in
 * turn, within `connectTimeoutMs` in all. The connection is made by IP literal: the address checked is
 * the address reached.
 *
 * @throws {DestinationError} `FORBIDDEN_DESTINATION` or `UNREACHABLE` (refused, timed out, no route)
 */
export async function connectDestination(
  host: string,
  port: number,
  options: DestinationOptions,
): Promise<Deno.TcpConn> {
  const addresses = await allowedAddresses(host, options);
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort(new DOMException("timed out", "TimeoutError"));
  }, options.connectTimeoutMs);
  const onAbort = () => controller.abort(options.signal?.reason);
  options.signal?.addEventListener("abort", onAbort, { once: true });
  let lastError: unknown = null;
  try {
    for (const address of addresses) {
      if (controller.signal.aborted) break;
      try {
        const conn = await Deno.connect({ hostname: address, port, signal: controller.signal });
        conn.setNoDelay(true);
        return conn;
      } catch (error) {
        lastError = error;
      }
    }
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener("abort", onAbort);
  }
  const target = formatHostPort(host, port);
  if (timedOut) {
    throw new DestinationError(
      "UNREACHABLE",
      // "took longer" is what a client reads to answer 504 rather than 502 (see refused below).
      `Connecting to ${target} took longer than ${options.connectTimeoutMs} ms`,
      { cause: lastError },
    );
  }
  if (lastError instanceof Deno.errors.ConnectionRefused) {
    // The words "refused the connection" are what a client reads to answer SOCKS5 0x05 (refused) rather
    // than 0x04 (unreachable): the reply carries one code for both.
    throw new DestinationError("UNREACHABLE", `${target} refused the connection`, { cause: lastError });
  }
  throw new DestinationError(
    "UNREACHABLE",
    `Cannot connect to ${target}: ${lastError === null ? "aborted" : errorMessage(lastError)}`,
    { cause: lastError },
  );
}

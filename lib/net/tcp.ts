/**
 * Plain TCP: binding listeners (published ports, the stats endpoint) with classified errors, IP literals only.
 *
 * @module
 */

import { formatHostPort, isIpAddress } from "./address.ts";
import { errorMessage, quoteForMessage } from "../text.ts";

/**
 * Why a bind failed; decides whether retrying can help. `invalid_address`: not an IP literal, refused
 * before any system call. `unsupported`: this process cannot bind that kind of socket at all (UDP
 * without `--unstable-net`).
 */
export type BindFailureKind =
  | "address_in_use"
  | "permission_denied"
  | "address_not_available"
  | "invalid_address"
  | "unsupported"
  | "other";

/** A TCP listener could not be bound. `kind` classifies the cause; the message says what to do. */
export class BindError extends Error {
  override name = "BindError";
  constructor(
    /** Classified cause. */
    readonly kind: BindFailureKind,
    /** Address that was being bound. */
    readonly hostname: string,
    /** Port that was being bound. */
    readonly port: number,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }

  /** Whether waiting and trying again can succeed (the port may be freed; an address cannot appear). */
  get retryable(): boolean {
    return this.kind === "address_in_use" || this.kind === "other";
  }
}

/** Turns a failed `Deno.listen` into a {@linkcode BindError} whose message says what to do. */
export function classifyBindError(
  error: unknown,
  hostname: string,
  port: number,
  key = "publish_port",
): BindError {
  const where = formatHostPort(hostname, port);
  const detail = errorMessage(error);
  // `node:net` errors carry an errno code instead of a Deno error class.
  const code = (error as { code?: unknown } | null)?.code;
  if (error instanceof Deno.errors.AddrInUse || code === "EADDRINUSE") {
    return new BindError(
      "address_in_use",
      hostname,
      port,
      `Port ${port} on ${hostname} is already in use by another process; stop that process or pick another ${key}`,
      { cause: error },
    );
  }
  if (
    error instanceof Deno.errors.PermissionDenied || code === "EACCES" || /permission denied/i.test(detail)
  ) {
    return new BindError(
      "permission_denied",
      hostname,
      port,
      `Permission denied to bind ${where}: ports below 1024 need administrator rights ` +
        `(or CAP_NET_BIND_SERVICE); pick a ${key} of 1024 or above`,
      { cause: error },
    );
  }
  if (
    error instanceof Deno.errors.AddrNotAvailable || code === "EADDRNOTAVAIL" ||
    /not available|Cannot assign/i.test(detail)
  ) {
    return new BindError(
      "address_not_available",
      hostname,
      port,
      `Address ${hostname} is not an address of this host, so ${where} cannot be bound; ` +
        `use 0.0.0.0 or one of this machine's addresses`,
      { cause: error },
    );
  }
  return new BindError("other", hostname, port, `Failed to bind ${where}: ${detail}`, { cause: error });
}

/**
 * Throws an `invalid_address` {@linkcode BindError} unless `hostname` is an IP literal (`0.0.0.0`,
 * `127.0.0.1`, `::1`…). `Deno.listen` and `Deno.serve` look a host name up synchronously, on the event
 * loop's thread: with a resolver that does not answer, one bind froze the whole process for 10 s
 * (measured, Deno 2.9.6). So nothing binds a name, whoever asks.
 */
export function requireIpLiteral(hostname: string, port: number): void {
  if (isIpAddress(hostname)) return;
  throw new BindError(
    "invalid_address",
    hostname,
    port,
    `Cannot bind ${quoteForMessage(hostname)}: it is not an IP address, and binding a host name would ` +
      `block on a name lookup; use an IP address such as 0.0.0.0 or 127.0.0.1`,
  );
}

/**
 * Binds a TCP listener, throwing a classified {@linkcode BindError} on failure. `hostname` must be an IP
 * literal ({@linkcode requireIpLiteral}): the last guard against a blocking name lookup.
 */
export function listenTcp(hostname: string, port: number, key?: string): Deno.TcpListener {
  requireIpLiteral(hostname, port);
  try {
    return Deno.listen({ hostname, port, transport: "tcp" });
  } catch (error) {
    throw classifyBindError(error, hostname, port, key);
  }
}

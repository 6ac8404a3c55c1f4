/**
 * The client side of the `"quic"` transport (`quic.ts`): a fresh endpoint per dial, the server's name
 * resolved without blocking, `ca_cert_path` or the pin handed to Deno's QUIC client, the tunnel stream
 * opened, and errors that say what failed and what to do.
 *
 * @module
 */

import { formatHostPort, isIpAddress, isIpv6 } from "../net/address.ts";
import { requireUnstableNet } from "../net/unstable.ts";
import { errorMessage } from "../text.ts";
import { type DialedConn, TransportDialError, type TransportDialOptions } from "./transport.ts";
import { displayFingerprint } from "./tls.ts";
import {
  CLOSE_NORMAL,
  closeConnection,
  closeEndpoint,
  loadFullCollection,
  QUIC_ALPN,
  QUIC_IDLE_TIMEOUT_MS,
  QUIC_KEEPALIVE_INTERVAL_MS,
  QuicStreamConn,
} from "./_quic_common.ts";

/** The QUIC connection to the server could not be established; the message says why and what to do. */
export class QuicDialError extends TransportDialError {
  override name = "QuicDialError";
}

/** Dials the server over QUIC and opens the tunnel stream within `options.timeoutMs`. */
export async function dialQuic(options: TransportDialOptions, abort?: AbortSignal): Promise<DialedConn> {
  requireUnstableNet('transport = "quic"');
  const where = formatHostPort(options.hostname, options.port);
  if (options.proxy) {
    throw new QuicDialError(
      `transport = "quic" runs over UDP, which ${options.proxy.hop} cannot carry (HTTP CONNECT and SOCKS5 ` +
        `carry TCP); connect directly (list ${options.hostname} in NO_PROXY, or remove proxy_url) or use ` +
        `transport = "tls", "wss" or "http2" through the proxy`,
    );
  }
  if (options.skipVerify && options.pinnedFingerprint === undefined) {
    throw new QuicDialError(
      `skip_verify cannot be used with transport = "quic" (Deno's QUIC client always verifies); pin the ` +
        `server's certificate with server_fingerprint (the server logs it) or set ca_cert_path`,
    );
  }
  const timeout = AbortSignal.timeout(options.timeoutMs);
  const signal = abort ? AbortSignal.any([abort, timeout]) : timeout;
  void loadFullCollection();
  const address = await resolveServer(options.hostname, where, signal, options.timeoutMs, timeout);
  let endpoint: Deno.QuicEndpoint;
  try {
    endpoint = new Deno.QuicEndpoint({ hostname: isIpv6(address) ? "::" : "0.0.0.0", port: 0 });
  } catch (error) {
    throw new QuicDialError(`Cannot open a UDP socket to reach ${where}: ${errorMessage(error)}`, {
      cause: error,
    });
  }
  const onAbort = () => closeEndpoint(endpoint);
  signal.addEventListener("abort", onAbort, { once: true });
  let conn: Deno.QuicConn | null = null;
  try {
    const pin = options.pinnedFingerprint === undefined ? null : pinBytes(options.pinnedFingerprint);
    const connectOptions: Deno.ConnectQuicOptions<false> & {
      serverCertificateHashes?: { algorithm: string; value: Uint8Array }[];
    } = {
      endpoint,
      hostname: address,
      port: options.port,
      serverName: options.serverName ?? options.hostname,
      alpnProtocols: [QUIC_ALPN],
      keepAliveInterval: QUIC_KEEPALIVE_INTERVAL_MS,
      maxIdleTimeout: QUIC_IDLE_TIMEOUT_MS,
      // The server never opens a stream.
      maxConcurrentBidirectionalStreams: 0,
      maxConcurrentUnidirectionalStreams: 0,
    };
    if (pin !== null) connectOptions.serverCertificateHashes = [{ algorithm: "sha-256", value: pin }];
    else if (options.caCertPem) connectOptions.caCerts = [options.caCertPem];
    conn = await Deno.connectQuic(connectOptions);
    if (signal.aborted) throw signal.reason;
    const stream = await conn.createBidirectionalStream();
    if (signal.aborted) throw signal.reason;
    signal.removeEventListener("abort", onAbort);
    const connected = conn;
    return Object.assign(
      new QuicStreamConn(connected, stream, () => {
        closeConnection(connected, CLOSE_NORMAL, "");
        closeEndpoint(endpoint);
      }),
      { remote: where },
    );
  } catch (error) {
    signal.removeEventListener("abort", onAbort);
    if (conn !== null) closeConnection(conn, CLOSE_NORMAL, "");
    closeEndpoint(endpoint);
    throw describeDialError(error, options, where, signal.aborted && timeout.aborted);
  }
}

/** The server's address: an IP literal as is, else the first A (then AAAA) record, within the dial's time. */
async function resolveServer(
  hostname: string,
  where: string,
  signal: AbortSignal,
  timeoutMs: number,
  timeout: AbortSignal,
): Promise<string> {
  const literal = hostname.startsWith("[") && hostname.endsWith("]") ? hostname.slice(1, -1) : hostname;
  if (isIpAddress(literal)) return literal;
  const failures: string[] = [];
  for (const type of ["A", "AAAA"] as const) {
    try {
      const [first] = await Deno.resolveDns(literal, type, { signal });
      if (first !== undefined) return first;
      failures.push(`no ${type} record`);
    } catch (error) {
      if (signal.aborted) {
        throw timeout.aborted
          ? new QuicDialError(`Timed out after ${timeoutMs} ms resolving ${hostname} to reach ${where}`)
          : new QuicDialError(`Aborted resolving ${hostname} to reach ${where}`, { cause: signal.reason });
      }
      failures.push(`${type}: ${errorMessage(error)}`);
    }
  }
  throw new QuicDialError(
    `Cannot resolve server_addr ${hostname} (${failures.join("; ")}); check the name or use an IP address`,
  );
}

/** The pin (hex, colons and `SHA256:` allowed) as the 32 bytes of the digest. */
function pinBytes(pin: string): Uint8Array<ArrayBuffer> {
  const digits = pin.replace(/^sha256:/i, "").replaceAll(":", "").toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(digits)) {
    throw new QuicDialError(`server_fingerprint ${pin} is not a SHA-256 fingerprint (64 hex digits)`);
  }
  return Uint8Array.from(digits.match(/../g) ?? [], (pair) => parseInt(pair, 16));
}

/** The message for a failed dial: what failed and what to do. */
function describeDialError(
  error: unknown,
  options: TransportDialOptions,
  where: string,
  timedOut: boolean,
): QuicDialError {
  if (error instanceof QuicDialError) return error;
  const detail = errorMessage(error);
  if (timedOut || /timed out/i.test(detail)) {
    return new QuicDialError(
      `Timed out connecting to ${where} over QUIC (UDP) after ${options.timeoutMs} ms: is the server ` +
        `running with transport = "quic", and does its firewall let UDP port ${options.port} through?`,
      { cause: error },
    );
  }
  if (/doesn't support any known protocol|no_application_protocol|error 120/i.test(detail)) {
    return new QuicDialError(
      `${where} answers QUIC but not the tunnel's ALPN "${QUIC_ALPN}" (${detail}); is it a tls-tunnel ` +
        `server with transport = "quic"?`,
      { cause: error },
    );
  }
  if (options.pinnedFingerprint !== undefined && /certificate|UnknownIssuer/i.test(detail)) {
    const pinned = displayFingerprint(options.pinnedFingerprint.replace(/^sha256:/i, "").replaceAll(":", ""));
    return new QuicDialError(
      `Server ${where} presented a certificate other than the one server_fingerprint (--fingerprint) pins ` +
        `(${pinned}); refused before sending the key. If the server's certificate was replaced on purpose, ` +
        "pin the new fingerprint (the server logs it at start); otherwise someone may be intercepting the " +
        "connection",
      { cause: error },
    );
  }
  if (/NotValidForName|not valid for name/i.test(detail)) {
    return new QuicDialError(
      `TLS certificate of ${where} was not accepted (${detail}): it is not issued for the name ` +
        `'${options.serverName ?? options.hostname}'; set server_name to a name in its certificate ` +
        "(tls-tunnel cert --alt-names adds names)",
      { cause: error },
    );
  }
  if (/certificate|UnknownIssuer|BadCertificate|CaUsedAsEndEntity/i.test(detail)) {
    const advice = options.caCertPem === undefined
      ? "set ca_cert_path to the server's CA (tls-tunnel cert writes ca.pem)"
      : `it does not chain to the CA in ca_cert_path ${
        options.caCertPath ?? ""
      }; point ca_cert_path at the ` +
        "CA that signed the server's certificate (the ca.pem written with it), or pin it with " +
        "server_fingerprint";
    return new QuicDialError(`TLS certificate of ${where} was not accepted (${detail}); ${advice}`, {
      cause: error,
    });
  }
  if (options.timeoutMs > 0 && /aborted|closed/i.test(detail) && !/by peer/i.test(detail)) {
    return new QuicDialError(`Aborted connecting to ${where} over QUIC`, { cause: error });
  }
  return new QuicDialError(`Cannot connect to ${where} over QUIC: ${detail}`, { cause: error });
}

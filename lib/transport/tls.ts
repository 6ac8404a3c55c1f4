/**
 * The `"tls"` transport: TLS over TCP, both ends of the tunnel connection.
 *
 * The server accepts plain TCP with `node:net` and runs `node:tls` over it. Why not `Deno.listenTls`: in
 * Deno 2.9.6 a connection it accepted cannot be closed before its handshake completes (the file
 * descriptor stays until the peer leaves), so idle or stalled connections exhaust the server's
 * descriptors; and its connections cannot set TCP_NODELAY. Here every socket has TCP_NODELAY from the
 * moment it is accepted, a refused socket gets no TLS state at all, and `close()` frees a socket in any
 * state. The cost, measured in the bench (see docs/PERFORMANCE.md), is slower decryption of what the
 * server receives.
 *
 * The client verifies the server against `caCertPem` (a CA or the server's self-signed certificate) or
 * the system roots, with `Deno.startTls` over a `Deno.connect`ed socket. `skipVerify` has no equivalent
 * in `Deno.connectTls`, so it goes through `node:tls` with `rejectUnauthorized: false`, wrapped as a
 * `DuplexConn` ({@linkcode NodeSocketConn}); it is for testing only. A pinned fingerprint goes the same
 * way: the only check is then that the leaf certificate's SHA-256 equals the pin, made before the dial
 * resolves, so nothing of the tunnel (the key included) is sent to any other certificate's holder.
 *
 * @module
 */

import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import { formatHostPort, isIpAddress } from "../net/address.ts";
import { connectNodeSocket, dialTcp, OutboundProxyError } from "../net/outbound_proxy.ts";
import { colonHex, errorMessage, hex } from "../text.ts";
import { NodeSocketConn } from "../net/node_socket_conn.ts";
import { serverTlsWrapper, TcpTransportListener } from "./_tcp_listener.ts";
import {
  type AdmittedConn,
  type DialedConn,
  type Transport,
  TransportDialError,
  type TransportDialOptions,
  TransportHandshakeTimeoutError,
  type TransportListener,
  type TransportListenOptions,
} from "./transport.ts";

/** The TLS connection to the server could not be established; the message says why. */
export class TlsDialError extends TransportDialError {
  override name = "TlsDialError";
}

/** The `"tls"` transport. */
export const tlsTransport: Transport = {
  name: "tls",
  listen: listenTls,
  dial: dialTunnelTls,
};

// ---------------------------------------------------------------------------------------------------
// Server side

/** Binds the server's TLS listener; see the module doc for why it is not `Deno.listenTls`. */
function listenTls(options: TransportListenOptions, signal?: AbortSignal): Promise<TransportListener> {
  return TcpTransportListener.listen(options, async () => {
    const wrap = await serverTlsWrapper(options);
    return (socket, remoteAddr, remainingMs) =>
      new ServerTlsConn(wrap(socket), socket, remoteAddr, remainingMs, options.handshakeTimeoutMs);
  }, signal);
}

/** An admitted server-side connection: TCP is up, TLS may still be in progress. */
class ServerTlsConn extends NodeSocketConn implements AdmittedConn {
  readonly #handshake: Promise<void>;
  #deadline: ReturnType<typeof setTimeout> | undefined;

  constructor(
    tls: TLSSocket,
    readonly raw: Socket,
    readonly remoteAddr: Deno.NetAddr,
    remainingMs: number,
    timeoutMs: number,
  ) {
    super(tls);
    this.#handshake = new Promise<void>((resolve, reject) => {
      const fail = (error?: Error) => {
        clearTimeout(this.#deadline);
        reject(error ?? new Deno.errors.ConnectionAborted("closed before TLS"));
      };
      this.#deadline = setTimeout(() => {
        reject(new TransportHandshakeTimeoutError(timeoutMs));
        this.close();
      }, Math.max(0, remainingMs));
      tls.once("secure", () => {
        clearTimeout(this.#deadline);
        tls.off("close", fail);
        resolve();
      });
      tls.once("error", fail);
      tls.once("close", () => fail());
    });
    // Observed through handshake(); an unobserved rejection must not end the process.
    this.#handshake.catch(() => {});
  }

  handshake(): Promise<void> {
    return this.#handshake;
  }

  override close(): void {
    clearTimeout(this.#deadline);
    super.close();
    // The TLS layer may not have taken the socket over yet (no byte received): free it directly.
    this.raw.destroy();
  }
}

// ---------------------------------------------------------------------------------------------------
// Client side

/** Dials the server and completes the TLS handshake within `options.timeoutMs`. */
async function dialTunnelTls(options: TransportDialOptions, abort?: AbortSignal): Promise<DialedConn> {
  const where = formatHostPort(options.hostname, options.port);
  const timeout = AbortSignal.timeout(options.timeoutMs);
  const signal = abort ? AbortSignal.any([abort, timeout]) : timeout;
  // A pin replaces CA verification; only node:tls shows the peer's certificate to check it against.
  if (options.skipVerify || options.pinnedFingerprint !== undefined) {
    return await dialNodeTls(options, signal);
  }
  let tcp: Deno.TcpConn | null = null;
  let conn: Deno.TlsConn | null = null;
  try {
    // TCP first, then TLS over it: startTls verifies `serverName`, which may differ from the address dialed.
    // Directly, or through the outbound proxy (its handshake is bounded by the same signal).
    tcp = await dialTcp({ hostname: options.hostname, port: options.port, proxy: options.proxy }, signal);
    const tlsOptions: Deno.StartTlsOptions = { hostname: options.serverName ?? options.hostname };
    if (options.caCertPem) tlsOptions.caCerts = [options.caCertPem];
    if (options.alpnProtocols) tlsOptions.alpnProtocols = options.alpnProtocols;
    conn = await raceAbort(Deno.startTls(tcp, tlsOptions), signal);
    await raceAbort(conn.handshake(), signal);
    return Object.assign(conn, { remote: where });
  } catch (error) {
    try {
      (conn ?? tcp)?.close();
    } catch {
      // Already closed by the failed handshake.
    }
    if (error instanceof OutboundProxyError) {
      throw new TlsDialError(`${error.message} (dialing ${where})`, { cause: error });
    }
    if (!timeout.aborted && isCertificateRejection(error)) {
      throw await describeRejectedCertificate(options, where, error, abort);
    }
    throw describeDialError(error, where, timeout.aborted, options.timeoutMs);
  }
}

/** Whether a failed handshake failed because our side refused the server's certificate. */
function isCertificateRejection(error: unknown): boolean {
  const detail = errorMessage(error);
  return /certificate|UnknownIssuer|NotValidForName|BadCertificate|CaUsedAsEndEntity/i.test(detail);
}

/** How long the second look at a refused server's certificates may take. */
const CHAIN_PROBE_TIMEOUT_MS = 3000;

/**
 * The error for a server certificate that verification refused. Without `ca_cert_path`: set it. With
 * it: the file, the fingerprints of what the server presents (its leaf first, fetched by a second
 * handshake that sends nothing and checks nothing) and of what the file holds, so the two can be told apart.
 */
async function describeRejectedCertificate(
  options: TransportDialOptions,
  where: string,
  error: unknown,
  abort: AbortSignal | undefined,
): Promise<TlsDialError> {
  const detail = errorMessage(error);
  const name = options.serverName ?? options.hostname;
  if (/NotValidForName/i.test(detail)) {
    return new TlsDialError(
      `TLS certificate of ${where} was not accepted (${detail}): it is not issued for the name '${name}'; ` +
        `set server_name to a name in its certificate (tls-tunnel cert --alt-names adds names)`,
      { cause: error },
    );
  }
  if (options.caCertPem === undefined) {
    return new TlsDialError(
      `TLS certificate of ${where} was not accepted (${detail}); set ca_cert_path to the server's CA ` +
        `(tls-tunnel cert writes ca.pem), or server_name to a name in its certificate`,
      { cause: error },
    );
  }
  const file = options.caCertPath ?? "the ca_cert_path file";
  const [trusted, presented] = await Promise.all([
    pemFingerprints(options.caCertPem),
    presentedChainFingerprints(options, abort),
  ]);
  const served = presented === null
    ? "the server's certificates could not be fetched again to show their fingerprints"
    : `the server presents ${
      presented.map((fingerprint, index) => `${index === 0 ? "leaf" : "issuer"} ${fingerprint}`).join(", ")
    }`;
  const held = trusted.length === 0 ? `${file} holds no certificate` : `${file} holds ${trusted.join(", ")}`;
  const pin = presented?.[0] !== undefined
    ? ` (or pin it: server_fingerprint = "SHA256:${presented[0].replaceAll(":", "")}")`
    : "";
  return new TlsDialError(
    `TLS certificate of ${where} was not accepted (${detail}): it does not chain to the CA in ` +
      `ca_cert_path ${file}; ${served}; ${held}. Point ca_cert_path at the CA that signed the server's ` +
      `certificate (the ca.pem written with it)${pin}`,
    { cause: error },
  );
}

/** SHA-256 fingerprints (colon hex) of the certificates in a PEM text; unreadable blocks are skipped. */
async function pemFingerprints(pem: string): Promise<string[]> {
  const fingerprints: string[] = [];
  for (const block of pem.matchAll(/-----BEGIN CERTIFICATE-----([\s\S]+?)-----END CERTIFICATE-----/g)) {
    try {
      const der = Uint8Array.from(atob((block[1] ?? "").replace(/\s+/g, "")), (char) => char.charCodeAt(0));
      fingerprints.push(colonHex(await crypto.subtle.digest("SHA-256", der)));
    } catch {
      // Not base64: `tls-tunnel check` names such a file's problem; here it shows nothing.
    }
  }
  return fingerprints;
}

/**
 * The fingerprints of the certificates the server presents, leaf first, from a handshake that accepts
 * anything and is closed at once (nothing is sent over it); null when that fails or times out.
 */
async function presentedChainFingerprints(
  options: TransportDialOptions,
  abort: AbortSignal | undefined,
): Promise<string[] | null> {
  // Not around the outbound proxy: a direct connection there may be exactly what the network forbids.
  if (options.proxy) return null;
  const { connect: nodeTlsConnect } = await import("node:tls");
  const timeout = AbortSignal.timeout(CHAIN_PROBE_TIMEOUT_MS);
  const signal = abort ? AbortSignal.any([abort, timeout]) : timeout;
  const ders = await new Promise<Uint8Array<ArrayBuffer>[] | null>((resolve) => {
    const socket = nodeTlsConnect({
      host: options.hostname,
      port: options.port,
      ...(isIpAddress(options.serverName ?? options.hostname)
        ? {}
        : { servername: options.serverName ?? options.hostname }),
      rejectUnauthorized: false,
    });
    const finish = (value: Uint8Array<ArrayBuffer>[] | null) => {
      signal.removeEventListener("abort", onAbort);
      socket.destroy();
      resolve(value);
    };
    const onAbort = () => finish(null);
    signal.addEventListener("abort", onAbort, { once: true });
    socket.once("secureConnect", () => {
      const chain: Uint8Array<ArrayBuffer>[] = [];
      let certificate = socket.getPeerCertificate(true);
      const seen = new Set<unknown>();
      // A self-signed issuer points at itself; a bound keeps a hostile chain from looping long.
      while (certificate?.raw !== undefined && !seen.has(certificate) && chain.length < 8) {
        seen.add(certificate);
        chain.push(new Uint8Array(certificate.raw));
        certificate = certificate.issuerCertificate;
      }
      finish(chain);
    });
    socket.once("error", () => finish(null));
  });
  if (ders === null || ders.length === 0) return null;
  const fingerprints: string[] = [];
  for (const der of ders) fingerprints.push(colonHex(await crypto.subtle.digest("SHA-256", der)));
  // The last issuer repeats when it is the leaf itself (self-signed): show each certificate once.
  return [...new Set(fingerprints)];
}

function describeDialError(error: unknown, where: string, timedOut: boolean, timeoutMs: number): Error {
  const detail = errorMessage(error);
  if (timedOut) {
    return new TlsDialError(
      `Timed out after ${timeoutMs} ms connecting to ${where}; is the server reachable?`,
      {
        cause: error,
      },
    );
  }
  if (error instanceof Deno.errors.ConnectionRefused) {
    return new TlsDialError(`Connection to ${where} refused: is the server running on that port?`, {
      cause: error,
    });
  }
  if (/certificate|UnknownIssuer|NotValidForName|BadCertificate|CaUsedAsEndEntity/i.test(detail)) {
    return new TlsDialError(
      `TLS certificate of ${where} was not accepted (${detail}); set ca_cert_path to the server's CA ` +
        `(tls-tunnel cert writes ca.pem), or server_name to a name in its certificate`,
      { cause: error },
    );
  }
  return new TlsDialError(`Cannot connect to ${where}: ${detail}`, { cause: error });
}

function raceAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        if (signal.aborted) {
          (value as { close?: () => void }).close?.();
          return;
        }
        resolve(value);
      },
      (error) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}

async function dialNodeTls(options: TransportDialOptions, signal: AbortSignal): Promise<DialedConn> {
  const where = formatHostPort(options.hostname, options.port);
  // Loaded only for skip_verify and pins: node:tls costs every process about 6 MB it otherwise never needs.
  const { connect: nodeTlsConnect } = await import("node:tls");
  let throughProxy: Socket | null = null;
  if (options.proxy) {
    try {
      throughProxy = await connectNodeSocket(options.proxy, options, signal);
    } catch (error) {
      const message = error instanceof OutboundProxyError ? error.message : `Timed out or aborted: ${error}`;
      throw new TlsDialError(`${message} (dialing ${where})`, { cause: error });
    }
  }
  return new Promise((resolve, reject) => {
    const socket = nodeTlsConnect({
      ...(throughProxy ? { socket: throughProxy } : { host: options.hostname, port: options.port }),
      // SNI carries host names only; node:tls refuses an IP address there.
      ...(isIpAddress(options.serverName ?? options.hostname)
        ? {}
        : { servername: options.serverName ?? options.hostname }),
      rejectUnauthorized: false,
      ...(options.alpnProtocols ? { ALPNProtocols: options.alpnProtocols } : {}),
    });
    // The TCP socket under TLS goes with it, whoever closes the TLS socket.
    if (throughProxy !== null) socket.once("close", () => throughProxy?.destroy());
    const onAbort = () => {
      socket.destroy();
      reject(new TlsDialError(`Timed out or aborted connecting to ${where}`, { cause: signal.reason }));
    };
    signal.addEventListener("abort", onAbort, { once: true });
    socket.once("secureConnect", async () => {
      const mismatch = options.pinnedFingerprint === undefined
        ? null
        : await pinMismatch(options.pinnedFingerprint, socket.getPeerCertificate().raw);
      if (signal.aborted) return; // onAbort destroyed the socket and rejected.
      signal.removeEventListener("abort", onAbort);
      if (mismatch !== null) {
        // Refused before the tunnel sends anything: the key never reaches an impostor.
        socket.destroy();
        reject(new TlsDialError(`Server ${where} ${mismatch}`));
        return;
      }
      socket.setNoDelay(true);
      resolve(Object.assign(new NodeSocketConn(socket), { remote: where }));
    });
    socket.once("error", (error: Error) => {
      signal.removeEventListener("abort", onAbort);
      reject(describeDialError(error, where, false, options.timeoutMs));
    });
  });
}

/**
 * `SHA256:` and upper-case colon-separated hex, the form `tls-tunnel cert` and the server print
 * (`hexDigits`: the digest as hex, no colons). The quic transport names pins the same way.
 */
export function displayFingerprint(hexDigits: string): string {
  return `SHA256:${hexDigits.toUpperCase().replace(/(..)(?!$)/g, "$1:")}`;
}

/**
 * Why the server's certificate (`der`, its leaf) does not match the pin, or null when it does. The pin is
 * hex with optional colons and `SHA256:` prefix (the config has already normalised it).
 */
async function pinMismatch(pin: string, der: Uint8Array | undefined): Promise<string | null> {
  const expected = pin.replace(/^sha256:/i, "").replaceAll(":", "").toLowerCase();
  if (der === undefined || der.length === 0) {
    return `presented no certificate, but server_fingerprint pins ${displayFingerprint(expected)}; refused`;
  }
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array(der)));
  const actual = hex(digest);
  if (actual === expected) return null;
  return `presented a certificate with fingerprint ${displayFingerprint(actual)}, but ` +
    `server_fingerprint (--fingerprint) pins ${
      displayFingerprint(expected)
    }; refused before sending the key. ` +
    "If the server's certificate was replaced on purpose, pin the new fingerprint; otherwise someone may be " +
    "intercepting the connection";
}

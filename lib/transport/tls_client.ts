/**
 * TLS for the tunnel connection: the client's dialer (the server's listener is in `tls_server.ts`).
 *
 * The client verifies the server against `caCertPem` (a CA or the server's self-signed certificate) or
 * the system roots. `skipVerify` has no equivalent in `Deno.connectTls`, so it goes through `node:tls`
 * with `rejectUnauthorized: false`, wrapped as a {@linkcode DuplexConn}; it is for testing only.
 *
 * @module
 */

import type { DuplexConn } from "../net/conn.ts";
import { NodeSocketConn } from "./node_socket_conn.ts";
import { isIpAddress } from "../net/address.ts";

/** Options of {@linkcode dialTunnelTls}. */
export interface TlsDialOptions {
  /** Server host name or address. */
  hostname: string;
  /** Server port. */
  port: number;
  /** Name the certificate must carry (defaults to `hostname`). */
  serverName?: string;
  /** PEM CA or self-signed certificate to trust instead of the system roots. */
  caCertPem?: string;
  /** Accept any certificate (testing only). */
  skipVerify?: boolean;
  /** Give up the connect and handshake after this long. */
  timeoutMs: number;
  /** Abort the attempt. */
  signal?: AbortSignal;
}

/** The TLS connection to the server could not be established; the message says why. */
export class TlsDialError extends Error {
  override name = "TlsDialError";
}

/** A connected, handshaken TLS connection to the server. */
export interface DialedConn extends DuplexConn {
  /** Remote address as "host:port". */
  readonly remote: string;
}

/** Dials the server and completes the TLS handshake within `timeoutMs`. */
export async function dialTunnelTls(options: TlsDialOptions): Promise<DialedConn> {
  const where = `${options.hostname}:${options.port}`;
  const timeout = AbortSignal.timeout(options.timeoutMs);
  const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
  if (options.skipVerify) return await dialNodeTls(options, signal);
  let tcp: Deno.TcpConn | null = null;
  let conn: Deno.TlsConn | null = null;
  try {
    // TCP first, then TLS over it: startTls verifies `serverName`, which may differ from the address dialed.
    tcp = await raceAbort(Deno.connect({ hostname: options.hostname, port: options.port }), signal);
    tcp.setNoDelay(true);
    const tlsOptions: Deno.StartTlsOptions = { hostname: options.serverName ?? options.hostname };
    if (options.caCertPem) tlsOptions.caCerts = [options.caCertPem];
    conn = await raceAbort(Deno.startTls(tcp, tlsOptions), signal);
    await raceAbort(conn.handshake(), signal);
    return Object.assign(conn, { remote: where });
  } catch (error) {
    try {
      (conn ?? tcp)?.close();
    } catch {
      // Already closed by the failed handshake.
    }
    throw describeDialError(error, where, timeout.aborted, options.timeoutMs);
  }
}

function describeDialError(error: unknown, where: string, timedOut: boolean, timeoutMs: number): Error {
  const detail = error instanceof Error ? error.message : String(error);
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

async function dialNodeTls(options: TlsDialOptions, signal: AbortSignal): Promise<DialedConn> {
  const where = `${options.hostname}:${options.port}`;
  // Loaded only for skip_verify: node:tls costs every process about 6 MB it otherwise never needs.
  const { connect: nodeTlsConnect } = await import("node:tls");
  return new Promise((resolve, reject) => {
    const socket = nodeTlsConnect({
      host: options.hostname,
      port: options.port,
      // SNI carries host names only; node:tls refuses an IP address there.
      ...(isIpAddress(options.serverName ?? options.hostname)
        ? {}
        : { servername: options.serverName ?? options.hostname }),
      rejectUnauthorized: false,
    });
    const onAbort = () => {
      socket.destroy();
      reject(new TlsDialError(`Timed out or aborted connecting to ${where}`, { cause: signal.reason }));
    };
    signal.addEventListener("abort", onAbort, { once: true });
    socket.once("secureConnect", () => {
      signal.removeEventListener("abort", onAbort);
      socket.setNoDelay(true);
      resolve(Object.assign(new NodeSocketConn(socket), { remote: where }));
    });
    socket.once("error", (error: Error) => {
      signal.removeEventListener("abort", onAbort);
      reject(describeDialError(error, where, false, options.timeoutMs));
    });
  });
}

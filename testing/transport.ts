/**
 * A transport's listener for unit tests: on 127.0.0.1 with the test certificates, admitting every
 * connection, with each admitted connection kept and handed to whoever waits for the next one.
 *
 * @module
 */

import type { AdmittedConn, Transport, TransportListener } from "../lib/transport/transport.ts";
import { testCertificates } from "./helpers.ts";

/** What {@linkcode listenAdmitting} may change from its defaults. */
export interface AdmittingListenOptions {
  /** Plain text (no TLS), as `behind_proxy` serves. */
  plainText?: boolean;
  /** The HTTP path of transports that have one. */
  path?: string;
  /** Handshake budget from the TCP accept (default 5,000 ms). */
  handshakeTimeoutMs?: number;
}

/** A listener that admits every connection, the connections admitted so far, and the next one to come. */
export interface AdmittingListener {
  listener: TransportListener;
  admitted: AdmittedConn[];
  next: () => Promise<AdmittedConn>;
}

/** Listens with `transport` on a free loopback port and admits every connection. */
export async function listenAdmitting(
  transport: Transport,
  options: AdmittingListenOptions = {},
): Promise<AdmittingListener> {
  const certs = await testCertificates();
  const listener = await transport.listen({
    hostname: "127.0.0.1",
    port: 0,
    certPem: certs.serverChainPem,
    keyPem: certs.serverKeyPem,
    handshakeTimeoutMs: options.handshakeTimeoutMs ?? 5000,
    ...(options.path !== undefined ? { path: options.path } : {}),
    ...(options.plainText ? { plainText: true } : {}),
  });
  const admitted: AdmittedConn[] = [];
  const waiting: ((conn: AdmittedConn) => void)[] = [];
  void listener.serve((incoming) => {
    const conn = incoming.admit();
    admitted.push(conn);
    waiting.shift()?.(conn);
  });
  return { listener, admitted, next: () => new Promise((resolve) => waiting.push(resolve)) };
}

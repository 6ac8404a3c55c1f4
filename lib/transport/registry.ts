/**
 * Transports by name: how the server and the client obtain the transport their config names. The
 * built-in ones are listed in {@linkcode TRANSPORT_NAMES} and {@linkcode BUILT_IN}; a test may add one
 * of its own with {@linkcode registerTransport}.
 *
 * @example The server's and the client's transport
 * ```ts
 * import { DEFAULT_TRANSPORT, transportFor } from "./registry.ts";
 *
 * const transport = transportFor(DEFAULT_TRANSPORT);
 * console.log(transport.name); // "tls"
 * ```
 *
 * @module
 */

import { Registry, UnknownNameError } from "../registry.ts";
import { tlsTransport } from "./tls.ts";
import { wssTransport } from "./wss.ts";
import { http2Transport } from "./http2.ts";
import { quicTransport } from "./quic.ts";
import type { Transport } from "./transport.ts";

/** The transports built in, by the name the config uses. */
export const TRANSPORT_NAMES = ["tls", "wss", "http2", "quic"] as const;

/** The name of a built-in transport. */
export type TransportName = typeof TRANSPORT_NAMES[number];

/** The transport used when the config names none. */
export const DEFAULT_TRANSPORT: TransportName = "tls";

/** No transport is registered under the name asked for; the message lists the known ones. */
export class UnknownTransportError extends UnknownNameError {
  override name = "UnknownTransportError";
  constructor(requested: string, known: readonly string[]) {
    super("transport", requested, known);
  }
}

/**
 * Every built-in transport under its name: typed by {@linkcode TRANSPORT_NAMES}, so a name without an
 * implementation (or the reverse) fails the type check.
 */
const BUILT_IN: { readonly [name in TransportName]: Transport } = {
  tls: tlsTransport,
  wss: wssTransport,
  http2: http2Transport,
  quic: quicTransport,
};

const transports = new Registry<Transport>("transport", UnknownTransportError);
for (const name of TRANSPORT_NAMES) transports.register(name, BUILT_IN[name]);

/**
 * The transport registered as `name`.
 *
 * @throws {UnknownTransportError} when there is none; its message names the known transports
 */
export function transportFor(name: string): Transport {
  return transports.get(name);
}

/**
 * Registers `transport` under its name, for tests and embedders; returns the function that removes it.
 *
 * @throws {DuplicateNameError} when the name is taken
 */
export function registerTransport(transport: Transport): () => void {
  return transports.register(transport.name, transport);
}

/** The names of the registered transports, built-in ones first. */
export function transportNames(): string[] {
  return transports.names();
}

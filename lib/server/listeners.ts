/**
 * The server's listeners: one per `ServerConfig.listeners` entry (`[server]`'s own and each
 * `[[server.listeners]]`), each bound through the transport registry, so any registered transport can
 * serve. They feed one server: the same clients, published ports, stats and pending limits; what is
 * particular to a listener is its transport, address, path, `trusted_proxies` and its counters.
 *
 * @module
 */

import type { ListenerConfig } from "../config/types.ts";
import { formatAddr } from "../net/address.ts";
import { type Cidr, parseCidr } from "../net/cidr.ts";
import { BindError } from "../net/tcp.ts";
import { closeQuietly } from "../transport/pipe.ts";
import { transportFor } from "../transport/registry.ts";
import type { TransportListener } from "../transport/transport.ts";

/** One listener of the server, as `[server]` or `[[server.listeners]]` describes it; the transport is any registered name. */
export interface ListenerSpec extends Omit<ListenerConfig, "transport"> {
  /** Name of a registered transport (`transport/registry.ts`). */
  transport: string;
}

/** What every listener of one server is bound with. */
export interface BindListenersOptions {
  /** PEM certificate chain the TLS listeners present (unused by plain-text ones). */
  certPem: string;
  /** PEM private key of that certificate. */
  keyPem: string;
  /** Budget from TCP accept to the end of the transport's handshake. */
  handshakeTimeoutMs: number;
  /** Aborting it closes every listener. */
  signal?: AbortSignal;
}

/** A bound listener of the server, with its own counters. */
export class ServerListener {
  /** Connections accepted on it since start (admitted or refused by the pending limits). */
  connectionsTotal = 0;
  /** Sessions that authenticated through it since start. */
  sessionsTotal = 0;
  /** `trusted_proxies` of this listener, parsed. */
  readonly trustedProxies: readonly Cidr[];

  constructor(
    /** How it was configured. */
    readonly spec: ListenerSpec,
    /** The transport's bound listener. */
    readonly listener: TransportListener,
  ) {
    this.trustedProxies = spec.trustedProxies.map((text) => parseCidr(text))
      .filter((network) => network !== null);
  }

  /** The bound address. */
  get addr(): Deno.NetAddr {
    return this.listener.addr;
  }

  /** `127.0.0.1:8443 (wss on /tunnel)`: the bound address and what it serves, for the log. */
  describe(): string {
    return `${formatAddr(this.addr)} (${describeSpec(this.spec)})`;
  }
}

/** `tls`, `wss on /tunnel`, `http2 on /tunnel, plain text behind a reverse proxy`. */
export function describeSpec(spec: Pick<ListenerSpec, "transport" | "serverPath" | "behindProxy">): string {
  const overHttp = spec.transport === "wss" || spec.transport === "http2";
  return `${spec.transport}${overHttp ? ` on ${spec.serverPath}` : ""}${
    spec.behindProxy ? ", plain text behind a reverse proxy" : ""
  }`;
}

/**
 * Binds every listener in order. When one cannot be bound, those already bound are closed and the
 * `BindError` is rethrown with the listener named in front of its message (a server runs with all its
 * listeners or not at all). An unknown transport name rejects with `UnknownTransportError` before any
 * bind.
 */
export async function bindListeners(
  specs: readonly ListenerSpec[],
  options: BindListenersOptions,
): Promise<ServerListener[]> {
  const transports = specs.map((spec) => transportFor(spec.transport));
  const bound: ServerListener[] = [];
  try {
    for (const [index, spec] of specs.entries()) {
      const transport = transports[index];
      if (transport === undefined) continue;
      let listener: TransportListener;
      try {
        listener = await transport.listen({
          hostname: spec.bindAddr,
          port: spec.bindPort,
          certPem: options.certPem,
          keyPem: options.keyPem,
          handshakeTimeoutMs: options.handshakeTimeoutMs,
          path: spec.serverPath,
          plainText: spec.behindProxy,
        }, options.signal);
      } catch (error) {
        if (!(error instanceof BindError) || specs.length === 1) throw error;
        throw new BindError(
          error.kind,
          error.hostname,
          error.port,
          `listener ${index + 1} of ${specs.length} (${describeSpec(spec)}): ${error.message}`,
          { cause: error },
        );
      }
      bound.push(new ServerListener(spec, listener));
    }
  } catch (error) {
    for (const listener of bound) closeQuietly(listener.listener);
    throw error;
  }
  return bound;
}

/**
 * The client's proxy kinds by name, the name being a proxy's `proxy_type`.
 *
 * @example The kind of a configured proxy
 * ```ts
 * import { clientProxyKindFor } from "./registry.ts";
 *
 * const kind = clientProxyKindFor("tcp");
 * console.log(kind.name); // "tcp"
 * ```
 *
 * @module
 */

import type { ProxySpec } from "../../protocol/control.ts";
import { Registry } from "../../registry.ts";
import { type AnyClientProxyKind, UnknownProxyKindError } from "./kind.ts";
import { tcpClientKind } from "./tcp.ts";
import { udpClientKind } from "./udp.ts";
import { httpClientKind, httpsClientKind } from "./http.ts";

/** A proxy kind the wire protocol knows (`proxy_type`). */
export type ProxyKindName = ProxySpec["proxy_type"];

/**
 * Every kind the protocol knows, under its name: typed by the protocol's `proxy_type`, so a kind added
 * to the wire without a client implementation (or the reverse) fails the type check.
 */
const BUILT_IN: { readonly [name in ProxyKindName]: AnyClientProxyKind } = {
  tcp: tcpClientKind,
  udp: udpClientKind,
  http: httpClientKind,
  https: httpsClientKind,
};

const kinds = new Registry<AnyClientProxyKind>("proxy kind", UnknownProxyKindError);
for (const kind of Object.values(BUILT_IN)) kinds.register(kind.name, kind);

/**
 * The client side of the proxy kind `name`.
 *
 * @throws {UnknownProxyKindError} when there is none; its message names the known kinds
 */
export function clientProxyKindFor(name: string): AnyClientProxyKind {
  return kinds.get(name);
}

/**
 * Registers `kind` under its name, for tests; returns the function that removes it.
 *
 * @throws {DuplicateNameError} when the name is taken
 */
export function registerClientProxyKind(kind: AnyClientProxyKind): () => void {
  return kinds.register(kind.name, kind);
}

/** The names of the registered client proxy kinds. */
export function clientProxyKindNames(): string[] {
  return kinds.names();
}

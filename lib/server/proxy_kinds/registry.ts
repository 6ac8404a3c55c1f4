/**
 * The server's proxy kinds by name, the name being a proxy's `proxy_type`.
 *
 * @example The kind of a registered proxy
 * ```ts
 * import { serverProxyKindFor } from "./registry.ts";
 *
 * const kind = serverProxyKindFor("tcp");
 * console.log(kind.name); // "tcp"
 * ```
 *
 * @module
 */

import type { ProxySpec } from "../../protocol/control.ts";
import { Registry } from "../../registry.ts";
import { type ServerProxyKind, UnknownProxyKindError } from "./kind.ts";
import { tcpServerKind } from "./tcp.ts";
import { udpServerKind } from "./udp.ts";
import { httpServerKind, httpsServerKind } from "./http.ts";

/** A proxy kind the wire protocol knows (`proxy_type`). */
export type ProxyKindName = ProxySpec["proxy_type"];

/**
 * Every kind the protocol knows, under its name: typed by the protocol's `proxy_type`, so a kind added
 * to the wire without a server implementation (or the reverse) fails the type check.
 */
const BUILT_IN: { readonly [name in ProxyKindName]: ServerProxyKind } = {
  tcp: tcpServerKind,
  udp: udpServerKind,
  http: httpServerKind,
  https: httpsServerKind,
};

const kinds = new Registry<ServerProxyKind>("proxy kind", UnknownProxyKindError);
for (const kind of Object.values(BUILT_IN)) kinds.register(kind.name, kind);

/**
 * The server side of the proxy kind `name`.
 *
 * @throws {UnknownProxyKindError} when there is none; its message names the known kinds
 */
export function serverProxyKindFor(name: string): ServerProxyKind {
  return kinds.get(name);
}

/**
 * Registers `kind` under its name, for tests; returns the function that removes it.
 *
 * @throws {DuplicateNameError} when the name is taken
 */
export function registerServerProxyKind(kind: ServerProxyKind): () => void {
  return kinds.register(kind.name, kind);
}

/** The names of the registered server proxy kinds. */
export function serverProxyKindNames(): string[] {
  return kinds.names();
}

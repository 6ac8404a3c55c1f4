/**
 * The `http` and `https` proxy kinds, client side. The server routes requests (by Host and path) or TLS
 * connections (by SNI) to the proxy and sends each over its own stream; here each stream gets its own
 * TCP connection to the local service, exactly as for `tcp`: the server has already added the
 * `X-Forwarded-*` headers (http) or left the TLS bytes untouched (https).
 *
 * @module
 */

import type { ClientProxyKind } from "./kind.ts";
import { tcpClientKind } from "./tcp.ts";

/** The `http` proxy kind, client side: a TCP connection to the local HTTP service per stream. */
export const httpClientKind: ClientProxyKind = { ...tcpClientKind, name: "http" };

/** The `https` proxy kind, client side: a TCP connection to the local TLS service per stream. */
export const httpsClientKind: ClientProxyKind = { ...tcpClientKind, name: "https" };

/**
 * Leaving through an outbound proxy: a TCP connection to the proxy, its handshake (HTTP CONNECT or
 * SOCKS5, `proxy_handshake.ts`), and the connection handed back ready for the transport's own handshake
 * (TLS, WebSocket…) as if it had been dialed to the server directly. The proxy URL is `proxy_url.ts`;
 * which proxy the environment names (`HTTPS_PROXY`, `NO_PROXY`) is `no_proxy.ts`.
 *
 * Every transport's `dial` uses {@linkcode dialTcp} (a `Deno.TcpConn`) or, for `node:tls`,
 * {@linkcode connectNodeSocket}, so that `proxy_url` works the same on each. The proxy's host name, if
 * it is one, is resolved by the connect itself (it does not block the event loop); the whole of it,
 * connect and handshake, is bounded by the caller's signal (the dial timeout).
 *
 * @module
 */

import type { Socket } from "node:net";
import { formatHostPort } from "./address.ts";
import { NodeSocketConn } from "./node_socket_conn.ts";
import { OutboundProxyError, proxyHandshake, type ProxyTarget } from "./proxy_handshake.ts";
import type { OutboundProxy } from "./proxy_url.ts";
import { errorMessage } from "../text.ts";

export * from "./proxy_url.ts";
export * from "./proxy_handshake.ts";
export * from "./no_proxy.ts";

/** Where {@linkcode dialTcp} goes: the server, and the proxy to reach it through, if any. */
export interface DialTcpOptions extends ProxyTarget {
  /** The outbound proxy; absent or null: connect directly. */
  proxy?: OutboundProxy | null | undefined;
}

/**
 * A TCP connection (TCP_NODELAY on) to `hostname:port`, directly or through `proxy`, within `signal`.
 * A failure at the proxy rejects with an {@linkcode OutboundProxyError} naming the hop; a direct
 * connect's own error is passed through for the transport to describe.
 */
export async function dialTcp(options: DialTcpOptions, signal: AbortSignal): Promise<Deno.TcpConn> {
  const proxy = options.proxy ?? null;
  if (proxy === null) {
    const tcp = await raceConnect(Deno.connect({ hostname: options.hostname, port: options.port }), signal);
    tcp.setNoDelay(true);
    return tcp;
  }
  let tcp: Deno.TcpConn;
  try {
    tcp = await raceConnect(Deno.connect({ hostname: proxy.host, port: proxy.port }), signal);
  } catch (error) {
    throw describeProxyConnectError(error, proxy, signal);
  }
  try {
    tcp.setNoDelay(true);
    await proxyHandshake(tcp, proxy, options, signal);
    return tcp;
  } catch (error) {
    tcp.close();
    throw error;
  }
}

/**
 * A `node:net` socket connected through `proxy` to `target`, its handshake done, paused and with no
 * listener of ours left: ready for `node:tls`'s `connect({ socket })`.
 */
export async function connectNodeSocket(
  proxy: OutboundProxy,
  target: ProxyTarget,
  signal: AbortSignal,
): Promise<Socket> {
  const { connect } = await import("node:net");
  const socket = connect({ host: proxy.host, port: proxy.port, noDelay: true });
  const reader = new NodeSocketConn(socket);
  try {
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => reject(signal.reason);
      if (signal.aborted) onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      socket.once("connect", () => {
        signal.removeEventListener("abort", onAbort);
        resolve();
      });
      socket.once("error", (error: Error) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      });
    }).catch((error) => {
      throw describeProxyConnectError(error, proxy, signal);
    });
    await proxyHandshake(reader, proxy, target, signal);
    const unread = reader.detach();
    if (unread > 0) {
      throw new OutboundProxyError(
        `${proxy.hop} sent ${unread} bytes after its answer, before the server could speak; is it really a proxy?`,
      );
    }
    return socket;
  } catch (error) {
    reader.detach();
    socket.destroy();
    throw error;
  }
}

/** The connect to the proxy itself failed: name the hop, and what to check. */
function describeProxyConnectError(error: unknown, proxy: OutboundProxy, signal: AbortSignal): Error {
  if (error instanceof OutboundProxyError) return error;
  const code = (error as { code?: unknown } | null)?.code;
  const detail = errorMessage(error);
  const where = formatHostPort(proxy.host, proxy.port);
  if (signal.aborted) {
    return new OutboundProxyError(`Timed out connecting to ${proxy.hop}; is it reachable?`, false, {
      cause: error,
    });
  }
  if (error instanceof Deno.errors.ConnectionRefused || code === "ECONNREFUSED") {
    return new OutboundProxyError(
      `Connection to ${proxy.hop} refused: is the proxy running on ${where}? (proxy_url, HTTPS_PROXY)`,
      false,
      { cause: error },
    );
  }
  return new OutboundProxyError(`Cannot connect to ${proxy.hop}: ${detail}`, false, { cause: error });
}

/** The connect, or the signal's reason; a connection that arrives after the abort is closed. */
function raceConnect(promise: Promise<Deno.TcpConn>, signal: AbortSignal): Promise<Deno.TcpConn> {
  if (signal.aborted) {
    promise.then((conn) => conn.close(), () => {});
    return Promise.reject(signal.reason);
  }
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (conn) => {
        signal.removeEventListener("abort", onAbort);
        if (signal.aborted) conn.close();
        else resolve(conn);
      },
      (error) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}

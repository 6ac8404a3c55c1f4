/**
 * The `tcp` proxy kind, server side: a TCP port per proxy; each outside connection is carried over its
 * own stream, which starts with the stream header naming the proxy, the peer and the connection id.
 *
 * @module
 */

import { encodeStreamHeader } from "../../protocol/stream_header.ts";
import { listenTcp } from "../../net/tcp.ts";
import type { PublishedListener, ServerProxyKind } from "./kind.ts";

/**
 * A published TCP port. Yields the `Deno.TcpConn` itself, unwrapped: the copy loop and a stopping proxy
 * end it with a real TCP reset (`net/tcp_reset.ts`), which needs Deno's own connection object.
 */
class TcpPublishedListener implements PublishedListener {
  constructor(readonly listener: Deno.TcpListener) {}

  get addr(): Deno.NetAddr {
    return this.listener.addr;
  }

  async accept(): Promise<Deno.TcpConn> {
    const conn = await this.listener.accept();
    try {
      // Nagle off: a carried connection's small writes (a prompt, a keystroke) must not wait 40 ms.
      conn.setNoDelay(true);
    } catch {
      // The peer is gone already; the copy loop finds out on its first read.
    }
    return conn;
  }

  close(): void {
    this.listener.close();
  }
}

/** The `tcp` proxy kind, server side. */
export const tcpServerKind: ServerProxyKind<PublishedListener> = {
  name: "tcp",
  bind: (hostname, port) => new TcpPublishedListener(listenTcp(hostname, port)),
  streamHeader: (proxy, peer, connId) =>
    encodeStreamHeader({ proxy: proxy.name, peer_addr: peer, conn_id: connId }),
};

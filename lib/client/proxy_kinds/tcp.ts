/**
 * The `tcp` proxy kind, client side: each carried stream gets its own TCP connection to the local
 * service, and the bytes are copied both ways with half-close.
 *
 * @module
 */

import { connectTcp } from "../../net/tcp_reset.ts";
import { pipeBoth } from "../../transport/pipe.ts";
import type { ClientProxyKind } from "./kind.ts";

/** The `tcp` proxy kind, client side. */
export const tcpClientKind: ClientProxyKind = {
  name: "tcp",
  async dial(backend) {
    // connectTcp: a connection the client can reset when its outside peer vanishes abruptly.
    const conn = await connectTcp({ hostname: backend.host, port: backend.port, transport: "tcp" });
    // Nagle off, as for every carried connection.
    conn.setNoDelay(true);
    return conn;
  },
  async carry(stream, local, _header, counters) {
    // Server → local service counts as bytes in, local service → server as bytes out.
    await pipeBoth(stream, local, { counters });
  },
};

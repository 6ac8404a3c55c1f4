/**
 * A bare TCP relay for the end-to-end bench (`deno run bench/e2e/relay.ts TARGET_PORT`): listens on a free
 * port of 127.0.0.1, prints it as one JSON line `{"port":N}` on stdout, and carries each connection to
 * 127.0.0.1:TARGET_PORT with the tunnel's own copy loop (`pipeBoth` of lib/transport/pipe.ts), until its
 * stdin closes.
 *
 * Two of them in a row are a tunnel without TLS and without multiplexing: two Deno processes that read
 * and write. Their figures are the floor of any two-process Deno tunnel on the machine, which tells what
 * the tunnel's own work (TLS, yamux) costs and what the runtime costs.
 *
 * @module
 */

import { closeQuietly, pipeBoth } from "../../lib/transport/pipe.ts";
import { acceptEach } from "../../lib/net/accept.ts";

async function carry(inbound: Deno.TcpConn, targetPort: number): Promise<void> {
  inbound.setNoDelay(true);
  let outbound: Deno.TcpConn;
  try {
    outbound = await Deno.connect({ hostname: "127.0.0.1", port: targetPort, transport: "tcp" });
  } catch {
    closeQuietly(inbound);
    return;
  }
  outbound.setNoDelay(true);
  await pipeBoth(inbound, outbound);
}

async function main(targetPort: number): Promise<void> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0, transport: "tcp" });
  const open = new Set<Promise<void>>();
  const accepting = acceptEach(listener, (conn) => {
    const carried = carry(conn, targetPort);
    open.add(carried);
    carried.finally(() => open.delete(carried));
  }, { pauseMs: 20 });
  console.log(JSON.stringify({ port: listener.addr.port }));
  const sink = new Uint8Array(64);
  while ((await Deno.stdin.read(sink)) !== null) { /* nothing is sent on stdin */ }
  closeQuietly(listener);
  await accepting;
}

if (import.meta.main) {
  const targetPort = Number(Deno.args[0]);
  if (!Number.isInteger(targetPort) || targetPort <= 0 || targetPort > 65_535) {
    console.error("usage: deno run --allow-net bench/e2e/relay.ts TARGET_PORT");
    Deno.exit(2);
  }
  await main(targetPort);
  Deno.exit(0);
}

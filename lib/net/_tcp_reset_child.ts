/**
 * Run by `tcp_reset_test.ts` as a child process (with or without `--allow-ffi`): resets an accepted
 * connection, a dialed one, a closed one and one dialed with `connectTcp`, and prints what each peer read as one JSON line.
 *
 * @module
 */

import { connectTcp, resetTcpConn, tcpResetUnavailableReason } from "./tcp_reset.ts";

/** How `conn`'s next read ends: "eof", "data", or the error's name. */
async function readOutcome(conn: Deno.Conn): Promise<string> {
  try {
    return (await conn.read(new Uint8Array(16))) === null ? "eof" : "data";
  } catch (error) {
    return error instanceof Error ? error.name : String(error);
  }
}

const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
const dialed = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
const accepted = await listener.accept();
const acceptedReset = resetTcpConn(accepted);
const dialedPeerRead = await readOutcome(dialed);
dialed.close();

const dialed2 = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
const accepted2 = await listener.accept();
const dialedReset = resetTcpConn(dialed2);
const acceptedPeerRead = await readOutcome(accepted2);
accepted2.close();
const closedReset = resetTcpConn(dialed2);

// Dialed with connectTcp, its descriptor is known: it can be reset too.
const dialed3 = await connectTcp({ hostname: "127.0.0.1", port: listener.addr.port });
const accepted3 = await listener.accept();
const connectTcpReset = resetTcpConn(dialed3);
const connectTcpPeerRead = await readOutcome(accepted3);
accepted3.close();
listener.close();

console.log(JSON.stringify({
  reason: tcpResetUnavailableReason(),
  acceptedReset,
  dialedPeerRead,
  dialedReset,
  acceptedPeerRead,
  closedReset,
  connectTcpReset,
  connectTcpPeerRead,
}));

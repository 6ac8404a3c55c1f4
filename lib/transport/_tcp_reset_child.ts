/**
 * Run by `tcp_reset_test.ts` as a child process (with or without `--allow-ffi`): resets an accepted
 * connection, a dialed one and a closed one, and prints what each peer read as one JSON line.
 *
 * @module
 */

import { resetTcpConn, tcpResetUnavailableReason } from "./tcp_reset.ts";

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
listener.close();

console.log(JSON.stringify({
  reason: tcpResetUnavailableReason(),
  acceptedReset,
  dialedPeerRead,
  dialedReset,
  acceptedPeerRead,
  closedReset,
}));

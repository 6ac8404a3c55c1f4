/**
 * Aborting a TCP connection with a reset (RST), so that its peer's next read fails with ECONNRESET instead
 * of reading a clean end of stream: how a cut transfer (the tunnel's session lost, the other side reset)
 * is told apart from a finished one.
 *
 * Deno 2.9.6 has no API for it, and what was measured on the way here (probes kept in the report of
 * issue 11):
 * - `Deno.TcpConn.close()` always sends FIN: Deno calls `shutdown(SHUT_WR)` before `close()` (strace), so
 *   neither `SO_LINGER` 0 nor unread received data (Linux's own reasons for RST on close) reach the peer
 *   before the FIN, and the peer reads a clean end.
 * - `node:net`'s `resetAndDestroy()` does send RST, but a `node:net` socket cannot carry the tunnel's
 *   traffic: once its peer has half-closed, the first write that finds the socket buffer full fails with
 *   EPIPE (Deno 2.9.6's node:net; 3.9 MB into a download on loopback, every time), which would cut the
 *   downloads of every client that half-closes after its request; and in a relay probe on 2 cores its
 *   upload direction ran at 176 MB/s against 488 MB/s for `Deno.TcpConn`, connects at 600/s against
 *   1,241/s. Nor can a `Deno.TcpConn` be handed to it (`TCPWrap.openFromRid` shares the resource but its
 *   `reset()` does nothing; `open(fd)` fails with EEXIST and closes the descriptor).
 * - What works: `connect(fd, AF_UNSPEC)` through FFI. Linux then disconnects the socket with RST
 *   (`tcp_disconnect`), pending reads and writes on it fail, and the `close()` that follows has nothing
 *   left to send. It costs one system call (0.2 ms measured, including the call's set-up) and needs the
 *   `--allow-ffi` permission; without it (or on another OS, or for a connection whose descriptor Deno
 *   does not expose: only accepted connections carry it) the connection is closed with FIN as before.
 *
 * @module
 */

/** Why resets are not available in this process, or null when they are. */
let unavailableReason: string | null | undefined;
/** `connect(2)` from libc, once loaded. */
let libcConnect: ((fd: number, addr: Uint8Array, length: number) => number) | null = null;
/** A `struct sockaddr` with `sa_family = AF_UNSPEC` (0): "dissolve the association" for `connect(2)`. */
const AF_UNSPEC_ADDR = new Uint8Array(16);

/** Loads libc's `connect` once; records why it cannot be when it cannot. */
function load(): string | null {
  if (unavailableReason !== undefined) return unavailableReason;
  unavailableReason = "resets need Linux";
  if (Deno.build.os !== "linux") return unavailableReason;
  try {
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
      unavailableReason = "resets need the --allow-ffi permission";
      return unavailableReason;
    }
    const library = Deno.dlopen("libc.so.6", {
      connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
    });
    libcConnect = library.symbols.connect;
    unavailableReason = null;
  } catch (error) {
    unavailableReason = `libc could not be loaded (${
      error instanceof Error ? error.message : String(error)
    })`;
  }
  return unavailableReason;
}

/**
 * Whether this process can send TCP resets: null when it can, else why not (for a log line at start-up).
 */
export function tcpResetUnavailableReason(): string | null {
  return load();
}

/** The OS descriptor Deno keeps on an accepted `Deno.TcpConn`, or null. */
function descriptorOf(conn: object): number | null {
  for (const symbol of Object.getOwnPropertySymbols(conn)) {
    if (symbol.description !== "Deno.internal.fd") continue;
    const fd = (conn as Record<symbol, unknown>)[symbol];
    return typeof fd === "number" && Number.isInteger(fd) && fd >= 0 ? fd : null;
  }
  return null;
}

/**
 * Closes `conn` with a TCP reset when this process can (see the module doc), else with FIN. Returns
 * whether a reset was sent. Safe on a connection that is already closed (nothing happens) and on
 * anything that is not a TCP connection (it is closed).
 */
export function resetTcpConn(conn: { close(): void; setNoDelay?: (noDelay?: boolean) => void }): boolean {
  let reset = false;
  const fd = descriptorOf(conn);
  if (fd !== null && typeof conn.setNoDelay === "function" && load() === null && libcConnect !== null) {
    try {
      // Throws BadResource once the connection is closed: its descriptor number may belong to another
      // socket by now and must not be touched.
      conn.setNoDelay(true);
      reset = libcConnect(fd, AF_UNSPEC_ADDR, AF_UNSPEC_ADDR.length) === 0;
    } catch {
      // Already closed: nothing to reset.
    }
  }
  try {
    conn.close();
  } catch {
    // Already closed.
  }
  return reset;
}

/**
 * Aborting a TCP connection with a reset (RST), so that its peer's next read fails with ECONNRESET instead
 * of reading a clean end of stream: how a cut transfer (the tunnel's session lost, the other side reset)
 * is told apart from a finished one.
 *
 * Deno 2.9.6 has no API for it. What was measured on the way here (issue 11, loopback, 2 cores):
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
 *   `--allow-ffi` permission; without it (or on another OS, or for a connection whose descriptor is not
 *   known: Deno keeps it on accepted connections only, and {@linkcode connectTcp} finds it for IPv4
 *   connections it dials) the connection is closed with FIN as before.
 *
 * @module
 */

import { errorMessage } from "../text.ts";

/** Why resets are not available in this process, or null when they are. */
let unavailableReason: string | null | undefined;
/** The libc calls used here, once loaded. */
let libc: LibcCalls | null = null;
/** A `struct sockaddr` with `sa_family = AF_UNSPEC` (0): "dissolve the association" for `connect(2)`. */
const AF_UNSPEC_ADDR = new Uint8Array(16);
/** `sa_family` of an IPv4 `struct sockaddr_in`. */
const AF_INET = 2;

/** The libc functions this module calls, as `Deno.dlopen` binds them. */
interface LibcCalls {
  connect(fd: number, addr: Uint8Array, length: number): number;
  dup(fd: number): number;
  close(fd: number): number;
  getsockname(fd: number, addr: Uint8Array, length: Uint8Array): number;
  getpeername(fd: number, addr: Uint8Array, length: Uint8Array): number;
}

/** Loads the libc calls once; records why they cannot be when they cannot. */
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
      dup: { parameters: ["i32"], result: "i32" },
      close: { parameters: ["i32"], result: "i32" },
      getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
      getpeername: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
    });
    libc = library.symbols;
    unavailableReason = null;
  } catch (error) {
    unavailableReason = `libc could not be loaded (${errorMessage(error)})`;
  }
  return unavailableReason;
}

/**
 * Where to look for the descriptor of a connection {@linkcode connectTcp} dialed (Deno keeps none for
 * them): the lowest free descriptor just before it connected. Looked up only when the connection is reset
 * (rare), so that dialing costs no extra system call beyond the two that note it; the result replaces it.
 */
const dialedDescriptors = new WeakMap<object, { lowestFree: number } | number>();
/** How many descriptors above the lowest free one {@linkcode connectTcp} looks at for its socket. */
const DESCRIPTOR_SEARCH_SPAN = 256;

/** Buffers for `getsockname`/`getpeername` (reused: every call here is synchronous). */
const socketAddress = new Uint8Array(128);
const socketAddressView = new DataView(socketAddress.buffer);
const socketAddressLength = new Uint8Array(4);
const socketAddressLengthView = new DataView(socketAddressLength.buffer);

/** Whether `fd` is a connected IPv4 socket from local port `localPort` to `remote`. */
function isSocketOf(calls: LibcCalls, fd: number, localPort: number, remote: Deno.NetAddr): boolean {
  const addr = socketAddress;
  const length = socketAddressLength;
  const view = socketAddressView;
  socketAddressLengthView.setUint32(0, addr.length, true);
  if (calls.getsockname(fd, addr, length) !== 0) return false;
  if (view.getUint16(0, true) !== AF_INET || view.getUint16(2) !== localPort) return false;
  socketAddressLengthView.setUint32(0, addr.length, true);
  if (calls.getpeername(fd, addr, length) !== 0) return false;
  return view.getUint16(0, true) === AF_INET && view.getUint16(2) === remote.port &&
    addr.subarray(4, 8).join(".") === remote.hostname;
}

/**
 * `Deno.connect` to an IPv4 address, remembering where its descriptor is so that {@linkcode resetTcpConn}
 * can reset it. Deno keeps no descriptor for a connection it dialed, so when resets are available the
 * lowest free descriptor is noted just before connecting (Linux gives a new socket the lowest free one: two
 * system calls); a reset looks for the socket from there, matched by both of its addresses. Any other
 * address, or no match, gives a plain connection (closed with FIN).
 */
export async function connectTcp(options: Deno.ConnectOptions & { hostname: string }): Promise<Deno.TcpConn> {
  const calls = load() === null ? libc : null;
  let lowestFree = -1;
  if (calls !== null && /^\d+\.\d+\.\d+\.\d+$/.test(options.hostname)) {
    // Any open descriptor will do to learn the lowest free one: stdin, else stderr.
    lowestFree = calls.dup(0);
    if (lowestFree < 0) lowestFree = calls.dup(2);
    if (lowestFree >= 0) calls.close(lowestFree);
  }
  const conn = await Deno.connect(options);
  if (calls !== null && lowestFree >= 0) dialedDescriptors.set(conn, { lowestFree });
  return conn;
}

/** The descriptor of `conn`, dialed by {@linkcode connectTcp}, looked for once; null when not found. */
function dialedDescriptor(conn: Deno.TcpConn | object): number | null {
  const known = dialedDescriptors.get(conn);
  if (known === undefined) return null;
  if (typeof known === "number") return known;
  dialedDescriptors.delete(conn);
  if (libc === null || !("localAddr" in conn) || !("remoteAddr" in conn)) return null;
  const local = conn.localAddr as Deno.NetAddr;
  const remote = conn.remoteAddr as Deno.NetAddr;
  for (let fd = known.lowestFree; fd < known.lowestFree + DESCRIPTOR_SEARCH_SPAN; fd++) {
    if (isSocketOf(libc, fd, local.port, remote)) {
      dialedDescriptors.set(conn, fd);
      return fd;
    }
  }
  return null;
}

/**
 * Whether this process can send TCP resets: null when it can, else why not (for a log line at start-up).
 */
export function tcpResetUnavailableReason(): string | null {
  return load();
}

/**
 * The OS descriptor of `conn`: the one Deno keeps on an accepted connection, or {@linkcode connectTcp}'s.
 * Only for a connection known to be open: a closed one's number may belong to another socket by now.
 */
function descriptorOf(conn: object): number | null {
  if (dialedDescriptors.has(conn)) return dialedDescriptor(conn);
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
  if (typeof conn.setNoDelay === "function" && load() === null && libc !== null) {
    try {
      // Throws BadResource once the connection is closed: its descriptor number may belong to another
      // socket by now and must not be touched (nor looked for).
      conn.setNoDelay(true);
      const fd = descriptorOf(conn);
      if (fd !== null) reset = libc.connect(fd, AF_UNSPEC_ADDR, AF_UNSPEC_ADDR.length) === 0;
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

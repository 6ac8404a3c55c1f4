/**
 * `node:stream` `Duplex` adapters for `node:http2`, which in Deno 2.9.6 reads neither a `TLSSocket` nor our
 * {@linkcode DuplexConn} directly: a node socket behind a plain `Duplex` (the server side, after the peek
 * at the HTTP/2 preface) and a {@linkcode DuplexConn} as a `Duplex` (the client side, over the tls
 * transport's connection). Back-pressure passes through both.
 *
 * @module
 */

import type { Duplex } from "node:stream";
import type { DuplexConn } from "../net/conn.ts";
import type { NodeDuplexSocket } from "../net/node_socket_conn.ts";

/**
 * `socket` behind a plain JavaScript `Duplex` (the form Deno 2.9.6's `node:http2` reads from; it does
 * not read a `TLSSocket` itself). Back-pressure passes through: a full readable side pauses `socket`.
 * Destroying either destroys both.
 */
export async function nodeSocketDuplex(
  socket: NodeDuplexSocket,
  initial?: Uint8Array,
): Promise<Duplex> {
  const { Duplex } = await import("node:stream");
  const duplex: Duplex = new Duplex({
    read() {
      if (socket.isPaused()) socket.resume();
    },
    write(chunk: Uint8Array, _encoding, callback) {
      socket.write(chunk, (error?: Error | null) => callback(error ?? null));
    },
    final(callback) {
      socket.end(() => callback());
    },
    destroy(error, callback) {
      socket.destroy();
      callback(error);
    },
  });
  // Bytes already taken from `socket` (the peek at the preface) come first.
  if (initial !== undefined && initial.length > 0) duplex.push(initial);
  socket.on("data", (chunk: Uint8Array) => {
    if (!duplex.push(chunk)) socket.pause();
  });
  socket.on("end", () => duplex.push(null));
  socket.on("error", (error: Error) => duplex.destroy(error));
  socket.on("close", () => duplex.destroy());
  return duplex;
}

/**
 * A {@linkcode DuplexConn} as a `node:stream` `Duplex` (for `node:http2`'s client over the tls
 * transport's connection): one read at a time, only while the readable side wants more; writes
 * complete when `conn` took the bytes. Destroying the `Duplex` closes `conn`.
 */
export async function duplexConnStream(conn: DuplexConn): Promise<Duplex> {
  const { Duplex } = await import("node:stream");
  let reading = false;
  const buffer = new Uint8Array(64 * 1024);
  const pump = async (): Promise<void> => {
    reading = true;
    try {
      for (;;) {
        const count = await conn.read(buffer);
        if (count === null) {
          // HTTP/2 has no half-closed connection: once the peer's end is read, the connection is over.
          duplex.once("end", () => duplex.destroy());
          duplex.push(null);
          return;
        }
        // Copied: `buffer` is read into again while the chunk waits in the stream.
        if (!duplex.push(buffer.slice(0, count))) return;
      }
    } catch (error) {
      duplex.destroy(error instanceof Error ? error : new Error(String(error)));
    } finally {
      reading = false;
    }
  };
  const duplex: Duplex = new Duplex({
    read() {
      if (!reading) void pump();
    },
    write(chunk: Uint8Array, _encoding, callback) {
      (async () => {
        for (let offset = 0; offset < chunk.length;) offset += await conn.write(chunk.subarray(offset));
      })().then(() => callback(null), (error: Error) => callback(error));
    },
    final(callback) {
      conn.closeWrite().then(() => callback(null), (error: Error) => callback(error));
    },
    destroy(error, callback) {
      try {
        conn.close();
      } catch {
        // Already closed.
      }
      callback(error);
    },
  });
  return duplex;
}

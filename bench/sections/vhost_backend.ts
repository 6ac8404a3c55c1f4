/**
 * The `vhost` bench section's local HTTP service, run as its own process so that it does not share the
 * measuring process's event loop: answers every request head on a keep-alive connection with the same
 * small 200. Prints `{"port":N}` once it listens; exits when its stdin closes.
 *
 * @module
 */

const ANSWER = new TextEncoder().encode(
  "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok",
);
const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
console.log(JSON.stringify({ port: listener.addr.port }));

async function serve(conn: Deno.Conn): Promise<void> {
  const buffer = new Uint8Array(65536);
  // Heads end with CRLF CRLF; count how many ended, carrying a partial terminator across reads.
  let tail = "";
  try {
    while (true) {
      const count = await conn.read(buffer);
      if (count === null) break;
      const text = tail + new TextDecoder().decode(buffer.subarray(0, count));
      const heads = text.split("\r\n\r\n").length - 1;
      tail = text.slice(-3);
      for (let i = 0; i < heads; i++) await conn.write(ANSWER);
    }
  } catch {
    // The peer went away.
  } finally {
    try {
      conn.close();
    } catch {
      // Closed already.
    }
  }
}

(async () => {
  for await (const conn of listener) void serve(conn);
})();
// Ends with the bench: stdin closes when the parent stops or dies.
for await (const _ of Deno.stdin.readable) {
  // Nothing is sent on stdin.
}
listener.close();
Deno.exit(0);

import assert from "node:assert/strict";
import { writeAll } from "./conn.ts";
import {
  connectNodeSocket,
  dialTcp,
  isPermanentProxyError,
  MAX_PROXY_ANSWER_BYTES,
  OutboundProxyError,
  parseProxyUrl,
} from "./outbound_proxy.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const TARGET = { hostname: "tunnel.example", port: 8443 };

/** A fake proxy on loopback: `handle` plays the proxy's side of one connection. */
async function withFakeProxy(
  handle: (conn: Deno.Conn) => Promise<void>,
  body: (port: number) => Promise<void>,
): Promise<void> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const handled: Promise<void>[] = [];
  const accepting = (async () => {
    for await (const conn of listener) {
      handled.push(
        handle(conn).catch(() => {}).finally(() => {
          try {
            conn.close();
          } catch {
            // The test closed it already.
          }
        }),
      );
    }
  })();
  try {
    await body(listener.addr.port);
  } finally {
    listener.close();
    await accepting;
    await Promise.all(handled);
  }
}

/** Reads until `count` bytes or the end of an HTTP header arrived. */
async function readRequest(conn: Deno.Conn, until: (bytes: Uint8Array) => boolean): Promise<Uint8Array> {
  let received = new Uint8Array(0);
  const chunk = new Uint8Array(4096);
  while (!until(received)) {
    const count = await conn.read(chunk);
    if (count === null) break;
    const joined = new Uint8Array(received.length + count);
    joined.set(received);
    joined.set(chunk.subarray(0, count), received.length);
    received = joined;
  }
  return received;
}

const headerDone = (bytes: Uint8Array) => decoder.decode(bytes).includes("\r\n\r\n");
const exactly = (count: number) => (bytes: Uint8Array) => bytes.length >= count;

/** Echoes what the client sends after the handshake, once. */
async function echoOnce(conn: Deno.Conn): Promise<void> {
  const buffer = new Uint8Array(64);
  const count = await conn.read(buffer);
  if (count !== null) await writeAll(conn, buffer.subarray(0, count));
}

async function failure(promise: Promise<unknown>): Promise<OutboundProxyError> {
  try {
    const conn = await promise;
    (conn as { close?: () => void; destroy?: () => void }).close?.();
  } catch (error) {
    assert.ok(error instanceof OutboundProxyError, `expected an OutboundProxyError, got ${error}`);
    return error;
  }
  assert.fail("the connection through the proxy succeeded");
}

async function roundTripThrough(conn: Deno.TcpConn): Promise<string> {
  try {
    await writeAll(conn, encoder.encode("ping"));
    const buffer = new Uint8Array(16);
    const count = await conn.read(buffer);
    return decoder.decode(buffer.subarray(0, count ?? 0));
  } finally {
    conn.close();
  }
}

const timeout = () => AbortSignal.timeout(5000);

Deno.test("HTTP CONNECT: sends CONNECT with Basic credentials, then bytes flow to the target", async () => {
  let request = "";
  await withFakeProxy(async (conn) => {
    request = decoder.decode(await readRequest(conn, headerDone));
    await writeAll(conn, encoder.encode("HTTP/1.1 200 Connection established\r\nVia: fake\r\n\r\n"));
    await echoOnce(conn);
  }, async (port) => {
    const proxy = parseProxyUrl(`http://alice:s3cret@127.0.0.1:${port}`, "proxy_url");
    assert.equal(await roundTripThrough(await dialTcp({ ...TARGET, proxy }, timeout())), "ping");
  });
  assert.match(request, /^CONNECT tunnel\.example:8443 HTTP\/1\.1\r\nHost: tunnel\.example:8443\r\n/);
  assert.match(request, new RegExp(`\r\nProxy-Authorization: Basic ${btoa("alice:s3cret")}\r\n`));
});

Deno.test("HTTP CONNECT: 407 is a permanent error naming the hop and saying to put the credentials in proxy_url", async () => {
  await withFakeProxy(async (conn) => {
    await readRequest(conn, headerDone);
    await writeAll(
      conn,
      encoder.encode("HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 5\r\n\r\ndenied"),
    );
  }, async (port) => {
    for (const userInfo of ["", "alice:wrong@"]) {
      const proxy = parseProxyUrl(`http://${userInfo}127.0.0.1:${port}`, "proxy_url");
      const error = await failure(dialTcp({ ...TARGET, proxy }, timeout()));
      assert.ok(error.permanent);
      assert.ok(isPermanentProxyError(new Error("wrapped", { cause: error })));
      assert.match(
        error.message,
        new RegExp(
          `^the HTTP proxy 127\\.0\\.0\\.1:${port} answered 407 Proxy Authentication Required; put the ` +
            "credentials in proxy_url",
        ),
      );
      assert.ok(!error.message.includes("wrong"));
    }
  });
});

Deno.test("HTTP CONNECT: 401 to the credentials given (tinyproxy's answer to a wrong password) is permanent too", async () => {
  await withFakeProxy(async (conn) => {
    await readRequest(conn, headerDone);
    await writeAll(conn, encoder.encode("HTTP/1.0 401 Unauthorized\r\nWWW-Authenticate: Basic\r\n\r\n"));
  }, async (port) => {
    const proxy = parseProxyUrl(`http://alice:wrong@127.0.0.1:${port}`, "proxy_url");
    const error = await failure(dialTcp({ ...TARGET, proxy }, timeout()));
    assert.ok(error.permanent);
    assert.match(
      error.message,
      /answered 401 Unauthorized; put the credentials in proxy_url \(the user name and password given there were refused\)/,
    );
  });
});

Deno.test("HTTP CONNECT: a refusal other than 407 is retryable and says why", async () => {
  await withFakeProxy(async (conn) => {
    await readRequest(conn, headerDone);
    await writeAll(conn, encoder.encode("HTTP/1.0 403 Access violation\x1b[31m\r\n\r\n"));
  }, async (port) => {
    const proxy = parseProxyUrl(`http://127.0.0.1:${port}`, "proxy_url");
    const error = await failure(dialTcp({ ...TARGET, proxy }, timeout()));
    assert.equal(error.permanent, false);
    assert.match(error.message, /answered 403 Access violation\?\[31m to CONNECT tunnel\.example:8443/);
    assert.match(error.message, /ConnectPort 8443/);
    assert.ok(!error.message.includes("\x1b"));
  });
});

Deno.test("HTTP CONNECT (hostile): garbage, an oversized header, bytes after the answer, an early close", async () => {
  const answers: [Uint8Array, RegExp][] = [
    [
      encoder.encode("SSH-2.0-OpenSSH_9.2\r\n\r\n"),
      /with something that is not HTTP \("SSH-2\.0-OpenSSH_9\.2\\r"\)/,
    ],
    [
      encoder.encode(
        `HTTP/1.1 200 OK\r\n${"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".repeat(600)}`,
      ),
      new RegExp(`sent an answer over ${MAX_PROXY_ANSWER_BYTES} bytes`),
    ],
    [encoder.encode("HTTP/1.1 200 OK\r\n\r\nunexpected"), /sent 10 bytes after its answer/],
    [encoder.encode("HTTP/1.1 200"), /closed the connection before answering CONNECT/],
  ];
  for (const [answer, pattern] of answers) {
    await withFakeProxy(async (conn) => {
      await readRequest(conn, headerDone);
      await writeAll(conn, answer);
    }, async (port) => {
      const proxy = parseProxyUrl(`http://127.0.0.1:${port}`, "proxy_url");
      const error = await failure(dialTcp({ ...TARGET, proxy }, timeout()));
      assert.match(error.message, pattern);
      assert.match(error.message, new RegExp(`^the HTTP proxy 127\\.0\\.0\\.1:${port} `));
      assert.equal(error.permanent, false);
    });
  }
});

Deno.test("HTTP CONNECT (hostile): a proxy that never answers fails at the dial deadline, naming the hop", async () => {
  const release = Promise.withResolvers<void>();
  await withFakeProxy(async (conn) => {
    await readRequest(conn, headerDone);
    await release.promise;
  }, async (port) => {
    const proxy = parseProxyUrl(`http://127.0.0.1:${port}`, "proxy_url");
    const startedMs = performance.now();
    const error = await failure(dialTcp({ ...TARGET, proxy }, AbortSignal.timeout(300)));
    const elapsedMs = performance.now() - startedMs;
    release.resolve();
    assert.match(error.message, /the HTTP proxy .* did not answer CONNECT tunnel\.example:8443 in time/);
    assert.ok(elapsedMs >= 250 && elapsedMs < 2000, `${elapsedMs} ms`);
  });
});

Deno.test("proxy unreachable: a refused connect is retryable and names the proxy", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  const proxy = parseProxyUrl(`socks5://127.0.0.1:${port}`, "proxy_url");
  const error = await failure(dialTcp({ ...TARGET, proxy }, timeout()));
  assert.equal(error.permanent, false);
  assert.match(error.message, new RegExp(`^Connection to the SOCKS5 proxy 127\\.0\\.0\\.1:${port} refused`));
});

Deno.test("SOCKS5: user/password, CONNECT by name, then bytes flow to the target", async () => {
  const seen: number[][] = [];
  await withFakeProxy(async (conn) => {
    seen.push([...await readRequest(conn, exactly(4))]);
    await writeAll(conn, new Uint8Array([5, 2]));
    seen.push([...await readRequest(conn, exactly(3 + 5 + 6))]);
    await writeAll(conn, new Uint8Array([1, 0]));
    seen.push([...await readRequest(conn, exactly(5 + 14 + 2))]);
    // Bound address as a name (type 3), to check it is skipped whole.
    await writeAll(conn, new Uint8Array([5, 0, 0, 3, 4, ...encoder.encode("bind"), 0x1f, 0x90]));
    await echoOnce(conn);
  }, async (port) => {
    const proxy = parseProxyUrl(`socks5://alice:s3cret@127.0.0.1:${port}`, "proxy_url");
    assert.equal(await roundTripThrough(await dialTcp({ ...TARGET, proxy }, timeout())), "ping");
  });
  assert.deepEqual(seen[0], [5, 2, 0, 2]);
  assert.deepEqual(seen[1], [1, 5, ...encoder.encode("alice"), 6, ...encoder.encode("s3cret")]);
  assert.deepEqual(seen[2], [5, 1, 0, 3, 14, ...encoder.encode("tunnel.example"), 0x20, 0xfb]);
});

Deno.test("SOCKS5: an IPv6 target is sent as an address; without credentials only 'none' is offered", async () => {
  const seen: number[][] = [];
  await withFakeProxy(async (conn) => {
    seen.push([...await readRequest(conn, exactly(3))]);
    await writeAll(conn, new Uint8Array([5, 0]));
    seen.push([...await readRequest(conn, exactly(4 + 16 + 2))]);
    await writeAll(conn, new Uint8Array([5, 0, 0, 4, ...new Uint8Array(16), 0, 0]));
    await echoOnce(conn);
  }, async (port) => {
    const proxy = parseProxyUrl(`socks5://127.0.0.1:${port}`, "proxy_url");
    const conn = await dialTcp({ hostname: "2001:db8::1", port: 443, proxy }, timeout());
    assert.equal(await roundTripThrough(conn), "ping");
  });
  assert.deepEqual(seen[0], [5, 1, 0]);
  assert.deepEqual(seen[1], [5, 1, 0, 4, 0x20, 0x01, 0x0d, 0xb8, ...new Array(11).fill(0), 1, 1, 0xbb]);
});

Deno.test("SOCKS5: refused credentials, or credentials required, are permanent errors naming the hop", async () => {
  const cases: [string, number[], number[] | null, RegExp][] = [
    [
      "alice:wrong@",
      [5, 2],
      [1, 1],
      /refused the user name and password; put the right credentials in proxy_url/,
    ],
    ["", [5, 0xff], null, /requires a user name and password; put the credentials in proxy_url/],
  ];
  for (const [userInfo, choice, authReply, pattern] of cases) {
    await withFakeProxy(async (conn) => {
      await readRequest(conn, exactly(3));
      await writeAll(conn, new Uint8Array(choice));
      if (authReply === null) return;
      await readRequest(conn, exactly(3 + 5 + 5));
      await writeAll(conn, new Uint8Array(authReply));
    }, async (port) => {
      const proxy = parseProxyUrl(`socks5://${userInfo}127.0.0.1:${port}`, "proxy_url");
      const error = await failure(dialTcp({ ...TARGET, proxy }, timeout()));
      assert.ok(error.permanent, error.message);
      assert.match(error.message, new RegExp(`^the SOCKS5 proxy 127\\.0\\.0\\.1:${port} `));
      assert.match(error.message, pattern);
    });
  }
});

Deno.test("SOCKS5 (hostile): a bad version, an unknown address type, a failure code, a method not offered", async () => {
  const cases: [number[], number[] | null, RegExp][] = [
    [[4, 0], null, /answered with version 0x04, not SOCKS5/],
    [
      [5, 0],
      [5, 0, 0, 9, 1, 2, 3, 4, 0, 0],
      /answered CONNECT tunnel\.example:8443 with an unknown address type 0x09/,
    ],
    [[5, 0], [6, 0, 0, 1, 0, 0, 0, 0, 0, 0], /answered with version 0x06, not SOCKS5/],
    [[5, 0], [5, 5, 0, 1, 0, 0, 0, 0, 0, 0], /could not connect to tunnel\.example:8443: connection refused/],
    [[5, 0], [5, 0x42, 0, 1, 0, 0, 0, 0, 0, 0], /unknown reply code 0x42/],
    [[5, 2], null, /chose authentication method 0x02, which was not offered/],
    [[5, 0], [5, 0, 0, 1, 0, 0], /closed the connection before answering CONNECT/],
  ];
  for (const [choice, reply, pattern] of cases) {
    await withFakeProxy(async (conn) => {
      await readRequest(conn, exactly(3));
      await writeAll(conn, new Uint8Array(choice));
      if (reply === null) return;
      await readRequest(conn, exactly(5 + 14 + 2));
      await writeAll(conn, new Uint8Array(reply));
    }, async (port) => {
      const proxy = parseProxyUrl(`socks5://127.0.0.1:${port}`, "proxy_url");
      const error = await failure(dialTcp({ ...TARGET, proxy }, timeout()));
      assert.match(error.message, pattern);
      assert.equal(error.permanent, false);
    });
  }
});

Deno.test("connectNodeSocket: hands node:tls a socket past the proxy's answer, with no byte lost", async () => {
  await withFakeProxy(async (conn) => {
    await readRequest(conn, headerDone);
    await writeAll(conn, encoder.encode("HTTP/1.1 200 OK\r\n\r\n"));
    await echoOnce(conn);
  }, async (port) => {
    const proxy = parseProxyUrl(`http://127.0.0.1:${port}`, "proxy_url");
    const socket = await connectNodeSocket(proxy, TARGET, timeout());
    try {
      const echoed = new Promise<string>((resolve) =>
        socket.once("data", (chunk) => resolve(decoder.decode(chunk)))
      );
      socket.resume();
      socket.write("pong");
      assert.equal(await echoed, "pong");
    } finally {
      await new Promise<void>((resolve) => {
        socket.once("close", () => resolve());
        socket.destroy();
      });
    }
  });
});

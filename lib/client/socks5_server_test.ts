import assert from "node:assert/strict";
import { HeadError, HeadReader } from "./forwarder_head.ts";
import { readSocks5Request, Socks5Refusal, socks5Reply } from "./socks5_server.ts";

function handshake(input: number[], credentials: { username: string; password: string } | null = null) {
  const chunks = [new Uint8Array(input)];
  const written: number[] = [];
  const conn = {
    read(buffer: Uint8Array): Promise<number | null> {
      const chunk = chunks.shift();
      if (chunk === undefined) return Promise.resolve(null);
      buffer.set(chunk.subarray(0, buffer.length));
      if (chunk.length > buffer.length) chunks.unshift(chunk.subarray(buffer.length));
      return Promise.resolve(Math.min(chunk.length, buffer.length));
    },
    write(data: Uint8Array) {
      written.push(...data);
      return Promise.resolve(data.length);
    },
  };
  const reader = new HeadReader(conn, new AbortController().signal);
  return { result: readSocks5Request(reader, conn, credentials), written, reader };
}

const name = (host: string) => [host.length, ...new TextEncoder().encode(host)];

async function refusal(run: ReturnType<typeof handshake>): Promise<Socks5Refusal> {
  try {
    await run.result;
  } catch (error) {
    if (error instanceof Socks5Refusal) return error;
    throw error;
  }
  assert.fail("accepted");
}

Deno.test("SOCKS5 CONNECT to a domain, an IPv4 and an IPv6 address without authentication", async () => {
  const domain = handshake([5, 1, 0, 5, 1, 0, 3, ...name("example.com"), 0x01, 0xbb, 0x42]);
  assert.deepEqual(await domain.result, { host: "example.com", port: 443 });
  assert.deepEqual(domain.written, [5, 0], "method none chosen; the reply is the caller's");
  assert.deepEqual([...domain.reader.rest()], [0x42], "early data stays for the destination");
  const v4 = handshake([5, 2, 2, 0, 5, 1, 0, 1, 93, 184, 215, 14, 0, 80]);
  assert.deepEqual(await v4.result, { host: "93.184.215.14", port: 80 });
  const v6 = handshake([
    5,
    1,
    0,
    5,
    1,
    0,
    4,
    0x20,
    0x01,
    0x0d,
    0xb8,
    ...new Array(11).fill(0),
    1,
    0x1f,
    0x90,
  ]);
  assert.deepEqual(await v6.result, { host: "2001:db8:0:0:0:0:0:1", port: 8080 });
});

Deno.test("SOCKS5 user/password authentication: right pair accepted, wrong pair answered 0x01", async () => {
  const credentials = { username: "alice", password: "pw" };
  const good = handshake(
    [5, 1, 2, 1, ...name("alice"), ...name("pw"), 5, 1, 0, 1, 1, 2, 3, 4, 0, 80],
    credentials,
  );
  assert.deepEqual(await good.result, { host: "1.2.3.4", port: 80 });
  assert.deepEqual(good.written, [5, 2, 1, 0]);
  const bad = handshake([5, 1, 2, 1, ...name("alice"), ...name("no")], credentials);
  const refused = await refusal(bad);
  assert.equal(refused.failure.kind, "auth_required");
  assert.deepEqual([...refused.answer ?? []], [1, 1]);
  const noAuthOffered = await refusal(handshake([5, 1, 0], credentials));
  assert.deepEqual([...noAuthOffered.answer ?? []], [5, 0xff]);
});

Deno.test("hostile SOCKS5 handshakes get the RFC's reply codes or are closed", async () => {
  const notSocks = await refusal(handshake([4, 1, 0, 80, 1, 2, 3, 4, 0]));
  assert.equal(notSocks.answer, null, "SOCKS4 or garbage: closed without a SOCKS5 answer");
  assert.deepEqual([...(await refusal(handshake([5, 0]))).answer ?? []], [5, 0xff], "no methods");
  assert.deepEqual(
    [...(await refusal(handshake([5, 1, 2]))).answer ?? []],
    [5, 0xff],
    "no acceptable method",
  );
  const bind = await refusal(handshake([5, 1, 0, 5, 2, 0, 1, 1, 2, 3, 4, 0, 80]));
  assert.deepEqual([...bind.answer ?? []], [...socks5Reply(0x07)], "BIND: command not supported");
  const udp = await refusal(handshake([5, 1, 0, 5, 3, 0, 1, 1, 2, 3, 4, 0, 80]));
  assert.equal(udp.answer?.[1], 0x07);
  const addressType = await refusal(handshake([5, 1, 0, 5, 1, 0, 9, 1, 2, 3, 4, 0, 80]));
  assert.equal(addressType.answer?.[1], 0x08, "unknown address type");
  const badName = await refusal(handshake([5, 1, 0, 5, 1, 0, 3, ...name("bad name!"), 0, 80]));
  assert.equal(badName.answer?.[1], 0x01);
  const portZero = await refusal(handshake([5, 1, 0, 5, 1, 0, 1, 1, 2, 3, 4, 0, 0]));
  assert.equal(portZero.answer?.[1], 0x01);
  const reserved = await refusal(handshake([5, 1, 0, 5, 1, 7, 1, 1, 2, 3, 4, 0, 80]));
  assert.equal(reserved.answer?.[1], 0x01);
  const wrongVersion = await refusal(handshake([5, 1, 0, 4, 1, 0, 1, 1, 2, 3, 4, 0, 80]));
  assert.equal(wrongVersion.answer?.[1], 0x01);
});

Deno.test("a SOCKS5 handshake cut short is a closed HeadError", async () => {
  for (const input of [[5], [5, 3, 0], [5, 1, 0, 5, 1, 0, 3, 20, 0x61], [5, 1, 0, 5, 1, 0, 1, 1, 2]]) {
    await assert.rejects(
      handshake(input).result,
      (error: unknown) => error instanceof HeadError && error.kind === "closed",
      JSON.stringify(input),
    );
  }
});

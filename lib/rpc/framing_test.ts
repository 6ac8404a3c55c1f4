import assert from "node:assert/strict";
import { concatBytes } from "../../testing/bytes.ts";
import fc from "fast-check";
import { type DuplexConn, writeAll } from "../net/conn.ts";
import { memoryPair } from "../net/memory_pair.ts";
import {
  DEFAULT_MAX_FRAME_BYTES,
  encodeFrame,
  FRAME_HEADER_BYTES,
  FrameReader,
  FrameTooLargeError,
  FrameWriter,
  MalformedJsonError,
  MAX_JSON_DEPTH,
  nestingExceeds,
  TruncatedFrameError,
} from "./framing.ts";

const concat = (...parts: Uint8Array[]) => concatBytes(parts);

/** A read side that hands out exactly the given chunks, one per read, then end of stream. */
function scriptedConn(chunks: readonly Uint8Array[]): Pick<DuplexConn, "read"> & { reads: number } {
  let index = 0;
  let offset = 0;
  const conn = {
    reads: 0,
    read(buffer: Uint8Array): Promise<number | null> {
      conn.reads++;
      while (index < chunks.length && (chunks[index] as Uint8Array).length === offset) {
        index++;
        offset = 0;
      }
      const chunk = chunks[index];
      if (chunk === undefined) return Promise.resolve(null);
      const count = Math.min(buffer.length, chunk.length - offset);
      buffer.set(chunk.subarray(offset, offset + count));
      offset += count;
      return Promise.resolve(count);
    },
  };
  return conn;
}

/** A frame with an arbitrary body (not necessarily JSON). */
function rawFrame(body: Uint8Array, declaredBytes = body.length): Uint8Array {
  const frame = new Uint8Array(FRAME_HEADER_BYTES + body.length);
  new DataView(frame.buffer).setUint32(0, declaredBytes, false);
  frame.set(body, FRAME_HEADER_BYTES);
  return frame;
}

/** Reads every frame until end of stream. */
async function readAll(reader: FrameReader): Promise<unknown[]> {
  const values: unknown[] = [];
  for (let value = await reader.next(); value !== null; value = await reader.next()) values.push(value);
  return values;
}

/** What a JSON value becomes after a trip through JSON (e.g. -0 becomes 0). */
function viaJson(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value));
}

Deno.test("encodeFrame prefixes the UTF-8 byte length in big-endian order", () => {
  const message = { text: "héllo ✓ 😀" };
  const frame = encodeFrame(message);
  const body = new TextEncoder().encode(JSON.stringify(message));
  assert.equal(new DataView(frame.buffer, frame.byteOffset).getUint32(0, false), body.length);
  assert.deepEqual(frame.subarray(FRAME_HEADER_BYTES), body);
  assert.equal(frame.length, FRAME_HEADER_BYTES + body.length);
});

Deno.test("encodeFrame accepts a body of exactly the limit and refuses one byte more", () => {
  const fits = "x".repeat(98); // JSON adds two quotes: 100 bytes
  assert.equal(encodeFrame(fits, 100).length, FRAME_HEADER_BYTES + 100);
  assert.throws(() => encodeFrame(fits + "é", 100), (error: unknown) => {
    assert.ok(error instanceof FrameTooLargeError);
    assert.equal(error.frameBytes, 102);
    assert.equal(error.maxFrameBytes, 100);
    assert.equal(error.direction, "send");
    assert.match(error.message, /102 bytes.*100 bytes/);
    return true;
  });
});

Deno.test("encodeFrame rejects values JSON cannot represent", () => {
  assert.throws(() => encodeFrame(undefined), TypeError);
  assert.throws(() => encodeFrame({ big: 1n }), TypeError);
});

Deno.test("FrameReader decodes frames written over a memory pair and returns null at end of stream", async () => {
  const [a, b] = memoryPair();
  const messages = [{ jsonrpc: "2.0", method: "ping" }, [1, 2, 3], "text", 42, { nested: { ü: [true] } }];
  for (const message of messages) await writeAll(a, encodeFrame(message));
  await a.closeWrite();
  const reader = new FrameReader(b);
  assert.deepEqual(await readAll(reader), messages);
  assert.equal(await reader.next(), null, "end of stream is sticky");
  a.close();
  b.close();
});

Deno.test("FrameReader reassembles frames split at every byte boundary", async () => {
  const stream = concat(encodeFrame({ id: 1, text: "ü✓😀" }), encodeFrame([null, "second"]));
  const expected = [{ id: 1, text: "ü✓😀" }, [null, "second"]];
  for (let split = 0; split <= stream.length; split++) {
    const reader = new FrameReader(scriptedConn([stream.subarray(0, split), stream.subarray(split)]));
    assert.deepEqual(await readAll(reader), expected, `split at byte ${split}`);
  }
  const oneByteAtATime = [...stream].map((byte) => Uint8Array.of(byte));
  const conn = scriptedConn(oneByteAtATime);
  assert.deepEqual(await readAll(new FrameReader(conn)), expected);
  assert.equal(conn.reads, stream.length + 1, "one read per byte, then end of stream");
});

Deno.test("FrameReader reassembles any JSON values under any chunking", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.jsonValue({ maxDepth: 3 }).filter((value) => value !== null), { maxLength: 8 }),
      fc.array(fc.nat(), { maxLength: 20 }),
      async (values, cutPoints) => {
        const stream = concat(...values.map((value) => encodeFrame(value)));
        const cuts = [...new Set(cutPoints.map((cut) => cut % (stream.length + 1)))].sort((x, y) => x - y);
        const bounds = [0, ...cuts, stream.length];
        // Empty chunks included: a read of zero bytes must not be mistaken for end of stream.
        const chunks = bounds.slice(1).map((end, i) => stream.subarray(bounds[i], end));
        const decoded = await readAll(new FrameReader(scriptedConn(chunks)));
        assert.deepEqual(decoded, values.map(viaJson));
      },
    ),
    { numRuns: 200 },
  );
});

Deno.test("FrameReader handles frames larger than its initial buffer and keeps reading after them", async () => {
  const big = { blob: "z".repeat(300_000) };
  const stream = concat(encodeFrame(big), encodeFrame("after"));
  const chunks: Uint8Array[] = [];
  for (let offset = 0; offset < stream.length; offset += 7919) {
    chunks.push(stream.subarray(offset, offset + 7919));
  }
  assert.deepEqual(await readAll(new FrameReader(scriptedConn(chunks))), [big, "after"]);
});

Deno.test("FrameReader rejects a declared length above the limit with the size and the limit, for good", async () => {
  const stream = concat(encodeFrame("ok"), rawFrame(new Uint8Array(0), 1001), new Uint8Array(50));
  const reader = new FrameReader(scriptedConn([stream]), { maxFrameBytes: 1000 });
  assert.equal(await reader.next(), "ok");
  const error = await reader.next().then(() => assert.fail("expected FrameTooLargeError"), (e: unknown) => e);
  assert.ok(error instanceof FrameTooLargeError);
  assert.equal(error.frameBytes, 1001);
  assert.equal(error.maxFrameBytes, 1000);
  assert.equal(error.direction, "receive");
  assert.match(error.message, /1001 bytes exceeds the limit of 1000 bytes/);
  await assert.rejects(reader.next(), (again: unknown) => again === error);
});

Deno.test("FrameReader's default limit is 1 MiB", async () => {
  assert.equal(DEFAULT_MAX_FRAME_BYTES, 1024 * 1024);
  const atLimit = new FrameReader(scriptedConn([rawFrame(new Uint8Array(0), DEFAULT_MAX_FRAME_BYTES)]));
  await assert.rejects(
    atLimit.next(),
    TruncatedFrameError,
    "a 1 MiB frame is accepted, then found truncated",
  );
  const overLimit = new FrameReader(scriptedConn([rawFrame(new Uint8Array(0), DEFAULT_MAX_FRAME_BYTES + 1)]));
  await assert.rejects(overLimit.next(), FrameTooLargeError);
});

Deno.test("FrameReader reports end of stream inside the prefix or the body as a truncated frame", async () => {
  const full = encodeFrame({ hello: "world" });
  for (const cut of [1, 3, FRAME_HEADER_BYTES, full.length - 1]) {
    const reader = new FrameReader(scriptedConn([full.subarray(0, cut)]));
    const error = await reader.next().then(
      () => assert.fail("expected TruncatedFrameError"),
      (e: unknown) => e,
    );
    assert.ok(error instanceof TruncatedFrameError, `cut at ${cut}`);
    assert.equal(error.receivedBytes, cut);
    assert.equal(error.expectedBytes, cut < FRAME_HEADER_BYTES ? FRAME_HEADER_BYTES : full.length);
    await assert.rejects(reader.next(), TruncatedFrameError);
  }
});

Deno.test("FrameReader reports malformed JSON and invalid UTF-8 and then reads the next frame", async () => {
  const notJson = rawFrame(new TextEncoder().encode("{not json"));
  const notUtf8 = rawFrame(Uint8Array.of(0x22, 0xff, 0xfe, 0x22));
  const empty = rawFrame(new Uint8Array(0));
  const bareNull = encodeFrame(null);
  const reader = new FrameReader(
    scriptedConn([concat(notJson, notUtf8, empty, bareNull, encodeFrame({ fine: true }))]),
  );
  const first = await reader.next().then(() => assert.fail("expected MalformedJsonError"), (e: unknown) => e);
  assert.ok(first instanceof MalformedJsonError);
  assert.equal(first.frameBytes, 9);
  const second = await reader.next().then(
    () => assert.fail("expected MalformedJsonError"),
    (e: unknown) => e,
  );
  assert.ok(second instanceof MalformedJsonError);
  assert.match(second.message, /UTF-8/);
  await assert.rejects(reader.next(), MalformedJsonError, "an empty body is not JSON");
  await assert.rejects(reader.next(), /bare JSON null/, "null would look like end of stream");
  assert.deepEqual(await reader.next(), { fine: true });
  assert.equal(await reader.next(), null);
});

Deno.test("FrameReader refuses a second next() while one is pending", async () => {
  const [a, b] = memoryPair();
  const reader = new FrameReader(b);
  const first = reader.next();
  await assert.rejects(reader.next(), /still pending/);
  await writeAll(a, encodeFrame("done"));
  assert.equal(await first, "done");
  a.close();
  b.close();
});

Deno.test("FrameReader fed random bytes only ever returns values or typed errors, and stops", async () => {
  const fatal = (error: unknown) =>
    error instanceof FrameTooLargeError || error instanceof TruncatedFrameError;
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(
        fc.uint8Array({ maxLength: 600 }),
        // Plausible prefixes make the body paths (JSON, UTF-8, truncation) reachable too.
        fc.tuple(fc.nat({ max: 300 }), fc.uint8Array({ maxLength: 300 })).map(([length, body]) =>
          rawFrame(body, length)
        ),
        fc.array(fc.tuple(fc.nat({ max: 40 }), fc.uint8Array({ maxLength: 40 })), { maxLength: 6 }).map((
          frames,
        ) => concat(...frames.map(([length, body]) => rawFrame(body, length)))),
      ),
      fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 10 }),
      async (bytes, chunkSizes) => {
        const chunks: Uint8Array[] = [];
        for (let offset = 0, i = 0; offset < bytes.length; i++) {
          const size = chunkSizes[i % chunkSizes.length] as number;
          chunks.push(bytes.subarray(offset, offset + size));
          offset += size;
        }
        const reader = new FrameReader(scriptedConn(chunks), { maxFrameBytes: 256 });
        // Each successful or malformed frame consumes at least 4 bytes, so this bounds a correct reader.
        const maxCalls = Math.floor(bytes.length / FRAME_HEADER_BYTES) + 2;
        for (let call = 0;; call++) {
          assert.ok(call < maxCalls, "the reader made no progress");
          try {
            if (await reader.next() === null) return;
          } catch (error) {
            if (error instanceof MalformedJsonError) continue;
            assert.ok(fatal(error), `unexpected error ${error}`);
            return;
          }
        }
      },
    ),
    { numRuns: 1000 },
  );
});

Deno.test("FrameWriter never interleaves concurrent frames, even over short writes", async () => {
  const [a, b] = memoryPair({ capacityBytes: 13 });
  const writer = new FrameWriter(a);
  const messages = Array.from({ length: 40 }, (_, i) => ({ i, pad: "p".repeat(i * 37) }));
  const reading = readAll(new FrameReader(b));
  await Promise.all(messages.map((message) => writer.write(message)));
  await a.closeWrite();
  assert.deepEqual(await reading, messages);
  a.close();
  b.close();
});

Deno.test("FrameWriter refuses an oversized message without writing anything and stays usable", async () => {
  const [a, b] = memoryPair();
  const writer = new FrameWriter(a, { maxFrameBytes: 64 });
  await assert.rejects(writer.write({ blob: "x".repeat(100) }), FrameTooLargeError);
  await writer.write("small");
  await a.closeWrite();
  assert.deepEqual(await readAll(new FrameReader(b)), ["small"]);
  a.close();
  b.close();
});

Deno.test("frame limits must be positive integers that fit the u32 prefix", () => {
  const conn = scriptedConn([]);
  for (const bad of [0, -1, 1.5, 2 ** 32, Number.NaN]) {
    assert.throws(() => new FrameReader(conn, { maxFrameBytes: bad }), RangeError);
  }
});

/** Nesting depth of a JSON value: 0 for a scalar, 1 for `[]`, 2 for `[[]]`… */
function jsonDepth(value: unknown): number {
  if (value === null || typeof value !== "object") return 0;
  const children = Array.isArray(value) ? value : Object.values(value);
  return 1 + children.reduce((max: number, child) => Math.max(max, jsonDepth(child)), 0);
}

Deno.test("nestingExceeds agrees with the real depth of any JSON text, strings with brackets and escapes included", () => {
  const encoder = new TextEncoder();
  const tricky = fc.string({ unit: fc.constantFrom("[", "]", "{", "}", '"', "\\", "a", "é", "𝄞") });
  const value = fc.letrec((tie) => ({
    node: fc.oneof(
      { depthSize: "small" },
      tricky,
      fc.integer(),
      fc.array(tie("node"), { maxLength: 3 }),
      fc.dictionary(tricky, tie("node"), { maxKeys: 3 }),
    ),
  })).node;
  fc.assert(fc.property(value, fc.integer({ min: 0, max: 8 }), (json, maxDepth) => {
    const bytes = encoder.encode(JSON.stringify(json));
    assert.equal(nestingExceeds(bytes, maxDepth), jsonDepth(json) > maxDepth);
  }));
});

Deno.test("a control frame nested deeper than MAX_JSON_DEPTH is refused unparsed and the next frame is read", async () => {
  const deep = 200_000;
  const body = new TextEncoder().encode(
    `{"jsonrpc":"2.0","id":7,"method":"heartbeat","params":${"[".repeat(deep)}${"]".repeat(deep)}}`,
  );
  const prefix = new Uint8Array(FRAME_HEADER_BYTES);
  new DataView(prefix.buffer).setUint32(0, body.length);
  let atLimit: unknown = 1;
  for (let level = 0; level < MAX_JSON_DEPTH; level++) atLimit = [atLimit];
  const reader = new FrameReader(
    scriptedConn([prefix, body, encodeFrame(atLimit), encodeFrame({ jsonrpc: "2.0", id: 8, result: null })]),
  );
  const refused = await reader.next().then(
    () => assert.fail("expected MalformedJsonError"),
    (e: unknown) => e,
  );
  assert.ok(refused instanceof MalformedJsonError);
  assert.match(refused.message, new RegExp(`nested deeper than ${MAX_JSON_DEPTH} levels`));
  assert.deepEqual(await reader.next(), atLimit, "exactly MAX_JSON_DEPTH levels are accepted");
  assert.deepEqual(await reader.next(), { jsonrpc: "2.0", id: 8, result: null });
});

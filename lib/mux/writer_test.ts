/**
 * Unit tests of the session's writer: batching, round robin, zero-copy, bounds, failures (`writer.ts`).
 *
 * @module
 */

import assert from "node:assert/strict";
import { Flag, FrameType, HEADER_SIZE_BYTES, SESSION_STREAM_ID } from "./constants.ts";
import { FrameDecoder } from "./decoder.ts";
import { ProtocolError, SessionClosedError } from "./errors.ts";
import type { Frame } from "./frame.ts";
import {
  FrameWriter,
  type FrameWriterOptions,
  LAZY_CONTROL_DELAY_MS,
  MAX_CONTROL_BACKLOG_BYTES,
  type SendSource,
} from "./writer.ts";
import type { SessionEnd } from "./_internal.ts";

const KIB = 1024;

/** A connection that records every write (a copy of the bytes, and the view it was given). */
class RecordingConn {
  readonly writes: Uint8Array[] = [];
  readonly views: Uint8Array[] = [];
  /** Resolves each write at once unless set: then writes wait for it. */
  gate: Promise<void> | null = null;
  /** Makes every write fail with this. */
  failure: Error | null = null;

  async write(bytes: Uint8Array): Promise<number> {
    if (this.gate !== null) await this.gate;
    if (this.failure !== null) throw this.failure;
    this.writes.push(bytes.slice());
    this.views.push(bytes);
    return bytes.length;
  }

  frames(): Frame[] {
    const decoder = new FrameDecoder();
    for (const chunk of this.writes) decoder.push(chunk);
    const frames: Frame[] = [];
    for (let frame = decoder.next(); frame !== null; frame = decoder.next()) frames.push(frame);
    return frames;
  }
}

/** A stream's send side with `data` to send and unlimited window (or `windowBytes`). */
class FakeSource implements SendSource {
  offset = 0;
  /** Zero-copy pieces handed out and not yet reported written. */
  unwritten = 0;
  constructor(readonly id: number, readonly data: Uint8Array, public windowBytes = Infinity) {}
  sendableBytes(): number {
    return Math.min(this.data.length - this.offset, this.windowBytes);
  }
  takeSendBytes(count: number): Uint8Array {
    const bytes = this.data.subarray(this.offset, this.offset + count);
    this.offset += count;
    this.windowBytes -= count;
    return bytes;
  }
  takeSendBytesZeroCopy(count: number): { bytes: Uint8Array; written: () => void } {
    this.unwritten++;
    return { bytes: this.takeSendBytes(count), written: () => this.unwritten-- };
  }
}

function setup(options: Partial<FrameWriterOptions> = {}) {
  const conn = new RecordingConn();
  const failures: SessionEnd[] = [];
  const writer = new FrameWriter(conn, {
    writeBatchBytes: 1024 * KIB,
    maxDataFrameBytes: 256 * KIB,
    zeroCopyMinBytes: 0,
    ...options,
  }, (end) => failures.push(end));
  return { conn, writer, failures };
}

function pattern(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (i * 31 + seed) & 0xff;
  return bytes;
}

Deno.test("control frames queued in one tick go out in one connection write", async () => {
  const { conn, writer } = setup();
  writer.queueControl(FrameType.WindowUpdate, Flag.SYN, 1, 0);
  writer.queueControl(FrameType.Ping, Flag.SYN, SESSION_STREAM_ID, 7);
  writer.queueControl(FrameType.WindowUpdate, Flag.FIN, 1, 0);
  await writer.waitIdle(Infinity);
  assert.equal(conn.writes.length, 1);
  assert.equal(conn.writes[0]?.length, 3 * HEADER_SIZE_BYTES);
  assert.deepEqual(
    conn.frames().map((frame) => [frame.header.type, frame.header.flags, frame.header.length]),
    [[FrameType.WindowUpdate, Flag.SYN, 0], [FrameType.Ping, Flag.SYN, 7], [
      FrameType.WindowUpdate,
      Flag.FIN,
      0,
    ]],
  );
});

Deno.test("a lazy control frame rides with the next frames written, in one connection write", async () => {
  const { conn, writer } = setup();
  writer.queueLazyControl(FrameType.WindowUpdate, Flag.ACK, 2, 0);
  // A turn of the event loop passes: the ACK alone is not written.
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.equal(conn.writes.length, 0);
  writer.wantsToSend(new FakeSource(2, pattern(100, 1)));
  await writer.waitIdle(Infinity);
  assert.equal(conn.writes.length, 1);
  assert.deepEqual(
    conn.frames().map((frame) => [frame.header.type, frame.header.flags, frame.header.streamId]),
    [[FrameType.WindowUpdate, Flag.ACK, 2], [FrameType.Data, 0, 2]],
  );
});

Deno.test("a lazy control frame with nothing to ride with goes alone after LAZY_CONTROL_DELAY_MS", async () => {
  const { conn, writer } = setup();
  const startedMs = performance.now();
  writer.queueLazyControl(FrameType.WindowUpdate, Flag.ACK, 2, 0);
  writer.queueLazyControl(FrameType.WindowUpdate, Flag.ACK, 4, 0);
  await writer.waitIdle(1000);
  const elapsedMs = performance.now() - startedMs;
  assert.equal(conn.writes.length, 1, "both ACKs in one write");
  assert.deepEqual(conn.frames().map((frame) => frame.header.streamId), [2, 4]);
  assert.ok(elapsedMs >= LAZY_CONTROL_DELAY_MS - 1, `written after ${elapsedMs} ms`);
  assert.ok(elapsedMs < 500, `written after ${elapsedMs} ms`);
});

Deno.test("stop() writes lazy control frames at once, and leaves no timer behind", async () => {
  const { conn, writer } = setup();
  writer.queueLazyControl(FrameType.WindowUpdate, Flag.ACK, 2, 0);
  writer.stop({ type: FrameType.GoAway, flags: 0, streamId: SESSION_STREAM_ID, length: 0 });
  await writer.waitIdle(Infinity);
  assert.deepEqual(conn.frames().map((frame) => frame.header.type), [
    FrameType.WindowUpdate,
    FrameType.GoAway,
  ]);
  // The test's sanitizers fail it if the lazy timer were still pending.
});

Deno.test("streams that want to send take turns, one frame each", async () => {
  // One frame per batch: stream 1's first frame fills the batch before stream 3 asks; from then on the
  // two alternate until stream 1 has nothing left.
  const { conn, writer } = setup({
    maxDataFrameBytes: 16 * KIB,
    writeBatchBytes: 16 * KIB + HEADER_SIZE_BYTES,
  });
  const a = new FakeSource(1, pattern(48 * KIB, 1));
  const b = new FakeSource(3, pattern(48 * KIB, 2));
  writer.wantsToSend(a);
  writer.wantsToSend(b);
  await writer.waitIdle(Infinity);
  const frames = conn.frames();
  assert.deepEqual(frames.map((frame) => frame.header.streamId), [1, 1, 3, 1, 3, 3]);
  assert.ok(
    frames.every((frame) => frame.header.type === FrameType.Data && frame.payload.length === 16 * KIB),
  );
  const sent = (id: number) =>
    frames.filter((frame) => frame.header.streamId === id).map((frame) => frame.payload);
  assert.deepEqual(concat(sent(1)), a.data);
  assert.deepEqual(concat(sent(3)), b.data);
});

Deno.test("a stream that wants to send again while queued is queued once", async () => {
  const { conn, writer } = setup({
    maxDataFrameBytes: 16 * KIB,
    writeBatchBytes: 16 * KIB + HEADER_SIZE_BYTES,
  });
  const a = new FakeSource(1, pattern(32 * KIB, 3));
  writer.wantsToSend(a);
  writer.wantsToSend(a);
  await writer.waitIdle(Infinity);
  assert.deepEqual(conn.frames().map((frame) => frame.payload.length), [16 * KIB, 16 * KIB]);
});

Deno.test("data in one batch stays within writeBatchBytes; the rest follows in order", async () => {
  const batchBytes = 64 * KIB;
  const { conn, writer } = setup({ writeBatchBytes: batchBytes, maxDataFrameBytes: 32 * KIB });
  const source = new FakeSource(1, pattern(512 * KIB, 4));
  writer.wantsToSend(source);
  await writer.waitIdle(Infinity);
  assert.ok(conn.writes.length >= 8, `${conn.writes.length} writes`);
  for (const write of conn.writes) assert.ok(write.length <= batchBytes, `a ${write.length}-byte write`);
  assert.deepEqual(concat(conn.frames().map((frame) => frame.payload)), source.data);
});

Deno.test("a stream without send window is skipped until it wants to send again", async () => {
  const { conn, writer } = setup({ maxDataFrameBytes: 16 * KIB });
  const source = new FakeSource(1, pattern(64 * KIB, 5), 32 * KIB);
  writer.wantsToSend(source);
  await writer.waitIdle(Infinity);
  assert.equal(source.offset, 32 * KIB);
  source.windowBytes = 32 * KIB;
  writer.wantsToSend(source);
  await writer.waitIdle(Infinity);
  assert.deepEqual(concat(conn.frames().map((frame) => frame.payload)), source.data);
});

Deno.test("large payloads are written from the stream's buffer, and reported written only after the write", async () => {
  const { conn, writer } = setup({ zeroCopyMinBytes: 64 * KIB, maxDataFrameBytes: 128 * KIB });
  const source = new FakeSource(1, pattern(256 * KIB, 6));
  let release = () => {};
  conn.gate = new Promise((resolve) => (release = resolve));
  writer.wantsToSend(source);
  await Promise.resolve();
  assert.equal(source.unwritten, 2, "both pieces are taken and wait for the connection");
  release();
  await writer.waitIdle(Infinity);
  assert.equal(source.unwritten, 0);
  const fromSource = conn.views.filter((view) => view.buffer === source.data.buffer);
  assert.deepEqual(fromSource.map((view) => view.length), [128 * KIB, 128 * KIB]);
  assert.deepEqual(concat(conn.frames().map((frame) => frame.payload)), source.data);
});

Deno.test("a failed connection write ends the session once, as a connection error", async () => {
  const { conn, writer, failures } = setup();
  conn.failure = new Error("broken pipe");
  writer.queueControl(FrameType.Ping, Flag.SYN, SESSION_STREAM_ID, 1);
  await writer.waitIdle(Infinity);
  assert.equal(failures.length, 1);
  assert.equal(failures[0]?.reason, "conn-error");
  assert.ok(failures[0]?.error instanceof SessionClosedError);
  assert.match(failures[0].error.message, /writing the yamux connection failed: Error: broken pipe/);
  assert.ok(writer.idle);
});

Deno.test("control frames piling up beyond the backlog bound end the session as a protocol error", async () => {
  const { conn, writer, failures } = setup({ writeBatchBytes: 16 * KIB });
  let release = () => {};
  conn.gate = new Promise((resolve) => (release = resolve));
  writer.queueControl(FrameType.Ping, Flag.SYN, SESSION_STREAM_ID, 0);
  await Promise.resolve(); // the writer loop starts and waits on the connection
  const frames = MAX_CONTROL_BACKLOG_BYTES / HEADER_SIZE_BYTES + 1;
  for (let i = 0; i < frames && failures.length === 0; i++) {
    writer.queueControl(FrameType.Ping, Flag.ACK, 0, i);
  }
  assert.equal(failures.length, 1);
  assert.equal(failures[0]?.reason, "protocol-error");
  assert.ok(failures[0]?.error instanceof ProtocolError);
  assert.match(failures[0].error.message, /stopped reading/);
  writer.stop();
  release();
  await writer.waitIdle(Infinity);
});

Deno.test("after stop() only the last frame given to it is written", async () => {
  const { conn, writer } = setup();
  writer.stop({ type: FrameType.GoAway, flags: 0, streamId: SESSION_STREAM_ID, length: 0 });
  writer.queueControl(FrameType.Ping, Flag.SYN, SESSION_STREAM_ID, 1);
  writer.wantsToSend(new FakeSource(1, pattern(KIB, 7)));
  await writer.waitIdle(Infinity);
  assert.deepEqual(conn.frames().map((frame) => frame.header.type), [FrameType.GoAway]);
});

Deno.test("waitIdle gives up after its timeout while a write hangs", async () => {
  const { conn, writer } = setup();
  let release = () => {};
  conn.gate = new Promise((resolve) => (release = resolve));
  writer.queueControl(FrameType.Ping, Flag.SYN, SESSION_STREAM_ID, 1);
  await writer.waitIdle(20);
  assert.equal(writer.idle, false);
  release();
  await writer.waitIdle(Infinity);
  assert.ok(writer.idle);
});

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

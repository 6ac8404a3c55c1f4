/**
 * Codec cases of the mux section: how fast the frame decoder and header encoder handle a buffer of many
 * small frames, compared with a plain memory copy of the same bytes (the least any codec must do).
 *
 * The frame mix is small on purpose: bulk data frames (64-256 KiB) cost the decoder one `subarray`, so
 * small frames (interactive traffic, window updates) are where the codec's per-frame cost shows.
 *
 * @module
 */

import { Flag, FrameType, HEADER_SIZE_BYTES } from "../../lib/mux/constants.ts";
import { FrameDecoder } from "../../lib/mux/decoder.ts";
import { writeHeader } from "../../lib/mux/frame.ts";
import type { BenchCase, BenchContext } from "../_harness.ts";

/** Payload sizes cycled through by the data frames of the mix. */
const DATA_PAYLOAD_SIZES = [16, 64, 256, 1024] as const;
/** Frames in the buffer: every other one a data frame, the rest window updates. */
const FRAME_COUNT = 100_000;
/** Read size for the chunked decode case, like a socket read. */
const DECODE_CHUNK_BYTES = 64 * 1024;

/** A description of one frame of the mix, to encode from. */
interface FrameSpec {
  type: number;
  flags: number;
  streamId: number;
  /** Window delta for window updates; payload length for data. */
  length: number;
  payload: Uint8Array;
}

function buildFrameMix(): { specs: FrameSpec[]; encoded: Uint8Array; payloadBytes: number } {
  const specs: FrameSpec[] = [];
  const payloads = DATA_PAYLOAD_SIZES.map((size) => {
    const payload = new Uint8Array(size);
    crypto.getRandomValues(payload);
    return payload;
  });
  let totalBytes = 0;
  let payloadBytes = 0;
  for (let index = 0; index < FRAME_COUNT; index++) {
    const streamId = 1 + 2 * (index % 64);
    if (index % 2 === 0) {
      const payload = payloads[(index / 2) % payloads.length] ?? new Uint8Array(0);
      specs.push({ type: FrameType.Data, flags: 0, streamId, length: payload.length, payload });
      totalBytes += HEADER_SIZE_BYTES + payload.length;
      payloadBytes += payload.length;
    } else {
      const flags = index % 101 === 1 ? Flag.ACK : 0;
      specs.push({
        type: FrameType.WindowUpdate,
        flags,
        streamId,
        length: 65_536,
        payload: new Uint8Array(0),
      });
      totalBytes += HEADER_SIZE_BYTES;
    }
  }
  const encoded = new Uint8Array(totalBytes);
  const written = encodeAll(specs, encoded);
  if (written !== totalBytes) {
    throw new Error(`codec bench: encoded ${written} bytes, expected ${totalBytes}`);
  }
  return { specs, encoded, payloadBytes };
}

/** Encodes every frame into `target` the way a sender does: header, then a copy of the payload. */
function encodeAll(specs: readonly FrameSpec[], target: Uint8Array): number {
  let offset = 0;
  for (const spec of specs) {
    writeHeader(target, offset, spec.type, spec.flags, spec.streamId, spec.length);
    offset += HEADER_SIZE_BYTES;
    if (spec.payload.length > 0) {
      target.set(spec.payload, offset);
      offset += spec.payload.length;
    }
  }
  return offset;
}

/** Decodes `encoded`, pushed in `chunkBytes` pieces; returns the frame count and payload bytes seen. */
function decodeAll(encoded: Uint8Array, chunkBytes: number): { frames: number; payloadBytes: number } {
  const decoder = new FrameDecoder();
  let frames = 0;
  let payloadBytes = 0;
  for (let offset = 0; offset < encoded.length; offset += chunkBytes) {
    decoder.push(encoded.subarray(offset, Math.min(offset + chunkBytes, encoded.length)));
    for (let frame = decoder.next(); frame !== null; frame = decoder.next()) {
      frames++;
      payloadBytes += frame.payload.length;
    }
  }
  if (!decoder.atFrameBoundary) throw new Error("codec bench: decoder left a partial frame at the end");
  return { frames, payloadBytes };
}

/** Repeats `iteration` for at least `minimumMs`; returns millions of frames per second. */
function framesPerSecond(minimumMs: number, iteration: () => void): number {
  let iterations = 0;
  const started = performance.now();
  let elapsedMs = 0;
  do {
    iteration();
    iterations++;
    elapsedMs = performance.now() - started;
  } while (elapsedMs < minimumMs);
  return (iterations * FRAME_COUNT) / 1e6 / (elapsedMs / 1000);
}

/** The codec cases, sharing one pre-built frame mix. */
export function codecCases(context: BenchContext): BenchCase[] {
  const mix = buildFrameMix();
  const minimumMs = context.quick ? 100 : 300;
  const copyTarget = new Uint8Array(mix.encoded.length);
  const encodeTarget = new Uint8Array(mix.encoded.length);
  const params = {
    frames: FRAME_COUNT,
    bufferBytes: mix.encoded.length,
    dataPayloadSizes: DATA_PAYLOAD_SIZES.join("/"),
    mix: "50% data, 50% window update",
  };
  const checkDecoded = (result: { frames: number; payloadBytes: number }) => {
    if (result.frames !== FRAME_COUNT || result.payloadBytes !== mix.payloadBytes) {
      throw new Error(
        `codec bench: decoded ${result.frames} frames / ${result.payloadBytes} payload bytes, ` +
          `expected ${FRAME_COUNT} / ${mix.payloadBytes}`,
      );
    }
  };
  return [
    {
      name: "memcpy same bytes",
      metric: "frames/s",
      unit: "Mframes/s",
      params,
      run: () => Promise.resolve(framesPerSecond(minimumMs, () => copyTarget.set(mix.encoded))),
    },
    {
      name: "codec decode (one buffer)",
      metric: "frames/s",
      unit: "Mframes/s",
      baseline: "memcpy same bytes",
      params,
      run: () =>
        Promise.resolve(
          framesPerSecond(minimumMs, () => checkDecoded(decodeAll(mix.encoded, mix.encoded.length))),
        ),
    },
    {
      name: "codec decode (64 KiB reads)",
      metric: "frames/s",
      unit: "Mframes/s",
      baseline: "memcpy same bytes",
      params: { ...params, chunkBytes: DECODE_CHUNK_BYTES },
      run: () =>
        Promise.resolve(
          framesPerSecond(minimumMs, () => checkDecoded(decodeAll(mix.encoded, DECODE_CHUNK_BYTES))),
        ),
    },
    {
      name: "codec encode",
      metric: "frames/s",
      unit: "Mframes/s",
      baseline: "memcpy same bytes",
      params,
      run: () =>
        Promise.resolve(framesPerSecond(minimumMs, () => {
          const written = encodeAll(mix.specs, encodeTarget);
          if (written !== mix.encoded.length) throw new Error(`codec bench: encode wrote ${written} bytes`);
        })),
    },
  ];
}

/**
 * Unit tests of the FIN-exchange transition table (`stream_state.ts`).
 *
 * @module
 */

import assert from "node:assert/strict";
import { afterFin, localFinished, remoteFinished, StreamState } from "./stream_state.ts";

const { Open, LocalClose, RemoteClose, Closed } = StreamState;

Deno.test("a FIN each way takes a stream from open to closed, in either order", () => {
  assert.equal(afterFin(Open, "local"), LocalClose);
  assert.equal(afterFin(LocalClose, "remote"), Closed);
  assert.equal(afterFin(Open, "remote"), RemoteClose);
  assert.equal(afterFin(RemoteClose, "local"), Closed);
});

Deno.test("a second FIN from the same side has nowhere to go", () => {
  assert.equal(afterFin(LocalClose, "local"), null);
  assert.equal(afterFin(RemoteClose, "remote"), null);
  assert.equal(afterFin(Closed, "local"), null);
  assert.equal(afterFin(Closed, "remote"), null);
});

Deno.test("each state says which FINs it has seen", () => {
  assert.deepEqual(
    [Open, LocalClose, RemoteClose, Closed].map((state) => [localFinished(state), remoteFinished(state)]),
    [[false, false], [true, false], [false, true], [true, true]],
  );
});

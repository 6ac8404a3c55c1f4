/**
 * Worker wrapper of `_mux_sink.ts`, so the receiver gets its own thread (and core) while the main thread
 * sends. Messages in: `{ type: "start", id, job }`. Messages out: `{ type: "ready", id, port }`, then
 * `{ type: "done", id, result }` or `{ type: "error", id, message }`. The main thread terminates the
 * worker to abort.
 *
 * @module
 */

import { type SinkJob, type SinkResult, startSink } from "./_mux_sink.ts";

/** A request from the main thread. */
export interface SinkStartMessage {
  type: "start";
  id: number;
  job: SinkJob;
}

/** A reply to the main thread. */
export type SinkReplyMessage =
  | { type: "ready"; id: number; port: number }
  | { type: "done"; id: number; result: SinkResult }
  | { type: "error"; id: number; message: string };

/** The part of the worker global scope used here (typed locally: the project type-checks as a window). */
interface WorkerScope {
  onmessage: ((event: MessageEvent<SinkStartMessage>) => void) | null;
  postMessage(message: SinkReplyMessage): void;
}

const scope = self as unknown as WorkerScope;
const never = new AbortController();

scope.onmessage = (event) => {
  const { id, job } = event.data;
  try {
    const sink = startSink(job, never.signal);
    scope.postMessage({ type: "ready", id, port: sink.port });
    sink.done.then(
      (result) => scope.postMessage({ type: "done", id, result }),
      (error) =>
        scope.postMessage({
          type: "error",
          id,
          message: error instanceof Error ? error.message : String(error),
        }),
    );
  } catch (error) {
    scope.postMessage({ type: "error", id, message: error instanceof Error ? error.message : String(error) });
  }
};

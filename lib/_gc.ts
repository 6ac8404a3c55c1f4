/**
 * V8's full garbage collection, reached through `node:v8` and `node:vm` (Deno has no flag-free way):
 * used where memory a closed resource holds is only given back by a collection (an idle server, a closed
 * QUIC endpoint's UDP socket). Imports nothing from lib/.
 *
 * @module
 */

/** A full garbage collection. */
export type FullCollection = () => void;

/**
 * V8's full collection, or null when `gc` is not a function after exposing it; rejects when the runtime
 * refuses the modules or the flag. Loads `node:v8` and `node:vm` (about 1 MB): call it on first use.
 */
export async function exposeFullCollection(): Promise<FullCollection | null> {
  const { default: v8 } = await import("node:v8");
  const { default: vm } = await import("node:vm");
  v8.setFlagsFromString("--expose-gc");
  const gc: unknown = vm.runInNewContext("gc");
  return typeof gc === "function" ? () => gc() : null;
}

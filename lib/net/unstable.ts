/**
 * Deno 2.9.6 keeps UDP sockets (`Deno.listenDatagram`) and QUIC (`Deno.connectQuic`, `Deno.QuicEndpoint`)
 * behind `--unstable-net`. Only users of UDP proxies or the QUIC transport need it, so the program is run
 * without it by default and asks for it, by name, when a config needs it.
 *
 * @module
 */

/** A feature of the config needs `--unstable-net`, and the process was started without it. */
export class UnstableNetRequiredError extends Error {
  override name = "UnstableNetRequiredError";
  /** What needs it, as the user wrote it (for example `transport = "quic"`). */
  readonly feature: string;

  /** @param feature what needs it, as the user wrote it */
  constructor(feature: string) {
    super(
      `${feature} needs Deno's --unstable-net (UDP and QUIC are unstable in Deno 2.9.6): run ` +
        `'deno run --unstable-net …' (or 'deno task server:unstable' / 'client:unstable'), or build an ` +
        `executable with it: 'deno task compile:unstable' (the released executables run without it)`,
    );
    this.feature = feature;
  }
}

/** True when this process can open UDP sockets and QUIC endpoints (started with `--unstable-net`). */
export function hasUnstableNet(): boolean {
  const api = Deno as unknown as Record<string, unknown>;
  return typeof api["listenDatagram"] === "function" && typeof api["connectQuic"] === "function";
}

/**
 * Throws {@linkcode UnstableNetRequiredError} naming `feature` unless the process has `--unstable-net`.
 *
 * @example
 * ```ts
 * import { requireUnstableNet } from "./unstable.ts";
 * try {
 *   requireUnstableNet('transport = "quic"');
 * } catch (error) {
 *   console.error((error as Error).message);
 * }
 * ```
 */
export function requireUnstableNet(feature: string): void {
  if (!hasUnstableNet()) throw new UnstableNetRequiredError(feature);
}

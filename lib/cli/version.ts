/**
 * `tls-tunnel version`: the program's, the protocol's and Deno's versions on one line.
 *
 * @module
 */

import { PROTOCOL_VERSION } from "../protocol/version.ts";
import { VERSION } from "../version.ts";
import { type CommandOutput, processOutput } from "./_command_output.ts";

/** The line `version` prints: `tls-tunnel 0.1.0 (protocol 1, deno 2.9.6)`. */
export function versionLine(): string {
  return `tls-tunnel ${VERSION} (protocol ${PROTOCOL_VERSION}, deno ${Deno.version.deno})`;
}

/**
 * Prints {@link versionLine}.
 *
 * @returns 0.
 */
export function versionCommand(io: CommandOutput = processOutput): number {
  io.out(versionLine());
  return 0;
}

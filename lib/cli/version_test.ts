import assert from "node:assert/strict";
import { PROTOCOL_VERSION } from "../protocol/version.ts";
import { VERSION } from "../version.ts";
import { captureOutput } from "./_command_output.ts";
import { versionCommand } from "./version.ts";

Deno.test("version prints the program, protocol and Deno versions on one line", () => {
  const io = captureOutput();
  assert.equal(versionCommand(io), 0);
  assert.equal(
    io.stdout,
    `tls-tunnel ${VERSION} (protocol ${PROTOCOL_VERSION}, deno ${Deno.version.deno})\n`,
  );
  assert.match(io.stdout, /^tls-tunnel \d+\.\d+\.\d+\S* \(protocol \d+, deno \d+\.\d+\.\d+\S*\)\n$/);
});

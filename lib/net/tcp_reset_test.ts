import assert from "node:assert/strict";

/** Runs `_tcp_reset_child.ts` with the given permissions and returns what it printed. */
async function runChild(permissions: string[]): Promise<Record<string, unknown>> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", ...permissions, new URL("./_tcp_reset_child.ts", import.meta.url).pathname],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(output.stdout);
  assert.equal(output.code, 0, `child failed: ${new TextDecoder().decode(output.stderr)}`);
  return JSON.parse(text.trim()) as Record<string, unknown>;
}

Deno.test({
  name: "with --allow-ffi an accepted TCP connection is reset: its peer reads ECONNRESET",
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    const result = await runChild(["--allow-net", "--allow-ffi"]);
    assert.equal(result.reason, null);
    assert.equal(result.acceptedReset, true);
    assert.equal(result.dialedPeerRead, "ConnectionReset");
    // Deno keeps no descriptor on a connection Deno.connect dialed: it is closed with FIN.
    assert.equal(result.dialedReset, false);
    assert.equal(result.acceptedPeerRead, "eof");
    // connectTcp finds it.
    assert.equal(result.connectTcpReset, true);
    assert.equal(result.connectTcpPeerRead, "ConnectionReset");
    // A connection already closed is left alone (its descriptor number may be another socket's now).
    assert.equal(result.closedReset, false);
  },
});

Deno.test("without --allow-ffi a reset is a plain close (FIN) and the reason names the permission", async () => {
  const result = await runChild(["--allow-net"]);
  assert.match(String(result.reason), Deno.build.os === "linux" ? /--allow-ffi/ : /Linux/);
  assert.equal(result.acceptedReset, false);
  assert.equal(result.dialedPeerRead, "eof");
  assert.equal(result.closedReset, false);
  assert.equal(result.connectTcpReset, false);
  assert.equal(result.connectTcpPeerRead, "eof");
});

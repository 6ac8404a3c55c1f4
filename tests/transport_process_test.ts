/**
 * The same real-process scenario over every built-in transport (`TRANSPORT_NAMES`): the CLI's server and
 * client (`deno run main.ts` children) carry 4 MiB each way sha256-checked with the half-close, the
 * published port is released after `kill -9` of the client, a new client takes it again, and after the
 * server is killed and started again on the same port the client comes back by itself. The in-process
 * behaviours per transport are in `transport_suite_test.ts`; hostile peers per transport in each
 * transport's own test file.
 */

import assert from "node:assert/strict";
import { TRANSPORT_NAMES } from "../lib/transport/registry.ts";
import { canBind, echoes, patternBytes, roundTrip, sha256Hex, waitFor } from "../testing/helpers.ts";
import { ProcessTunnel, proxyUp } from "../testing/process_tunnel.ts";

/** Transports whose processes need Deno's `--unstable-net` (QUIC is UDP). */
const UNSTABLE_NET_TRANSPORTS: ReadonlySet<string> = new Set(["quic"]);

for (const transport of TRANSPORT_NAMES) {
  Deno.test(`${transport}: the CLI carries 4 MiB each way (sha256, half-close), releases the port after kill -9 of the client, and reconnects after the server restarts`, async () => {
    const extra = `transport = "${transport}"\n`;
    const denoFlags = UNSTABLE_NET_TRANSPORTS.has(transport) ? ["--unstable-net"] : [];
    await using tunnel = await ProcessTunnel.create(extra, { denoFlags });
    const { server, client, publishPort } = await tunnel.serverAndClient({ name: "echo" }, extra);
    const data = patternBytes(4 * 1024 * 1024, 31);
    // roundTrip half-closes after writing: the echo's end comes back only if the half-close crossed.
    const echoed = await roundTrip(publishPort, data, 60_000);
    assert.equal(echoed.length, data.length);
    assert.equal(await sha256Hex(echoed), await sha256Hex(data));

    // Over TCP transports the server sees the connection end; over QUIC (UDP, no reset) the keepalive
    // (1 s, timeout 3 s in these configs) notices: 10 s covers both.
    client.kill("SIGKILL");
    await client.status();
    await waitFor(() => canBind(publishPort), 10_000, "the public port to be released after kill -9", 50);

    const again = tunnel.client(`${tunnel.dir}/client.toml`);
    await again.waitForLine(proxyUp("echo"));
    const small = patternBytes(256 * 1024, 5);
    assert.equal(await sha256Hex(await roundTrip(publishPort, small)), await sha256Hex(small));

    server.kill("SIGKILL");
    await server.status();
    await tunnel.server();
    await waitFor(
      () => echoes(publishPort, "back"),
      20_000,
      "the client to reconnect to the new server",
      200,
    );
    assert.equal(await sha256Hex(await roundTrip(publishPort, small)), await sha256Hex(small));
  });
}

import assert from "node:assert/strict";
import type { ProxyConfig } from "../../config/types.ts";
import { type MemoryConn, memoryPair } from "../../net/memory_pair.ts";
import { hasUnstableNet } from "../../net/unstable.ts";
import { DatagramReader, DatagramWriter } from "../../protocol/datagram.ts";
import type { StreamHeader } from "../../protocol/stream_header.ts";
import { ProxyStats } from "../../stats/proxy_stats.ts";
import { waitFor } from "../../../testing/helpers.ts";
import type { CarriedStream } from "./kind.ts";
import { udpClientKind } from "./udp.ts";

const ignore = !hasUnstableNet();

/** A carried stream over an in-memory pair: `reset` closes it and is remembered. */
function carriedPair(): { stream: CarriedStream & { wasReset: boolean }; server: MemoryConn } {
  const [client, server] = memoryPair();
  const stream = Object.assign(client, {
    wasReset: false,
    reset() {
      stream.wasReset = true;
      client.close();
    },
  });
  return { stream, server };
}

function proxyConfig(fields: Partial<ProxyConfig> = {}): ProxyConfig {
  return {
    name: "dns",
    proxyType: "udp",
    publishPort: 5353,
    localAddr: "127.0.0.1",
    localPort: 53,
    fallbackToSystemPort: false,
    lbPolicy: "round_robin",
    ...fields,
  } as ProxyConfig;
}

const HEADER: StreamHeader = { proxy: "dns", peer_addr: "203.0.113.9:40000", conn_id: 1 };

/** A UDP service on loopback that answers `reply(datagram)` to each datagram. */
function service(
  reply: (datagram: Uint8Array) => Uint8Array,
): { socket: Deno.DatagramConn; done: Promise<void> } {
  const socket = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const done = (async () => {
    const buffer = new Uint8Array(65_536);
    while (true) {
      try {
        const [datagram, from] = await socket.receive(buffer);
        await socket.send(reply(datagram), from);
      } catch {
        return;
      }
    }
  })();
  return { socket, done };
}

Deno.test({
  name:
    "a udp flow sends each frame to the local service and frames its answers back; others' datagrams are dropped",
  ignore,
  async fn() {
    const echo = service((datagram) => new Uint8Array([...datagram, 0xaa]));
    const port = (echo.socket.addr as Deno.NetAddr).port;
    const stats = new ProxyStats();
    const { stream, server } = carriedPair();
    const local = await udpClientKind.dial({ host: "localhost", port });
    const carrying = udpClientKind.carry(stream, local, HEADER, stats, proxyConfig({ localPort: port }));
    const writer = new DatagramWriter(server);
    const reader = new DatagramReader(server);
    writer.push(new Uint8Array([1, 2]));
    assert.deepEqual([...(await reader.next()) ?? []], [1, 2, 0xaa]);
    // A stranger who learns the flow's port gets nothing through.
    const stranger = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    await stranger.send(new Uint8Array([6, 6, 6]), local.socket.addr);
    await waitFor(
      () => stats.datagrams?.dropped.foreign_source === 1,
      2000,
      "the stranger's datagram dropped",
    );
    writer.push(new Uint8Array([3]));
    assert.deepEqual([...(await reader.next()) ?? []], [3, 0xaa]);
    assert.equal(stats.datagrams?.datagramsIn, 2);
    assert.equal(stats.datagrams?.datagramsOut, 2);
    assert.equal(stats.bytesIn, 3);
    assert.equal(stats.bytesOut, 5);
    // The server ends the flow: the client closes its socket and its stream, cleanly.
    await server.closeWrite();
    await carrying;
    assert.equal(await reader.next(), null);
    assert.equal(stream.wasReset, false);
    assert.equal(stats.datagrams?.flowsOpen, 0);
    stranger.close();
    server.close();
    echo.socket.close();
    await echo.done;
  },
});

Deno.test({
  name:
    "a udp flow idle for udp_idle_timeout_secs ends on the client, and a bad frame from the server resets it",
  ignore,
  async fn() {
    const echo = service((datagram) => datagram);
    const port = (echo.socket.addr as Deno.NetAddr).port;
    const stats = new ProxyStats();
    const idle = carriedPair();
    const idleCarry = udpClientKind.carry(
      idle.stream,
      await udpClientKind.dial({ host: "127.0.0.1", port }),
      HEADER,
      stats,
      proxyConfig({ localPort: port, udpIdleTimeoutSecs: 1 }),
    );
    const bad = carriedPair();
    const badCarry = udpClientKind.carry(
      bad.stream,
      await udpClientKind.dial({ host: "127.0.0.1", port }),
      HEADER,
      stats,
      proxyConfig({ localPort: port }),
    );
    await bad.server.write(new Uint8Array([0xff, 0xff, 1]));
    await badCarry;
    assert.equal(bad.stream.wasReset, true, "a frame over 65,507 bytes resets the flow");
    const startedMs = performance.now();
    await idleCarry;
    assert.ok(performance.now() - startedMs >= 900, "not before the idle timeout");
    assert.equal(idle.stream.wasReset, false, "an idle flow ends cleanly");
    assert.equal(stats.datagrams?.flowsIdleClosed, 1);
    assert.equal(stats.datagrams?.flowsOpen, 0);
    idle.server.close();
    bad.server.close();
    echo.socket.close();
    await echo.done;
  },
});

Deno.test({
  name: "a server that opens more flows than max_udp_flows makes the client evict the one idle longest",
  ignore,
  async fn() {
    const echo = service((datagram) => datagram);
    const port = (echo.socket.addr as Deno.NetAddr).port;
    const stats = new ProxyStats();
    const config = proxyConfig({ localPort: port, maxUdpFlows: 2 });
    const flows = [carriedPair(), carriedPair(), carriedPair()];
    const carries: Promise<void>[] = [];
    for (const flow of flows) {
      carries.push(
        udpClientKind.carry(
          flow.stream,
          await udpClientKind.dial({ host: "127.0.0.1", port }),
          HEADER,
          stats,
          config,
        ),
      );
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    await carries[0];
    assert.equal(flows[0]?.stream.wasReset, true, "the first flow was evicted");
    assert.equal(stats.datagrams?.flowsEvicted, 1);
    assert.equal(stats.datagrams?.flowsOpen, 2);
    for (const flow of flows) await flow.server.closeWrite();
    await Promise.all(carries);
    for (const flow of flows) flow.server.close();
    echo.socket.close();
    await echo.done;
  },
});

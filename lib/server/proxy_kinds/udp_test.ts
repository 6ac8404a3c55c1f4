import assert from "node:assert/strict";
import { type MemoryConn, memoryPair } from "../../net/memory_pair.ts";
import { BindError } from "../../net/tcp.ts";
import { hasUnstableNet } from "../../net/unstable.ts";
import type { ProxySpec } from "../../protocol/control.ts";
import { DatagramReader, DatagramWriter } from "../../protocol/datagram.ts";
import { readStreamHeader } from "../../protocol/stream_header.ts";
import { DatagramStats } from "../../stats/datagram_stats.ts";
import { ProxyStats } from "../../stats/proxy_stats.ts";
import { waitFor } from "../../../testing/helpers.ts";
import type { DatagramHost, DatagramPublication } from "./kind.ts";
import { udpServerKind } from "./udp.ts";

const SPEC: ProxySpec = {
  name: "dns",
  proxy_type: "udp",
  publish_addr: "127.0.0.1",
  publish_port: 0,
  local_addr: "127.0.0.1",
  local_port: 53,
  udp_idle_timeout_secs: 1,
  max_udp_flows: 2,
};

/** A published proxy stand-in: each flow's stream is an in-memory pair; the test holds the client ends. */
class FakeHost implements DatagramHost {
  readonly stats = new ProxyStats();
  readonly datagrams = new DatagramStats();
  /** The client's end of each flow's stream, in the order the flows were opened. */
  readonly clientEnds: MemoryConn[] = [];
  refuse = false;

  constructor(readonly spec: ProxySpec) {}

  refusing(): boolean {
    return this.refuse;
  }

  openFlow(peer: string): Promise<MemoryConn> {
    const [server, client] = memoryPair();
    this.clientEnds.push(client);
    // The header as the real published proxy writes it.
    const header = udpServerKind.streamHeader(this.spec, peer, this.clientEnds.length);
    return server.write(header).then(() => server);
  }
}

/** Runs a publication on 127.0.0.1 with `spec` until the test's body is done. */
async function withPublication(
  spec: ProxySpec,
  body: (host: FakeHost, port: number, publication: DatagramPublication) => Promise<void>,
): Promise<void> {
  const publication = udpServerKind.bind("127.0.0.1", 0);
  const host = new FakeHost(spec);
  const serving = publication.serve(host);
  try {
    await body(host, publication.addr.port, publication);
  } finally {
    publication.close();
    await serving;
    for (const end of host.clientEnds) end.close();
  }
}

function udpSocket(): Deno.DatagramConn {
  return Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
}

const ignore = !hasUnstableNet();

Deno.test({
  name: "a udp publication opens one flow per peer, and the client's answers go back to that peer",
  ignore,
  async fn() {
    await withPublication(SPEC, async (host, port) => {
      const peer = udpSocket();
      try {
        const target: Deno.NetAddr = { transport: "udp", hostname: "127.0.0.1", port };
        await peer.send(new Uint8Array([1, 2, 3]), target);
        await peer.send(new Uint8Array([4]), target);
        await waitFor(() => host.clientEnds.length === 1, 2000, "a flow");
        const stream = host.clientEnds[0];
        assert.ok(stream);
        const header = await readStreamHeader(stream);
        assert.equal(header.proxy, "dns");
        assert.equal(header.peer_addr, `127.0.0.1:${(peer.addr as Deno.NetAddr).port}`);
        const reader = new DatagramReader(stream);
        assert.deepEqual([...(await reader.next()) ?? []], [1, 2, 3]);
        assert.deepEqual([...(await reader.next()) ?? []], [4]);
        const writer = new DatagramWriter(stream);
        writer.push(new TextEncoder().encode("answer"));
        const [answer] = await peer.receive(new Uint8Array(100));
        assert.equal(new TextDecoder().decode(answer), "answer");
        assert.equal(host.datagrams.datagramsIn, 2);
        assert.equal(host.datagrams.flowsOpen, 1);
        assert.equal(host.stats.bytesIn, 4);
        await waitFor(() => host.datagrams.datagramsOut === 1, 2000, "the answer counted");
      } finally {
        peer.close();
      }
    });
  },
});

Deno.test({
  name: "at max_udp_flows the flow idle longest is evicted; idle flows end cleanly after the timeout",
  ignore,
  async fn() {
    await withPublication(SPEC, async (host, port) => {
      const peers = [udpSocket(), udpSocket(), udpSocket()];
      try {
        const target: Deno.NetAddr = { transport: "udp", hostname: "127.0.0.1", port };
        for (const peer of peers) {
          await peer.send(new Uint8Array([9]), target);
          await waitFor(() => host.datagrams.datagramsIn === peers.indexOf(peer) + 1, 2000, "the datagram");
        }
        assert.equal(host.datagrams.flowsTotal, 3);
        assert.equal(host.datagrams.flowsEvicted, 1, "max_udp_flows = 2");
        assert.equal(host.datagrams.flowsOpen, 2);
        const first = host.clientEnds[0];
        assert.ok(first);
        // The evicted flow's stream is ended (read to its end: header, datagram, then end of stream).
        await readStreamHeader(first);
        const reader = new DatagramReader(first);
        assert.deepEqual([...(await reader.next()) ?? []], [9]);
        assert.equal(await reader.next(), null);
        // udp_idle_timeout_secs = 1: the other two go within about a second and a half.
        await waitFor(() => host.datagrams.flowsOpen === 0, 3000, "idle flows closed");
        assert.equal(host.datagrams.flowsIdleClosed, 2);
        assert.equal(host.stats.activeConnections, 0);
      } finally {
        for (const peer of peers) peer.close();
      }
    });
  },
});

Deno.test({
  name:
    "hostile flows: an empty datagram is dropped and counted, a refused proxy opens no flow, a bad frame ends its flow",
  ignore,
  async fn() {
    await withPublication({ ...SPEC, udp_idle_timeout_secs: 60 }, async (host, port) => {
      const peer = udpSocket();
      try {
        const target: Deno.NetAddr = { transport: "udp", hostname: "127.0.0.1", port };
        await peer.send(new Uint8Array(0), target);
        await waitFor(() => host.datagrams.dropped.empty === 1, 2000, "the empty datagram counted");
        host.refuse = true;
        await peer.send(new Uint8Array([1]), target);
        await waitFor(() => host.datagrams.dropped.no_flow === 1, 2000, "the refused datagram counted");
        assert.equal(host.clientEnds.length, 0);
        host.refuse = false;
        await peer.send(new Uint8Array([2]), target);
        await waitFor(() => host.clientEnds.length === 1, 2000, "a flow");
        const stream = host.clientEnds[0];
        assert.ok(stream);
        await readStreamHeader(stream);
        // A frame of length 0 from the client: the flow ends, the publication goes on.
        await stream.write(new Uint8Array([0, 0]));
        await waitFor(() => host.datagrams.flowsOpen === 0, 2000, "the flow ended");
        await peer.send(new Uint8Array([3]), target);
        await waitFor(() => host.clientEnds.length === 2, 2000, "a new flow for the same peer");
      } finally {
        peer.close();
      }
    });
  },
});

Deno.test({
  name: "a datagram above 65,507 bytes (possible over IPv6) is dropped and counted as oversized",
  ignore,
  async fn() {
    let publication: DatagramPublication;
    try {
      publication = udpServerKind.bind("::1", 0);
    } catch {
      return; // No IPv6 loopback here.
    }
    const host = new FakeHost({ ...SPEC, publish_addr: "::1" });
    const serving = publication.serve(host);
    const peer = Deno.listenDatagram({ transport: "udp", hostname: "::1", port: 0 });
    try {
      const target: Deno.NetAddr = { transport: "udp", hostname: "::1", port: publication.addr.port };
      await peer.send(new Uint8Array(65_508), target);
      await peer.send(new Uint8Array(65_507), target);
      await waitFor(() => host.datagrams.datagramsIn === 1, 2000, "the largest datagram carried");
      assert.equal(host.datagrams.dropped.oversized, 1);
    } finally {
      peer.close();
      publication.close();
      await serving;
      for (const end of host.clientEnds) end.close();
    }
  },
});

Deno.test("without --unstable-net a udp proxy is refused at bind, never retried, with the flag named", () => {
  if (hasUnstableNet()) {
    // The refusal itself is covered end to end (tests/udp_proxy_test.ts): a server process without the flag.
    const publication = udpServerKind.bind("127.0.0.1", 0);
    assert.ok(publication.addr.port > 0);
    publication.close();
    return;
  }
  assert.throws(() => udpServerKind.bind("127.0.0.1", 0), (error: unknown) => {
    assert.ok(error instanceof BindError);
    assert.equal(error.kind, "unsupported");
    assert.equal(error.retryable, false);
    assert.match(error.message, /--unstable-net/);
    return true;
  });
});

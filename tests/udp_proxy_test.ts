/**
 * `proxy_type = "udp"` end to end, with real processes (`deno run --unstable-net main.ts server|client`):
 * Debian's dnsmasq answers `dig` through the tunnel; 1,000 datagrams from 50 outside peers to a UDP echo
 * service all come back to the peer that sent them; every flow is gone after the idle timeout, on both
 * sides; a server or client started without `--unstable-net` says so instead of carrying UDP.
 * The dnsmasq test is skipped (with a note) where dnsmasq or dig is not installed: `.ci/run` installs them.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { ClientRoleSnapshot, ServerSnapshot, UdpSnapshot } from "../lib/stats/snapshot.ts";
import { CLI_PERMISSIONS, CliProcess, freePort, waitFor } from "../testing/helpers.ts";
import {
  FAST_RECONNECT,
  LISTENING,
  type ProcessProxy,
  ProcessTunnel,
  proxyUp,
} from "../testing/process_tunnel.ts";
import { RawClient } from "../testing/raw_client.ts";
import { hasUnstableNet } from "../lib/net/unstable.ts";
import { TunnelFixture } from "../testing/tunnel.ts";

/** The permissions of the CLI's children, with UDP. */
const UNSTABLE = ["--unstable-net", ...CLI_PERMISSIONS];
/** The same without `--unstable-net`. */
const STABLE = [...CLI_PERMISSIONS];

function installed(...paths: string[]): string | undefined {
  return paths.find((path) => {
    try {
      return Deno.statSync(path).isFile;
    } catch {
      return false;
    }
  });
}

const DNSMASQ = installed("/usr/sbin/dnsmasq", "/usr/bin/dnsmasq");
const DIG = installed("/usr/bin/dig", "/bin/dig");

/** A UDP port that was free a moment ago (loopback). */
function freeUdpPort(): number {
  const socket = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const port = (socket.addr as Deno.NetAddr).port;
  socket.close();
  return port;
}

/** A UDP echo service on loopback: every datagram goes back to its sender, unchanged. */
class UdpEcho implements AsyncDisposable {
  readonly socket = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  readonly #loop: Promise<void>;
  received = 0;

  constructor() {
    this.#loop = (async () => {
      const buffer = new Uint8Array(65_536);
      while (true) {
        let datagram: [Uint8Array, Deno.Addr];
        try {
          datagram = await this.socket.receive(buffer);
        } catch {
          return;
        }
        this.received++;
        await this.socket.send(datagram[0], datagram[1]).catch(() => {});
      }
    })();
  }

  get port(): number {
    return (this.socket.addr as Deno.NetAddr).port;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.socket.close();
    await this.#loop;
  }
}

/** Server (with or without `--unstable-net`) and one client publishing a udp proxy, as real processes. */
async function udpTunnel(
  tunnel: ProcessTunnel,
  options: {
    localPort: number;
    lines?: string;
    serverUnstable?: boolean;
    serverStatsPort?: number;
    clientStatsPort?: number;
    /** The udp proxy's publish_port (default 0: the server picks). */
    publishPort?: number;
    /** More proxies of the client. */
    extraProxies?: ProcessProxy[];
  },
): Promise<{ server: CliProcess; client: CliProcess }> {
  const server = new CliProcess(["server", "-c", tunnel.serverConfigPath], {
    permissions: options.serverUnstable === false ? STABLE : UNSTABLE,
  });
  try {
    await server.waitForLine(LISTENING);
  } catch (error) {
    await server.stop();
    throw error;
  }
  const clientConfig = await tunnel.clientConfig(
    "client",
    [{
      name: "udp",
      publishPort: options.publishPort ?? 0,
      localPort: options.localPort,
      lines: `proxy_type = "udp"\n${options.lines ?? ""}`,
    }, ...(options.extraProxies ?? [])],
    options.clientStatsPort ? `stats_port = ${options.clientStatsPort}` : "",
  );
  const client = new CliProcess(["client", "-c", clientConfig], {
    env: FAST_RECONNECT,
    permissions: UNSTABLE,
  });
  return { server, client };
}

async function stopAll(...processes: CliProcess[]): Promise<void> {
  for (const process of processes) await process.stop();
}

/** The udp counters of the proxy named `udp` in a stats endpoint's snapshot. */
async function udpStats(statsPort: number): Promise<UdpSnapshot | undefined> {
  const response = await fetch(`http://127.0.0.1:${statsPort}/api/stats`);
  const snapshot = await response.json() as ServerSnapshot | ClientRoleSnapshot;
  const proxies = snapshot.role === "server"
    ? snapshot.clients.flatMap((client) => client.proxies)
    : snapshot.proxies;
  return proxies.find((proxy) => proxy.name === "udp")?.udp;
}

/**
 * Sends `request` from `socket` to `port` until the same bytes come back (resending every `retryMs`), and
 * returns every other datagram that arrived meanwhile: late echoes of earlier requests of this socket after
 * a resend, or (a failure for the caller to report) someone else's.
 */
async function ask(
  socket: Deno.DatagramConn,
  port: number,
  request: string,
  retryMs = 1000,
): Promise<string[]> {
  const target: Deno.NetAddr = { transport: "udp", hostname: "127.0.0.1", port };
  const others: string[] = [];
  const decoder = new TextDecoder();
  let answer = socket.receive(new Uint8Array(65_536));
  for (let attempt = 0; attempt < 5; attempt++) {
    await socket.send(new TextEncoder().encode(request), target);
    const deadline = Date.now() + retryMs;
    while (true) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const result = await Promise.race([
        answer,
        new Promise<null>((resolve) =>
          timer = setTimeout(() => resolve(null), Math.max(0, deadline - Date.now()))
        ),
      ]);
      clearTimeout(timer);
      if (result === null) break;
      const text = decoder.decode(result[0]);
      answer = socket.receive(new Uint8Array(65_536));
      if (text === request) {
        // The socket is closed by the caller; its last pending receive then ends with an error.
        answer.catch(() => {});
        return others;
      }
      others.push(text);
    }
  }
  answer.catch(() => {});
  throw new Error(`No answer to ${JSON.stringify(request.slice(0, 30))} from 127.0.0.1:${port}`);
}

/** dnsmasq answering `test.example` on a free loopback UDP port, as a child process. */
async function startDnsmasq(): Promise<{ dnsmasq: Deno.ChildProcess; dnsPort: number }> {
  // A free port can be taken by a parallel test between the probe and dnsmasq's bind (it then exits at
  // once): try another port, and say what dnsmasq said if every try fails.
  const failures: string[] = [];
  for (let attempt = 0; attempt < 3; attempt++) {
    const dnsPort = freeUdpPort();
    const dnsmasq = new Deno.Command(DNSMASQ ?? "dnsmasq", {
      args: [
        "--no-daemon",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--pid-file=",
        `--port=${dnsPort}`,
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        "--address=/test.example/10.1.2.3",
      ],
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const exited = await Promise.race([
      dnsmasq.status.then(() => true),
      new Promise<false>((resolve) => setTimeout(() => resolve(false), 500)),
    ]);
    if (!exited) return { dnsmasq, dnsPort };
    failures.push(`port ${dnsPort}: ${new TextDecoder().decode(await readAllOf(dnsmasq.stderr)).trim()}`);
  }
  throw new Error(`dnsmasq did not start:\n${failures.join("\n")}`);
}

/** Stops a dnsmasq of {@linkcode startDnsmasq}, if it still runs. */
async function stopDnsmasq(dnsmasq: Deno.ChildProcess): Promise<void> {
  try {
    dnsmasq.kill("SIGTERM");
  } catch {
    // It has already exited.
  }
  await dnsmasq.status;
  await dnsmasq.stderr.cancel();
}

/** Everything a child's output stream holds until it ends. */
async function readAllOf(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

Deno.test({
  name: "dig asks dnsmasq through a udp proxy and gets its answer",
  ignore: DNSMASQ === undefined || DIG === undefined,
  async fn() {
    await using tunnel = await ProcessTunnel.create();
    const { dnsmasq, dnsPort } = await startDnsmasq();
    const dig = async (port: number, tries: number, tcp = false) => {
      const output = await new Deno.Command(DIG ?? "dig", {
        args: [
          `@127.0.0.1`,
          "-p",
          String(port),
          "test.example",
          "A",
          "+short",
          "+time=2",
          `+tries=${tries}`,
          ...(tcp ? ["+tcp"] : []),
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      return new TextDecoder().decode(output.stdout).trim();
    };
    // DNS over UDP and over TCP on one port number: a udp and a tcp proxy publish the same port.
    const publishPort = freePort();
    const { server, client } = await udpTunnel(tunnel, {
      localPort: dnsPort,
      publishPort,
      extraProxies: [{ name: "dns-tcp", publishPort, localPort: dnsPort }],
    });
    try {
      await waitFor(async () => await dig(dnsPort, 1) === "10.1.2.3", 10_000, "dnsmasq to answer directly");
      const published = Number((await client.waitForLine(proxyUp("udp")))[1]);
      assert.equal(published, publishPort);
      await client.waitForLine(proxyUp("dns-tcp"));
      assert.equal(await dig(published, 3), "10.1.2.3", `through the tunnel\n${client.output}`);
      // A second question from another source port is a second flow; it is answered too.
      assert.equal(await dig(published, 3), "10.1.2.3");
      assert.equal(
        await dig(published, 2, true),
        "10.1.2.3",
        "over TCP, through the tcp proxy on the same port",
      );
    } finally {
      await stopAll(client, server);
      await stopDnsmasq(dnsmasq);
    }
  },
});

Deno.test("1,000 datagrams from 50 peers through a udp proxy all come back to their peer, and idle flows go", async () => {
  const serverStatsPort = freePort();
  const clientStatsPort = freePort();
  await using tunnel = await ProcessTunnel.create(`stats_port = ${serverStatsPort}\n`);
  await using echo = new UdpEcho();
  const { server, client } = await udpTunnel(tunnel, {
    localPort: echo.port,
    lines: "udp_idle_timeout_secs = 2",
    clientStatsPort,
  });
  const peers = Array.from(
    { length: 50 },
    () => Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 }),
  );
  try {
    const up = await client.waitForLine(proxyUp("udp"));
    assert.match(up.input ?? "", /Proxy udp: 127\.0\.0\.1:\d+\/udp → 127\.0\.0\.1:\d+/);
    const published = Number(up[1]);
    // 50 peers at once, 20 datagrams each in turn: each answer must be its own request, at its sender.
    await Promise.all(peers.map(async (socket, peer) => {
      for (let sequence = 0; sequence < 20; sequence++) {
        const request = `peer ${peer} datagram ${sequence} ${"x".repeat((peer * 20 + sequence) % 1200)}`;
        const others = await ask(socket, published, request);
        // After a resend the first answer may come late: an earlier request of this peer, never another's.
        for (const other of others) assert.match(other, new RegExp(`^peer ${peer} datagram \\d+ `));
      }
    }));
    assert.ok(echo.received >= 1000, `the echo service saw ${echo.received} datagrams`);
    const during = await udpStats(serverStatsPort);
    assert.ok(during, "the server's /api/stats has the proxy's udp counters");
    assert.ok(during.datagrams_in >= 1000 && during.datagrams_out >= 1000, JSON.stringify(during));
    assert.equal(during.flows_total, 50, "one flow per peer address");
    assert.equal(during.dropped.oversized, 0);
    const metrics = await (await fetch(`http://127.0.0.1:${serverStatsPort}/metrics`)).text();
    assert.match(metrics, /tls_tunnel_proxy_udp_datagrams_total\{[^}]*direction="in"[^}]*\} \d+/);

    // udp_idle_timeout_secs = 2: with no more datagrams every flow is closed, on the server and the client.
    await waitFor(
      async () => {
        const [onServer, onClient] = await Promise.all([
          udpStats(serverStatsPort),
          udpStats(clientStatsPort),
        ]);
        return onServer?.flows_open === 0 && onClient?.flows_open === 0;
      },
      10_000,
      "every flow to be closed after the idle timeout",
      200,
    );
    const after = await udpStats(serverStatsPort);
    const onClient = await udpStats(clientStatsPort);
    assert.equal(onClient?.flows_total, 50, JSON.stringify(onClient));
    // Each flow was ended by the idle timeout of one side or both (the other then reads its end).
    const idleClosed = (after?.flows_idle_closed ?? 0) + (onClient?.flows_idle_closed ?? 0);
    assert.ok(idleClosed >= 50, `${idleClosed} idle closes: ${JSON.stringify({ after, onClient })}`);
    assert.equal(after?.flows_evicted, 0);

    // A flow that was dropped comes back with the next datagram.
    const [first] = peers;
    assert.ok(first);
    assert.deepEqual(await ask(first, published, "again"), []);
  } finally {
    for (const socket of peers) socket.close();
    await stopAll(client, server);
  }
});

Deno.test("a server started without --unstable-net refuses a udp proxy with a message saying so", async () => {
  await using tunnel = await ProcessTunnel.create();
  await using echo = new UdpEcho();
  const { server, client } = await udpTunnel(tunnel, { localPort: echo.port, serverUnstable: false });
  try {
    // The client shows the server's reason: what is missing and how to start the server with it.
    await client.waitForLine(
      /cannot publish UDP proxies: it runs without --unstable-net.*deno run --unstable-net/,
    );
    const logged = await server.waitForLine(/Proxy udp of .* not published \(BIND_FAILED\)/);
    assert.match(logged.input ?? "", /--unstable-net/);
    assert.ok(!server.exited, "the server keeps running");
  } finally {
    await stopAll(client, server);
  }
});

Deno.test("a client with a udp proxy started without --unstable-net stops at once and says why", async () => {
  await using tunnel = await ProcessTunnel.create();
  const config = await tunnel.clientConfig("client", [{
    name: "udp",
    publishPort: 0,
    localPort: 5353,
    lines: 'proxy_type = "udp"',
  }]);
  const client = new CliProcess(["client", "-c", config], { env: FAST_RECONNECT, permissions: STABLE });
  const status = await client.status();
  assert.equal(status.code, 1);
  assert.match(client.output, /proxy_type = \\"udp\\" needs Deno's --unstable-net/);
});

Deno.test("a udp proxy registered as private (for visitors) is refused: visitors carry TCP streams", async () => {
  await using tunnel = await TunnelFixture.start();
  const raw = await RawClient.dial(tunnel.port);
  try {
    await raw.authenticate("udp-private");
    const answer = await raw.rpc.request("register_proxies", {
      proxies: [{
        name: "dns",
        proxy_type: "udp",
        visibility: "private",
        publish_addr: "127.0.0.1",
        publish_port: 0,
        local_addr: "127.0.0.1",
        local_port: 53,
      }],
    }) as { proxies: Array<Record<string, unknown>> };
    assert.equal(answer.proxies[0]?.status, "rejected");
    assert.equal(answer.proxies[0]?.code, "INVALID_PROXY");
    assert.match(String(answer.proxies[0]?.reason), /visitors reach TCP proxies only/);
  } finally {
    await raw.close();
  }
});

Deno.test({
  name: "a udp and a tcp proxy may publish the same port number, of one client or two; two udp ones may not",
  ignore: !hasUnstableNet(),
  async fn() {
    await using tunnel = await TunnelFixture.start();
    const a = await RawClient.dial(tunnel.port);
    const b = await RawClient.dial(tunnel.port);
    try {
      await a.authenticate("port-share-a");
      await b.authenticate("port-share-b");
      const own = freePort();
      const both = await a.register([
        { name: "dns-tcp", publish_port: own },
        { name: "dns-udp", publish_port: own, proxy_type: "udp" },
      ]);
      assert.deepEqual(
        both.proxies.map((entry) => entry.status),
        ["accepted", "accepted"],
        JSON.stringify(both),
      );
      const shared = freePort();
      assert.equal(
        (await a.register([{ name: "web", publish_port: shared }])).proxies[0]?.status,
        "accepted",
      );
      const udpOfB = await b.register([{ name: "game", publish_port: shared, proxy_type: "udp" }]);
      assert.equal(udpOfB.proxies[0]?.status, "accepted", JSON.stringify(udpOfB));
      const clashes = await b.register([{ name: "web-b", publish_port: shared }]);
      assert.equal(clashes.proxies[0]?.status, "rejected");
      assert.equal(
        clashes.proxies[0]?.status === "rejected" && clashes.proxies[0].code,
        "PORT_IN_USE_BY_CLIENT",
      );
      const udpClash = await a.register([{ name: "game-a", publish_port: shared, proxy_type: "udp" }]);
      assert.equal(
        udpClash.proxies[0]?.status === "rejected" && udpClash.proxies[0].code,
        "PORT_IN_USE_BY_CLIENT",
      );
    } finally {
      await a.close();
      await b.close();
    }
  },
});

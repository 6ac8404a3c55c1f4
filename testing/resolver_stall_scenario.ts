/**
 * One client registers proxies whose `publish_addr` is a host name while another client's traffic
 * (the canary) flows through the same in-process server over real TLS. Measures how long the
 * registration took to be answered, the canary's round trips and the event loop's lag.
 *
 * `resolver_stall_test.ts` runs this module as a program inside a network namespace of its own
 * (`unshare -rnm`), whose `/etc/resolv.conf` names 127.0.0.53, where `--silent-resolver` listens on UDP
 * and never answers: any name lookup there blocks for the resolver's full timeout (10 s for
 * `Deno.listen`, measured), so a lookup on the event loop would show as a stalled canary. Printed as
 * one JSON line: {@linkcode ResolverStallResult}.
 *
 * @module
 */

import { createSocket, type Socket } from "node:dgram";
import type { ProxyRegistration } from "../lib/protocol/control.ts";
import { closeQuietly } from "../lib/transport/pipe.ts";
import { writeAll } from "../lib/net/conn.ts";
import { BindError, listenTcp } from "../lib/net/tcp.ts";
import { RawClient } from "./raw_client.ts";
import { acceptedPort, TunnelFixture } from "./tunnel.ts";

/** The `publish_addr` values a hostile client sends: a name, and a mutated address that is one. */
export const HOSTILE_PUBLISH_ADDRS = ["slow.example", "127.0.0.:22943"];

/** A local service the client can only reach by looking its name up. */
const LOCAL_NAME_LINES = `local_addr = "slow.example"\nlocal_port = 9\n`;

/** Address of the resolver that never answers (inside the test's own network namespace). */
export const SILENT_RESOLVER_ADDR = "127.0.0.53";

/** What the scenario measured. */
export interface ResolverStallResult {
  /** Whether a name lookup really hangs here (the silent resolver is in use): proves the setup. */
  resolverSilent: boolean;
  /** Time from sending `register_proxies` to its answer. */
  registrationMs: number;
  /** The answer, one entry per hostile proxy. */
  registrations: ProxyRegistration[];
  /** How long `listenTcp` took to refuse a host name (the last guard below the schema). */
  listenGuardMs: number;
  /** The kind of the guard's `BindError`. */
  listenGuardKind: string;
  /**
   * With the silent resolver: how long an outside connection to a proxy whose `local_addr` is a name
   * stayed open (the client's lookup of that name hangs until the resolver's timeout), else null.
   */
  namedLocalClosedAfterMs: number | null;
  /** Canary round trips completed while the registration ran, and their worst time. */
  canaryRoundTrips: number;
  canaryMaxMs: number;
  /** Worst lateness of a 10 ms timer over the whole scenario. */
  lagMaxMs: number;
}

/** Binds a UDP socket on `addr:53` that reads queries and never answers. */
function silentResolver(addr: string): Promise<Socket> {
  const socket = createSocket("udp4");
  socket.on("message", () => {});
  return new Promise((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(53, addr, () => resolve(socket));
  });
}

/** Whether a lookup of a name hangs (no answer within `waitMs`), as it does with the silent resolver. */
async function lookupHangs(waitMs: number): Promise<boolean> {
  try {
    await Deno.resolveDns("slow.example", "A", { signal: AbortSignal.timeout(waitMs) });
    return false;
  } catch (error) {
    return error instanceof DOMException && (error.name === "TimeoutError" || error.name === "AbortError");
  }
}

/** Runs the scenario; with `silentResolverAddr`, first starts the resolver that never answers there. */
export async function resolverStallScenario(silentResolverAddr?: string): Promise<ResolverStallResult> {
  const resolver = silentResolverAddr !== undefined ? await silentResolver(silentResolverAddr) : null;
  let lagMaxMs = 0;
  let lastTickMs = 0;
  let ticker: ReturnType<typeof setInterval> | undefined;
  try {
    const resolverSilent = await lookupHangs(300);
    await using tunnel = await TunnelFixture.start();
    const echo = tunnel.echo();
    // With the silent resolver the canary client also publishes a proxy whose local service is a
    // name: carrying a connection to it makes the client dial that name while the canary runs.
    const canary = await tunnel.client([
      { name: "canary", publishPort: 0, localPort: echo.port },
      ...(resolver
        ? [{ name: "named-local", publishPort: 0, localPort: 0, omitLocal: true, extra: LOCAL_NAME_LINES }]
        : []),
    ]);
    const registered = await canary.registered;
    const port = acceptedPort(registered, "canary");
    const namedLocalPort = resolver ? acceptedPort(registered, "named-local") : null;

    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    // Measured from here: setting up (certificates, TLS, the first registration) is not the question.
    lastTickMs = performance.now();
    ticker = setInterval(() => {
      const nowMs = performance.now();
      lagMaxMs = Math.max(lagMaxMs, nowMs - lastTickMs - 10);
      lastTickMs = nowMs;
    }, 10);
    const stop = new AbortController();
    let canaryRoundTrips = 0;
    let canaryMaxMs = 0;
    const canaryLoop = (async () => {
      const message = new Uint8Array(32).fill(0x61);
      const buffer = new Uint8Array(64);
      while (!stop.signal.aborted) {
        const startedMs = performance.now();
        await writeAll(conn, message);
        let received = 0;
        while (received < message.length) {
          const count = await conn.read(buffer);
          if (count === null) throw new Error("the canary's connection ended");
          received += count;
        }
        canaryMaxMs = Math.max(canaryMaxMs, performance.now() - startedMs);
        canaryRoundTrips++;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    })();

    const hostile = await RawClient.dial(tunnel.port);
    let registrationMs = 0;
    let registrations: ProxyRegistration[] = [];
    try {
      await hostile.authenticate("hostile");
      await new Promise((resolve) => setTimeout(resolve, 100)); // the canary is under way
      const startedMs = performance.now();
      const answer = await hostile.register(
        HOSTILE_PUBLISH_ADDRS.map((addr, index) => ({
          name: `named-${index}`,
          publish_addr: addr,
          publish_port: 20_000 + index,
        })),
      );
      registrationMs = performance.now() - startedMs;
      registrations = answer.proxies;
    } finally {
      await hostile.close();
    }

    const guardStartedMs = performance.now();
    let listenGuardKind = "bound";
    try {
      listenTcp("slow.example", 0).close();
    } catch (error) {
      listenGuardKind = error instanceof BindError ? error.kind : String(error);
    }
    const listenGuardMs = performance.now() - guardStartedMs;

    // An outside connection to the proxy whose local service is a name: the client looks the name up
    // (hanging until the resolver's timeout), fails, and the tunnel closes the connection. The canary
    // runs all along.
    let namedLocalClosedAfterMs: number | null = null;
    if (namedLocalPort !== null) {
      const namedLocal = await Deno.connect({ hostname: "127.0.0.1", port: namedLocalPort });
      const openedMs = performance.now();
      const timer = setTimeout(() => closeQuietly(namedLocal), 8000);
      try {
        await namedLocal.read(new Uint8Array(16));
      } catch {
        // Reset by the tunnel: closed all the same.
      } finally {
        clearTimeout(timer);
        closeQuietly(namedLocal);
      }
      namedLocalClosedAfterMs = performance.now() - openedMs;
    }
    await new Promise((resolve) => setTimeout(resolve, 200)); // the canary goes on afterwards
    stop.abort();
    await canaryLoop;
    closeQuietly(conn);
    return {
      resolverSilent,
      registrationMs,
      registrations,
      listenGuardMs,
      listenGuardKind,
      namedLocalClosedAfterMs,
      canaryRoundTrips,
      canaryMaxMs,
      lagMaxMs,
    };
  } finally {
    clearInterval(ticker);
    resolver?.close();
  }
}

if (import.meta.main) {
  const silent = Deno.args.includes("--silent-resolver") ? SILENT_RESOLVER_ADDR : undefined;
  console.log(JSON.stringify(await resolverStallScenario(silent)));
}

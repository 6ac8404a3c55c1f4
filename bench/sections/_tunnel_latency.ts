/**
 * The `tunnel-latency` section: 64-byte round trips on one connection (p50, p99), new connections per
 * second, a fresh connection + 1 KiB round trip, and requests sent in two writes on a fresh connection
 * (where a hop with Nagle's algorithm on stalls 40 ms), through every path side by side. See
 * bench/README.md.
 *
 * @module
 */

import type { BenchCase, BenchContext, BenchFigure, BenchRunFigures, BenchSection } from "../_harness.ts";
import { connectionChurn, freshRoundTrips, roundTrips, splitWriteRequests } from "../e2e/load.ts";
import { type BenchPath, PathName, type PathNameValue, PathSet } from "../e2e/paths.ts";
import type { AgentProcess } from "../e2e/processes.ts";
import { ALL_PATHS, isTunnelPath, requireConnect, skipReason, sum, withCpu } from "./_tunnel_common.ts";

/** The latency section's paths: every path of the table and `ssh -tt -R` (Nagle off in OpenSSH). */
const LATENCY_PATHS: readonly PathNameValue[] = [...ALL_PATHS, PathName.sshTty];
/**
 * Paths of the fresh-connection and split-write cases: the aes128-gcm ssh variant is left out (its
 * sockets are set up exactly as the default cipher's; only the cipher differs, which 1 KiB does not show).
 */
const REQUEST_PATHS: readonly PathNameValue[] = LATENCY_PATHS.filter((name) => name !== PathName.sshGcm);

const MESSAGE_BYTES = 64;

function roundTripCase(path: BenchPath, context: BenchContext, agentPid: number): BenchCase {
  const count = context.quick ? 1_000 : 5_000;
  const warmup = context.quick ? 200 : 500;
  const isTunnel = path.name === PathName.tunnel;
  const hasMiddle = path.name !== PathName.direct && path.name !== PathName.tls;
  return {
    name: `${path.name} rtt p50`,
    metric: "64 B round trip",
    unit: "µs",
    ...(path.name === PathName.direct ? {} : { baseline: `${PathName.direct} rtt p50` }),
    bars: isTunnel ? [{ maxRatio: 1, against: [`${PathName.ssh} rtt p50`], label: "ssh -R" }] : [],
    also: [
      {
        name: `${path.name} rtt p99`,
        key: "p99",
        metric: "64 B round trip",
        unit: "µs",
        ...(path.name === PathName.direct ? {} : { baseline: `${PathName.direct} rtt p99` }),
        bars: isTunnel ? [{ maxRatio: 1.5, against: [`${PathName.ssh} rtt p99`], label: "ssh -R" }] : [],
      },
      {
        name: `${path.name} rtt cpu all`,
        key: "cpuAll",
        metric: "CPU time",
        unit: "CPU µs/rtt",
        ...(path.name === PathName.direct ? {} : { baseline: `${PathName.direct} rtt cpu all` }),
      },
      ...(hasMiddle
        ? [{ name: `${path.name} rtt cpu tunnel`, key: "cpuMiddle", metric: "CPU time", unit: "CPU µs/rtt" }]
        : []),
    ],
    ...skipReason(path),
    params: { messageBytes: MESSAGE_BYTES, roundTrips: count, warmupRoundTrips: warmup },
    async run(signal): Promise<BenchRunFigures> {
      const { result: figures, used } = await withCpu(
        path,
        agentPid,
        () => roundTrips(requireConnect(path), { count, warmup, messageBytes: MESSAGE_BYTES }, signal),
      );
      const perRoundTripUs = (values: number[]) => sum(values) * 1e6 / (count + warmup);
      return {
        value: figures.p50Us,
        also: { p99: figures.p99Us, cpuAll: perRoundTripUs(used), cpuMiddle: perRoundTripUs(used.slice(2)) },
      };
    },
  };
}

/** Connections opened at once by the connection-rate cases. */
const CHURN_CONCURRENCY = 8;

function churnCase(path: BenchPath, context: BenchContext): BenchCase {
  const total = context.quick ? 200 : 500;
  return {
    name: `${path.name} connects`,
    metric: "new conns",
    unit: "conn/s",
    ...(path.name === PathName.direct ? {} : { baseline: `${PathName.direct} connects` }),
    bars: path.name === PathName.tunnel
      ? [{
        minRatio: 2,
        against: [`${PathName.ssh} connects`, `${PathName.sshGcm} connects`],
        label: "ssh -R best",
      }]
      : [],
    ...skipReason(path),
    params: { connections: total, concurrency: CHURN_CONCURRENCY, messageBytes: MESSAGE_BYTES },
    run(signal) {
      return connectionChurn(
        requireConnect(path),
        { total, concurrency: CHURN_CONCURRENCY, messageBytes: MESSAGE_BYTES },
        signal,
      );
    },
  };
}

/** A request slower than this counts as stalled (a delayed ACK holding a write back costs 40 ms). */
const STALL_MS = 10;
/** Payload of the fresh-connection round trip. */
const FRESH_BYTES = 1024;
/** The split-write request: a small header, then the body as a second write. */
const SPLIT_HEADER_BYTES = 100;
const SPLIT_BODY_BYTES = 900;

/** The figure `name` of `path` compared with the same figure of direct TCP (unless it is direct TCP). */
function againstDirect(path: BenchPath, figure: string): { baseline: string } | Record<never, never> {
  return path.name === PathName.direct ? {} : { baseline: `${PathName.direct} ${figure}` };
}

function freshCase(path: BenchPath, context: BenchContext): BenchCase {
  const count = context.quick ? 100 : 300;
  const isTunnel = path.name === PathName.tunnel;
  return {
    name: `${path.name} fresh+1KiB p50`,
    metric: "connect + 1 KiB echo",
    unit: "ms",
    ...againstDirect(path, "fresh+1KiB p50"),
    bars: isTunnel ? [{ maxValue: 3 }] : [],
    also: [{
      name: `${path.name} fresh+1KiB p99`,
      key: "p99",
      metric: "connect + 1 KiB echo",
      unit: "ms",
      ...againstDirect(path, "fresh+1KiB p99"),
    }],
    ...skipReason(path),
    params: { requests: count, messageBytes: FRESH_BYTES },
    async run(signal): Promise<BenchRunFigures> {
      const figures = await freshRoundTrips(
        requireConnect(path),
        { count, messageBytes: FRESH_BYTES, stallMs: STALL_MS },
        signal,
      );
      return { value: figures.p50Ms, also: { p99: figures.p99Ms } };
    },
  };
}

function splitWriteCase(path: BenchPath, context: BenchContext): BenchCase {
  const count = context.quick ? 250 : 1_000;
  const isTunnel = path.name === PathName.tunnel;
  const stalled: BenchFigure = {
    name: `${path.name} split-write >${STALL_MS}ms`,
    key: "stalled",
    metric: "requests over 10 ms",
    unit: `of ${count}`,
    // Issue 13: no transport has the 40 ms split-write stall.
    bars: isTunnelPath(path.name) ? [{ maxValue: 0 }] : [],
  };
  return {
    name: `${path.name} split-write p99`,
    metric: "2-write request",
    unit: "ms",
    ...againstDirect(path, "split-write p99"),
    bars: isTunnel
      ? [{ maxRatio: 1.5, against: [`${PathName.sshTty} split-write p99`], label: "ssh -tt -R" }]
      : [],
    also: [
      stalled,
      {
        name: `${path.name} split-write p50`,
        key: "p50",
        metric: "2-write request",
        unit: "ms",
        ...againstDirect(path, "split-write p50"),
      },
    ],
    ...skipReason(path),
    params: {
      requests: count,
      headerBytes: SPLIT_HEADER_BYTES,
      bodyBytes: SPLIT_BODY_BYTES,
      stallMs: STALL_MS,
    },
    async run(signal): Promise<BenchRunFigures> {
      const figures = await splitWriteRequests(
        requireConnect(path),
        { count, headerBytes: SPLIT_HEADER_BYTES, bodyBytes: SPLIT_BODY_BYTES, stallMs: STALL_MS },
        signal,
      );
      return { value: figures.p99Ms, also: { stalled: figures.stalled, p50: figures.p50Ms } };
    },
  };
}

/** 64-byte round trips, connection churn, fresh-connection and split-write requests through every path. */
export const tunnelLatencySection: BenchSection = {
  name: "tunnel-latency",
  description: "64-byte round trips (p50, p99), new connections per second, fresh connection + 1 KiB echo, " +
    "requests in two writes (Nagle stalls)",
  runs: (context) => (context.quick ? 1 : 5),
  budgetMs: (context) => (context.quick ? 60_000 : 480_000),
  runTimeoutMs: (context) => (context.quick ? 30_000 : 60_000),
  async setup(context) {
    const set = await PathSet.start(context, { ssh: "both", sshTty: true, relay: true, transports: true });
    const agentPid = (set.agent as AgentProcess).child.pid;
    const cases = [
      ...LATENCY_PATHS.map((name) => roundTripCase(set.get(name), context, agentPid)),
      ...LATENCY_PATHS.map((name) => churnCase(set.get(name), context)),
      ...REQUEST_PATHS.map((name) => freshCase(set.get(name), context)),
      ...REQUEST_PATHS.map((name) => splitWriteCase(set.get(name), context)),
    ];
    return { cases, teardown: () => set.stop() };
  },
};

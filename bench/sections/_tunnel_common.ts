/**
 * What the end-to-end sections (tunnel.ts, _tunnel_latency.ts) share: the paths they compare, in table
 * order, and how a case handles a path that is missing.
 *
 * @module
 */

import type { Connector } from "../e2e/load.ts";
import { type BenchPath, PathName, type PathNameValue, TRANSPORT_PATHS } from "../e2e/paths.ts";
import { cpuSeconds, type CpuTarget } from "../e2e/processes.ts";

/** The paths of the throughput and latency sections, in table order. */
export const ALL_PATHS: readonly PathNameValue[] = [
  PathName.direct,
  PathName.tls,
  PathName.relay,
  PathName.tunnel,
  PathName.tunnelWss,
  PathName.tunnelHttp2,
  PathName.tunnelNginx,
  PathName.tunnelQuic,
  PathName.ssh,
  PathName.sshGcm,
];

/** Whether `name` is the tunnel itself, over any transport (tls, wss, http2, through nginx, …). */
export function isTunnelPath(name: PathNameValue): boolean {
  return name === PathName.tunnel || TRANSPORT_PATHS.some((path) => path.name === name);
}

/** A case that is listed but not run because its path is missing. */
export function skipReason(path: BenchPath): { skip: string } | Record<never, never> {
  return path.missing === null ? {} : { skip: `${path.name}: ${path.missing}` };
}

/** The path's connector, or an error saying why the path is unavailable. */
export function requireConnect(path: BenchPath): Connector {
  if (path.connect === null) throw new Error(`${path.name} is unavailable: ${path.missing}`);
  return path.connect;
}

/**
 * Runs `work` and returns its result with the CPU seconds the path's processes used meanwhile: the bench
 * itself, the agent, then the path's middle processes (`used.slice(2)` is the tunnel's share).
 */
export async function withCpu<T>(
  path: BenchPath,
  agentPid: number,
  work: () => Promise<T>,
): Promise<{ result: T; used: number[] }> {
  const targets: CpuTarget[] = [
    { pid: Deno.pid, withDescendants: false },
    { pid: agentPid, withDescendants: false },
    ...path.middle(),
  ];
  const before = await cpuSeconds(targets);
  const result = await work();
  const used = (await cpuSeconds(targets)).map((seconds, index) => seconds - (before[index] ?? 0));
  return { result, used };
}

/** Sum of `values`. */
export function sum(values: readonly number[]): number {
  return values.reduce((total, value) => total + value, 0);
}

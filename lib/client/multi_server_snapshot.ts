/**
 * The proxies of a client with several servers, merged into one list for the stats endpoint's top level:
 * each proxy once, its counters summed over the servers, healthy while any server publishes it.
 *
 * @module
 */

import type { ProxySnapshot, ThroughputSnapshot } from "../stats/snapshot.ts";

/** Sums equal-width throughput histories, aligned on their newest bucket. */
function mergeThroughput(histories: ThroughputSnapshot[]): ThroughputSnapshot | undefined {
  const [first, ...rest] = histories;
  if (!first) return undefined;
  const bytesIn = [...first.bytes_in];
  const bytesOut = [...first.bytes_out];
  for (const other of rest) {
    if (other.bucket_secs !== first.bucket_secs) continue;
    const add = (into: number[], from: number[]) => {
      const offset = into.length - from.length;
      from.forEach((value, index) => {
        const at = index + offset;
        if (at >= 0) into[at] = (into[at] ?? 0) + value;
      });
    };
    add(bytesIn, other.bytes_in);
    add(bytesOut, other.bytes_out);
  }
  return {
    ...first,
    end_ms: Math.max(...histories.map((h) => h.end_ms)),
    bytes_in: bytesIn,
    bytes_out: bytesOut,
  };
}

/**
 * One entry per proxy name (in the first server's order): counters summed, the status of the first server
 * that has it healthy (else the first server's), the published address of that server.
 */
export function mergeProxySnapshots(perServer: ProxySnapshot[][]): ProxySnapshot[] {
  const byName = new Map<string, ProxySnapshot[]>();
  for (const proxies of perServer) {
    for (const proxy of proxies) {
      const list = byName.get(proxy.name) ?? [];
      list.push(proxy);
      byName.set(proxy.name, list);
    }
  }
  return [...byName.values()].flatMap((copies) => {
    const shown = copies.find((proxy) => proxy.status === "healthy") ?? copies[0];
    if (!shown) return [];
    const sum = (read: (proxy: ProxySnapshot) => number) => copies.reduce((total, p) => total + read(p), 0);
    const throughput = mergeThroughput(copies.flatMap((proxy) => proxy.throughput ?? []));
    return [{
      ...shown,
      active_connections: sum((p) => p.active_connections),
      total_connections: sum((p) => p.total_connections),
      failed_connections: sum((p) => p.failed_connections),
      bind_retries: sum((p) => p.bind_retries),
      bytes_in: sum((p) => p.bytes_in),
      bytes_out: sum((p) => p.bytes_out),
      ...(throughput ? { throughput } : {}),
    }];
  });
}

/**
 * Periodic TCP health checks of a proxy's local service, on the client: a change of state is reported
 * to the server, which then refuses outside connections at once instead of accepting and dropping them.
 *
 * @module
 */

import type { HealthCheckConfig } from "../config/types.ts";
import { sleep, withTimeout } from "../_async.ts";
import { closeQuietly } from "../transport/pipe.ts";
import { formatHostPort } from "../net/address.ts";
import { errorMessage } from "../text.ts";

/** The result of one check. */
export interface HealthResult {
  /** Whether a TCP connection could be made in time. */
  healthy: boolean;
  /** Why not, for people. */
  error: string | null;
}

/** Tries one TCP connect to `hostname:port` within `timeoutMs`. */
export async function checkTcp(hostname: string, port: number, timeoutMs: number): Promise<HealthResult> {
  const connecting = Deno.connect({ hostname, port });
  try {
    const conn = await withTimeout(
      connecting,
      timeoutMs,
      `a connection to ${formatHostPort(hostname, port)}`,
    );
    closeQuietly(conn);
    return { healthy: true, error: null };
  } catch (error) {
    // A connect that finishes after the timeout must still be closed.
    connecting.then(closeQuietly, () => {});
    return {
      healthy: false,
      error: `local service ${formatHostPort(hostname, port)} is not accepting connections: ${
        errorMessage(error)
      }`,
    };
  }
}

/** Where a health check connects. */
export interface HealthTarget {
  /** Host name or IP address. */
  hostname: string;
  /** TCP port. */
  port: number;
}

/**
 * Checks several backends of one proxy at once: healthy when at least one accepts within `timeoutMs`
 * (the proxy can still serve through failover); otherwise the error names every backend's failure.
 */
export async function checkAnyTcp(
  targets: readonly HealthTarget[],
  timeoutMs: number,
): Promise<HealthResult> {
  const results = await Promise.all(
    targets.map((target) => checkTcp(target.hostname, target.port, timeoutMs)),
  );
  if (results.length === 0 || results.some((result) => result.healthy)) {
    return { healthy: results.length > 0, error: results.length > 0 ? null : "no local service configured" };
  }
  return { healthy: false, error: results.map((result) => result.error).join("; ") };
}

/**
 * Checks every `intervalSecs` until `signal` aborts, calling `onChange` when the state differs from
 * the previous check (the first check always reports). Several targets count as healthy while any one
 * accepts. Never rejects.
 */
export async function monitorHealth(
  target: HealthTarget | readonly HealthTarget[],
  config: HealthCheckConfig,
  signal: AbortSignal,
  onChange: (result: HealthResult) => void,
): Promise<void> {
  let previous: boolean | null = null;
  while (!signal.aborted) {
    const result = "hostname" in target
      ? await checkTcp(target.hostname, target.port, config.timeoutSecs * 1000)
      : await checkAnyTcp(target, config.timeoutSecs * 1000);
    if (signal.aborted) return;
    if (result.healthy !== previous) {
      previous = result.healthy;
      onChange(result);
    }
    try {
      await sleep(config.intervalSecs * 1000, signal);
    } catch {
      return;
    }
  }
}

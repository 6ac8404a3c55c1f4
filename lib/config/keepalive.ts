/**
 * The one conversion of the `keepalive_*_secs` keys into the yamux session's options, shared by both
 * roles. The schema checks each value (positive seconds, at most a day) and `_rules.ts` that the timeout
 * exceeds the interval; this turns them into the whole milliseconds yamux requires.
 *
 * @module
 */

/** The keepalive keys of either role's config. */
export interface KeepaliveSecs {
  /** Seconds between yamux pings. */
  keepaliveIntervalSecs: number;
  /** Seconds after which an unanswered ping ends the session. */
  keepaliveTimeoutSecs: number;
}

/** The yamux session options for a role's keepalive. */
export interface SessionKeepalive {
  /** Milliseconds between pings; a whole number, at least 1 (0 would turn keepalive off). */
  keepaliveIntervalMs: number;
  /** Milliseconds after which an unanswered ping ends the session; a whole number, at least 1. */
  keepaliveTimeoutMs: number;
}

/**
 * A role's keepalive in the whole milliseconds a yamux session takes. Rounding matters: `1.001 * 1000` is
 * `1000.9999999999999` in floating point, which the session would refuse.
 *
 * ```ts
 * import { sessionKeepalive } from "./keepalive.ts";
 *
 * const options = sessionKeepalive({ keepaliveIntervalSecs: 1.001, keepaliveTimeoutSecs: 30 });
 * console.log(options.keepaliveIntervalMs); // 1001
 * ```
 */
export function sessionKeepalive(config: KeepaliveSecs): SessionKeepalive {
  return {
    keepaliveIntervalMs: Math.max(1, Math.round(config.keepaliveIntervalSecs * 1000)),
    keepaliveTimeoutMs: Math.max(1, Math.round(config.keepaliveTimeoutSecs * 1000)),
  };
}

/**
 * The statuses a published proxy can have: sent in `proxy_status` (README.md §4.4), kept by both roles'
 * counters, shown by stats, the Prometheus state set, `top` and the dashboard. The one list they all
 * derive from. Imports nothing, so any layer that shows a status may import it.
 *
 * @module
 */

/**
 * Every proxy status, in the order stats list them: `pending` (not published yet, or the session is
 * down), `healthy`, `unhealthy` (bind being retried, or the local service is down), `bind_failed` (given
 * up), `closed`.
 */
export const PROXY_STATUSES = ["pending", "healthy", "unhealthy", "bind_failed", "closed"] as const;

/** Health of a published proxy, as reported to the client and in stats. */
export type ProxyStatus = typeof PROXY_STATUSES[number];

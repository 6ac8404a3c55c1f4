/**
 * Statistics: live counters of proxies and sessions.
 *
 * @module
 */

export * from "./proxy_stats.ts";
export * from "./snapshot.ts";
export * from "./histogram.ts";
export * from "./event_log.ts";
export * from "./prometheus.ts";
export * from "./http.ts";
export * from "./format.ts";

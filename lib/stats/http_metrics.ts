/**
 * `GET /metrics`: the snapshot in the Prometheus text exposition format ({@linkcode renderPrometheus}),
 * for a scraper holding the token.
 *
 * @module
 */

import type { StatsSnapshot } from "./snapshot.ts";
import { PROMETHEUS_CONTENT_TYPE, renderPrometheus } from "./prometheus.ts";
import { COMMON_HEADERS } from "./http_responses.ts";

/** The answer to `GET /metrics`; a `HEAD` takes no snapshot and gets no body. */
export function metricsResponse(takeSnapshot: () => StatsSnapshot, isHead: boolean): Response {
  return new Response(isHead ? null : renderPrometheus(takeSnapshot()), {
    headers: { ...COMMON_HEADERS, "content-type": PROMETHEUS_CONTENT_TYPE },
  });
}

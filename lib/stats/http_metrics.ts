/**
 * `GET /metrics`: the snapshot in the Prometheus text exposition format ({@linkcode renderPrometheus}),
 * with the process metrics ({@linkcode readProcessMetrics}), for a scraper holding the token.
 *
 * @module
 */

import type { StatsSnapshot } from "./snapshot.ts";
import { PROMETHEUS_CONTENT_TYPE, renderPrometheus } from "./prometheus.ts";
import { readProcessMetrics } from "./process_metrics.ts";
import { COMMON_HEADERS } from "./http_responses.ts";

/**
 * The answer to `GET /metrics`: the snapshot and the process metrics, read from `/proc` asynchronously
 * for this scrape; a `HEAD` takes no snapshot, reads nothing and gets no body.
 */
export async function metricsResponse(takeSnapshot: () => StatsSnapshot, isHead: boolean): Promise<Response> {
  const headers = { ...COMMON_HEADERS, "content-type": PROMETHEUS_CONTENT_TYPE };
  if (isHead) return new Response(null, { headers });
  const process = await readProcessMetrics();
  // The snapshot after the reads, so that it is as fresh as the scrape.
  return new Response(renderPrometheus(takeSnapshot(), Date.now(), process), { headers });
}

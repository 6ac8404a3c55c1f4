/**
 * The stats endpoint's JSON API: `GET /api/stats` (the snapshot with the endpoint's clock, `?pretty`
 * indents it), `GET /healthz` (role and a count, never secret, answered without the token) and the 404
 * that lists the endpoints.
 *
 * @module
 */

import type { ServedStats, StatsSnapshot } from "./snapshot.ts";
import { json } from "./http_responses.ts";

/** The paths the endpoint answers, listed in its 404. */
export const ENDPOINTS: readonly string[] = ["/", "/api/stats", "/api/events", "/metrics", "/healthz"];

/** The snapshot plus the endpoint's clock, as `/api/stats` and `/api/events` serve it. */
export function servedStats(snapshot: StatsSnapshot): ServedStats {
  return { ...snapshot, now_ms: Date.now() };
}

/** `GET /api/stats`: `stats` as JSON, indented when the URL has `?pretty`. */
export function statsResponse(stats: ServedStats, url: URL): Response {
  return json(stats, 200, {}, url.searchParams.has("pretty") ? 2 : undefined);
}

/** `GET /healthz`: `{"status":"ok"}` with the role and the client's state or the server's client count. */
export function healthResponse(snapshot: StatsSnapshot): Response {
  return json({
    status: "ok",
    role: snapshot.role,
    ...(snapshot.role === "client" ? { state: snapshot.state } : { clients: snapshot.clients.length }),
  });
}

/** A 404 naming the path and listing {@linkcode ENDPOINTS}. */
export function notFoundResponse(path: string): Response {
  return json({ error: `No such page: ${path}`, endpoints: ENDPOINTS }, 404);
}

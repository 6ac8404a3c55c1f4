/**
 * The stats endpoint of a server or client: a small HTTP server (Deno.serve) with
 *
 * | route | what | where |
 * | --- | --- | --- |
 * | `GET /` | the live dashboard (HTML; `/dashboard.css`, `/dashboard.js`, `/favicon.svg` beside it) | dashboard.ts |
 * | `POST /login` | the dashboard's login form: the token for a session cookie | http_auth.ts |
 * | `GET /api/stats` | the snapshot as JSON ({@linkcode ServedStats}; `?pretty` indents it) | http_api.ts |
 * | `GET /api/events` | server-sent events: `snapshot` (the same JSON, every second and after each event) and `notice` (each new `EventSnapshot`) | http_events.ts |
 * | `GET /metrics` | Prometheus text format (`renderPrometheus`) | http_metrics.ts |
 * | `GET /healthz` | `{"status":"ok",…}`; never needs the token, tells nothing secret | http_api.ts |
 * | `POST /api/reload` | reloads the config file (`tls-tunnel reload`); the answer says what changed or why not | the `reload` option |
 *
 * With a token, every route but `/healthz` and the static assets needs `Authorization: Bearer TOKEN`
 * or the session cookie the dashboard's login form (or `/?token=TOKEN`) sets, so a browser can use the
 * dashboard. Without a token the endpoint must be bound to loopback, and requests whose `Host` is a
 * DNS name other than `localhost` are refused, so a web page cannot reach it by DNS rebinding
 * (http_auth.ts). This module binds, routes and stops; the files named above answer.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { formatHostPort, isLoopback } from "../net/address.ts";
import { classifyBindError, requireIpLiteral } from "../net/tcp.ts";
import type { EventLog } from "./event_log.ts";
import type { StatsSnapshot } from "./snapshot.ts";
import { assetResponse, dashboardResponse } from "./dashboard.ts";
import { healthResponse, notFoundResponse, servedStats, statsResponse } from "./http_api.ts";
import { StatsAuth } from "./http_auth.ts";
import { EventStreams } from "./http_events.ts";
import { metricsResponse } from "./http_metrics.ts";
import { json } from "./http_responses.ts";

export type { ServedStats } from "./snapshot.ts";
export { isTrustedHostHeader, SESSION_COOKIE } from "./http_auth.ts";
export { MAX_EVENT_STREAMS } from "./http_events.ts";

const logger = getLogger(["tls-tunnel", "stats"]);

/** Options of {@linkcode startStatsServer}. */
export interface StatsServerOptions {
  /** Address to bind, e.g. "127.0.0.1". */
  hostname: string;
  /** Port to bind; 0 lets the system choose. */
  port: number;
  /** Bearer token required by every route but `/healthz` (required unless `hostname` is loopback). */
  token?: string;
  /** Takes a fresh snapshot; called per request and per push. */
  snapshot: () => StatsSnapshot;
  /** Recent events, pushed live on `/api/events`. */
  events: EventLog;
  /** Stops the endpoint (same as {@linkcode StatsServer.shutdown}). */
  signal?: AbortSignal;
  /** How often `/api/events` pushes a snapshot (default 1000 ms). */
  pushIntervalMs?: number;
  /**
   * Answers `POST /api/reload` (same authorization as the API; a request from another web origin is
   * refused); absent: that route answers 404.
   */
  reload?: () => Promise<{ status: number; body: Record<string, unknown> }>;
}

/** A running stats endpoint. */
export interface StatsServer {
  /** The bound address. */
  readonly addr: Deno.NetAddr;
  /** A URL a person on this machine can open (a wildcard address becomes loopback). */
  readonly url: string;
  /** Resolves when the endpoint has stopped. */
  readonly finished: Promise<void>;
  /** Closes the event streams and stops the endpoint; resolves when it has stopped. */
  shutdown(): Promise<void>;
}

/** The endpoint would be reachable beyond this machine without a token. */
export class InsecureStatsEndpointError extends Error {
  override name = "InsecureStatsEndpointError";
  constructor(readonly hostname: string) {
    super(
      `The stats endpoint would listen on ${hostname}, beyond loopback, without a token; ` +
        `set stats_token or bind stats_addr to 127.0.0.1`,
    );
  }
}

function browsableUrl(addr: Deno.NetAddr): string {
  const host = addr.hostname === "0.0.0.0" ? "127.0.0.1" : addr.hostname === "::" ? "::1" : addr.hostname;
  return `http://${formatHostPort(host, addr.port)}/`;
}

/**
 * The request handler: the checks every request passes in order (a parsable Host, no DNS name without
 * a token, the method), then the routes that need no token, then authorization, then the data routes.
 */
function router(
  options: StatsServerOptions,
  auth: StatsAuth,
  eventStreams: EventStreams,
): (request: Request) => Promise<Response> {
  return async (request) => {
    let url: URL;
    try {
      // The URL is built from the Host header, which a peer can make unparsable (`evil.com:80:1`).
      url = new URL(request.url);
    } catch {
      return json({ error: "The Host header is not a valid host[:port]" }, 400);
    }
    const path = url.pathname;
    const isHead = request.method === "HEAD";
    const foreignHost = auth.refuseForeignHost(request);
    if (foreignHost) return foreignHost;
    if (path === "/login" && request.method === "POST") return await auth.login(request);
    if (path === "/api/reload" && request.method === "POST" && options.reload) {
      if (!auth.authorized(request)) return auth.unauthorized();
      // A form on some web page may POST here with the browser's cookie (or, without a token, at all).
      const origin = request.headers.get("origin");
      if (origin !== null && origin !== url.origin) {
        return json({ error: `A reload from the web page at ${origin} is refused` }, 403);
      }
      const answer = await options.reload();
      return json(answer.body, answer.status);
    }
    if (request.method !== "GET" && !isHead) {
      return json({ error: `Method ${request.method} is not allowed; use GET` }, 405, { allow: "GET, HEAD" });
    }
    const asset = assetResponse(path, isHead);
    if (asset) return asset;
    if (path === "/healthz") return healthResponse(options.snapshot());
    if (path === "/" && auth.hasToken && !auth.authorized(request)) return auth.loginForm(url);
    if (!auth.authorized(request)) return auth.unauthorized();
    switch (path) {
      case "/":
      case "/index.html":
        return dashboardResponse(isHead);
      case "/api/stats":
        return statsResponse(servedStats(options.snapshot()), url);
      case "/api/events":
        return eventStreams.open();
      case "/metrics":
        return metricsResponse(options.snapshot, isHead);
      default:
        return notFoundResponse(path);
    }
  };
}

/**
 * Binds and starts the stats endpoint. Throws a classified `BindError` (key `stats_port`) when the port
 * cannot be bound, and {@linkcode InsecureStatsEndpointError} for a non-loopback address without a token.
 */
export function startStatsServer(options: StatsServerOptions): StatsServer {
  const auth = new StatsAuth(options.token);
  if (!auth.hasToken && !isLoopback(options.hostname)) {
    throw new InsecureStatsEndpointError(options.hostname);
  }
  const eventStreams = new EventStreams({
    served: () => servedStats(options.snapshot()),
    events: options.events,
    pushIntervalMs: options.pushIntervalMs ?? 1000,
  });

  // Deno.serve would look a host name up synchronously; the config allows IP addresses only.
  requireIpLiteral(options.hostname, options.port);
  let httpServer: Deno.HttpServer<Deno.NetAddr>;
  try {
    httpServer = Deno.serve({
      hostname: options.hostname,
      port: options.port,
      onListen: () => {},
      onError: (error) => {
        logger.error("Stats request failed: {error}", { error: String(error) });
        return json({ error: "Internal error while answering; see the log" }, 500);
      },
    }, router(options, auth, eventStreams));
  } catch (error) {
    throw classifyBindError(error, options.hostname, options.port, "stats_port");
  }

  let stopping: Promise<void> | null = null;
  const shutdown = (): Promise<void> => {
    stopping ??= (async () => {
      options.signal?.removeEventListener("abort", onAbort);
      eventStreams.closeAll();
      await httpServer.shutdown();
    })();
    return stopping;
  };
  const onAbort = () => void shutdown();
  options.signal?.addEventListener("abort", onAbort, { once: true });
  if (options.signal?.aborted) void shutdown();

  return {
    addr: httpServer.addr,
    url: browsableUrl(httpServer.addr),
    finished: httpServer.finished,
    shutdown,
  };
}

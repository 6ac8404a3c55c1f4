/**
 * The stats endpoint of a server or client: a small HTTP server (Deno.serve) with
 *
 * | route | what |
 * | --- | --- |
 * | `GET /` | the live dashboard (HTML; `/dashboard.css`, `/dashboard.js`, `/favicon.svg` beside it) |
 * | `GET /api/stats` | the snapshot as JSON ({@linkcode ServedStats}; `?pretty` indents it) |
 * | `GET /api/events` | server-sent events: `snapshot` (the same JSON, every second and after each event) and `notice` (each new {@linkcode EventSnapshot}) |
 * | `GET /metrics` | Prometheus text format ({@linkcode renderPrometheus}) |
 * | `GET /healthz` | `{"status":"ok",…}`; never needs the token, tells nothing secret |
 *
 * With a token, every route but `/healthz` and the static assets needs `Authorization: Bearer TOKEN`
 * or the session cookie the dashboard's login form (or `/?token=TOKEN`) sets, so a browser can use the
 * dashboard. Without a token the endpoint must be bound to loopback, and requests whose `Host` is a
 * DNS name other than `localhost` are refused, so a web page cannot reach it by DNS rebinding.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { formatHostPort, isLoopback } from "../net/address.ts";
import { classifyBindError, requireIpLiteral } from "../net/tcp.ts";
import { hex, secretsEqual } from "../text.ts";
import type { EventLog } from "./event_log.ts";
import type { EventSnapshot, ServedStats, StatsSnapshot } from "./snapshot.ts";
import { PROMETHEUS_CONTENT_TYPE, renderPrometheus } from "./prometheus.ts";
import { DASHBOARD_CSS, DASHBOARD_HTML, DASHBOARD_JS, FAVICON_SVG, loginPage } from "./dashboard.ts";

const logger = getLogger(["tls-tunnel", "stats"]);

export type { ServedStats } from "./snapshot.ts";

/** Name of the cookie that carries a dashboard login. */
export const SESSION_COOKIE = "tls_tunnel_stats_session";
/** Most `/api/events` streams open at once; more get 503 (each costs a timer and a snapshot per second). */
export const MAX_EVENT_STREAMS = 32;
/** Largest login form accepted. */
const MAX_LOGIN_BODY_BYTES = 4096;
/** Delay of the snapshot pushed after an event, so a burst of events costs one snapshot. */
const EVENT_SNAPSHOT_DELAY_MS = 50;
/** Queued SSE chunks after which a reader is considered stuck and its stream is closed. */
const MAX_QUEUED_EVENT_CHUNKS = 64;

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

/**
 * Whether a request's `Host` is safe to answer without a token: `localhost` or an IP literal. A DNS
 * name means a browser was pointed at us under another site's name (DNS rebinding).
 */
export function isTrustedHostHeader(host: string | null): boolean {
  if (host === null) return true;
  const name = host.startsWith("[") ? host.slice(1, host.indexOf("]")) : host.replace(/:\d+$/, "");
  const lower = name.toLowerCase();
  return lower === "localhost" || lower.endsWith(".localhost") || /^\d{1,3}(\.\d{1,3}){3}$/.test(lower) ||
    lower.includes(":");
}

function browsableUrl(addr: Deno.NetAddr): string {
  const host = addr.hostname === "0.0.0.0" ? "127.0.0.1" : addr.hostname === "::" ? "::1" : addr.hostname;
  return `http://${formatHostPort(host, addr.port)}/`;
}

const COMMON_HEADERS: Record<string, string> = {
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

const HTML_HEADERS: Record<string, string> = {
  ...COMMON_HEADERS,
  "content-type": "text/html; charset=utf-8",
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
  "x-frame-options": "DENY",
};

function json(
  body: unknown,
  status = 200,
  extraHeaders: Record<string, string> = {},
  indent?: number,
): Response {
  return new Response(JSON.stringify(body, null, indent) + "\n", {
    status,
    headers: { ...COMMON_HEADERS, "content-type": "application/json; charset=utf-8", ...extraHeaders },
  });
}

/** Static assets: code, not data, so served without a token (the login page needs its stylesheet). */
const ASSETS: Record<string, { body: string; type: string }> = {
  "/dashboard.css": { body: DASHBOARD_CSS, type: "text/css; charset=utf-8" },
  "/dashboard.js": { body: DASHBOARD_JS, type: "text/javascript; charset=utf-8" },
  "/favicon.svg": { body: FAVICON_SVG, type: "image/svg+xml" },
};

/**
 * Binds and starts the stats endpoint. Throws a classified `BindError` (key `stats_port`) when the port
 * cannot be bound, and {@linkcode InsecureStatsEndpointError} for a non-loopback address without a token.
 */
export function startStatsServer(options: StatsServerOptions): StatsServer {
  const token = options.token !== undefined && options.token !== "" ? options.token : undefined;
  if (token === undefined && !isLoopback(options.hostname)) {
    throw new InsecureStatsEndpointError(options.hostname);
  }
  const pushIntervalMs = options.pushIntervalMs ?? 1000;
  /** Cookie value a login earns; random per process, so a restart logs browsers out. */
  const sessionSecret = hex(crypto.getRandomValues(new Uint8Array(32)));
  /** Closers of the open `/api/events` streams. */
  const eventStreams = new Set<() => void>();
  const served = (): ServedStats => ({ ...options.snapshot(), now_ms: Date.now() });

  const authorized = (request: Request): boolean => {
    if (token === undefined) return true;
    const header = request.headers.get("authorization");
    const bearer = header?.match(/^Bearer\s+(.+)$/i)?.[1]?.trim();
    if (bearer !== undefined && secretsEqual(bearer, token)) return true;
    const cookies = request.headers.get("cookie") ?? "";
    for (const part of cookies.split(";")) {
      const [name, ...rest] = part.trim().split("=");
      if (name === SESSION_COOKIE && secretsEqual(rest.join("="), sessionSecret)) return true;
    }
    return false;
  };

  const loginResponse = (suppliedToken: string): Response => {
    if (token !== undefined && secretsEqual(suppliedToken, token)) {
      return new Response(null, {
        status: 303,
        headers: {
          ...COMMON_HEADERS,
          location: "/",
          "set-cookie": `${SESSION_COOKIE}=${sessionSecret}; Path=/; HttpOnly; SameSite=Strict`,
        },
      });
    }
    return new Response(loginPage("That token is not accepted; check stats_token in the config."), {
      status: 401,
      headers: HTML_HEADERS,
    });
  };

  const eventStream = (): Response => {
    if (eventStreams.size >= MAX_EVENT_STREAMS) {
      return json(
        { error: `Too many open event streams (${MAX_EVENT_STREAMS}); close some dashboards` },
        503,
      );
    }
    const encoder = new TextEncoder();
    let close = () => {};
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        let closed = false;
        // The callback only runs after this function has defined `pushSnapshot`.
        const timer = setInterval(() => pushSnapshot(), pushIntervalMs);
        /** A snapshot due soon after an event; one for a burst of events. */
        let followUp: ReturnType<typeof setTimeout> | undefined;
        let unsubscribe = () => {};
        close = () => {
          if (closed) return;
          closed = true;
          clearInterval(timer);
          clearTimeout(followUp);
          unsubscribe();
          eventStreams.delete(close);
          try {
            controller.close();
          } catch {
            // Already cancelled by the reader.
          }
        };
        const send = (event: string, data: unknown) => {
          if (closed) return;
          if ((controller.desiredSize ?? 0) < -MAX_QUEUED_EVENT_CHUNKS) {
            close();
            return;
          }
          controller.enqueue(encoder.encode(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`));
        };
        const pushSnapshot = () => {
          try {
            send("snapshot", served());
          } catch (error) {
            logger.warn("Taking a stats snapshot failed: {error}", { error: String(error) });
          }
        };
        eventStreams.add(close);
        controller.enqueue(encoder.encode(`retry: 2000\n\n`));
        pushSnapshot();
        unsubscribe = options.events.subscribe((event: EventSnapshot) => {
          send("notice", event);
          followUp ??= setTimeout(() => {
            followUp = undefined;
            pushSnapshot();
          }, EVENT_SNAPSHOT_DELAY_MS);
        });
      },
      cancel() {
        close();
      },
    });
    return new Response(body, {
      headers: {
        ...COMMON_HEADERS,
        "content-type": "text/event-stream; charset=utf-8",
        "x-accel-buffering": "no",
      },
    });
  };

  const handle = async (request: Request): Promise<Response> => {
    let url: URL;
    try {
      // The URL is built from the Host header, which a peer can make unparsable (`evil.com:80:1`).
      url = new URL(request.url);
    } catch {
      return json({ error: "The Host header is not a valid host[:port]" }, 400);
    }
    const path = url.pathname;
    const isHead = request.method === "HEAD";
    if (token === undefined && !isTrustedHostHeader(request.headers.get("host"))) {
      return json({
        error: "This stats endpoint has no stats_token, so it only answers requests addressed to localhost " +
          "or an IP address; set stats_token to reach it under a DNS name",
      }, 403);
    }
    if (path === "/login" && request.method === "POST") {
      if (token === undefined) return new Response(null, { status: 303, headers: { location: "/" } });
      // The form is one short field; refuse to buffer anything bigger from an unauthenticated peer.
      const length = Number(request.headers.get("content-length") ?? NaN);
      if (!(length <= MAX_LOGIN_BODY_BYTES)) {
        await request.body?.cancel();
        return json({
          error: `The login form must be sent with a Content-Length of at most ${MAX_LOGIN_BODY_BYTES}`,
        }, 413);
      }
      const form = await request.formData().catch(() => null);
      const supplied = form?.get("token");
      return loginResponse(typeof supplied === "string" ? supplied : "");
    }
    if (request.method !== "GET" && !isHead) {
      return json({ error: `Method ${request.method} is not allowed; use GET` }, 405, { allow: "GET, HEAD" });
    }
    const asset = ASSETS[path];
    if (asset) {
      return new Response(isHead ? null : asset.body, {
        headers: {
          ...COMMON_HEADERS,
          "content-type": asset.type,
        },
      });
    }
    if (path === "/healthz") {
      const snapshot = options.snapshot();
      return json({
        status: "ok",
        role: snapshot.role,
        ...(snapshot.role === "client" ? { state: snapshot.state } : { clients: snapshot.clients.length }),
      });
    }
    if (path === "/" && token !== undefined && !authorized(request)) {
      const supplied = url.searchParams.get("token");
      if (supplied !== null) return loginResponse(supplied);
      // 200, not 401: the form is the page a person should see here, not an error.
      return new Response(loginPage(null), { headers: HTML_HEADERS });
    }
    if (!authorized(request)) {
      return json(
        { error: "This stats endpoint needs the stats_token: send `Authorization: Bearer <token>`" },
        401,
        { "www-authenticate": 'Bearer realm="tls-tunnel stats"' },
      );
    }
    switch (path) {
      case "/":
      case "/index.html":
        return new Response(isHead ? null : DASHBOARD_HTML, { headers: HTML_HEADERS });
      case "/api/stats":
        return json(served(), 200, {}, url.searchParams.has("pretty") ? 2 : undefined);
      case "/api/events":
        return eventStream();
      case "/metrics":
        return new Response(isHead ? null : renderPrometheus(options.snapshot()), {
          headers: { ...COMMON_HEADERS, "content-type": PROMETHEUS_CONTENT_TYPE },
        });
      default:
        return json({
          error: `No such page: ${path}`,
          endpoints: ["/", "/api/stats", "/api/events", "/metrics", "/healthz"],
        }, 404);
    }
  };

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
    }, handle);
  } catch (error) {
    throw classifyBindError(error, options.hostname, options.port, "stats_port");
  }

  let stopping: Promise<void> | null = null;
  const shutdown = (): Promise<void> => {
    stopping ??= (async () => {
      options.signal?.removeEventListener("abort", onAbort);
      for (const close of [...eventStreams]) close();
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

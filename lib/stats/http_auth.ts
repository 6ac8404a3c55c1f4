/**
 * Who may read the stats endpoint. With a `stats_token`, every route but `/healthz` and the static
 * assets needs `Authorization: Bearer TOKEN` or the session cookie that the dashboard's login form
 * (`POST /login`) or `/?token=TOKEN` sets, so a browser can use the dashboard. Without a token the
 * endpoint is bound to loopback (http.ts refuses anything else) and answers only requests whose `Host`
 * is `localhost` or an IP literal, so a web page cannot reach it by DNS rebinding.
 *
 * Tokens and cookies are compared with {@linkcode secretsEqual} (time independent of their content).
 *
 * @module
 */

import { hex, secretsEqual } from "../text.ts";
import { loginPage } from "./dashboard.ts";
import { COMMON_HEADERS, HTML_HEADERS, json } from "./http_responses.ts";

/** Name of the cookie that carries a dashboard login. */
export const SESSION_COOKIE = "tls_tunnel_stats_session";
/** Largest login form accepted. */
const MAX_LOGIN_BODY_BYTES = 4096;

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

/** The endpoint's access rules: its token (if any) and the session cookie a login earns. */
export class StatsAuth {
  readonly #token: string | undefined;
  /** Cookie value a login earns; random per process, so a restart logs browsers out. */
  readonly #sessionSecret = hex(crypto.getRandomValues(new Uint8Array(32)));

  /** `token` undefined or empty: no token, so every request is authorized (loopback only). */
  constructor(token: string | undefined) {
    this.#token = token !== undefined && token !== "" ? token : undefined;
  }

  /** Whether the endpoint has a token. */
  get hasToken(): boolean {
    return this.#token !== undefined;
  }

  /**
   * The 403 for a request under a DNS name when there is no token (DNS rebinding); null when the
   * request may go on.
   */
  refuseForeignHost(request: Request): Response | null {
    if (this.#token !== undefined || isTrustedHostHeader(request.headers.get("host"))) return null;
    return json({
      error: "This stats endpoint has no stats_token, so it only answers requests addressed to localhost " +
        "or an IP address; set stats_token to reach it under a DNS name",
    }, 403);
  }

  /** Whether the request carries the bearer token or a login's session cookie (always, without a token). */
  authorized(request: Request): boolean {
    const token = this.#token;
    if (token === undefined) return true;
    const header = request.headers.get("authorization");
    const bearer = header?.match(/^Bearer\s+(.+)$/i)?.[1]?.trim();
    if (bearer !== undefined && secretsEqual(bearer, token)) return true;
    const cookies = request.headers.get("cookie") ?? "";
    for (const part of cookies.split(";")) {
      const [name, ...rest] = part.trim().split("=");
      if (name === SESSION_COOKIE && secretsEqual(rest.join("="), this.#sessionSecret)) return true;
    }
    return false;
  }

  /** `POST /login`: the form's token for a session cookie (a bounded body; no buffering beyond it). */
  async login(request: Request): Promise<Response> {
    if (this.#token === undefined) return new Response(null, { status: 303, headers: { location: "/" } });
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
    return this.#loginWith(typeof supplied === "string" ? supplied : "");
  }

  /** `GET /` without authorization: `?token=` logs in, otherwise the login form. */
  loginForm(url: URL): Response {
    const supplied = url.searchParams.get("token");
    if (supplied !== null) return this.#loginWith(supplied);
    // 200, not 401: the form is the page a person should see here, not an error.
    return new Response(loginPage(null), { headers: HTML_HEADERS });
  }

  /** The 401 of a data route asked without the token. */
  unauthorized(): Response {
    return json(
      { error: "This stats endpoint needs the stats_token: send `Authorization: Bearer <token>`" },
      401,
      { "www-authenticate": 'Bearer realm="tls-tunnel stats"' },
    );
  }

  /** A redirect to the dashboard with the session cookie for the right token; the form again otherwise. */
  #loginWith(suppliedToken: string): Response {
    if (this.#token !== undefined && secretsEqual(suppliedToken, this.#token)) {
      return new Response(null, {
        status: 303,
        headers: {
          ...COMMON_HEADERS,
          location: "/",
          "set-cookie": `${SESSION_COOKIE}=${this.#sessionSecret}; Path=/; HttpOnly; SameSite=Strict`,
        },
      });
    }
    return new Response(loginPage("That token is not accepted; check stats_token in the config."), {
      status: 401,
      headers: HTML_HEADERS,
    });
  }
}

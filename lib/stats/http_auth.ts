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

import { isHostname, isIpv4, isIpv6, isLoopback } from "../net/address.ts";
import { hex, secretsEqual } from "../text.ts";
import { loginPage } from "./dashboard.ts";
import { COMMON_HEADERS, HTML_HEADERS, json } from "./http_responses.ts";

/** Name of the cookie that carries a dashboard login. */
export const SESSION_COOKIE = "tls_tunnel_stats_session";
/** Largest login form accepted. */
const MAX_LOGIN_BODY_BYTES = 4096;

/** Longest `Host` header worth parsing: a 253-character name and `:65535`. */
const MAX_HOST_HEADER_CHARS = 253 + 6;

/** A `Host` header split by {@linkcode parseHostHeader}: the host (IPv6 without brackets) and the port. */
export interface HostHeader {
  /** Host name, IPv4 address, or IPv6 address without its brackets. */
  host: string;
  /** Port, 1–65535; undefined when the header names none. */
  port: number | undefined;
}

/**
 * A `Host` header parsed strictly (RFC 9110 §7.2): a host name or IPv4 address, or an IPv6 address in
 * brackets, then optionally `:` and a port of 1–65535 in digits. Null for anything else: an empty or
 * non-digit port, a second colon, userinfo, spaces, brackets around something that is not IPv6, a
 * trailing dot, more than {@linkcode MAX_HOST_HEADER_CHARS} characters.
 */
export function parseHostHeader(value: string): HostHeader | null {
  if (value.length === 0 || value.length > MAX_HOST_HEADER_CHARS) return null;
  let host: string;
  let portText: string | undefined;
  if (value.startsWith("[")) {
    const close = value.indexOf("]");
    if (close < 0) return null;
    host = value.slice(1, close);
    const rest = value.slice(close + 1);
    if (rest !== "") {
      if (!rest.startsWith(":")) return null;
      portText = rest.slice(1);
    }
    if (!isIpv6(host)) return null;
  } else {
    const parts = value.split(":");
    // A bare IPv6 address is not a valid Host: without brackets its last group reads as a port.
    if (parts.length > 2) return null;
    host = parts[0] ?? "";
    portText = parts[1];
    if (!isIpv4(host) && !(isHostname(host) && !host.endsWith("."))) return null;
  }
  let port: number | undefined;
  if (portText !== undefined) {
    if (!/^\d{1,5}$/.test(portText)) return null;
    port = Number(portText);
    if (port < 1 || port > 65535) return null;
  }
  return { host, port };
}

/**
 * Whether a request's `Host` is safe to answer without a token: `localhost` (or a `*.localhost` name,
 * which browsers resolve to loopback) or an IP literal, as {@linkcode parseHostHeader} reads it. A DNS
 * name means a browser was pointed at us under another site's name (DNS rebinding); a header that does
 * not parse is not trusted. A request without `Host` (HTTP/1.0) comes from a program, not a browser.
 */
export function isTrustedHostHeader(host: string | null): boolean {
  if (host === null) return true;
  const parsed = parseHostHeader(host);
  if (parsed === null) return false;
  const name = parsed.host.toLowerCase();
  return isLoopback(name) || isIpv4(name) || isIpv6(name) || name.endsWith(".localhost");
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

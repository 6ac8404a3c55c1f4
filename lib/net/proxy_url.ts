/**
 * The outbound proxy a client leaves its network through: `proxy_url` (or `HTTPS_PROXY`) parsed into an
 * {@linkcode OutboundProxy}. Its credentials never show: the object prints, serialises and inspects as
 * the URL with `***` in place of the user name and password, and every error of this module quotes the
 * URL that way.
 *
 * @example Parse and print a proxy URL
 * ```ts
 * import { parseProxyUrl } from "./proxy_url.ts";
 *
 * const proxy = parseProxyUrl("http://alice:s3cret@10.0.0.5:3128", "proxy_url");
 * console.log(`${proxy}`); // "http://***@10.0.0.5:3128"
 * console.log(proxy.hop); // "the HTTP proxy 10.0.0.5:3128"
 * ```
 *
 * @module
 */

import { formatHostPort, isHostname, isIpv4, isIpv6 } from "./address.ts";
import { escapeForTerminal } from "../text.ts";

/** The proxy protocols a client can leave through. `socks5h` is `socks5` (the proxy resolves names). */
export const PROXY_SCHEMES = ["http", "socks5", "socks5h"] as const;

/** A scheme of {@linkcode PROXY_SCHEMES}. */
export type ProxyScheme = typeof PROXY_SCHEMES[number];

/** Longest proxy URL accepted (a config value or an environment variable). */
export const MAX_PROXY_URL_CHARS = 2048;

/** Longest user name or password, in UTF-8 bytes (SOCKS5's user/password method has one length byte). */
export const MAX_PROXY_CREDENTIAL_BYTES = 255;

/** The user name and password sent to the proxy. */
export interface ProxyCredentials {
  /** User name (never contains `:`, so HTTP Basic can carry it). */
  readonly username: string;
  /** Password. */
  readonly password: string;
}

/** A proxy URL is malformed or names something unsupported; the message never shows its credentials. */
export class ProxyUrlError extends Error {
  override name = "ProxyUrlError";
  constructor(
    /** What is wrong, starting with where the URL came from and the URL, masked. */
    readonly problem: string,
    /** What to write instead. */
    readonly hint: string,
  ) {
    super(`${problem}; ${hint}`);
  }
}

/**
 * An outbound proxy: how to reach it and the credentials to present. Printing it (template string,
 * `JSON.stringify`, `console.log`, a log property) shows {@linkcode OutboundProxy.masked}.
 */
export class OutboundProxy {
  readonly #credentials: ProxyCredentials | null;

  constructor(
    /** The protocol spoken to the proxy. */
    readonly scheme: ProxyScheme,
    /** The proxy's host name or IP address (IPv6 without brackets). */
    readonly host: string,
    /** The proxy's port. */
    readonly port: number,
    credentials: ProxyCredentials | null = null,
  ) {
    this.#credentials = credentials;
  }

  /** `"http"` for HTTP CONNECT, `"socks5"` for SOCKS5 (either scheme). */
  get protocol(): "http" | "socks5" {
    return this.scheme === "http" ? "http" : "socks5";
  }

  /** The credentials from the URL, or null. Only the handshake reads them. */
  get credentials(): ProxyCredentials | null {
    return this.#credentials;
  }

  /** The hop, as error messages name it: `the HTTP proxy 10.0.0.5:3128`, `the SOCKS5 proxy [::1]:1080`. */
  get hop(): string {
    return `the ${this.protocol === "http" ? "HTTP" : "SOCKS5"} proxy ${
      formatHostPort(this.host, this.port)
    }`;
  }

  /** The URL with `***` in place of the credentials: `http://***@10.0.0.5:3128`. */
  get masked(): string {
    return `${this.scheme}://${this.#credentials ? "***@" : ""}${formatHostPort(this.host, this.port)}`;
  }

  /** {@linkcode masked}. */
  toString(): string {
    return this.masked;
  }

  /** {@linkcode masked}: a config or a log record serialised as JSON shows no credentials. */
  toJSON(): string {
    return this.masked;
  }

  /** {@linkcode masked}, for `console.log` and `Deno.inspect`. */
  [Symbol.for("Deno.customInspect")](): string {
    return `OutboundProxy(${this.masked})`;
  }
}

/** `text` with the user information of every `scheme://user:pass@` in it replaced by `***`. */
export function maskProxyCredentials(text: string): string {
  return text.replace(/(\/\/)[^/\s]*@/g, "$1***@");
}

const URL_SHAPE =
  /^([A-Za-z][A-Za-z0-9+.-]*):\/\/(?:([^@/?#]*)@)?(\[[^\]/?#@]*\]|[^:/?#@\[\]]*)(?::([^/?#]*))?(\/?)$/;

/** Options of {@linkcode parseProxyUrl}. */
export interface ParseProxyUrlOptions {
  /**
   * Accept a URL without scheme as `http://` and without port as port 1080, like curl does for its proxy
   * environment variables. Off for `proxy_url`, which must say both.
   */
  lenient?: boolean;
}

/**
 * Parses `http://[user:pass@]host:port` or `socks5://[user:pass@]host:port` (also `socks5h://`); the
 * user name and password are percent-decoded. `source` names where the text came from (`proxy_url`,
 * `HTTPS_PROXY`) in the error messages.
 *
 * @throws {ProxyUrlError} for anything else; the message quotes the URL with its credentials masked
 */
export function parseProxyUrl(
  text: string,
  source: string,
  options: ParseProxyUrlOptions = {},
): OutboundProxy {
  const shown = () => JSON.stringify(escapeForTerminal(maskProxyCredentials(text.slice(0, 200))));
  const fail = (problem: string, hint: string): never => {
    throw new ProxyUrlError(`${source} ${shown()} ${problem}`, hint);
  };
  const example = "write it as http://user:pass@host:port or socks5://host:port";
  if (text.length > MAX_PROXY_URL_CHARS) fail(`is longer than ${MAX_PROXY_URL_CHARS} characters`, example);
  const trimmed = text.trim();
  const withScheme = options.lenient && !trimmed.includes("://") ? `http://${trimmed}` : trimmed;
  const match = URL_SHAPE.exec(withScheme);
  if (match === null) return fail("is not a proxy URL", example);
  const [, schemeText = "", userInfo, hostText = "", portText, ,] = match;
  const scheme = schemeText.toLowerCase();
  if (!(PROXY_SCHEMES as readonly string[]).includes(scheme)) {
    const why = scheme === "https"
      ? "uses https://, TLS to the proxy itself, which is not supported"
      : `uses the scheme ${JSON.stringify(escapeForTerminal(scheme))}, which is not supported`;
    fail(why, "use http:// (HTTP CONNECT) or socks5:// (SOCKS5)");
  }
  const host = hostText.startsWith("[") ? hostText.slice(1, -1) : hostText;
  if (hostText.startsWith("[") ? !isIpv6(host) : !(isIpv4(host) || isHostname(host))) {
    fail("has no valid host", "give the proxy's IP address (IPv6 in brackets) or host name");
  }
  let port = 1080;
  if (portText === undefined || portText === "") {
    if (!options.lenient) fail("has no port", "add the proxy's port, e.g. http://proxy.example:3128");
  } else if (!/^\d{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) {
    fail("has no valid port", "give a port from 1 to 65535");
  } else {
    port = Number(portText);
  }
  return new OutboundProxy(
    scheme as ProxyScheme,
    host,
    port,
    userInfo === undefined ? null : credentials(userInfo, fail),
  );
}

function credentials(userInfo: string, fail: (problem: string, hint: string) => never): ProxyCredentials {
  const colon = userInfo.indexOf(":");
  const decode = (part: string): string => {
    try {
      return decodeURIComponent(part);
    } catch {
      return fail(
        "has a malformed %-escape in its credentials",
        "write a % in a user name or password as %25",
      );
    }
  };
  const username = decode(colon < 0 ? userInfo : userInfo.slice(0, colon));
  const password = decode(colon < 0 ? "" : userInfo.slice(colon + 1));
  const hint = "percent-encode special characters (%3A for ':', %40 for '@')";
  if (username.length === 0) fail("has credentials with an empty user name", hint);
  if (username.includes(":")) fail("has a ':' in its user name", hint);
  for (const part of [username, password]) {
    // Control characters would end the Proxy-Authorization header early (header injection).
    if ([...part].some((char) => char < " " || char === "\x7f")) {
      fail("has a control character in its credentials", "remove it");
    }
    if (new TextEncoder().encode(part).length > MAX_PROXY_CREDENTIAL_BYTES) {
      fail(`has a user name or password over ${MAX_PROXY_CREDENTIAL_BYTES} bytes`, "use shorter credentials");
    }
  }
  return { username, password };
}

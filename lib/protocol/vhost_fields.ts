/**
 * The fields of `http` and `https` proxies in `register_proxies` (README.md §4.2): the host names and
 * path prefixes the server's shared vhost ports route by, and the per-proxy HTTP settings. Each has a
 * type, a bound and a character set, like every field of `fields.ts`.
 *
 * @module
 */

import { z } from "zod";
import { normalizeDomain } from "../net/sni.ts";
import { quoteForMessage } from "../text.ts";

/** Most `custom_domains` one proxy may list. */
export const MAX_VHOST_DOMAINS = 64;
/** Most `locations` one proxy may list. */
export const MAX_VHOST_LOCATIONS = 64;
/** Longest location (path prefix), in characters. */
export const MAX_LOCATION_CHARS = 256;

/** A virtual host's name: a DNS host name in lower case without a trailing dot (never an IP address). */
export const wireDomain = z.string().max(253).superRefine((value, ctx) => {
  if (normalizeDomain(value) !== value) {
    ctx.addIssue({
      code: "custom",
      message: `${quoteForMessage(value)} is not a lower-case DNS host name such as app.example.com`,
    });
  }
});

/** A `subdomain`: one DNS label in lower case (`app` of `app.tunnel.example.com`). */
export const wireSubdomain = z.string().regex(/^(?!-)[a-z0-9-]{1,63}(?<!-)$/, {
  error: "must be one lower-case DNS label: 1-63 letters, digits or '-', not starting or ending with '-'",
});

/** A location: a path prefix starting with `/`, printable ASCII without spaces. */
export const wireLocation = z.string().regex(new RegExp(`^/[\\x21-\\x7e]{0,${MAX_LOCATION_CHARS - 1}}$`), {
  error:
    `must start with '/' and hold at most ${MAX_LOCATION_CHARS} printable ASCII characters without spaces`,
});

/** A `host_header_rewrite`: a host name or IP address, optionally with `:port`, at most 255 characters. */
export const wireHostHeader = z.string().regex(/^[A-Za-z0-9.\-\[\]:]{1,255}$/, {
  error: "must be a host name or address, optionally with :port",
});

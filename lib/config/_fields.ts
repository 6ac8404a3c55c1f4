/**
 * The value types of the config files, one zod schema each (type, range, syntax and the conversion to
 * what the roles use): addresses, ports, durations, secrets, names, fingerprints, port ranges, backends.
 * The tables in `schema.ts` are built from these.
 *
 * @module
 */

import { z } from "zod";
import { isHost, isIpAddress } from "../net/address.ts";
import { parseCidr } from "../net/cidr.ts";
import { NAME_HINT, NAME_PATTERN, unsafeCharacter } from "../text.ts";
import { parsePortRange, parsePortRanges } from "./port_range.ts";

/** Minimum length of `auth_key` and `stats_token`. */
export const MIN_SECRET_LENGTH = 16;

/** A host name or IP address: addresses the roles dial (connecting resolves names without blocking). */
export const host = z.string().refine((value) => isHost(value), {
  message: "is not an IP address or host name",
  params: { hint: `write an address like "0.0.0.0", "127.0.0.1", "::1" or a name like "tunnel.example.com"` },
});
/**
 * An address to bind (bind_addr, stats_addr, publish_addr): an IP address, or `localhost`, which is
 * read as 127.0.0.1. Binding a host name looks it up synchronously and would freeze the process.
 */
export const bindAddress = z.string()
  .refine((value) => isIpAddress(value) || value.toLowerCase() === "localhost", {
    message: "is not an IP address",
    params: {
      hint: `write an IP address such as "0.0.0.0", "127.0.0.1" or "::1", or "localhost" for 127.0.0.1; ` +
        `a host name is never bound, since its lookup would block`,
    },
  })
  .transform((value) => value.toLowerCase() === "localhost" ? "127.0.0.1" : value);
/** A TCP port a peer connects to. */
export const port = z.int().min(1).max(65535);
/** A TCP port to bind; 0 lets the system pick one. */
export const bindablePort = z.int().min(0).max(65535);
/** A duration in seconds: positive, at most a day. */
export const seconds = z.number().positive().max(86_400);
/** A file path: any non-empty string (read later, relative to the current directory). */
export const filePath = z.string().min(1);
/** A key or token: long enough, and only characters the server accepts in `authenticate`. */
export const secret = z.string().min(MIN_SECRET_LENGTH).refine((value) => unsafeCharacter(value) === null, {
  message: "contains a control character, bidi control or lone surrogate",
  params: { hint: "use printable characters only (the server refuses these in authenticate)" },
});
/** A client or proxy name: the characters the wire protocol allows. */
export const name = z.string().refine((value) => NAME_PATTERN.test(value), {
  message: "is not a valid name",
  params: { hint: NAME_HINT },
});

/**
 * Splits `"host:port"` (IPv6 as `"[::1]:3000"`) into its parts, or returns why it cannot.
 * The host comes back without brackets, as `Deno.connect` wants it.
 */
export function parseHostPort(text: string): { host: string; port: number } | { problem: string } {
  const match = /^\[([^\]]*)\]:(\d{1,5})$/.exec(text) ?? /^([^:\[\]]+):(\d{1,5})$/.exec(text);
  if (match === null) {
    return {
      problem: text.includes(":") && !text.startsWith("[") && text.split(":").length > 2
        ? "is an IPv6 address without brackets"
        : "is not a host:port address",
    };
  }
  const [, host = "", portText = ""] = match;
  const port = Number(portText);
  if (!isHost(host)) {
    return {
      problem: `is not a host:port address: ${JSON.stringify(host)} is not an IP address or host name`,
    };
  }
  if (port < 1 || port > 65535) {
    return { problem: `is not a host:port address: ${port} is not a port from 1 to 65535` };
  }
  return { host, port };
}

/**
 * A certificate's SHA-256 fingerprint in the form `tls-tunnel cert` prints it (32 colon-separated hex
 * pairs, `AB:CD:…`) or as `SHA256:` followed by 64 hex digits, either in any letter case, normalised to the
 * upper-case colon-separated form of `colonHex` in lib/pki/fingerprint.ts (so the roles compare one
 * form); null for anything else. The `server_fingerprint` key and the CLI's flags share it.
 *
 * ```ts
 * import { normalizeSha256Fingerprint } from "./_fields.ts";
 *
 * console.log(normalizeSha256Fingerprint(`SHA256:${"ab".repeat(32)}`)); // "AB:AB:…:AB"
 * ```
 */
export function normalizeSha256Fingerprint(text: string): string | null {
  const hex = /^sha256:([0-9a-f]{64})$/i.exec(text)?.[1] ??
    (/^[0-9a-f]{2}(:[0-9a-f]{2}){31}$/i.test(text) ? text.replaceAll(":", "") : undefined);
  return hex === undefined ? null : hex.toUpperCase().replace(/(..)(?!$)/g, "$1:");
}

/** `server_fingerprint`: see {@link normalizeSha256Fingerprint}. */
export const sha256Fingerprint = z.string().transform((text, ctx) => {
  const fingerprint = normalizeSha256Fingerprint(text);
  if (fingerprint !== null) return fingerprint;
  ctx.addIssue({
    code: "custom",
    message: "is not a SHA-256 fingerprint",
    params: {
      hint: `write the server certificate's fingerprint as \`tls-tunnel cert\` prints it, 32 hex pairs ` +
        `joined by colons ("AB:CD:…:EF"), or as "SHA256:" followed by 64 hex digits`,
    },
  });
  return z.NEVER;
});

/** `"127.0.0.1:3000"` → `{ host, port }`. */
export const backendAddress = z.string().transform((text, ctx) => {
  const parsed = parseHostPort(text);
  if ("host" in parsed) return parsed;
  ctx.addIssue({
    code: "custom",
    message: parsed.problem,
    params: { hint: `write each backend as "host:port", e.g. "127.0.0.1:3000" or "[::1]:3000"` },
  });
  return z.NEVER;
});

/** `local_backends`: at least one backend, none twice. */
export const localBackends = z.array(backendAddress).refine((backends) => backends.length > 0, {
  message: "is empty",
  params: { hint: `list at least one backend, e.g. local_backends = ["127.0.0.1:3000", "127.0.0.1:3001"]` },
}).superRefine((backends, ctx) => {
  const seen = new Set<string>();
  backends.forEach((backend, index) => {
    const key = `${backend.host.toLowerCase()}|${backend.port}`;
    if (seen.has(key)) {
      ctx.addIssue({
        code: "custom",
        path: [index],
        message: "is listed twice in local_backends",
        params: { hint: "list every backend once; a backend listed twice would get twice the share" },
      });
    }
    seen.add(key);
  });
});

/** `"20000-20100,8080"` → PortRange[]. */
export const portRanges = z.string().transform((text, ctx) => {
  const ranges = parsePortRanges(text);
  if (Array.isArray(ranges)) return ranges;
  ctx.addIssue({ code: "custom", message: ranges.message, params: { hint: ranges.hint } });
  return z.NEVER;
});

/** `"20000-20100"` → PortRange. */
export const portRange = z.string().transform((text, ctx) => {
  const range = parsePortRange(text);
  if ("start" in range) return range;
  ctx.addIssue({ code: "custom", message: range.message, params: { hint: range.hint } });
  return z.NEVER;
});

/** `trusted_proxies` entries: an IP address or a CIDR network (`"10.0.0.0/8"`, `"::1"`). */
export const cidr = z.string().refine((value) => parseCidr(value) !== null, {
  message: "is not an IP address or CIDR network",
  params: { hint: `write an address like "127.0.0.1" or a network like "10.0.0.0/8" or "fd00::/8"` },
});

/**
 * `server_path`: an absolute HTTP path (starts with `/`), at most 256 characters, without spaces, `?`,
 * `#` or control characters (it goes into a request line as is).
 */
export const serverPath = z.string().refine(
  (value) => /^\/[A-Za-z0-9._~!$&'()*+,;=:@%\/-]{0,255}$/.test(value),
  {
    message: "is not an HTTP path",
    params: { hint: `write a path starting with "/", like "/tunnel", without spaces, "?" or "#"` },
  },
);

/**
 * The kinds of field the tunnel's messages are built from, each with a type, a bound and a character set,
 * shared by both directions: what one side builds is what the other side checks.
 *
 * Every string a peer sends has a bound and a character set: names are ASCII words, addresses are
 * addresses, identifiers are printable ASCII, and no field carries control characters, bidi controls or
 * lone surrogates (which would reach terminals, log lines and the dashboard). Identifiers and names that
 * break the rule are refused, quoted escaped and cut short; free text a peer reports (error messages,
 * reasons) is kept within its bound with those characters escaped, since it may quote an
 * operating-system error the sender did not write.
 *
 * @module
 */

import { z } from "zod";
import { isHost, isIpAddress } from "../net/address.ts";
import {
  describeUnsafe,
  escapeForTerminal,
  NAME_HINT,
  NAME_PATTERN,
  quoteForMessage,
  unsafeCharacter,
} from "../text.ts";

/** A TCP port, 0–65535 (0: "any", as asked or echoed). */
export const wirePort = z.number().int().min(0).max(65535);

/** Largest count (retries, repeats, limits) a message carries. */
export const WIRE_MAX_COUNT = 1_000_000;
/** A count: an integer from 0 to {@linkcode WIRE_MAX_COUNT}. */
export const wireCount = z.number().int().min(0).max(WIRE_MAX_COUNT);

/** Longest duration, in seconds, a message carries (11.6 days; the config allows one day). */
export const WIRE_MAX_SECS = 1_000_000;
/** A duration in seconds, from 0 to {@linkcode WIRE_MAX_SECS}, fractions allowed. */
export const wireSecs = z.number().min(0).max(WIRE_MAX_SECS);

/** An identifier a sender makes up (a session id, a software version): 1–`max` printable ASCII, no spaces. */
export function wireToken(max: number) {
  return z.string().regex(new RegExp(`^[\\x21-\\x7e]{1,${max}}$`), {
    error: `must be 1-${max} printable ASCII characters without spaces`,
  });
}

/** A machine-readable code (`PROXY_BIND_RETRY`, `ADDRESS_IN_USE`): 1–64 upper-case letters, digits or `_`. */
export const wireCode = z.string().regex(/^[A-Z][A-Z0-9_]{0,63}$/, {
  error: "must be 1-64 upper-case letters, digits or '_', starting with a letter",
});

/** Text from a peer, `min`–`max` UTF-16 units, refused when it holds a character of `lib/text.ts`'s UNSAFE. */
export function wireText(min: number, max: number) {
  return z.string().min(min).max(max).superRefine((value, ctx) => {
    const found = unsafeCharacter(value);
    if (found) {
      ctx.addIssue({
        code: "custom",
        message: `${
          describeUnsafe(found)
        }; control characters, bidi controls and lone surrogates are not accepted`,
      });
    }
  });
}

/**
 * Free text a peer reports (an error message, a reason), at most `max` UTF-16 units (longer is refused):
 * kept, with unsafe characters escaped (`\u001b`), so it can be shown as it is.
 */
export function wireReport(max: number) {
  return z.string().max(max).transform(escapeForTerminal);
}

/** Free text a peer reports that is cut at `max` UTF-16 units (with `…`) rather than refused, then escaped. */
export function wireReportCut(max: number) {
  return z.string().transform((value) =>
    escapeForTerminal(value.length > max ? `${value.slice(0, max)}…` : value)
  );
}

/** A proxy or client name: the config's rule ({@linkcode NAME_PATTERN}). */
export const wireName = z.string().superRefine((value, ctx) => {
  if (!NAME_PATTERN.test(value)) {
    ctx.addIssue({ code: "custom", message: `${quoteForMessage(value)} is not a valid name: ${NAME_HINT}` });
  }
});

/**
 * An address the server binds: an IP literal only. A host name would make `Deno.listen` look it up
 * synchronously, freezing every session for the resolver's timeout.
 */
export const wireBindAddress = z.string().superRefine((value, ctx) => {
  if (!isIpAddress(value)) {
    ctx.addIssue({
      code: "custom",
      message: `${quoteForMessage(value)} is not an IP address; the server binds IP addresses only and ` +
        `never looks up names: use an IP address such as 0.0.0.0 or 127.0.0.1`,
    });
  }
});

/** An address the server reports it bound (or is binding): an IP literal, as the client asked for one. */
export const wireBoundAddress = z.string().superRefine((value, ctx) => {
  if (!isIpAddress(value)) {
    ctx.addIssue({ code: "custom", message: `${quoteForMessage(value)} is not an IP address` });
  }
});

/** An address the client dials on its own side (the server only shows it): an IP address or host name. */
export const wireHost = z.string().superRefine((value, ctx) => {
  if (!isHost(value)) {
    ctx.addIssue({
      code: "custom",
      message: `${quoteForMessage(value)} is not an IP address or host name`,
    });
  }
});

/** Printable ASCII without spaces, 1–64 characters: software versions. */
export const wireVersion = wireToken(64);

/** The first problem of a failed parse, as `field.path: what is wrong`, for a refusal's message. */
export function describeParamsError(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return "malformed";
  return issue.path.length > 0 ? `${issue.path.map(String).join(".")}: ${issue.message}` : issue.message;
}

/**
 * The first problem of a failed parse of a peer's message, as `field.path: what is wrong`, saying
 * `missing` for an absent field: for the error or log line that names the field a peer got wrong.
 */
export function describeMessageError(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return "malformed";
  const message = issue.code === "invalid_type" && /received undefined$/.test(issue.message)
    ? "missing"
    : issue.message;
  return issue.path.length > 0 ? `${issue.path.map(String).join(".")}: ${message}` : message;
}

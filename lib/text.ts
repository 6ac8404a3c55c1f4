/**
 * Text that crosses a trust boundary: the character set of names (proxies, clients), the characters
 * never accepted from a peer, the escaping of whatever reaches a terminal or a log line anyway, the
 * constant-time comparison of secrets a peer presents, and bytes written as hex.
 *
 * A peer's string can carry terminal escape sequences (`ESC ] 0 ;` sets the window title), line breaks
 * that forge log lines, bidi controls that make `evil` read as `live`, and lone surrogates that break
 * UTF-8 encoders. The protocol refuses them ({@linkcode unsafeCharacter}); displays escape them
 * ({@linkcode escapeForTerminal}) because text also comes from places the protocol does not check
 * (operating-system errors, a stats endpoint `top` is pointed at).
 *
 * @module
 */

/**
 * A proxy or client name: 1-64 ASCII letters, digits, `.`, `_` or `-`, starting with a letter or digit.
 * The same rule applies in config files and on the wire.
 */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** Longest name {@linkcode NAME_PATTERN} accepts. */
export const NAME_MAX_LENGTH = 64;

/** What to do about a name {@linkcode NAME_PATTERN} refuses, for people. */
export const NAME_HINT = "use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit";

/**
 * Code points never accepted from a peer and always escaped on display: C0 controls, DEL, C1
 * controls, the bidi marks, embeddings, overrides and isolates (U+061C, U+200E, U+200F,
 * U+202A–U+202E, U+2066–U+2069), the line and paragraph separators U+2028/U+2029, and lone surrogates
 * (with the `u` flag a paired surrogate is one code point, so only unpaired halves match).
 */
const UNSAFE_CLASS = "[\\u0000-\\u001f\\u007f-\\u009f\\u061c\\u200e\\u200f\\u2028\\u2029\\u202a-\\u202e" +
  "\\u2066-\\u2069\\u{d800}-\\u{dfff}]";
const UNSAFE = new RegExp(UNSAFE_CLASS, "u");
const UNSAFE_GLOBAL = new RegExp(UNSAFE_CLASS, "gu");

/** An unsafe character found in a string. */
export interface UnsafeCharacter {
  /** `U+001B` etc. */
  codePoint: string;
  /** What kind of character it is, for people: "a control character", "a bidi control"… */
  kind: string;
  /** Position in the string, counted in UTF-16 code units from 0. */
  index: number;
}

function kindOf(code: number): string {
  if (code <= 0x1f || code === 0x7f || (code >= 0x80 && code <= 0x9f)) return "a control character";
  if (code >= 0xd800 && code <= 0xdfff) return "a lone surrogate";
  if (code === 0x2028 || code === 0x2029) return "a line separator";
  return "a bidi control";
}

/** The first character of `text` a peer may not send, or null when there is none. */
export function unsafeCharacter(text: string): UnsafeCharacter | null {
  const match = UNSAFE.exec(text);
  if (match === null) return null;
  const code = match[0].codePointAt(0) ?? 0;
  return {
    codePoint: `U+${code.toString(16).toUpperCase().padStart(4, "0")}`,
    kind: kindOf(code),
    index: match.index,
  };
}

/** Describes an {@linkcode UnsafeCharacter} for an error message: "contains U+202E (a bidi control) at 3". */
export function describeUnsafe(found: UnsafeCharacter): string {
  return `contains ${found.codePoint} (${found.kind}) at position ${found.index}`;
}

/**
 * `text` with every unsafe character written as an escape (`\n`, `\r`, `\t`, otherwise `\uXXXX`), so
 * that it stays on its line, cannot drive the terminal and reads in its stored order. Idempotent:
 * backslashes are left alone, so escaping twice changes nothing.
 */
export function escapeForTerminal(text: string): string {
  if (!UNSAFE.test(text)) return text;
  return text.replace(UNSAFE_GLOBAL, (char) => {
    if (char === "\n") return "\\n";
    if (char === "\r") return "\\r";
    if (char === "\t") return "\\t";
    return `\\u${(char.codePointAt(0) ?? 0).toString(16).padStart(4, "0")}`;
  });
}

/**
 * A peer's string quoted for an error message: escaped, cut to `maxChars`, in double quotes. Used when
 * a refusal names the value it refuses.
 */
export function quoteForMessage(text: string, maxChars = 80): string {
  const cut = text.length > maxChars ? `${text.slice(0, maxChars)}…` : text;
  return `"${escapeForTerminal(cut)}"`;
}

const encoder = new TextEncoder();

/**
 * Whether a secret a peer presented (a key, a token, a cookie) equals the expected one, compared so that
 * timing tells the sender nothing it does not already know.
 *
 * Guarantee: no early exit on content or on length. The loop walks the bytes of `presented` (the sender's
 * own input, whose length it knows) and reads `expected` cyclically, so its running time depends on the
 * length of `presented` only, never on where the two differ nor on the length of `expected`; a length
 * mismatch is folded into the result instead of returned first. (Encoding `expected` to UTF-8 is the only
 * step whose time follows its length: nanoseconds, beneath a network round trip's noise.)
 *
 * Synchronous on purpose: no hashing, so it fits a request handler that must answer without awaiting.
 *
 * @example
 * ```ts
 * import { secretsEqual } from "./text.ts";
 * secretsEqual("s3cret", "s3cret"); // true
 * secretsEqual("s3cre", "s3cret"); // false, in the time of a 5-byte walk
 * ```
 */
export function secretsEqual(presented: string, expected: string): boolean {
  const given = encoder.encode(presented);
  const secret = encoder.encode(expected);
  let difference = given.length ^ secret.length;
  for (let i = 0; i < given.length; i++) {
    // `i % 0` is NaN when `expected` is empty: the read gives undefined and the length already differs.
    difference |= (given[i] ?? 0) ^ (secret[i % secret.length] ?? 0);
  }
  return difference === 0;
}

/** Two lower-case hex digits for each byte of `bytes`. */
function hexPairs(bytes: ArrayBuffer | Uint8Array): string[] {
  return Array.from(new Uint8Array(bytes), (byte) => byte.toString(16).padStart(2, "0"));
}

/**
 * `bytes` as lower-case hex, two digits a byte, as ids and random tokens are written.
 *
 * @example
 * ```ts
 * import { hex } from "./text.ts";
 * hex(new Uint8Array([0xca, 0xfe, 0x01])); // "cafe01"
 * ```
 */
export function hex(bytes: ArrayBuffer | Uint8Array): string {
  return hexPairs(bytes).join("");
}

/**
 * `bytes` as upper-case hex pairs joined by colons, as certificate fingerprints are printed and pinned.
 *
 * @example
 * ```ts
 * import { colonHex } from "./text.ts";
 * colonHex(new Uint8Array([0xca, 0xfe, 0x01])); // "CA:FE:01"
 * ```
 */
export function colonHex(bytes: ArrayBuffer | Uint8Array): string {
  return hexPairs(bytes).join(":").toUpperCase();
}

/** The message of a thrown value: an `Error`'s message, anything else as text. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

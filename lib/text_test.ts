import assert from "node:assert/strict";
import fc from "fast-check";
import {
  colonHex,
  escapeForTerminal,
  hex,
  NAME_PATTERN,
  quoteForMessage,
  secretsEqual,
  unsafeCharacter,
} from "./text.ts";

/** One of each kind of character a peer may not send, with its code point. */
const HOSTILE: Array<[string, string]> = [
  ["\x00", "U+0000"],
  ["\x07", "U+0007"],
  ["\n", "U+000A"],
  ["\x1b", "U+001B"],
  ["\x7f", "U+007F"],
  ["\x85", "U+0085"],
  ["\x9b", "U+009B"],
  ["\u061c", "U+061C"],
  ["\u200e", "U+200E"],
  ["\u200f", "U+200F"],
  ["\u2028", "U+2028"],
  ["\u202a", "U+202A"],
  ["\u202e", "U+202E"],
  ["\u2066", "U+2066"],
  ["\u2069", "U+2069"],
  ["\ud800", "U+D800"],
  ["\udfff", "U+DFFF"],
];

Deno.test("unsafeCharacter finds controls, bidi controls and lone surrogates, with their position", () => {
  for (const [char, codePoint] of HOSTILE) {
    const found = unsafeCharacter(`ab${char}cd`);
    assert.ok(found, `${codePoint} should be refused`);
    assert.equal(found.codePoint, codePoint);
    assert.equal(found.index, 2);
  }
  assert.equal(unsafeCharacter("\u202e")?.kind, "a bidi control");
  assert.equal(unsafeCharacter("\x1b")?.kind, "a control character");
  assert.equal(unsafeCharacter("\udc00")?.kind, "a lone surrogate");
});

Deno.test("unsafeCharacter accepts ordinary text: accents, CJK, emoji (paired surrogates), spaces", () => {
  for (const text of ["web", "café", "数据库", "rocket 🚀", "a b", "[::1]:3000", ""]) {
    assert.equal(unsafeCharacter(text), null, text);
  }
});

Deno.test("escapeForTerminal writes every unsafe character as an escape and leaves the rest", () => {
  assert.equal(
    escapeForTerminal("\x1b]0;pwned\x07name\n\u202eevil\ud800 🚀"),
    "\\u001b]0;pwned\\u0007name\\n\\u202eevil\\ud800 🚀",
  );
  for (const [char] of HOSTILE) assert.equal(unsafeCharacter(escapeForTerminal(`x${char}y`)), null);
});

Deno.test("escapeForTerminal is idempotent and its output never holds an unsafe character", () => {
  fc.assert(
    fc.property(fc.string({ unit: "binary", maxLength: 64 }), (text) => {
      const once = escapeForTerminal(text);
      assert.equal(unsafeCharacter(once), null);
      assert.equal(escapeForTerminal(once), once);
    }),
    { numRuns: 500, seed: 7 },
  );
});

Deno.test("quoteForMessage quotes, escapes and cuts a peer's value", () => {
  assert.equal(quoteForMessage("slow.example"), '"slow.example"');
  assert.equal(quoteForMessage("a\x1bb"), '"a\\u001bb"');
  assert.equal(quoteForMessage("x".repeat(200), 10), `"${"x".repeat(10)}…"`);
});

Deno.test("NAME_PATTERN takes 1-64 letters, digits, '.', '_', '-' starting with a letter or digit", () => {
  for (const name of ["web", "db-1", "a.b_c", "9", "x".repeat(64)]) assert.ok(NAME_PATTERN.test(name), name);
  for (const name of ["", "-web", ".x", "x".repeat(65), "we b", "wéb", "a\nb", "web\u202e", "a/b"]) {
    assert.ok(!NAME_PATTERN.test(name), JSON.stringify(name));
  }
});

// Moved from lib/server/auth_test.ts (the hashing compare there) and lib/stats/http_test.ts
// (`timingSafeEqual`), whose two compares became this one.
Deno.test("secretsEqual matches only identical secrets, whatever their lengths", () => {
  assert.equal(secretsEqual("0123456789abcdef", "0123456789abcdef"), true);
  assert.equal(secretsEqual("0123456789abcdeX", "0123456789abcdef"), false);
  assert.equal(secretsEqual("short", "0123456789abcdef"), false);
  assert.equal(secretsEqual("", ""), true);
  assert.ok(secretsEqual("secret", "secret"));
  assert.ok(!secretsEqual("secret", "secreT"));
  assert.ok(!secretsEqual("secret", "secret2"));
  assert.ok(!secretsEqual("", "x"));
});

Deno.test("secretsEqual refuses a guess that repeats the secret or is its prefix, and any non-ASCII mismatch", () => {
  // The secret is read cyclically over the guess's length: a repetition must not pass.
  assert.ok(!secretsEqual("abcabc", "abc"));
  assert.ok(!secretsEqual("abc", "abcabc"));
  assert.ok(!secretsEqual("x", ""));
  assert.ok(secretsEqual("clé-ü", "clé-ü"));
  assert.ok(!secretsEqual("clé-ü", "cle-u"));
  fc.assert(fc.property(fc.string(), fc.string(), (a, b) => secretsEqual(a, b) === (a === b)));
  fc.assert(fc.property(fc.string(), (a) => secretsEqual(a, a)));
});

Deno.test("hex writes two lower-case digits a byte; colonHex upper-case pairs joined by colons", () => {
  assert.equal(hex(new Uint8Array([0x00, 0x0f, 0xca, 0xfe, 0xff])), "000fcafeff");
  assert.equal(colonHex(new Uint8Array([0x00, 0x0f, 0xca, 0xfe, 0xff])), "00:0F:CA:FE:FF");
  assert.equal(hex(new Uint8Array([1, 2]).buffer), "0102");
  assert.equal(hex(new Uint8Array(0)), "");
  assert.equal(colonHex(new Uint8Array(0)), "");
  fc.assert(fc.property(fc.uint8Array(), (bytes) => {
    const plain = hex(bytes);
    assert.equal(plain.length, bytes.length * 2);
    assert.equal(colonHex(bytes), (plain.match(/../g) ?? []).join(":").toUpperCase());
    assert.deepEqual(Uint8Array.from(plain.match(/../g) ?? [], (pair) => parseInt(pair, 16)), bytes);
  }));
});

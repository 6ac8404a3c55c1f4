import assert from "node:assert/strict";
import {
  FlagError,
  flagsFrom,
  parseFingerprintFlag,
  parseServerFlag,
  pinForm,
  type ServerFlags,
  shellQuote,
} from "./role_setup.ts";

const HEX = "5e0f".repeat(16);

Deno.test("--server takes HOST:PORT, a bare host or IPv4, and bracketed IPv6 with or without a port", () => {
  assert.deepEqual(parseServerFlag("tunnel.example.com:9443"), {
    server_addr: "tunnel.example.com",
    server_port: 9443,
  });
  assert.deepEqual(parseServerFlag("tunnel.example.com"), { server_addr: "tunnel.example.com" });
  assert.deepEqual(parseServerFlag("203.0.113.7"), { server_addr: "203.0.113.7" });
  assert.deepEqual(parseServerFlag("[2001:db8::7]:8443"), { server_addr: "2001:db8::7", server_port: 8443 });
  assert.deepEqual(parseServerFlag("[::1]"), { server_addr: "::1" });
});

Deno.test("--server refuses hostile values, quoting them (cut short) with the accepted form", () => {
  const cases: Array<[string, RegExp]> = [
    ["", /is not a host:port address/],
    [":8443", /is not a host:port address/],
    ["host:", /is not a host:port address/],
    ["host:70000", /70000 is not a port/],
    ["host:0", /0 is not a port/],
    ["::1:8443", /IPv6 address without brackets/],
    ["[::1]:x", /is not a host:port address/],
    ["[not-v6]:8443", /brackets hold an IPv6 address only/],
    ["[127.0.0.1]:8443", /brackets hold an IPv6 address only/],
    ["[]", /brackets hold an IPv6 address only/],
    ["bad host:8443", /not an IP address or host name/],
    ["host\n:8443", /not an IP address or host name|host:port/],
    ["a".repeat(10_000), /HOST:PORT/],
  ];
  for (const [value, expected] of cases) {
    assert.throws(() => parseServerFlag(value), (error: unknown) => {
      assert.ok(error instanceof FlagError, `${JSON.stringify(value)}: ${error}`);
      assert.match(error.message, expected, JSON.stringify(value));
      assert.match(error.message, /^--server "/);
      assert.ok(error.message.length < 400, `${error.message.length} characters`);
      assert.ok(!error.message.includes("\n"), error.message);
      return true;
    });
  }
});

Deno.test("--fingerprint takes SHA256:hex and colon pairs in any case; anything else names the forms", () => {
  assert.equal(parseFingerprintFlag(`SHA256:${HEX}`), `SHA256:${HEX}`);
  assert.equal(parseFingerprintFlag(` sha256:${HEX.toUpperCase()} `), `sha256:${HEX.toUpperCase()}`);
  const pairs = HEX.replace(/(..)(?!$)/g, "$1:");
  assert.equal(parseFingerprintFlag(pairs), pairs);
  for (
    const bad of [
      "",
      "SHA256:",
      `SHA256:${HEX}0`,
      `SHA1:${HEX}`,
      HEX,
      `SHA256:${"g".repeat(64)}`,
      "x".repeat(5000),
    ]
  ) {
    assert.throws(() => parseFingerprintFlag(bad), (error: unknown) => {
      assert.ok(error instanceof FlagError);
      assert.match(error.message, /is not a SHA-256 fingerprint; write "SHA256:" followed by 64 hex digits/);
      assert.ok(error.message.length < 400);
      return true;
    });
  }
});

Deno.test("the printed command quotes what a shell would split and writes the pin as SHA256:hex", () => {
  assert.equal(shellQuote("abc-DEF_123"), "abc-DEF_123");
  assert.equal(shellQuote("it's $HOME"), `'it'\\''s $HOME'`);
  assert.equal(pinForm("AB:CD:EF"), "SHA256:ABCDEF");
});

Deno.test("flagsFrom keeps the flags given and renames -c to configPath", () => {
  assert.deepEqual(flagsFrom<ServerFlags>({ config: "s.toml", port: "9", key: undefined, stateDir: "/x" }), {
    configPath: "s.toml",
    port: "9",
    stateDir: "/x",
  });
});

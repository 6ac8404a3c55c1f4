import assert from "node:assert/strict";
import {
  addressesOverlap,
  formatAddr,
  formatHostPort,
  hostOfHostPort,
  isHost,
  isHostname,
  isIpv4,
  isIpv6,
  isLoopback,
  isWildcard,
  unmapIpv4,
} from "./address.ts";

Deno.test("IPv4 and IPv6 addresses are recognised, malformed ones are not", () => {
  for (const ip of ["0.0.0.0", "127.0.0.1", "255.255.255.255", "10.1.2.3"]) assert.ok(isIpv4(ip), ip);
  for (const ip of ["256.0.0.1", "1.2.3", "01.2.3.4", "1.2.3.4.5", ""]) assert.ok(!isIpv4(ip), ip);
  for (
    const ip of ["::", "::1", "fe80::1", "2001:db8::8a2e:370:7334", "1:2:3:4:5:6:7:8", "::ffff:192.0.2.1"]
  ) {
    assert.ok(isIpv6(ip), ip);
  }
  for (const ip of ["1:2:3:4:5:6:7:8:9", "1::2::3", "12345::", "::g", "1:2:3:4:5:6:7"]) {
    assert.ok(!isIpv6(ip), ip);
  }
});

Deno.test("host names follow DNS label rules", () => {
  for (const name of ["localhost", "tunnel.example.com", "a-b.c", "db.internal", "x1"]) {
    assert.ok(isHostname(name), name);
  }
  for (const name of ["", "-a.com", "a-.com", "a b", "a..b", "1.2.3.4.5", "bad!"]) {
    assert.ok(!isHostname(name), name);
  }
  assert.ok(isHost("::1") && isHost("example.com") && !isHost("not a host"));
});

Deno.test("loopback and wildcard addresses are told apart from others", () => {
  for (const address of ["127.0.0.1", "127.8.9.10", "::1", "localhost", "LOCALHOST"]) {
    assert.ok(isLoopback(address));
  }
  for (const address of ["0.0.0.0", "10.0.0.1", "::", "example.com"]) {
    assert.ok(!isLoopback(address), address);
  }
  assert.ok(isWildcard("0.0.0.0") && isWildcard("::") && !isWildcard("127.0.0.1"));
  assert.ok(addressesOverlap("0.0.0.0", "127.0.0.1"));
  assert.ok(addressesOverlap("127.0.0.1", "127.0.0.1"));
  assert.ok(!addressesOverlap("127.0.0.1", "127.0.0.2"));
});

// Moved from lib/stats/http_test.ts, whose isLoopbackAddress became isLoopback.
Deno.test("the stats endpoint's loopback addresses are loopback", () => {
  for (const address of ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"]) {
    assert.ok(isLoopback(address), address);
  }
  for (const address of ["0.0.0.0", "::", "10.0.0.1", "example.com"]) assert.ok(!isLoopback(address));
});

/**
 * Every spelling the two former loopback tests (lib/net's isLoopback, lib/stats' isLoopbackAddress)
 * disagreed on, and the wildcards and near misses around them.
 */
const LOOPBACK_TABLE: ReadonlyArray<readonly [string, boolean]> = [
  ["127.0.0.1", true],
  ["127.0.0.0", true],
  ["127.255.255.255", true],
  ["127.8.9.10", true],
  ["127.999.1.1", false],
  ["127.0.0.01", false],
  ["127.1", false],
  ["128.0.0.1", false],
  ["::1", true],
  ["0:0:0:0:0:0:0:1", true],
  ["0::1", true],
  ["::0:1", true],
  ["[::1]", true],
  ["[0:0:0:0:0:0:0:1]", true],
  ["::ffff:127.0.0.1", true],
  ["::FFFF:127.8.9.10", true],
  ["::ffff:7f00:1", true],
  ["::ffff:128.0.0.1", false],
  ["::127.0.0.1", false],
  ["::2", false],
  ["1::1", false],
  ["::1%lo", false],
  ["[127.0.0.1]", false],
  ["[::1", false],
  ["::1]", false],
  ["[localhost]", false],
  ["localhost", true],
  ["LocalHost", true],
  ["localhost.", false],
  ["app.localhost", false],
  ["0.0.0.0", false],
  ["::", false],
  ["[::]", false],
  ["", false],
  [" 127.0.0.1", false],
];

Deno.test("isLoopback: 127.0.0.0/8, ::1 in any spelling, IPv4-mapped loopback, bracketed IPv6 and localhost", () => {
  for (const [address, expected] of LOOPBACK_TABLE) assert.equal(isLoopback(address), expected, address);
});

Deno.test("host:port puts an IPv6 address in brackets and leaves names and IPv4 as they are", () => {
  assert.equal(formatHostPort("127.0.0.1", 8080), "127.0.0.1:8080");
  assert.equal(formatHostPort("localhost", 0), "localhost:0");
  assert.equal(formatHostPort("::1", 443), "[::1]:443");
  assert.equal(formatHostPort("fe80::1", 22), "[fe80::1]:22");
  assert.equal(formatAddr({ transport: "tcp", hostname: "::", port: 7000 }), "[::]:7000");
  assert.equal(formatAddr({ transport: "udp", hostname: "10.0.0.1", port: 53 }), "10.0.0.1:53");
  assert.equal(formatAddr({ transport: "unix", path: "/tmp/s" }), "unix");
});

// Moved from lib/client/load_balancer_test.ts with the function (there peerIp).
Deno.test("peer addresses are reduced to their IP", () => {
  assert.equal(hostOfHostPort("127.0.0.1:5000"), "127.0.0.1");
  assert.equal(hostOfHostPort("[::1]:5000"), "::1");
  assert.equal(hostOfHostPort("::1"), "::1");
  assert.equal(hostOfHostPort("unknown"), "unknown");
  assert.equal(hostOfHostPort("[::1]"), "::1");
  assert.equal(hostOfHostPort("localhost:8080"), "localhost");
});

Deno.test("an IPv4 peer on a dual-stack socket is written as plain IPv4; other addresses are left alone", () => {
  const rows: Array<[string, string]> = [
    ["::ffff:192.0.2.1", "192.0.2.1"],
    ["::FFFF:127.0.0.1", "127.0.0.1"],
    ["::1", "::1"],
    ["192.0.2.1", "192.0.2.1"],
    ["::ffff:7f00:1", "::ffff:7f00:1"],
  ];
  for (const [address, expected] of rows) assert.equal(unmapIpv4(address), expected, address);
});

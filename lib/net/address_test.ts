import assert from "node:assert/strict";
import { addressesOverlap, isHost, isHostname, isIpv4, isIpv6, isLoopback, isWildcard } from "./address.ts";

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

import assert from "node:assert/strict";
import { cidrContains, clientBehindProxies, ipBytes, parseCidr } from "./cidr.ts";

Deno.test("cidr: IPv4 and IPv6 networks contain exactly their addresses", () => {
  const rows: [string, string, boolean][] = [
    ["127.0.0.0/8", "127.1.2.3", true],
    ["127.0.0.0/8", "128.0.0.1", false],
    ["127.0.0.0/8", "::ffff:127.0.0.9", true],
    ["10.1.2.3", "10.1.2.3", true],
    ["10.1.2.3", "10.1.2.4", false],
    ["192.168.0.0/23", "192.168.1.200", true],
    ["192.168.0.0/23", "192.168.2.1", false],
    ["::1", "::1", true],
    ["::1", "127.0.0.1", false],
    ["fd00::/8", "fd12:3456::1", true],
    ["fd00::/8", "fe80::1", false],
    ["0.0.0.0/0", "8.8.8.8", true],
    ["127.0.0.0/8", "not-an-ip", false],
  ];
  for (const [network, address, expected] of rows) {
    const cidr = parseCidr(network);
    assert.ok(cidr !== null, network);
    assert.deepEqual(cidrContains(cidr, address), expected, `${network} ∋ ${address}`);
  }
});

Deno.test("cidr: malformed networks are refused", () => {
  for (const text of ["10.0.0.0/33", "::/129", "10.0.0/8", "10.0.0.0/", "10.0.0.0/x", "host/8", ""]) {
    assert.deepEqual(parseCidr(text), null, text);
  }
});

Deno.test("cidr: ipBytes expands IPv6 with an IPv4 tail", () => {
  assert.deepEqual(
    ipBytes("64:ff9b::1.2.3.4"),
    new Uint8Array([0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]),
  );
  assert.deepEqual(ipBytes("[::1]")?.[15], 1);
});

Deno.test("cidr: the client behind proxies is believed only from trusted hops, nearest first", () => {
  const trusted = ["127.0.0.0/8", "10.0.0.0/8"].map((text) => parseCidr(text)).filter((c) => c !== null);
  // A trusted peer's header is believed.
  assert.equal(clientBehindProxies("127.0.0.1", ["203.0.113.5"], trusted), "203.0.113.5");
  // An untrusted peer's header is ignored.
  assert.equal(clientBehindProxies("198.51.100.7", ["203.0.113.5"], trusted), "198.51.100.7");
  // A client-forged first entry is skipped: the nearest untrusted hop wins.
  assert.equal(
    clientBehindProxies("127.0.0.1", ["1.1.1.1", "203.0.113.5", "10.0.0.3"], trusted),
    "203.0.113.5",
  );
  // Every hop trusted: the farthest.
  assert.equal(clientBehindProxies("127.0.0.1", ["10.0.0.9", "10.0.0.3"], trusted), "10.0.0.9");
  assert.equal(clientBehindProxies("127.0.0.1", [], trusted), "127.0.0.1");
});

import assert from "node:assert/strict";
import {
  encodeProxyHeader,
  encodeProxyV1,
  encodeProxyV2,
  parseHostPort,
  PROXY_V1_MAX_BYTES,
  PROXY_V2_SIGNATURE,
} from "./proxy_protocol_header.ts";

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

Deno.test("PROXY v1 writes a TCP4 line with source, destination and ports", () => {
  const line = encodeProxyV1({
    source: { host: "203.0.113.7", port: 51000 },
    destination: { host: "198.51.100.1", port: 8080 },
  });
  assert.equal(text(line), "PROXY TCP4 203.0.113.7 198.51.100.1 51000 8080\r\n");
});

Deno.test("PROXY v1 writes TCP6 for IPv6 (brackets dropped) and maps an IPv4 partner", () => {
  assert.equal(
    text(
      encodeProxyV1({ source: { host: "[2001:db8::7]", port: 1 }, destination: { host: "::1", port: 443 } }),
    ),
    "PROXY TCP6 2001:db8:0:0:0:0:0:7 0:0:0:0:0:0:0:1 1 443\r\n",
  );
  assert.equal(
    text(
      encodeProxyV1({
        source: { host: "2001:db8::7", port: 2 },
        destination: { host: "10.0.0.1", port: 80 },
      }),
    ),
    "PROXY TCP6 2001:db8:0:0:0:0:0:7 0:0:0:0:0:ffff:a00:1 2 80\r\n",
  );
  // An IPv4-mapped peer with an IPv4 destination is written as IPv4.
  assert.equal(
    text(
      encodeProxyV1({
        source: { host: "::ffff:192.0.2.9", port: 3 },
        destination: { host: "10.0.0.1", port: 80 },
      }),
    ),
    "PROXY TCP4 192.0.2.9 10.0.0.1 3 80\r\n",
  );
});

Deno.test("PROXY v1 says UNKNOWN for a host name or a bad port, and stays within 107 bytes", () => {
  assert.equal(
    text(
      encodeProxyV1({
        source: { host: "example.com", port: 1 },
        destination: { host: "10.0.0.1", port: 80 },
      }),
    ),
    "PROXY UNKNOWN\r\n",
  );
  assert.equal(
    text(
      encodeProxyV1({
        source: { host: "10.0.0.2", port: 70000 },
        destination: { host: "10.0.0.1", port: 80 },
      }),
    ),
    "PROXY UNKNOWN\r\n",
  );
  const longest = encodeProxyV1({
    source: { host: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", port: 65535 },
    destination: { host: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", port: 65535 },
  });
  assert.equal(longest.length, 104);
  assert.ok(longest.length <= PROXY_V1_MAX_BYTES);
});

Deno.test("PROXY v2 over IPv4: signature, version/command, TCP4, length 12, addresses and ports", () => {
  const header = encodeProxyV2({
    source: { host: "203.0.113.7", port: 51000 },
    destination: { host: "198.51.100.1", port: 8080 },
  });
  assert.equal(header.length, 28);
  assert.deepEqual(header.subarray(0, 12), PROXY_V2_SIGNATURE);
  assert.equal(text(header.subarray(6, 11)), "\nQUIT");
  assert.equal(header[12], 0x21);
  assert.equal(header[13], 0x11);
  const view = new DataView(header.buffer);
  assert.equal(view.getUint16(14), 12);
  assert.deepEqual([...header.subarray(16, 20)], [203, 0, 113, 7]);
  assert.deepEqual([...header.subarray(20, 24)], [198, 51, 100, 1]);
  assert.equal(view.getUint16(24), 51000);
  assert.equal(view.getUint16(26), 8080);
});

Deno.test("PROXY v2 over IPv6 is 52 bytes with family 0x21; UDP sets the transport nibble", () => {
  const header = encodeProxyV2({
    source: { host: "2001:db8::7", port: 1 },
    destination: { host: "::1", port: 2 },
  });
  assert.equal(header.length, 16 + 36);
  assert.equal(header[13], 0x21);
  assert.equal(new DataView(header.buffer).getUint16(14), 36);
  assert.deepEqual([...header.subarray(16, 18)], [0x20, 0x01]);
  assert.equal(header[16 + 31], 1);
  const udp = encodeProxyV2({
    source: { host: "10.0.0.2", port: 1 },
    destination: { host: "10.0.0.1", port: 2 },
    transport: "udp",
  });
  assert.equal(udp[13], 0x12);
});

Deno.test("PROXY v2 without IP literals is LOCAL with family UNSPEC and no address block", () => {
  const header = encodeProxyHeader("v2", {
    source: { host: "nowhere", port: 1 },
    destination: { host: "::1", port: 2 },
  });
  assert.equal(header.length, 16);
  assert.equal(header[12], 0x20);
  assert.equal(header[13], 0x00);
  assert.equal(new DataView(header.buffer).getUint16(14), 0);
});

Deno.test("parseHostPort reads a stream header's peer_addr, IPv6 in brackets; refuses hostile text", () => {
  assert.deepEqual(parseHostPort("10.0.0.7:5000"), { host: "10.0.0.7", port: 5000 });
  assert.deepEqual(parseHostPort("[::1]:443"), { host: "::1", port: 443 });
  for (const bad of ["", "::1", "10.0.0.7", "[::1]", "a:b:c", "10.0.0.7:99999", "x:1\r\nPROXY"]) {
    assert.equal(parseHostPort(bad), null, bad);
  }
});

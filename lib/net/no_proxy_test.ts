import assert from "node:assert/strict";
import { noProxyMatches, proxyFromEnvironment } from "./no_proxy.ts";
import { ProxyUrlError } from "./proxy_url.ts";

Deno.test("NO_PROXY: host names match themselves and names under them, with or without a leading dot", () => {
  const list = "localhost, .corp.example ,example.org.";
  for (const host of ["localhost", "LOCALHOST", "corp.example", "tunnel.corp.example", "a.b.example.org."]) {
    assert.ok(noProxyMatches(list, host), host);
  }
  for (const host of ["notcorp.example", "example.com", "localhost.evil", "127.0.0.1", "org"]) {
    assert.ok(!noProxyMatches(list, host), host);
  }
});

Deno.test("NO_PROXY: IP addresses, CIDR blocks and * match like curl", () => {
  const list = "127.0.0.1 10.0.0.0/8,[::1],fd00::/8 192.168.1.0/33 bogus/8";
  for (const host of ["127.0.0.1", "10.200.3.4", "::1", "0:0:0:0:0:0:0:1", "[::1]", "fd12:3456::9"]) {
    assert.ok(noProxyMatches(list, host), host);
  }
  for (const host of ["127.0.0.2", "11.0.0.1", "::2", "fe80::1", "192.168.1.7", "localhost"]) {
    assert.ok(!noProxyMatches(list, host), host);
  }
  assert.ok(noProxyMatches("*", "anything.example"));
  assert.ok(noProxyMatches("0.0.0.0/0", "203.0.113.9"));
  assert.ok(!noProxyMatches("0.0.0.0/0", "::1"), "an IPv4 block never matches an IPv6 address");
  assert.ok(!noProxyMatches("", "example.com"));
  assert.ok(!noProxyMatches(" , ,", "example.com"));
});

Deno.test("proxy from the environment: https_proxy before HTTPS_PROXY before ALL_PROXY; NO_PROXY bypasses", () => {
  const env = (vars: Record<string, string>) => (name: string) => vars[name];
  assert.deepEqual(proxyFromEnvironment(env({}), "tunnel.example"), { kind: "none" });
  const both = proxyFromEnvironment(
    env({
      https_proxy: "http://lower:3128",
      HTTPS_PROXY: "http://upper:3128",
      ALL_PROXY: "socks5://all:1080",
    }),
    "tunnel.example",
  );
  assert.equal(both.kind === "proxy" && `${both.proxy} ${both.variable}`, "http://lower:3128 https_proxy");
  const all = proxyFromEnvironment(
    env({ HTTPS_PROXY: "", ALL_PROXY: "socks5://all:1080" }),
    "tunnel.example",
  );
  assert.equal(all.kind === "proxy" && `${all.proxy} ${all.variable}`, "socks5://all:1080 ALL_PROXY");
  assert.deepEqual(
    proxyFromEnvironment(env({ HTTPS_PROXY: "http://p:3128", NO_PROXY: "127.0.0.1" }), "127.0.0.1"),
    { kind: "bypass", variable: "NO_PROXY" },
  );
  const notListed = proxyFromEnvironment(env({ HTTPS_PROXY: "p:3128", no_proxy: "other" }), "127.0.0.1");
  assert.equal(notListed.kind === "proxy" && `${notListed.proxy}`, "http://p:3128");
});

Deno.test("proxy from the environment: a malformed variable is an error naming it, credentials masked", () => {
  assert.throws(
    () =>
      proxyFromEnvironment((name) => name === "HTTPS_PROXY" ? "https://u:hunter2@p:3128" : undefined, "h"),
    (error: unknown) =>
      error instanceof ProxyUrlError && /^HTTPS_PROXY "https:\/\/\*\*\*@p:3128"/.test(error.message) &&
      !error.message.includes("hunter2"),
  );
});

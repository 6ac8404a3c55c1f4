import assert from "node:assert/strict";
import { maskProxyCredentials, OutboundProxy, parseProxyUrl, ProxyUrlError } from "./proxy_url.ts";

function refusal(text: string, lenient = false): string {
  try {
    parseProxyUrl(text, "proxy_url", { lenient });
  } catch (error) {
    assert.ok(error instanceof ProxyUrlError, `expected a ProxyUrlError, got ${error}`);
    return error.message;
  }
  assert.fail(`${text} was accepted`);
}

Deno.test("proxy_url: http and socks5 URLs give the scheme, host, port and decoded credentials", () => {
  const http = parseProxyUrl("http://alice:s%40cret%3A1@10.0.0.5:3128", "proxy_url");
  assert.equal(http.protocol, "http");
  assert.equal(http.host, "10.0.0.5");
  assert.equal(http.port, 3128);
  assert.deepEqual(http.credentials, { username: "alice", password: "s@cret:1" });
  assert.equal(http.hop, "the HTTP proxy 10.0.0.5:3128");

  const socks = parseProxyUrl("SOCKS5://[::1]:1080/", "proxy_url");
  assert.equal(socks.scheme, "socks5");
  assert.equal(socks.host, "::1");
  assert.equal(socks.credentials, null);
  assert.equal(socks.hop, "the SOCKS5 proxy [::1]:1080");
  assert.equal(parseProxyUrl("socks5h://proxy.corp.example:1080", "proxy_url").protocol, "socks5");
  assert.deepEqual(parseProxyUrl("http://bob@proxy:8080", "proxy_url").credentials, {
    username: "bob",
    password: "",
  });
});

Deno.test("proxy_url: the credentials never show when the proxy is printed, serialised or inspected", () => {
  const proxy = parseProxyUrl("http://alice:hunter2@proxy.example:3128", "proxy_url");
  for (const shown of [`${proxy}`, JSON.stringify({ proxy }), Deno.inspect(proxy), Deno.inspect({ proxy })]) {
    assert.ok(!shown.includes("hunter2") && !shown.includes("alice"), shown);
    assert.match(shown, /http:\/\/\*\*\*@proxy\.example:3128/);
  }
  assert.equal(`${new OutboundProxy("socks5", "::1", 1080)}`, "socks5://[::1]:1080");
  assert.equal(
    maskProxyCredentials("HTTPS_PROXY=http://u:p@h:1 and socks5://x@y:2"),
    "HTTPS_PROXY=http://***@h:1 and socks5://***@y:2",
  );
});

Deno.test("proxy_url: malformed or unsupported URLs are refused with what to write, credentials masked", () => {
  const cases: [string, RegExp][] = [
    ["https://alice:hunter2@proxy:3128", /https:\/\/, TLS to the proxy itself, which is not supported/],
    ["socks4://proxy:1080", /scheme "socks4", which is not supported/],
    ["http://alice:hunter2@proxy", /has no port/],
    ["http://proxy:0", /has no valid port/],
    ["http://proxy:65536", /has no valid port/],
    ["http://proxy:80x", /has no valid port/],
    ["http://pro_xy:3128", /has no valid host/],
    ["http://::1:3128", /is not a proxy URL|has no valid host/],
    ["http://[zz::1]:3128", /has no valid host/],
    ["http://proxy:3128/path", /is not a proxy URL/],
    ["http://proxy:3128?q=1", /is not a proxy URL/],
    ["proxy:3128", /is not a proxy URL/],
    ["http://:hunter2@proxy:3128", /empty user name/],
    ["http://al%3Aice:hunter2@proxy:3128", /':' in its user name/],
    ["http://alice:hunt%0D%0Aer2@proxy:3128", /control character/],
    ["http://alice:%E0%A4%A@proxy:3128", /malformed %-escape/],
    [`http://alice:${"p".repeat(256)}@proxy:3128`, /over 255 bytes/],
    [`http://proxy:3128${" ".repeat(3000)}`, /longer than 2048 characters/],
    ["", /is not a proxy URL/],
  ];
  for (const [text, pattern] of cases) {
    const message = refusal(text);
    assert.match(message, pattern, text);
    assert.match(message, /^proxy_url /);
    assert.ok(!message.includes("hunter2"), `the password shows in: ${message}`);
  }
});

Deno.test("proxy_url: the lenient form (environment variables) defaults to http:// and port 1080 like curl", () => {
  const proxy = parseProxyUrl("proxy.corp.example", "HTTPS_PROXY", { lenient: true });
  assert.equal(`${proxy}`, "http://proxy.corp.example:1080");
  assert.equal(`${parseProxyUrl("10.0.0.5:3128", "HTTPS_PROXY", { lenient: true })}`, "http://10.0.0.5:3128");
  assert.match(refusal("ftp://proxy:21", true), /scheme "ftp"/);
});

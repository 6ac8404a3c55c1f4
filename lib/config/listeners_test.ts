import assert from "node:assert/strict";
import { ConfigError, formatIssue } from "./errors.ts";
import { parseConfigText } from "./load.ts";
import type { ServerConfig } from "./types.ts";

const KEY = 'auth_key = "0123456789abcdef-key"\n';

function parseServer(text: string, env: Record<string, string> = {}): ServerConfig {
  const parsed = parseConfigText(text, { env });
  assert.equal(parsed.kind, "server");
  return parsed.config as ServerConfig;
}

function issuesOf(text: string): string[] {
  try {
    parseConfigText(text, { env: {} });
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${error}`);
    return error.issues.map(formatIssue);
  }
  assert.fail("the config was accepted");
}

function entry(transport: string, port: number, more = ""): string {
  return `[[server.listeners]]\ntransport = "${transport}"\nbind_addr = "127.0.0.1"\nbind_port = ${port}\n${more}\n`;
}

Deno.test("a server without [[server.listeners]] has one listener: [server]'s transport, bind_addr and bind_port", () => {
  const defaults = parseServer(`[server]\n${KEY}`);
  assert.deepEqual(defaults.listeners, [{
    transport: "tls",
    bindAddr: "0.0.0.0",
    bindPort: 8443,
    serverPath: "/tunnel",
    behindProxy: false,
    trustedProxies: ["127.0.0.0/8", "::1"],
  }]);
  const wss = parseServer(
    `[server]\n${KEY}transport = "wss"\nbind_port = 443\nserver_path = "/t"\nbehind_proxy = true\n`,
  );
  assert.deepEqual(wss.listeners.map((l) => [l.transport, l.bindPort, l.serverPath, l.behindProxy]), [
    ["wss", 443, "/t", true],
  ]);
});

Deno.test("with only [[server.listeners]], the entries are every listener, in order, and [server] adds none", () => {
  const config = parseServer(
    `[server]\n${KEY}trusted_proxies = ["10.0.0.0/8"]\n` + entry("tls", 9001) +
      entry("wss", 9002, 'server_path = "/ws"') +
      entry("http2", 9003, 'behind_proxy = true\ntrusted_proxies = ["192.168.0.0/16"]'),
  );
  assert.deepEqual(
    config.listeners.map((l) => `${l.transport} ${l.bindAddr}:${l.bindPort} ${l.serverPath}`),
    [
      "tls 127.0.0.1:9001 /tunnel",
      "wss 127.0.0.1:9002 /ws",
      "http2 127.0.0.1:9003 /tunnel",
    ],
  );
  assert.deepEqual(config.listeners.map((l) => l.trustedProxies), [
    ["10.0.0.0/8"],
    ["10.0.0.0/8"],
    ["192.168.0.0/16"],
  ], "an entry without trusted_proxies takes [server]'s");
  assert.equal(config.listeners[2]?.behindProxy, true);
  // The first listener stands for "the" listener where one is shown.
  assert.equal(config.bindPort, 9001);
  assert.equal(config.transport, "tls");
});

Deno.test("[server] that writes bind_port (or transport, bind_addr, or their environment variables) is the first listener, before the entries", () => {
  const config = parseServer(`[server]\n${KEY}bind_port = 8443\n` + entry("wss", 443));
  assert.deepEqual(config.listeners.map((l) => `${l.transport} ${l.bindAddr}:${l.bindPort}`), [
    "tls 0.0.0.0:8443",
    "wss 127.0.0.1:443",
  ]);
  const fromTransport = parseServer(`[server]\n${KEY}transport = "http2"\n` + entry("wss", 443));
  assert.deepEqual(fromTransport.listeners.map((l) => `${l.transport}:${l.bindPort}`), [
    "http2:8443",
    "wss:443",
  ]);
  const fromEnv = parseServer(`[server]\n${KEY}` + entry("wss", 443), { TLS_TUNNEL_BIND_PORT: "8000" });
  assert.deepEqual(fromEnv.listeners.map((l) => `${l.transport}:${l.bindPort}`), ["tls:8000", "wss:443"]);
});

Deno.test("two listeners on the same TCP port and overlapping addresses are refused, naming both", () => {
  const issues = issuesOf(`[server]\n${KEY}` + entry("tls", 9001) + entry("wss", 9001));
  assert.equal(issues.length, 1, issues.join("\n"));
  assert.match(
    issues[0] ?? "",
    /^server\.listeners\[1\]\.bind_port: .*wss on 127\.0\.0\.1:9001.*server\.listeners\[0\].*tls on 127\.0\.0\.1:9001/,
  );
  assert.match(issues[0] ?? "", /give each listener its own bind_port/);

  // The wildcard overlaps every address; [server]'s own listener counts too.
  const withServer = issuesOf(`[server]\n${KEY}bind_port = 9001\n` + entry("http2", 9001));
  assert.match(
    withServer.join("\n"),
    /server\.listeners\[0\]\.bind_port: .*\[server\]'s listener \(tls on 0\.0\.0\.0:9001\)/,
  );
});

Deno.test("listeners on different ports, on addresses that do not overlap, or on port 0 are accepted", () => {
  parseServer(`[server]\n${KEY}` + entry("tls", 9001) + entry("wss", 9002) + entry("http2", 9003));
  parseServer(
    `[server]\n${KEY}` + entry("tls", 9001) +
      `[[server.listeners]]\ntransport = "wss"\nbind_addr = "127.0.0.2"\nbind_port = 9001\n`,
  );
  const anyPort = parseServer(`[server]\n${KEY}` + entry("tls", 0) + entry("wss", 0));
  assert.equal(anyPort.listeners.length, 2);
});

Deno.test("a listener naming an unknown transport is refused with the known transports listed", () => {
  const issues = issuesOf(`[server]\n${KEY}` + entry("tls", 9001) + entry("carrier-pigeon", 9002));
  const issue = issues.find((text) => text.startsWith("server.listeners[1].transport"));
  assert.ok(issue !== undefined, issues.join("\n"));
  assert.match(issue, /"carrier-pigeon" is not supported/);
  for (const known of ["tls", "wss", "http2"]) assert.match(issue, new RegExp(`"${known}"`));
});

Deno.test("a listener entry must say its transport and bind_port, and its keys are checked like [server]'s", () => {
  const issues = issuesOf(`[server]\n${KEY}[[server.listeners]]\nbind_addr = "127.0.0.1"\nbind_prot = 1\n`);
  const text = issues.join("\n");
  assert.match(text, /server\.listeners\[0\]\.transport: missing required key `transport`/);
  assert.match(text, /server\.listeners\[0\]\.bind_port: missing required key `bind_port`/);
  assert.match(text, /server\.listeners\[0\]\.bind_prot: unknown key `bind_prot`.*bind_port/);
  assert.match(
    issuesOf(`[server]\n${KEY}` + entry("tls", 70000)).join("\n"),
    /listeners\[0\]\.bind_port: 70000 is not a valid port/,
  );
});

Deno.test("behind_proxy on a tls listener entry is refused; on wss and http2 it is accepted", () => {
  const issues = issuesOf(`[server]\n${KEY}` + entry("tls", 9001, "behind_proxy = true"));
  assert.match(
    issues.join("\n"),
    /server\.listeners\[0\]\.behind_proxy: behind_proxy = true needs transport = "wss" or "http2"/,
  );
  parseServer(
    `[server]\n${KEY}` + entry("wss", 9001, "behind_proxy = true") +
      entry("http2", 9002, "behind_proxy = true"),
  );
});

Deno.test("[server]'s server_path or behind_proxy with only [[server.listeners]] is refused rather than silently unused", () => {
  const issues = issuesOf(`[server]\n${KEY}server_path = "/x"\n` + entry("wss", 9001));
  assert.match(
    issues.join("\n"),
    /server\.server_path: server_path is set in \[server\], but .* makes no listener/,
  );
  // One message, not also "behind_proxy needs transport wss" about a [server] transport that binds nothing.
  const behind = issuesOf(`[server]\n${KEY}behind_proxy = true\n` + entry("wss", 9001));
  assert.equal(behind.length, 1, behind.join("\n"));
  assert.match(
    behind[0] ?? "",
    /^server\.behind_proxy: behind_proxy is set in \[server\], but .* makes no listener/,
  );
});

Deno.test("more than 16 listeners, or the stats port on a listener's port, are refused", () => {
  const many = Array.from({ length: 17 }, (_, index) => entry("tls", 9000 + index)).join("");
  assert.match(
    issuesOf(`[server]\n${KEY}${many}`).join("\n"),
    /server\.listeners: .*too (large|many)|maximum is 16/,
  );
  const stats = issuesOf(`[server]\n${KEY}stats_port = 9002\n` + entry("tls", 9001) + entry("wss", 9002));
  assert.match(
    stats.join("\n"),
    /server\.stats_port: stats_port 9002 is also the bind_port of server\.listeners\[1\]/,
  );
});

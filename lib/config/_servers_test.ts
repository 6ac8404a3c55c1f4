import assert from "node:assert/strict";
import { ConfigError, formatIssue } from "./errors.ts";
import { parseConfigText } from "./load.ts";
import type { ClientConfig, ServerConfig } from "./types.ts";

const KEY = "0123456789abcdef-key";
const PROXY = `[[proxies]]\nname = "web"\npublish_port = 8080\nlocal_port = 3000\n`;

function client(table: string): ClientConfig {
  const parsed = parseConfigText(`[client]\nauth_key = "${KEY}"\n${table}\n${PROXY}`, { env: {} });
  assert.equal(parsed.kind, "client");
  return parsed.config as ClientConfig;
}

function issues(text: string): string[] {
  try {
    parseConfigText(text, { env: {} });
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    return error.issues.map(formatIssue);
  }
  assert.fail("the config was accepted");
}

Deno.test("servers as strings: host:port, [v6]:port, a bare host takes server_port; names default to host:port", () => {
  const config = client(
    `server_port = 9443\nca_cert_path = "ca.pem"\nservers = ["a.example.com:8443", "[2001:db8::1]:443", "c.example.com"]`,
  );
  assert.deepEqual(
    config.servers.map((s) => [s.name, s.serverAddr, s.serverPort, s.serverName, s.caCertPath]),
    [
      ["a.example.com:8443", "a.example.com", 8443, "a.example.com", "ca.pem"],
      ["[2001:db8::1]:443", "2001:db8::1", 443, "2001:db8::1", "ca.pem"],
      ["c.example.com:9443", "c.example.com", 9443, "c.example.com", "ca.pem"],
    ],
  );
  // The first server stands in for the single-server keys.
  assert.equal(config.serverAddr, "a.example.com");
  assert.equal(config.serverPort, 8443);
});

Deno.test("[[client.servers]] tables override [client]'s connection keys per server", () => {
  const pin = `SHA256:${"ab".repeat(32)}`;
  const config = client(
    `transport = "wss"\nserver_name = "tunnel.example.com"\n` +
      `[[client.servers]]\nname = "east"\nserver_addr = "10.0.0.1"\n` +
      `[[client.servers]]\nname = "west"\nserver_addr = "10.0.0.2"\nserver_port = 443\ntransport = "tls"\n` +
      `server_name = "west.example.com"\nserver_fingerprint = "${pin}"\nserver_path = "/t"\n`,
  );
  const [east, west] = config.servers;
  assert.deepEqual(east, {
    name: "east",
    serverAddr: "10.0.0.1",
    serverPort: 8443,
    serverName: "tunnel.example.com",
    transport: "wss",
    serverPath: "/tunnel",
  });
  assert.equal(west?.transport, "tls");
  assert.equal(west?.serverName, "west.example.com");
  assert.equal(west?.serverPort, 443);
  assert.equal(west?.serverPath, "/t");
  assert.match(west?.serverFingerprint ?? "", /^AB:AB:/);
});

Deno.test("server_addr alone is one server; server_addr with servers, neither, duplicates and bad entries are refused", () => {
  assert.deepEqual(client(`server_addr = "tunnel.example.com"`).servers.map((s) => s.name), [
    "tunnel.example.com:8443",
  ]);
  const head = `[client]\nauth_key = "${KEY}"\n`;
  assert.match(
    issues(`${head}server_addr = "a.example.com"\nservers = ["b.example.com:8443"]\n${PROXY}`).join("\n"),
    /client\.servers: server_addr and servers are both set/,
  );
  assert.match(
    issues(`${head}${PROXY}`).join("\n"),
    /client\.server_addr: missing required key `server_addr`/,
  );
  assert.match(issues(`${head}servers = []\n${PROXY}`).join("\n"), /client\.servers: servers is empty/);
  assert.match(
    issues(`${head}servers = ["a.example.com:8443", "a.example.com"]\n${PROXY}`).join("\n"),
    /client\.servers\[1\]: a\.example\.com:8443 is already listed as servers\[0\]/,
  );
  assert.match(
    issues(`${head}servers = ["a:1", "b:2"]\n[[client.servers]]\n${PROXY}`).join("\n") +
      issues(`${head}servers = ["::1:8443"]\n${PROXY}`).join("\n"),
    /IPv6 address without brackets/,
  );
  assert.match(
    issues(`${head}[[client.servers]]\nserver_port = 1\n${PROXY}`).join("\n"),
    /client\.servers\[0\]\.server_addr: missing required key `server_addr`/,
  );
  assert.match(
    issues(`${head}[[client.servers]]\nserver_addr = "a"\nserver_adr = "b"\n${PROXY}`).join("\n"),
    /unknown key `server_adr`.*server_addr/,
  );
});

Deno.test("default_publish_addr: 0.0.0.0 by default, an IP literal only", () => {
  const parse = (line: string) =>
    parseConfigText(`[server]\nauth_key = "${KEY}"\n${line}\n`, { env: {} }).config as ServerConfig;
  assert.equal(parse("").defaultPublishAddr, "0.0.0.0");
  assert.equal(parse(`default_publish_addr = "127.0.0.2"`).defaultPublishAddr, "127.0.0.2");
  assert.equal(parse(`default_publish_addr = "::1"`).defaultPublishAddr, "::1");
  for (const bad of ["localhost", "tunnel.example.com", ""]) {
    assert.throws(
      () => parse(`default_publish_addr = "${bad}"`),
      /default_publish_addr: .*is not an IP address/,
    );
  }
});

Deno.test('a quic [[client.servers]] entry is checked like transport = "quic": skip_verify needs a pin, proxy_url is refused', () => {
  const FP = Array.from({ length: 32 }, () => "AB").join(":");
  const entries = `[[client.servers]]\nserver_addr = "a.example.com"\n\n` +
    `[[client.servers]]\nserver_addr = "b.example.com"\ntransport = "quic"\n`;
  const skip = issues(`[client]\nauth_key = "${KEY}"\nskip_verify = true\n\n${entries}\n${PROXY}`);
  assert.equal(skip.length, 1, skip.join("\n"));
  assert.match(
    skip[0] ?? "",
    /client\.skip_verify: skip_verify = true cannot be used with transport = "quic" \(servers\[1\]\)/,
  );
  // The quic entry's own pin answers it; the tls entry may skip verification.
  const pinned = client(`skip_verify = true\n\n${entries}server_fingerprint = "${FP}"\n`);
  assert.deepEqual(pinned.servers.map((s) => s.transport), ["tls", "quic"]);
  const proxied = issues(
    `[client]\nauth_key = "${KEY}"\nproxy_url = "http://127.0.0.1:3128"\n\n${entries}\n${PROXY}`,
  );
  assert.equal(proxied.length, 1, proxied.join("\n"));
  assert.match(proxied[0] ?? "", /client\.proxy_url: transport = "quic" \(servers\[1\]\) runs over UDP/);
  // Every entry quic through [client] transport: each is named.
  const all = issues(
    `[client]\nauth_key = "${KEY}"\ntransport = "quic"\nskip_verify = true\nservers = ["a.example.com:1", "b.example.com:2"]\n\n${PROXY}`,
  );
  assert.match(all.join("\n"), /\(servers\[0\], servers\[1\]\)/);
});

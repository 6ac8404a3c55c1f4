import assert from "node:assert/strict";
import { ConfigError, formatIssue } from "./errors.ts";
import { parseConfigText, type ParsedConfig } from "./load.ts";
import { RUST_TCP_PROXY_TYPES } from "./_compat.ts";

const KEY = "0123456789abcdef-key";
const CLIENT_HEAD = `[client]\nserver_addr = "127.0.0.1"\nauth_key = "${KEY}"\n`;
const SERVER_HEAD = `[server]\nauth_key = "${KEY}"\n`;

function proxy(extra: string, name = "web", port = 8080): string {
  return `[[proxies]]\nname = "${name}"\npublish_port = ${port}\nlocal_port = 3000\n${extra}\n`;
}

function parse(text: string): ParsedConfig {
  return parseConfigText(text, { env: {} });
}

function issuesOf(text: string): string[] {
  try {
    parse(text);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${error}`);
    return error.issues.map(formatIssue);
  }
  assert.fail("the config was accepted");
}

Deno.test("the Rust tool's proxy_type values load as TCP proxies, each with a note on its key", () => {
  for (const value of RUST_TCP_PROXY_TYPES) {
    const parsed = parse(CLIENT_HEAD + proxy(`proxy_type = "${value}"`));
    assert.equal(parsed.kind, "client");
    if (parsed.kind !== "client") continue;
    assert.equal(parsed.config.proxies[0]?.proxyType, "tcp", value);
    assert.equal(parsed.notes.length, 1, JSON.stringify(parsed.notes));
    const note = parsed.notes[0];
    assert.equal(note?.path, "proxies[0].proxy_type");
    assert.equal(note?.message, `proxy_type "${value}" is carried as a TCP proxy ("tcp")`);
    assert.match(note?.hint ?? "", /connection pooling and TCP_NODELAY/);
    assert.match(note?.hint ?? "", /write proxy_type = "tcp" to drop this note/);
  }
});

Deno.test("the examples' type key stands in for proxy_type and is not passed on to the roles", () => {
  const parsed = parse(CLIENT_HEAD + proxy(`type = "ssh"`, "ssh", 2222) + proxy(`type = "tcp"`, "db", 5432));
  assert.equal(parsed.kind, "client");
  if (parsed.kind !== "client") return;
  for (const entry of parsed.config.proxies) {
    assert.equal(entry.proxyType, "tcp");
    assert.ok(!("type" in entry), "type does not reach the roles");
    // Written like the Rust examples (type, no publish_addr): private, as in the Rust tool (issue 15).
    assert.equal(entry.visibility, "private");
  }
  assert.deepEqual(parsed.notes.map((note) => note.path), [
    "proxies[0].type",
    "proxies[0]",
    "proxies[1].type",
    "proxies[1]",
  ]);
  assert.match(
    parsed.notes[0]?.message ?? "",
    /^type = "ssh" \(.*name for proxy_type\) is read as proxy_type = "tcp"$/,
  );
  assert.match(parsed.notes[0]?.hint ?? "", /TCP_NODELAY/);
  assert.equal(parsed.notes[2]?.hint, `write proxy_type = "tcp" instead of type to drop this note`);
  assert.match(parsed.notes[1]?.message ?? "", /^has no publish_addr .* so it is private there and here/);
});

Deno.test("a Rust-style proxy with publish_addr, or with visibility written, stays as written; [[visitors]] make the rest private", () => {
  const published = parse(CLIENT_HEAD + proxy(`type = "ssh"\npublish_addr = "0.0.0.0"`));
  assert.ok(published.kind === "client");
  assert.equal(published.config.proxies[0]?.visibility, "public");
  const explicit = parse(CLIENT_HEAD + proxy(`type = "ssh"\nvisibility = "both"`));
  assert.ok(explicit.kind === "client");
  assert.equal(explicit.config.proxies[0]?.visibility, "both");
  assert.deepEqual(explicit.notes.map((note) => note.path), ["proxies[0].type"]);
  const withVisitors = parse(
    CLIENT_HEAD + proxy("") + `[[visitors]]\nname = "db"\npublish_port = 5432\nbind_port = 15432\n`,
  );
  assert.ok(withVisitors.kind === "client");
  assert.equal(withVisitors.config.proxies[0]?.visibility, "private");
  assert.deepEqual(withVisitors.notes.map((note) => note.path), ["proxies[0]"]);
  // Our own style (no type, no [[visitors]]): a proxy without publish_addr stays public.
  const plain = parse(CLIENT_HEAD + proxy(""));
  assert.ok(plain.kind === "client");
  assert.equal(plain.config.proxies[0]?.visibility, "public");
});

Deno.test("a plain tcp proxy and a server without allow_forward draw no note", () => {
  assert.deepEqual(parse(CLIENT_HEAD + proxy("") + proxy(`proxy_type = "tcp"`, "b", 8081)).notes, []);
  assert.deepEqual(parse(SERVER_HEAD).notes, []);
  assert.deepEqual(parse(SERVER_HEAD + "allow_forward = false\n").notes, []);
});

Deno.test("allow_forward loads with the Rust meaning: it reaches the server's config, with no note", () => {
  const off = parse(SERVER_HEAD + "allow_forward = false\n");
  const on = parse(SERVER_HEAD + "allow_forward = true\n");
  assert.ok(off.kind === "server" && on.kind === "server");
  assert.equal(on.config.allowForward, true);
  assert.deepEqual(off.config, parse(SERVER_HEAD).config, "false is the default");
  assert.deepEqual(on.notes, []);
  assert.deepEqual(issuesOf(SERVER_HEAD + `allow_forward = "yes"\n`), [
    `server.allow_forward: expected true or false, got the string "yes" (check the value's TOML type)`,
  ]);
});

Deno.test("an unknown proxy_type or type is refused with the accepted values listed", () => {
  for (const key of ["proxy_type", "type"]) {
    const issues = issuesOf(CLIENT_HEAD + proxy(`${key} = "quic"`));
    assert.equal(issues.length, 1, issues.join("\n"));
    assert.ok(issues[0]?.startsWith(`proxies[0].${key}: ${key} "quic" is not supported (`), issues[0]);
    assert.match(
      issues[0] ?? "",
      /proxy_type is one of "tcp", .*"http", "https", "http\/1\.1", "http\/2\.0", "ssh"/,
    );
  }
  // Letter case matters, as in the Rust tool.
  assert.match(
    issuesOf(CLIENT_HEAD + proxy(`proxy_type = "SSH"`))[0] ?? "",
    /proxy_type "SSH" is not supported/,
  );
});

Deno.test('proxy_type = "http" is an HTTP vhost proxy: it names domains and no port of its own', () => {
  const issues = issuesOf(CLIENT_HEAD + proxy(`proxy_type = "http"`));
  assert.deepEqual(issues, [
    `proxies[0].custom_domains: an http proxy needs custom_domains or subdomain: the server routes by host ` +
    `name (add custom_domains = ["app.example.com"], or subdomain = "app" (served under the server's ` +
    `subdomain_host))`,
    `proxies[0].publish_port: an http proxy has no port of its own: it is served on the server's ` +
    `vhost_http_port (remove publish_port)`,
  ]);
});

Deno.test("the Rust tool's forwarder types in [[proxies]] are refused, saying where they belong", () => {
  for (const value of ["socks5"]) {
    const issues = issuesOf(CLIENT_HEAD + proxy(`proxy_type = "${value}"`));
    assert.equal(issues.length, 1, issues.join("\n"));
    assert.match(
      issues[0] ?? "",
      new RegExp(`"${value}" is a type of the Rust tls-tunnel's \\[\\[forwarders\\]\\]`),
    );
    assert.match(issues[0] ?? "", /proxy_type is one of "tcp"/);
  }
});

Deno.test("a config that fails to load carries no notes, only its problems", () => {
  const issues = issuesOf(
    CLIENT_HEAD + proxy(`type = "ssh"\nlocal_port = 0`).replace("local_port = 3000\n", ""),
  );
  assert.equal(issues.length, 1, issues.join("\n"));
  assert.match(issues[0] ?? "", /^proxies\[0\]\.local_port: 0 is not a valid port/);
});

import assert from "node:assert/strict";
import fc from "fast-check";
import { stringify } from "smol-toml";
import { ConfigError, formatIssue } from "./errors.ts";
import {
  InvalidConfigError,
  loadClientConfig,
  loadConfig,
  loadServerConfig,
  parseConfigText,
} from "./load.ts";
import { KNOWN_KEYS } from "./schema.ts";
import type { ClientConfig, ServerConfig } from "./types.ts";

const TESTDATA = new URL("../../tests/testdata/config/", import.meta.url);
const NO_ENV = {};
const KEY = "0123456789abcdef-key";

function parseServer(text: string, env: Record<string, string> = NO_ENV): ServerConfig {
  const parsed = parseConfigText(text, { env });
  assert.equal(parsed.kind, "server");
  return parsed.config as ServerConfig;
}

function parseClient(text: string, env: Record<string, string> = NO_ENV): ClientConfig {
  const parsed = parseConfigText(text, { env });
  assert.equal(parsed.kind, "client");
  return parsed.config as ClientConfig;
}

function issuesOf(text: string, env: Record<string, string> = NO_ENV): string[] {
  try {
    parseConfigText(text, { env });
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${error}`);
    return error.issues.map(formatIssue);
  }
  assert.fail("the config was accepted");
}

const CLIENT = `[client]\nserver_addr = "127.0.0.1"\nauth_key = "${KEY}"\n` +
  `[[proxies]]\nname = "web"\npublish_port = 8080\nlocal_port = 3000\n`;

Deno.test("a minimal server config gets every documented default", () => {
  assert.deepEqual(parseServer(`[server]\nauth_key = "${KEY}"\n`), {
    bindAddr: "0.0.0.0",
    bindPort: 8443,
    authKey: KEY,
    clients: [],
    allowPorts: [{ start: 1024, end: 65535 }],
    defaultPublishAddr: "0.0.0.0",
    maxProxiesPerClient: 64,
    maxClientStreams: 256,
    handshakeTimeoutSecs: 10,
    maxPendingConnections: 1024,
    maxPendingPerIp: 32,
    keepaliveIntervalSecs: 10,
    keepaliveTimeoutSecs: 30,
    statsAddr: "127.0.0.1",
    bindRetry: { maxRetries: 10, initialDelaySecs: 2, maxDelaySecs: 60 },
    stickyPortsTtlSecs: 600,
    unhealthyAfterFailures: 3,
    transport: "tls",
    serverPath: "/tunnel",
    behindProxy: false,
    trustedProxies: ["127.0.0.0/8", "::1"],
    allowForward: false,
    forwardAllowPrivate: false,
    maxForwardsPerClient: 256,
    forwardConnectTimeoutSecs: 10,
    vhostHttpAddr: "0.0.0.0",
    vhostHttpsAddr: "0.0.0.0",
    requestTimeoutSecs: 60,
    // Without [[server.listeners]], [server]'s keys are the one listener.
    listeners: [{
      transport: "tls",
      bindAddr: "0.0.0.0",
      bindPort: 8443,
      serverPath: "/tunnel",
      behindProxy: false,
      trustedProxies: ["127.0.0.0/8", "::1"],
    }],
  });
});

Deno.test("a minimal client config gets every documented default", () => {
  assert.deepEqual(parseClient(CLIENT), {
    serverAddr: "127.0.0.1",
    serverPort: 8443,
    serverName: "127.0.0.1",
    skipVerify: false,
    authKey: KEY,
    reconnect: { initialDelaySecs: 5, maxDelaySecs: 60, multiplier: 2, jitter: 0.2, maxAttempts: 0 },
    localConnectRetries: 3,
    localRetryDelayMs: 1000,
    keepaliveIntervalSecs: 10,
    keepaliveTimeoutSecs: 30,
    statsAddr: "127.0.0.1",
    transport: "tls",
    serverPath: "/tunnel",
    // One server when only server_addr names one (issue 17's `servers` rule).
    servers: [{
      name: "127.0.0.1:8443",
      serverAddr: "127.0.0.1",
      serverPort: 8443,
      serverName: "127.0.0.1",
      transport: "tls",
      serverPath: "/tunnel",
    }],
    // No publish_addr: the server's default_publish_addr decides (issue 17).
    proxies: [{
      name: "web",
      proxyType: "tcp",
      publishPort: 8080,
      fallbackToSystemPort: false,
      localAddr: "127.0.0.1",
      localPort: 3000,
      lbPolicy: "round_robin",
      visibility: "public",
    }],
    visitors: [],
    forwarders: [],
  });
});

Deno.test("every key of a full server config reaches the camelCase object", async () => {
  const config = await loadServerConfig(new URL("valid/full_server.toml", TESTDATA), { env: NO_ENV });
  assert.deepEqual(config, {
    bindAddr: "::",
    bindPort: 443,
    certPath: "/etc/tls-tunnel/cert.pem",
    keyPath: "/etc/tls-tunnel/key.pem",
    authKey: "full-server-shared-key-0123",
    clients: [{
      name: "office",
      authKey: "office-key-0123456789",
      allowPorts: [{ start: 8080, end: 8080 }],
      maxProxies: 2,
      allowVisit: ["laptop", "*"],
    }],
    allowPorts: [{ start: 20000, end: 20100 }, { start: 8080, end: 8080 }, { start: 9000, end: 9001 }],
    defaultPublishAddr: "192.0.2.10",
    maxProxiesPerClient: 10,
    maxClientStreams: 128,
    handshakeTimeoutSecs: 5,
    maxPendingConnections: 200,
    maxPendingPerIp: 4,
    keepaliveIntervalSecs: 15,
    keepaliveTimeoutSecs: 45.5,
    statsAddr: "10.0.0.1",
    statsPort: 9090,
    statsToken: "stats-token-0123456789",
    bindRetry: { maxRetries: 0, initialDelaySecs: 0.5, maxDelaySecs: 10 },
    stickyPortsTtlSecs: 0,
    unhealthyAfterFailures: 5,
    transport: "wss",
    serverPath: "/hidden/ws",
    behindProxy: true,
    trustedProxies: ["10.0.0.0/8", "fd00::/8", "192.0.2.7"],
    allowForward: true,
    forwardAllowPrivate: true,
    maxForwardsPerClient: 32,
    forwardConnectTimeoutSecs: 4.5,
    rateLimit: { requestsPerSecond: 20, burstSize: 40 },
    vhostHttpAddr: "192.0.2.10",
    vhostHttpPort: 80,
    vhostHttpsAddr: "::",
    vhostHttpsPort: 8444,
    subdomainHost: "tunnel.example.com",
    requestTimeoutSecs: 30,
    listeners: [{
      transport: "wss",
      bindAddr: "::",
      bindPort: 443,
      serverPath: "/hidden/ws",
      behindProxy: true,
      trustedProxies: ["10.0.0.0/8", "fd00::/8", "192.0.2.7"],
    }],
  });
});

Deno.test("every key of a full client config reaches the camelCase object", async () => {
  const config = await loadClientConfig(new URL("valid/full_client.toml", TESTDATA), { env: NO_ENV });
  assert.equal(config.serverAddr, "tunnel.example.com");
  assert.equal(config.serverPort, 443);
  assert.equal(config.transport, "wss");
  assert.equal(config.serverPath, "/hidden/ws");
  assert.equal(config.caCertPath, "ca.pem");
  assert.equal(config.clientId, "office.laptop_1");
  assert.equal(config.localConnectRetries, 5);
  assert.equal(config.localRetryDelayMs, 250);
  assert.equal(config.keepaliveIntervalSecs, 5);
  assert.equal(config.keepaliveTimeoutSecs, 20);
  assert.equal(config.statsPort, 9091);
  assert.deepEqual(config.reconnect, {
    initialDelaySecs: 1,
    maxDelaySecs: 30,
    multiplier: 1.5,
    jitter: 0,
    maxAttempts: 20,
  });
  assert.deepEqual(config.proxies[0], {
    name: "db",
    proxyType: "tcp",
    publishAddr: "127.0.0.1",
    publishPort: 15432,
    publishPortRange: { start: 15433, end: 15440 },
    fallbackToSystemPort: false,
    localAddr: "db.internal",
    localPort: 5432,
    lbPolicy: "round_robin",
    healthCheck: { intervalSecs: 30, timeoutSecs: 5 },
    visibility: "public",
  });
  assert.deepEqual(config.proxies[1], {
    name: "db-visitors",
    proxyType: "tcp",
    publishAddr: "127.0.0.1",
    publishPort: 15442,
    fallbackToSystemPort: false,
    localAddr: "127.0.0.1",
    localPort: 5432,
    lbPolicy: "round_robin",
    visibility: "both",
    secretKey: "visitor secret",
  });
  assert.deepEqual(config.visitors, [{
    name: "ssh",
    publishPort: 2222,
    bindAddr: "127.0.0.2",
    bindPort: 2223,
    secretKey: "open sesame",
    client: "office",
  }]);
  assert.deepEqual(config.forwarders, [{
    name: "exit",
    proxyType: "socks5",
    bindAddr: "127.0.0.3",
    bindPort: 1080,
    username: "alice",
    password: "forwarder password",
    maxConnections: 64,
    routing: {
      geoipDb: "GeoLite2-Country.mmdb",
      directCountries: ["CN", "HK"],
      proxyCountries: ["US"],
      directIps: ["192.168.0.0/16"],
      proxyIps: ["8.8.8.0/24"],
      directDomains: ["*.example.cn"],
      proxyDomains: [".example.com"],
      defaultStrategy: "direct",
    },
  }]);
});

Deno.test("local_backends becomes localBackends, with the first backend as localAddr/localPort", () => {
  const { config } = parseConfigText(
    `[client]\nserver_addr = "tunnel.example.com"\nauth_key = "0123456789abcdef-key"\n` +
      `[[proxies]]\nname = "web"\npublish_port = 8080\n` +
      `local_backends = ["[::1]:3000", "127.0.0.1:3001", "app.internal:3002"]\nlb_policy = "ip_hash"\n`,
    { env: NO_ENV },
  );
  assert.ok("proxies" in config);
  const proxy = config.proxies[0];
  assert.equal(proxy?.localAddr, "::1");
  assert.equal(proxy?.localPort, 3000);
  assert.equal(proxy?.lbPolicy, "ip_hash");
  assert.deepEqual(proxy?.localBackends, [
    { host: "::1", port: 3000 },
    { host: "127.0.0.1", port: 3001 },
    { host: "app.internal", port: 3002 },
  ]);
});

Deno.test("named clients inherit the server's allowed ports and proxy limit", () => {
  const config = parseServer(
    `[server]\nallow_ports = "30000-30010"\nmax_proxies_per_client = 7\n` +
      `[[server.clients]]\nname = "a"\nauth_key = "${KEY}"\n`,
  );
  assert.equal(config.authKey, undefined);
  assert.deepEqual(config.clients, [{
    name: "a",
    authKey: KEY,
    allowPorts: [{ start: 30000, end: 30010 }],
    maxProxies: 7,
  }]);
});

Deno.test("a proxy with only a port range publishes on port 0 within that range", () => {
  const config = parseClient(
    `[client]\nserver_addr = "h.example"\nauth_key = "${KEY}"\n` +
      `[[proxies]]\nname = "r"\npublish_port_range = "21000-21010"\nlocal_port = 1\n`,
  );
  assert.equal(config.proxies[0]?.publishPort, 0);
  assert.deepEqual(config.proxies[0]?.publishPortRange, { start: 21000, end: 21010 });
  assert.equal(config.serverName, "h.example");
});

Deno.test("addresses to bind are IP addresses: localhost reads as 127.0.0.1, host names are refused", () => {
  const server = parseServer(
    `[server]\nbind_addr = "localhost"\nstats_addr = "::1"\nstats_port = 9100\nauth_key = "${KEY}"\n`,
  );
  assert.equal(server.bindAddr, "127.0.0.1");
  assert.equal(server.statsAddr, "::1");
  const client = parseClient(
    `[client]\nserver_addr = "tunnel.example.com"\nauth_key = "${KEY}"\nstats_addr = "LOCALHOST"\n` +
      `[[proxies]]\nname = "web"\npublish_addr = "localhost"\npublish_port = 8080\n` +
      `local_addr = "db.internal"\nlocal_port = 3000\n`,
  );
  assert.equal(client.serverAddr, "tunnel.example.com", "dialled names stay names (connect does not block)");
  assert.equal(client.statsAddr, "127.0.0.1");
  assert.equal(client.proxies[0]?.publishAddr, "127.0.0.1");
  assert.equal(client.proxies[0]?.localAddr, "db.internal");
  const issues = issuesOf(
    `[server]\nbind_addr = "tunnel.example.com"\nstats_addr = "stats.lan"\nauth_key = "${KEY}"\n`,
  );
  assert.ok(issues.some((issue) => issue.startsWith('server.bind_addr: "tunnel.example.com" is not an IP')));
  assert.ok(issues.some((issue) => issue.startsWith('server.stats_addr: "stats.lan" is not an IP')));
});

Deno.test("a key with a control character is refused in the config, as the server would refuse it", () => {
  const issues = issuesOf(`[server]\nauth_key = "0123456789abcdef\\u001b[2J"\n`);
  assert.ok(
    issues.some((issue) => issue.startsWith("server.auth_key: contains a control character")),
    issues.join(),
  );
});

Deno.test("every config under testdata/config/valid loads", async () => {
  let count = 0;
  for await (const entry of Deno.readDir(new URL("valid/", TESTDATA))) {
    if (!entry.name.endsWith(".toml")) continue;
    count++;
    await loadConfig(new URL(`valid/${entry.name}`, TESTDATA), { env: NO_ENV }).catch((error) => {
      throw new Error(`${entry.name} was rejected: ${error instanceof Error ? error.message : error}`);
    });
  }
  assert.ok(count >= 5, `only ${count} valid configs found`);
});

Deno.test("every config under testdata/config/invalid is rejected with its expected message", async () => {
  const dir = new URL("invalid/", TESTDATA);
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) if (entry.name.endsWith(".toml")) names.push(entry.name);
  assert.ok(names.length >= 20, `only ${names.length} invalid configs found`);
  for (const name of names.sort()) {
    const expected = (await Deno.readTextFile(new URL(name.replace(/\.toml$/, ".expected"), dir))).trim();
    assert.notEqual(expected, "", `${name}: the .expected file is empty`);
    const error = await loadConfig(new URL(name, dir), { env: NO_ENV }).then(
      () => assert.fail(`${name} was accepted`),
      (error: unknown) => error,
    );
    assert.ok(error instanceof InvalidConfigError, `${name}: ${error}`);
    assert.ok(
      error.message.includes(expected),
      `${name}: expected the error to contain\n  ${expected}\nbut it was\n${error.message}`,
    );
    for (const issue of error.issues) {
      assert.notEqual(issue.hint, "", `${name}: issue without hint: ${issue.message}`);
    }
  }
});

Deno.test("every problem of a file is reported at once, sorted by key path", () => {
  const issues = issuesOf(
    `[server]\nbind_port = 70000\nauth_key = "short"\ncert_path = "c.pem"\nbind_addr = 5\nbnd = 1\n` +
      `keepalive_interval_secs = "x"\n`,
  );
  assert.deepEqual(issues.map((i) => i.split(":")[0]), [
    "server.auth_key",
    "server.bind_addr",
    "server.bind_port",
    "server.bnd",
    "server.keepalive_interval_secs",
    "server.key_path",
  ]);
});

Deno.test("secrets never appear in error messages", () => {
  const secret = "s3cr3t!";
  const issues = issuesOf(`[server]\nauth_key = "${secret}"\nstats_token = 12\n`).join("\n");
  assert.ok(!issues.includes(secret), issues);
  const duplicate = issuesOf(
    `[server]\n[[server.clients]]\nname = "a"\nauth_key = "${KEY}"\n[[server.clients]]\nname = "b"\nauth_key = "${KEY}"\n`,
  ).join("\n");
  assert.ok(!duplicate.includes(KEY), duplicate);
});

Deno.test("a TOML syntax error reports its line and column", () => {
  try {
    parseConfigText(`[server]\nauth_key = "${KEY}"\nbind_port = = 1\n`, {
      env: NO_ENV,
      sourceName: "x.toml",
    });
    assert.fail("accepted");
  } catch (error) {
    assert.ok(error instanceof InvalidConfigError);
    assert.equal(error.kind, undefined);
    assert.equal(error.issues.length, 1);
    assert.equal(error.issues[0]?.line, 3);
    assert.ok((error.issues[0]?.column ?? 0) > 1);
    assert.match(
      error.message,
      /^Invalid config x\.toml \(1 problem\):\n {2}line 3, column \d+: TOML syntax error/,
    );
  }
});

Deno.test("environment variables override their keys and are validated with their name", () => {
  const env = {
    TLS_TUNNEL_AUTH_KEY: "from-the-environment-key",
    TLS_TUNNEL_SERVER_ADDR: "env.example.com",
    TLS_TUNNEL_SERVER_PORT: "9443",
    TLS_TUNNEL_RECONNECT_DELAY_SECS: "1.5",
    TLS_TUNNEL_LOCAL_CONNECT_RETRIES: "7",
    TLS_TUNNEL_LOCAL_RETRY_DELAY_MS: "20",
    TLS_TUNNEL_BIND_PORT: "1", // a server key: ignored by a client config
  };
  const client = parseClient(CLIENT, env);
  assert.equal(client.authKey, "from-the-environment-key");
  assert.equal(client.serverAddr, "env.example.com");
  assert.equal(client.serverName, "env.example.com");
  assert.equal(client.serverPort, 9443);
  assert.equal(client.reconnect.initialDelaySecs, 1.5);
  assert.equal(client.localConnectRetries, 7);
  assert.equal(client.localRetryDelayMs, 20);

  const server = parseServer(`[server]\nauth_key = "${KEY}"\n`, {
    TLS_TUNNEL_AUTH_KEY: "server-env-key-0123456",
    TLS_TUNNEL_BIND_ADDR: "127.0.0.1",
    TLS_TUNNEL_BIND_PORT: "9000",
    TLS_TUNNEL_STATS_TOKEN: "token-from-env-0123456",
  });
  assert.equal(server.authKey, "server-env-key-0123456");
  assert.equal(server.bindAddr, "127.0.0.1");
  assert.equal(server.bindPort, 9000);
  assert.equal(server.statsToken, "token-from-env-0123456");
});

Deno.test("a bad environment value is reported with the variable's name", () => {
  const issues = issuesOf(CLIENT, {
    TLS_TUNNEL_SERVER_PORT: "eighty",
    TLS_TUNNEL_LOCAL_CONNECT_RETRIES: "0",
  });
  assert.ok(
    issues.some((i) =>
      i.startsWith('client.server_port: expected a number, got the string "eighty"') &&
      i.includes("TLS_TUNNEL_SERVER_PORT")
    ),
    issues.join("\n"),
  );
  assert.ok(
    issues.some((i) =>
      i.startsWith("client.local_connect_retries:") && i.includes("TLS_TUNNEL_LOCAL_CONNECT_RETRIES")
    ),
    issues.join("\n"),
  );
  const server = issuesOf(`[server]\nauth_key = "${KEY}"\n`, { TLS_TUNNEL_BIND_PORT: "70000" });
  assert.match(server.join("\n"), /server\.bind_port: 70000 is not a valid port .*TLS_TUNNEL_BIND_PORT/);
});

Deno.test("an environment key can satisfy a required key, and empty variables count as unset", () => {
  const text =
    `[client]\nserver_addr = "h.example"\n[[proxies]]\nname = "w"\npublish_port = 1\nlocal_port = 1\n`;
  assert.equal(parseClient(text, { TLS_TUNNEL_AUTH_KEY: KEY }).authKey, KEY);
  assert.match(
    issuesOf(text, { TLS_TUNNEL_AUTH_KEY: "" }).join("\n"),
    /client\.auth_key: missing required key/,
  );
  // A getter works as well as a record, and creates [client.reconnect] when the file has none.
  const fromGetter = parseConfigText(text, {
    env: (name) => ({ TLS_TUNNEL_AUTH_KEY: KEY, TLS_TUNNEL_RECONNECT_DELAY_SECS: "2" })[name],
  });
  assert.equal(fromGetter.kind === "client" && fromGetter.config.reconnect.initialDelaySecs, 2);
});

Deno.test("loading a config of the other role fails with a hint naming the right command", async () => {
  const error = await loadServerConfig({ text: CLIENT }, { env: NO_ENV }).catch((e: unknown) => e);
  assert.ok(error instanceof InvalidConfigError);
  assert.equal(error.kind, "client");
  assert.match(error.message, /this is a client config, but the server was asked to load it/);
  await assert.rejects(
    loadClientConfig({ text: `[server]\nauth_key = "${KEY}"\n` }, { env: NO_ENV }),
    /server config/,
  );
});

Deno.test("a missing config file is a ConfigError that names the path", async () => {
  const error = await loadConfig("/nonexistent/dir/server.toml", { env: NO_ENV }).catch((e: unknown) => e);
  assert.ok(error instanceof InvalidConfigError);
  assert.match(error.message, /config file \/nonexistent\/dir\/server\.toml does not exist/);
  assert.match(error.issues[0]?.hint ?? "", /-c\/--config/);
});

Deno.test("random documents built from known keys never crash the loader", () => {
  const anyValue = fc.oneof(
    fc.integer({ min: -100_000, max: 100_000 }),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.string({ maxLength: 30 }),
    fc.boolean(),
    fc.constantFrom("0.0.0.0", "127.0.0.1", "20000-20100", "tcp", "tls", KEY, "100-1"),
  );
  const tableOf = (keys: readonly string[]) => fc.dictionary(fc.constantFrom(...keys, "unknwn"), anyValue);
  const server = fc.record({
    server: fc.tuple(
      tableOf(KNOWN_KEYS.server.server ?? []),
      tableOf(KNOWN_KEYS.server["server.bind_retry"] ?? []),
    )
      .map(([s, retry]) => ({ ...s, bind_retry: retry })),
  });
  const client = fc.record({
    client: tableOf(KNOWN_KEYS.client.client ?? []),
    proxies: fc.array(tableOf(KNOWN_KEYS.client.proxies ?? []), { maxLength: 4 }),
  });
  fc.assert(
    fc.property(fc.oneof(server, client), (document) => {
      try {
        parseConfigText(stringify(document), { env: NO_ENV });
      } catch (error) {
        if (!(error instanceof ConfigError)) throw error;
        for (const issue of error.issues) {
          assert.equal(typeof issue.path, "string");
          assert.ok(issue.message.length > 0);
        }
      }
    }),
    { numRuns: 300 },
  );
});

Deno.test("server_fingerprint accepts the cert command's form and SHA256:hex, normalised to upper-case pairs", () => {
  const bytes = Uint8Array.from({ length: 32 }, (_, i) => i * 7 + 3);
  // The form lib/pki/fingerprint.ts's colonHex prints (config/ may not import pki/).
  const canonical = [...bytes].map((byte) => byte.toString(16).padStart(2, "0").toUpperCase()).join(":");
  const hex = canonical.replaceAll(":", "");
  const withPin = (pin: string) =>
    parseClient(CLIENT.replace("[[proxies]]", `server_fingerprint = "${pin}"\n[[proxies]]`))
      .serverFingerprint;
  assert.equal(withPin(canonical), canonical);
  assert.equal(withPin(canonical.toLowerCase()), canonical);
  assert.equal(withPin(`SHA256:${hex}`), canonical);
  assert.equal(withPin(`sha256:${hex.toLowerCase()}`), canonical);
  assert.equal(parseClient(CLIENT).serverFingerprint, undefined);
  assert.ok(!("serverFingerprint" in parseClient(CLIENT)));
  for (const bad of [`SHA256:${hex.slice(2)}`, `${canonical}:00`, `SHA1:${hex}`, hex, `${canonical} `, ""]) {
    const issues = issuesOf(CLIENT.replace("[[proxies]]", `server_fingerprint = "${bad}"\n[[proxies]]`));
    assert.deepEqual(issues.length, 1, issues.join("\n"));
    assert.ok(
      issues[0]?.startsWith(
        `client.server_fingerprint: ${JSON.stringify(bad)} is not a SHA-256 fingerprint (`,
      ),
      issues[0],
    );
    assert.match(issues[0] ?? "", /tls-tunnel cert/);
  }
});

Deno.test("proxy_url: parsed into a proxy that prints without credentials; a bad one is reported masked", () => {
  const withProxy = (url: string) => CLIENT.replace("[[proxies]]", `proxy_url = "${url}"\n[[proxies]]`);
  const config = parseClient(withProxy("http://alice:hunter2@10.0.0.5:3128"));
  assert.equal(config.proxyUrl?.hop, "the HTTP proxy 10.0.0.5:3128");
  assert.deepEqual(config.proxyUrl?.credentials, { username: "alice", password: "hunter2" });
  assert.ok(!JSON.stringify(config).includes("hunter2"), "the config serialises the proxy masked");
  assert.equal(parseClient(CLIENT).proxyUrl, undefined);
  for (
    const [bad, problem] of [
      ["https://alice:hunter2@proxy:3128", /"https:\/\/\*\*\*@proxy:3128" uses https:\/\//],
      ["http://alice:hunter2@proxy", /"http:\/\/\*\*\*@proxy" has no port \(add the proxy's port/],
      ["socks5://alice:hunter2@bad_host:1080", /has no valid host/],
    ] as const
  ) {
    const issues = issuesOf(withProxy(bad));
    assert.equal(issues.length, 1, issues.join("\n"));
    assert.match(issues[0] ?? "", /^client\.proxy_url: proxy_url "/);
    assert.match(issues[0] ?? "", problem);
    assert.ok(!(issues[0] ?? "").includes("hunter2"), issues[0]);
  }
});

Deno.test("a udp and a tcp proxy may publish one port number (DNS on 53/udp and 53/tcp); two udp ones may not", () => {
  const proxies = (second: string) =>
    `[client]\nserver_addr = "h.example"\nauth_key = "${KEY}"\n` +
    `[[proxies]]\nname = "dns-udp"\nproxy_type = "udp"\npublish_port = 5353\nlocal_port = 53\n` +
    `[[proxies]]\nname = "dns-2"\n${second}publish_port = 5353\nlocal_port = 53\n`;
  const config = parseClient(proxies(""));
  assert.deepEqual(config.proxies.map((proxy) => proxy.proxyType), ["udp", "tcp"]);
  assert.throws(
    () => parseClient(proxies('proxy_type = "udp"\n')),
    /proxies\[1\]\.publish_port: 0\.0\.0\.0:5353 collides with proxies\[0\] \("dns-udp"\)/,
  );
  // The tunnel port is TCP (under tls, wss, http2): a udp proxy may take its number.
  const onTunnelPort = parseClient(
    `[client]\nserver_addr = "h.example"\nauth_key = "${KEY}"\n` +
      `[[proxies]]\nname = "dns"\nproxy_type = "udp"\npublish_port = 8443\nlocal_port = 53\n`,
  );
  assert.equal(onTunnelPort.proxies[0]?.publishPort, 8443);
});

import assert from "node:assert/strict";
import { parseConfigText } from "../config/mod.ts";
import { captureOutput } from "./_command_output.ts";
import {
  lowPortReasons,
  registerCommand,
  renderUnit,
  type SystemctlRunner,
  systemdWord,
  unitName,
  type UnitSpec,
  unregisterCommand,
} from "./register.ts";

const KEY = "register-unit-test-key-0123456789";

function parse(text: string) {
  return parseConfigText(text, { env: {} });
}

const SPEC: UnitSpec = {
  role: "server",
  configPath: "/etc/tls-tunnel/server.toml",
  user: false,
  command: ["/usr/local/bin/tls-tunnel"],
  lowPorts: [],
  readOnlyFiles: [],
  protectHome: "yes",
  ownDenoDir: true,
};

Deno.test("a server binding only unprivileged ports needs no capability", () => {
  const parsed = parse(`[server]\nbind_port = 8443\nauth_key = "${KEY}"\nstats_port = 9100\n`);
  assert.deepEqual(lowPortReasons(parsed), []);
});

Deno.test("every low port the server binds is named: tunnel, stats, and the ports clients may publish", () => {
  const parsed = parse(
    `[server]\nbind_port = 443\nstats_port = 80\nauth_key = "${KEY}"\nallow_ports = "22,8000-9000"\n` +
      `[[server.clients]]\nname = "web"\nauth_key = "${KEY}-web"\nallow_ports = "80-81"\n`,
  );
  assert.deepEqual(lowPortReasons(parsed), [
    "server.bind_port = 443",
    "server.stats_port = 80",
    "server.allow_ports includes 22",
    'server.clients "web" allow_ports includes 80-81',
  ]);
});

Deno.test("a client needs the capability only for a low stats port (the server binds published ports)", () => {
  const client = (extra: string) =>
    parse(
      `[client]\nserver_addr = "127.0.0.1"\nauth_key = "${KEY}"\n${extra}\n[[proxies]]\nname = "web"\n` +
        `publish_port = 80\nlocal_port = 3000\n`,
    );
  assert.deepEqual(lowPortReasons(client("")), []);
  assert.deepEqual(lowPortReasons(client("stats_port = 90")), ["client.stats_port = 90"]);
});

Deno.test("the capability lines appear only with a low port, and then only CAP_NET_BIND_SERVICE", () => {
  const plain = renderUnit(SPEC);
  assert.doesNotMatch(plain, /CAP_NET_BIND_SERVICE|AmbientCapabilities/);
  assert.match(plain, /^CapabilityBoundingSet=$/m);
  const low = renderUnit({ ...SPEC, lowPorts: ["server.bind_port = 443"] });
  assert.match(low, /^AmbientCapabilities=CAP_NET_BIND_SERVICE$/m);
  assert.match(low, /^CapabilityBoundingSet=CAP_NET_BIND_SERVICE$/m);
  assert.match(low, /^# Ports below 1024: server\.bind_port = 443\.$/m);
});

Deno.test("the unit is hardened and runs the role with the config", () => {
  const unit = renderUnit({ ...SPEC, runAs: "tunnel" });
  for (
    const line of [
      "ExecStart=/usr/local/bin/tls-tunnel server -c /etc/tls-tunnel/server.toml",
      "ExecReload=/bin/kill -HUP $MAINPID",
      "Restart=on-failure",
      "NoNewPrivileges=yes",
      "ProtectSystem=strict",
      "ProtectHome=yes",
      "PrivateTmp=yes",
      "StateDirectory=tls-tunnel",
      "ReadOnlyPaths=/etc/tls-tunnel/server.toml",
      "User=tunnel",
      "WorkingDirectory=/etc/tls-tunnel",
      "WantedBy=multi-user.target",
      "After=network-online.target",
    ]
  ) assert.ok(unit.split("\n").includes(line), `missing ${line}:\n${unit}`);
  const user = renderUnit({ ...SPEC, user: true, runAs: "ignored", protectHome: "read-only" });
  assert.match(user, /^WantedBy=default\.target$/m);
  assert.doesNotMatch(user, /^User=|network-online/m);
});

Deno.test("paths with spaces, % and $ are quoted and escaped for systemd", () => {
  assert.equal(systemdWord("/opt/tls-tunnel/bin"), "/opt/tls-tunnel/bin");
  assert.equal(systemdWord("/srv/my tunnel/a.toml"), '"/srv/my tunnel/a.toml"');
  assert.equal(systemdWord("/srv/100%/$HOME"), "/srv/100%%/$$HOME");
  assert.equal(systemdWord('/srv/a"b\\c'), '"/srv/a\\"b\\\\c"');
  assert.throws(() => systemdWord("/srv/a\nb"), /control character/);
});

Deno.test("unit names are checked", () => {
  assert.equal(unitName("client"), "tls-tunnel-client");
  assert.equal(unitName("server", "edge@1"), "edge@1");
  assert.throws(() => unitName("server", "a/b"), /not a usable unit name/);
  assert.throws(() => unitName("server", "x.service"), /without "\.service"/);
});

Deno.test("register writes the unit, reloads and starts it; unregister stops it and removes the file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tls-tunnel-register-" });
  try {
    const config = `${dir}/server.toml`;
    await Deno.writeTextFile(config, `[server]\nbind_port = 8443\nauth_key = "${KEY}"\n`, { mode: 0o600 });
    const calls: string[][] = [];
    const systemctl: SystemctlRunner = (args) => {
      calls.push(args);
      return Promise.resolve({ code: 0, stderr: "" });
    };
    const units = `${dir}/units`;
    const io = captureOutput();
    const options = { role: "server", user: true, unitDirectory: units, systemctl, exec: Deno.execPath() };
    assert.equal(await registerCommand({ ...options, configPath: config }, io), 0, io.stderr);
    const unit = await Deno.readTextFile(`${units}/tls-tunnel-server.service`);
    assert.ok(unit.includes(`ExecStart=${Deno.execPath()} server -c ${config}`), unit);
    assert.deepEqual(calls, [["--user", "daemon-reload"], [
      "--user",
      "enable",
      "--now",
      "tls-tunnel-server.service",
    ]]);

    calls.length = 0;
    assert.equal(await unregisterCommand(options, io), 0, io.stderr);
    await assert.rejects(Deno.stat(`${units}/tls-tunnel-server.service`), Deno.errors.NotFound);
    assert.deepEqual(calls, [["--user", "disable", "--now", "tls-tunnel-server.service"], [
      "--user",
      "daemon-reload",
    ]]);
    assert.equal(await unregisterCommand(options, io), 1, "a second unregister finds nothing");
    assert.match(io.stderr, /does not exist: nothing to unregister/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a failing systemctl, a wrong role and a config of the other role are reported, not thrown", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tls-tunnel-register-" });
  try {
    const config = `${dir}/client.toml`;
    await Deno.writeTextFile(
      config,
      `[client]\nserver_addr = "127.0.0.1"\nauth_key = "${KEY}"\n[[proxies]]\nname = "a"\npublish_port = 8080\n` +
        `local_port = 3000\n`,
    );
    const failing: SystemctlRunner = () => Promise.resolve({ code: 1, stderr: "Access denied" });
    const base = { configPath: config, unitDirectory: dir, systemctl: failing, exec: config };
    const io = captureOutput();
    assert.equal(await registerCommand({ ...base, role: "client" }, io), 1);
    assert.match(io.stderr, /`systemctl daemon-reload` failed \(exit 1\): Access denied/);
    assert.equal(await registerCommand({ ...base, role: "server" }, io), 1);
    assert.match(io.stderr, /is a client config: run `tls-tunnel register client -c /);
    assert.equal(await registerCommand({ ...base, role: "proxy" }, io), 2);
    assert.equal(await registerCommand({ ...base, role: "client", runAs: "nobody" }, io), 1);
    assert.match(io.stderr, /--run-as nobody is shared by unrelated services/);
    assert.equal(await registerCommand({ ...base, role: "client", exec: `${dir}/missing` }, io), 1);
    assert.match(io.stderr, /missing, is not a file: pass --exec/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

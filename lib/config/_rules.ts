/**
 * Rules that relate several keys; every check of one key on its own is in the schema. They read the raw
 * TOML document (after env overrides) defensively: a value of the wrong type is skipped here, because the
 * schema reports it, so these rules run even when other values are broken and every problem is listed at
 * once (zod runs an object's refinements only when all its values parsed, so they cannot live there), and
 * they can tell a value from its default ("keepalive_timeout_secs (30, the default)"). Defaults come from
 * `defaults.ts`.
 *
 * @module
 */

import { addressesOverlap, isLoopback } from "../net/address.ts";
import type { ConfigIssue } from "./errors.ts";
import { parsePortRange } from "./port_range.ts";
import { DEFAULTS } from "./defaults.ts";
import { forwarderRules } from "./_forwarders.ts";
import { vhostProxyRules, vhostServerRules } from "./_vhost.ts";
import { udpProxyRules } from "./_udp.ts";
import { groupLimitProxyRules } from "./_groups_limits.ts";
import { listenerRules, serverMakesListener } from "./_listener_rules.ts";
import { serversRule } from "./_servers.ts";

type Table = Record<string, unknown>;

function table(value: unknown): Table | undefined {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Date)
    ? value as Table
    : undefined;
}

function tables(value: unknown): (Table | undefined)[] {
  return Array.isArray(value) ? value.map(table) : [];
}

function str(t: Table | undefined, key: string): string | undefined {
  const value = t?.[key];
  return typeof value === "string" ? value : undefined;
}

function num(t: Table | undefined, key: string): number | undefined {
  const value = t?.[key];
  return typeof value === "number" && Number.isFinite(value) ? value : undefined;
}

function bool(t: Table | undefined, key: string): boolean | undefined {
  const value = t?.[key];
  return typeof value === "boolean" ? value : undefined;
}

function has(t: Table | undefined, key: string): boolean {
  return t !== undefined && t[key] !== undefined;
}

/** `value` from the file, or the default when the key is absent; undefined when present but malformed. */
function numOr(
  t: Table | undefined,
  key: string,
  fallback: number,
): { value: number; isDefault: boolean } | undefined {
  if (!has(t, key)) return { value: fallback, isDefault: true };
  const value = num(t, key);
  return value === undefined ? undefined : { value, isDefault: false };
}

function describe(key: string, v: { value: number; isDefault: boolean }): string {
  return `${key} (${v.value}${v.isDefault ? ", the default" : ""})`;
}

function keepaliveRule(
  t: Table | undefined,
  prefix: string,
  defaults: { interval: number; timeout: number },
) {
  const issues: ConfigIssue[] = [];
  const interval = numOr(t, "keepalive_interval_secs", defaults.interval);
  const timeout = numOr(t, "keepalive_timeout_secs", defaults.timeout);
  if (interval && timeout && timeout.value <= interval.value) {
    issues.push({
      path: `${prefix}.keepalive_timeout_secs`,
      message: `${describe("keepalive_timeout_secs", timeout)} must be greater than ${
        describe("keepalive_interval_secs", interval)
      }`,
      hint: `a session is declared dead only after several missed pings; e.g. keepalive_timeout_secs = ${
        interval.value * 3
      }`,
    });
  }
  return issues;
}

function backoffRule(t: Table | undefined, prefix: string, defaults: { initial: number; max: number }) {
  const initial = numOr(t, "initial_delay_secs", defaults.initial);
  const max = numOr(t, "max_delay_secs", defaults.max);
  if (initial && max && max.value < initial.value) {
    return [{
      path: `${prefix}.max_delay_secs`,
      message: `${describe("max_delay_secs", max)} is smaller than ${
        describe("initial_delay_secs", initial)
      }`,
      hint: "the cap must be at least the first delay; raise max_delay_secs or lower initial_delay_secs",
    }];
  }
  return [];
}

/** Cross-key rules of a server document (`{ server: … }`). */
export function serverRules(document: Table): ConfigIssue[] {
  const server = table(document.server);
  if (server === undefined) return [];
  const issues: ConfigIssue[] = [];
  const clients = tables(server.clients);

  if (!has(server, "auth_key") && clients.length === 0) {
    issues.push({
      path: "server.auth_key",
      message: "no way for clients to authenticate: neither auth_key nor [[server.clients]] is set",
      hint: "set auth_key to a long random secret, or add [[server.clients]] entries with their own keys",
    });
  }
  if (has(server, "cert_path") !== has(server, "key_path")) {
    const [present, missing] = has(server, "cert_path")
      ? ["cert_path", "key_path"]
      : ["key_path", "cert_path"];
    issues.push({
      path: `server.${missing}`,
      message: `${present} is set but ${missing} is not`,
      hint:
        "set both, the certificate chain and its private key, or neither to use a generated throw-away certificate",
    });
  }
  issues.push(
    ...keepaliveRule(server, "server", {
      interval: DEFAULTS.server.keepalive_interval_secs,
      timeout: DEFAULTS.server.keepalive_timeout_secs,
    }),
  );

  const transport = has(server, "transport") ? str(server, "transport") : DEFAULTS.server.transport;
  // With only [[server.listeners]], [server] makes no listener; listenerRules says so instead.
  if (
    bool(server, "behind_proxy") === true && transport !== "wss" && transport !== "http2" &&
    serverMakesListener(server)
  ) {
    issues.push({
      path: "server.behind_proxy",
      message: `behind_proxy = true needs transport = "wss" or "http2" (transport is ${
        JSON.stringify(transport)
      })`,
      hint:
        `set transport = "wss" (or "http2") to serve plain-text WebSocket (h2c) to a reverse proxy that terminates TLS, ` +
        "or remove behind_proxy to terminate TLS here",
    });
  }

  issues.push(...listenerRules(server));
  issues.push(...statsTokenRule(server, "server", DEFAULTS.server.stats_addr));
  const statsAddr = has(server, "stats_addr") ? str(server, "stats_addr") : DEFAULTS.server.stats_addr;
  const statsPort = num(server, "stats_port");
  const bindAddr = has(server, "bind_addr") ? str(server, "bind_addr") : DEFAULTS.server.bind_addr;
  const bindPort = has(server, "bind_port") ? num(server, "bind_port") : DEFAULTS.server.bind_port;
  if (
    statsPort !== undefined && statsPort !== 0 && statsPort === bindPort && statsAddr !== undefined &&
    bindAddr !== undefined && addressesOverlap(statsAddr, bindAddr)
  ) {
    issues.push({
      path: "server.stats_port",
      message: `stats_port ${statsPort} is also the tunnel's bind_port on ${bindAddr}`,
      hint: "give the stats endpoint its own port, e.g. stats_port = 9090",
    });
  }

  issues.push(...vhostServerRules(server, bindPort));
  issues.push(
    ...backoffRule(table(server.bind_retry), "server.bind_retry", {
      initial: DEFAULTS.server.bind_retry.initial_delay_secs,
      max: DEFAULTS.server.bind_retry.max_delay_secs,
    }),
  );

  const sharedKey = str(server, "auth_key");
  const namesSeen = new Map<string, number>();
  const keysSeen = new Map<string, number>();
  clients.forEach((entry, index) => {
    const clientName = str(entry, "name");
    if (clientName !== undefined) {
      const first = namesSeen.get(clientName);
      if (first !== undefined) {
        issues.push({
          path: `server.clients[${index}].name`,
          message: `client name "${clientName}" is already used by server.clients[${first}]`,
          hint: "give every [[server.clients]] entry its own name",
        });
      } else namesSeen.set(clientName, index);
    }
    const key = str(entry, "auth_key");
    if (key !== undefined) {
      const first = keysSeen.get(key);
      if (first !== undefined) {
        issues.push({
          path: `server.clients[${index}].auth_key`,
          message: `this key is already the key of server.clients[${first}]`,
          hint: "give every client its own key, so that the server knows who connected",
        });
      } else keysSeen.set(key, index);
      if (sharedKey !== undefined && key === sharedKey) {
        issues.push({
          path: `server.clients[${index}].auth_key`,
          message: "this key is also the shared server.auth_key",
          hint: "a named client needs a key of its own; change one of them",
        });
      }
    }
  });
  return issues;
}

interface Binding {
  index: number;
  name: string | undefined;
  addr: string;
  port: number;
  /** A udp proxy's port: it never collides with a TCP port of the same number. */
  udp: boolean;
}

/** A stats endpoint reachable from other machines needs a token. */
function statsTokenRule(role: Table, prefix: "server" | "client", defaultAddr: string): ConfigIssue[] {
  const statsAddr = has(role, "stats_addr") ? str(role, "stats_addr") : defaultAddr;
  if (num(role, "stats_port") === undefined || statsAddr === undefined || isLoopback(statsAddr)) return [];
  if (has(role, "stats_token")) return [];
  return [{
    path: `${prefix}.stats_token`,
    message:
      `the stats endpoint listens on ${statsAddr}, which other machines can reach, but stats_token is not set`,
    hint:
      `set stats_token or TLS_TUNNEL_STATS_TOKEN to a long random secret, or use stats_addr = "127.0.0.1"`,
  }];
}

/**
 * What `transport = "quic"` cannot do in Deno 2.9.6: skip verification (its QUIC client always
 * verifies) or leave through `proxy_url` (HTTP CONNECT and SOCKS5 carry TCP, QUIC is UDP).
 */
function quicClientRules(client: Table): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const skipVerify = bool(client, "skip_verify") === true;
  const proxied = has(client, "proxy_url");
  // The servers reached over quic: each `servers` entry whose transport (its own, else [client]'s) is quic,
  // or the one server of `server_addr`. An entry's own server_fingerprint stands in for [client]'s.
  const quicServers: Array<{ where: string; pinned: boolean }> = [];
  const clientQuic = str(client, "transport") === "quic";
  if (Array.isArray(client.servers)) {
    client.servers.forEach((entry, index) => {
      const own = table(entry);
      const transport = own !== undefined && typeof own.transport === "string" ? own.transport : undefined;
      if ((transport ?? (clientQuic ? "quic" : undefined)) !== "quic") return;
      const pinned = (own !== undefined && has(own, "server_fingerprint")) ||
        has(client, "server_fingerprint");
      quicServers.push({ where: `servers[${index}]`, pinned });
    });
  } else if (clientQuic) quicServers.push({ where: "", pinned: has(client, "server_fingerprint") });
  // " (servers[1], servers[3])" naming entries; nothing for the one server of server_addr.
  const which = (servers: typeof quicServers) =>
    servers[0]?.where ? ` (${servers.map((server) => server.where).join(", ")})` : "";
  const unpinned = quicServers.filter((server) => !server.pinned);
  if (skipVerify && unpinned.length > 0) {
    issues.push({
      path: "client.skip_verify",
      message:
        `skip_verify = true cannot be used with transport = "quic"${
          which(unpinned)
        } (Deno's QUIC client always ` +
        "verifies)",
      hint:
        "pin the server's certificate with server_fingerprint (the server logs it at start), or set ca_cert_path",
    });
  }
  if (proxied && quicServers.length > 0) {
    issues.push({
      path: "client.proxy_url",
      message: `transport = "quic"${
        which(quicServers)
      } runs over UDP, which an HTTP CONNECT or SOCKS5 proxy cannot carry`,
      hint:
        'remove proxy_url to connect directly, or use transport = "tls", "wss" or "http2" through the proxy',
    });
  }
  return issues;
}

/** Cross-key rules of a client document (`{ client: …, proxies: […] }`). */
export function clientRules(document: Table): ConfigIssue[] {
  const client = table(document.client);
  if (client === undefined) return [];
  const issues: ConfigIssue[] = [];
  issues.push(...statsTokenRule(client, "client", DEFAULTS.client.stats_addr));
  issues.push(...serversRule(client, DEFAULTS.client.server_port));
  issues.push(...forwarderRules(document));

  issues.push(
    ...keepaliveRule(client, "client", {
      interval: DEFAULTS.client.keepalive_interval_secs,
      timeout: DEFAULTS.client.keepalive_timeout_secs,
    }),
  );
  issues.push(
    ...backoffRule(table(client.reconnect), "client.reconnect", {
      initial: DEFAULTS.client.reconnect.initial_delay_secs,
      max: DEFAULTS.client.reconnect.max_delay_secs,
    }),
  );
  issues.push(...quicClientRules(client));
  if (bool(client, "skip_verify") === true && has(client, "ca_cert_path")) {
    issues.push({
      path: "client.skip_verify",
      message: "skip_verify = true disables the verification that ca_cert_path is for",
      hint:
        "remove skip_verify to verify the server against ca_cert_path, which is safer, or remove ca_cert_path",
    });
  }

  const serverPort = has(client, "server_port") ? num(client, "server_port") : DEFAULTS.client.server_port;
  const namesSeen = new Map<string, number>();
  const bindings: Binding[] = [];
  tables(document.proxies).forEach((proxy, index) => {
    if (proxy === undefined) return;
    const prefix = `proxies[${index}]`;
    const proxyName = str(proxy, "name");
    if (proxyName !== undefined) {
      const first = namesSeen.get(proxyName);
      if (first !== undefined) {
        issues.push({
          path: `${prefix}.name`,
          message: `proxy name "${proxyName}" is already used by proxies[${first}]`,
          hint: "give every [[proxies]] entry its own name; the server tells them apart by name",
        });
      } else namesSeen.set(proxyName, index);
    }
    const proxyType = str(proxy, "proxy_type") ?? str(proxy, "type");
    const isVhost = proxyType === "http" || proxyType === "https";
    issues.push(...vhostProxyRules(proxy, prefix, proxyType));
    issues.push(...udpProxyRules(proxy, prefix, proxyType));
    issues.push(...groupLimitProxyRules(proxy, prefix, proxyType));
    if (!isVhost && !has(proxy, "publish_port") && !has(proxy, "publish_port_range")) {
      issues.push({
        path: `${prefix}.publish_port`,
        message: "missing required key `publish_port`",
        hint: "set the port the server publishes, publish_port = 0 to let the server pick one, " +
          `or publish_port_range = "20000-20100"`,
      });
    }
    const publishPort = num(proxy, "publish_port");
    // Unset: the server's default_publish_addr, unknown here; its default (the wildcard) overlaps everything.
    const publishAddr = has(proxy, "publish_addr")
      ? str(proxy, "publish_addr")
      : DEFAULTS.server.default_publish_addr;
    if (publishPort !== undefined && publishPort !== 0 && publishAddr !== undefined) {
      const udp = proxyType === "udp";
      const clash = bindings.find((b) =>
        b.udp === udp && b.port === publishPort && addressesOverlap(b.addr, publishAddr)
      );
      if (clash !== undefined) {
        const other = clash.name !== undefined
          ? `proxies[${clash.index}] ("${clash.name}")`
          : `proxies[${clash.index}]`;
        issues.push({
          path: `${prefix}.publish_port`,
          message:
            `${publishAddr}:${publishPort} collides with ${other}, which publishes ${clash.addr}:${clash.port}`,
          hint:
            "two proxies cannot publish the same port on overlapping addresses; pick another publish_port",
        });
      } else {
        bindings.push({ index, name: proxyName, addr: publishAddr, port: publishPort, udp });
      }
      // The tunnel port is TCP, unless the client reaches the server over quic (UDP).
      if (publishPort === serverPort && udp === (str(client, "transport") === "quic")) {
        issues.push({
          path: `${prefix}.publish_port`,
          message: `publish_port ${publishPort} is the server's tunnel port (client.server_port)`,
          hint: "the server already listens there for tunnel connections; pick another publish_port",
        });
      }
    }
    if (has(proxy, "local_backends")) {
      for (const key of ["local_port", "local_addr"]) {
        if (!has(proxy, key)) continue;
        issues.push({
          path: `${prefix}.${key}`,
          message: `${key} and local_backends are both set`,
          hint: "use local_addr/local_port for one local service, or local_backends for several; " +
            `move ${key}'s service into local_backends, e.g. local_backends = ["127.0.0.1:3000", "127.0.0.1:3001"]`,
        });
      }
    } else {
      if (!has(proxy, "local_port")) {
        issues.push({
          path: `${prefix}.local_port`,
          message: "missing required key `local_port`",
          hint:
            `add local_port = 3000, or list several services as local_backends = ["127.0.0.1:3000", "127.0.0.1:3001"]`,
        });
      }
    }
    const rangeText = str(proxy, "publish_port_range");
    const range = rangeText !== undefined ? parsePortRange(rangeText) : undefined;
    if (
      range !== undefined && "start" in range && serverPort !== undefined && range.start === range.end &&
      range.start === serverPort
    ) {
      issues.push({
        path: `${prefix}.publish_port_range`,
        message: `publish_port_range ${rangeText} holds only the server's tunnel port (client.server_port)`,
        hint: "choose a range of ports the server can publish",
      });
    }
    const health = table(proxy.health_check);
    if (health !== undefined) {
      const interval = numOr(health, "interval_secs", DEFAULTS.proxy.health_check.interval_secs);
      const timeout = numOr(health, "timeout_secs", DEFAULTS.proxy.health_check.timeout_secs);
      if (interval && timeout && timeout.value > interval.value) {
        issues.push({
          path: `${prefix}.health_check.timeout_secs`,
          message: `${describe("timeout_secs", timeout)} is longer than ${
            describe("interval_secs", interval)
          }`,
          hint: "a check must finish before the next one starts; lower timeout_secs or raise interval_secs",
        });
      }
    }
  });
  return issues;
}

/**
 * `tls-tunnel check -c FILE [--format text|json]`: validates a server or client config and lists every
 * problem. Exit 0 when valid, 1 when not (or when the file cannot be read).
 *
 * Besides what the loader checks, `check` reads the files the config names (cert_path, key_path,
 * ca_cert_path; relative to the current directory, like the roles): every certificate must parse and be
 * within its validity (under 30 days left is a warning), the key must be a PEM private key that belongs
 * to cert_path's certificate.
 *
 * Keys and values of the Rust tls-tunnel that load but mean less here than there (`proxy_type = "ssh"`,
 * `allow_forward = true`; lib/config/_compat.ts) each draw a `note:` line (`notes` in JSON), which changes
 * neither the verdict nor the exit code.
 *
 * @module
 */

import { formatPortRanges } from "../config/port_range.ts";
import { DEFAULTS } from "../config/defaults.ts";
import { ConfigError, type ConfigIssue, formatIssue } from "../config/errors.ts";
import { type ConfigKind, InvalidConfigError, loadConfig, type ParsedConfig } from "../config/load.ts";
import type { ClientConfig, ServerConfig } from "../config/types.ts";
import { type CommandOutput, processOutput } from "./_command_output.ts";
import { activeLogFormat, formatOutputRecord, type LogFormat } from "./logging.ts";
import { errorMessage } from "../text.ts";
import { formatHostPort } from "../net/address.ts";

/** Options of {@link checkCommand}. */
export interface CheckOptions {
  /** The config file to check. */
  configPath: string;
  /** `text` for people, `json` (`{ valid, kind, file, issues, warnings, notes, summary }` on stdout) for scripts. */
  format: "text" | "json";
  /**
   * `--log-format`: with `json`, the text report becomes one JSON record (the report's fields as its
   * properties) and the `--format json` report takes one line. Default: the process's.
   */
  logFormat?: LogFormat;
}

/** The JSON document `check --format json` prints. */
export interface CheckReport {
  /** True when the config can be used. */
  valid: boolean;
  /** The role the file is for, or null when that could not be told. */
  kind: ConfigKind | null;
  /** The checked path. */
  file: string;
  /** Every problem, empty when valid. */
  issues: { path: string; message: string; hint: string; line?: number; column?: number }[];
  /** What works today but needs attention (a certificate expiring within 30 days...). */
  warnings: { path: string; message: string; hint: string }[];
  /**
   * What the Rust tls-tunnel keys and values the file uses mean here, when that is less than there
   * (`proxy_type = "ssh"` is a TCP proxy, `allow_forward = true` changes nothing…): information, never a
   * problem; empty when the file could not be loaded.
   */
  notes: { path: string; message: string; hint: string }[];
  /** Human-readable summary lines of a valid config (empty when invalid). */
  summary: string[];
}

function serverSummary(config: ServerConfig): string[] {
  const tlsText = config.certPath !== undefined
    ? `TLS with ${config.certPath} and ${config.keyPath ?? ""}`
    : "TLS with a throw-away certificate generated at start";
  // One line per listener (`[server]`'s and each [[server.listeners]] entry), in the order they bind.
  const listenerLines = config.listeners.map((listener) => {
    const tls = listener.behindProxy
      ? `plain-text ${
        listener.transport === "http2" ? "HTTP/2 (h2c)" : "WebSocket"
      } on ${listener.serverPath} ` +
        "for a reverse proxy that terminates TLS (behind_proxy); " +
        `client addresses from X-Forwarded-For of ${listener.trustedProxies.join(", ")}`
      : listener.transport === "wss"
      ? `WebSocket on ${listener.serverPath} over ${tlsText}`
      : listener.transport === "http2"
      ? `HTTP/2 on ${listener.serverPath} over ${tlsText}`
      : listener.transport === "tls"
      ? tlsText
      : `${listener.transport} with ${tlsText.slice("TLS with ".length)}`;
    return `tunnel listener: ${listener.bindAddr}:${listener.bindPort} (${tls})`;
  });
  const auth: string[] = [];
  if (config.authKey !== undefined) auth.push("shared auth_key");
  if (config.clients.length > 0) {
    auth.push(`${config.clients.length} named client(s): ${config.clients.map((c) => c.name).join(", ")}`);
  }
  return [
    ...listenerLines,
    `authentication: ${auth.join("; ")}`,
    `publishable ports: ${
      formatPortRanges(config.allowPorts)
    }; at most ${config.maxProxiesPerClient} proxies per client`,
    ...vhostLines(config),
    ...forwardLines(config),
    `stats endpoint: ${
      config.statsPort !== undefined
        ? `${config.statsAddr}:${config.statsPort}${
          config.statsToken !== undefined ? " (token required)" : ""
        }`
        : "off"
    }`,
  ];
}

/** Whether and how the server forwards clients' `[[forwarders]]` connections; its rate limit. */
function forwardLines(config: ServerConfig): string[] {
  const forwarding = config.allowForward
    ? `on; ${
      config.forwardAllowPrivate
        ? "private and loopback destinations ALLOWED (forward_allow_private)"
        : "private, loopback and link-local destinations refused"
    }; at most ${config.maxForwardsPerClient} per client; ${config.forwardConnectTimeoutSecs} s to connect`
    : "off (allow_forward = false)";
  const rate = config.rateLimit
    ? `${config.rateLimit.requestsPerSecond} new connections/s, bursts of ${config.rateLimit.burstSize} ` +
      "(tunnel: per source address; outside: per client)"
    : "off";
  return [`forwarding for clients' [[forwarders]]: ${forwarding}`, `rate limit: ${rate}`];
}

/** The shared HTTP/HTTPS ports of `http`/`https` proxies, when configured. */
function vhostLines(config: ServerConfig): string[] {
  if (config.vhostHttpPort === undefined && config.vhostHttpsPort === undefined) return [];
  const subdomains = config.subdomainHost !== undefined ? `; subdomains under ${config.subdomainHost}` : "";
  return [
    `http vhosts: ${
      config.vhostHttpPort !== undefined
        ? `${config.vhostHttpAddr}:${config.vhostHttpPort} (by Host and path; 504 after ${config.requestTimeoutSecs} s)`
        : "off"
    }; https vhosts: ${
      config.vhostHttpsPort !== undefined
        ? `${config.vhostHttpsAddr}:${config.vhostHttpsPort} (by SNI)`
        : "off"
    }${subdomains}`,
  ];
}

function clientSummary(config: ClientConfig): string[] {
  const verification = config.skipVerify
    ? "certificate NOT verified: skip_verify = true"
    : config.caCertPath !== undefined
    ? `certificate verified against ${config.caCertPath} for ${config.serverName}`
    : `certificate verified against the system's CAs for ${config.serverName}`;
  const lines = [`server: ${config.serverAddr}:${config.serverPort} (${verification})`];
  if (config.transport === "wss") lines.push(`transport: WebSocket over TLS on ${config.serverPath}`);
  if (config.transport === "http2") lines.push(`transport: HTTP/2 over TLS on ${config.serverPath}`);
  if (config.serverFingerprint !== undefined) {
    lines.push(`server certificate pinned to SHA-256 ${config.serverFingerprint}`);
  }
  if (config.servers.length > 1) {
    // Several servers: one session to each, every proxy registered on each (README "Several servers").
    lines.push(`servers (${config.servers.length}, a session to each; the first is shown above):`);
    for (const server of config.servers) {
      const pin = server.serverFingerprint !== undefined ? ", pinned" : "";
      const address = formatHostPort(server.serverAddr, server.serverPort);
      lines.push(
        `  ${server.name === address ? address : `${server.name}: ${address}`} (${server.transport}, ` +
          `certificate for ${server.serverName}${
            server.caCertPath !== undefined ? ` from ${server.caCertPath}` : ""
          }${pin})`,
      );
    }
  }
  if (config.proxyUrl !== undefined) lines.push(`outbound proxy: ${config.proxyUrl.masked} (proxy_url)`);
  lines.push(`proxies (${config.proxies.length}):`);
  for (const proxy of config.proxies) {
    // No publish_addr: the server's default_publish_addr (0.0.0.0 unless that server sets another).
    const addr = proxy.publishAddr ?? "<default_publish_addr>";
    const published = proxy.publishPort !== 0
      ? `${addr}:${proxy.publishPort}`
      : `${addr}:<${proxy.publishPortRange ? formatPortRanges([proxy.publishPortRange]) : "any port"}>`;
    const udp = proxy.proxyType === "udp"
      ? ` (udp, flows idle ${proxy.udpIdleTimeoutSecs ?? DEFAULTS.proxy.udp_idle_timeout_secs} s, at most ${
        proxy.maxUdpFlows ?? DEFAULTS.proxy.max_udp_flows
      })`
      : "";
    // Private: not bound on the server; other clients' visitors reach it by name and port.
    // http/https: no port of its own; the server routes by host name on its vhost port.
    const hosts = [
      ...(proxy.customDomains ?? []),
      ...(proxy.subdomain !== undefined ? [`${proxy.subdomain}.<subdomain_host>`] : []),
    ];
    const vhost = proxy.proxyType === "http" || proxy.proxyType === "https"
      ? `server vhost_${proxy.proxyType}_port for ${hosts.join(", ")}${
        proxy.locations?.length ? ` at ${proxy.locations.join(", ")}` : ""
      }${proxy.httpUser !== undefined ? " (basic auth)" : ""}`
      : null;
    const where = vhost ??
      (proxy.visibility === "private"
        ? `private (visitors: ${proxy.name}, publish_port ${proxy.publishPort})`
        : `server ${published}${proxy.visibility === "both" ? " and visitors" : ""}`);
    const key = proxy.secretKey !== undefined ? ", secret_key set" : "";
    lines.push(`  ${proxy.name}: ${where}${key} -> local ${proxy.localAddr}:${proxy.localPort}${udp}`);
    // Groups, PROXY protocol and limits: one line under the proxy, only when any is set.
    const extras = [
      ...(proxy.group !== undefined
        ? [`group ${proxy.group} (group_key set, lb_policy ${proxy.lbPolicy})`]
        : []),
      ...(proxy.proxyProtocol !== undefined
        ? [`PROXY protocol ${proxy.proxyProtocol} to the local service`]
        : []),
      ...(proxy.bandwidthLimit !== undefined ? [`bandwidth_limit ${formatRate(proxy.bandwidthLimit)}`] : []),
      ...(proxy.maxConnections !== undefined ? [`max_connections ${proxy.maxConnections}`] : []),
    ];
    if (extras.length > 0) lines.push(`    ${extras.join(", ")}`);
  }
  if (config.visitors.length > 0) {
    lines.push(`visitors (${config.visitors.length}):`);
    for (const visitor of config.visitors) {
      const owner = visitor.client !== undefined ? ` of client ${visitor.client}` : "";
      const key = visitor.secretKey !== undefined ? ", secret_key set" : "";
      lines.push(
        `  local ${visitor.bindAddr}:${visitor.bindPort} -> proxy ${visitor.name} ` +
          `(publish_port ${visitor.publishPort})${owner}${key}`,
      );
    }
  }
  if (config.forwarders.length > 0) {
    lines.push(`forwarders (${config.forwarders.length}, through the server, which needs allow_forward):`);
    for (const forwarder of config.forwarders) {
      const auth = forwarder.username !== undefined ? ", user name and password required" : "";
      const routing = forwarder.routing === undefined ? "" : `; routing: ${
        [
          forwarder.routing.geoipDb !== undefined ? `geoip_db ${forwarder.routing.geoipDb}` : "",
          `${
            forwarder.routing.directDomains.length + forwarder.routing.directIps.length +
            forwarder.routing.directCountries.length
          } direct rule(s)`,
          `${
            forwarder.routing.proxyDomains.length + forwarder.routing.proxyIps.length +
            forwarder.routing.proxyCountries.length
          } proxy rule(s)`,
          `default ${forwarder.routing.defaultStrategy}`,
        ].filter((part) => part !== "").join(", ")
      }`;
      lines.push(
        `  ${forwarder.name}: ${forwarder.proxyType === "http" ? "HTTP" : "SOCKS5"} proxy on ` +
          `${forwarder.bindAddr}:${forwarder.bindPort}${auth}${routing}`,
      );
    }
  }
  return lines;
}

/**
 * Each forwarder's `geoip_db`, read as the client will read it at start (`mmdb-lib`): a missing or
 * unreadable database is a problem here rather than a client that exits.
 */
async function geoipFindings(config: ClientConfig): Promise<ConfigIssue[]> {
  const issues: ConfigIssue[] = [];
  const { loadCountryDatabase, GeoIpDatabaseError } = await import("../client/routing.ts");
  for (const [index, forwarder] of config.forwarders.entries()) {
    const file = forwarder.routing?.geoipDb;
    if (file === undefined) continue;
    try {
      await loadCountryDatabase(file);
    } catch (error) {
      if (!(error instanceof GeoIpDatabaseError)) throw error;
      issues.push({
        path: `forwarders[${index}].routing.geoip_db`,
        message: error.problem,
        hint: error.hint,
      });
    }
  }
  return issues;
}

/** What the certificate files of a config hold: problems that make it unusable, and warnings. */
interface FileFindings {
  issues: ConfigIssue[];
  warnings: ConfigIssue[];
}

/** Reads a file a config names; null (with the issue added) when it cannot be read. */
async function readNamedFile(path: string, file: string, issues: ConfigIssue[]): Promise<string | null> {
  try {
    const info = await Deno.stat(file);
    if (!info.isFile) {
      issues.push({ path, message: `${file} is not a file`, hint: "point it at a PEM file" });
      return null;
    }
    // PEM files are small; reading proves the permissions too.
    return await Deno.readTextFile(file);
  } catch (error) {
    issues.push({
      path,
      message: error instanceof Deno.errors.NotFound
        ? `${file} does not exist (relative paths start at the current directory)`
        : `cannot read ${file}: ${errorMessage(error)}`,
      hint: "fix the path, or create the files with `tls-tunnel cert`",
    });
    return null;
  }
}

/**
 * Parses the certificate files the config names, as the roles will use them: every certificate parses,
 * none is expired or not yet valid (under 30 days left: a warning), the key is a PEM private key that
 * belongs to the server's certificate.
 */
async function inspectFiles(parsed: ParsedConfig): Promise<FileFindings> {
  const findings: FileFindings = { issues: [], warnings: [] };
  // Loaded only here: the X.509 library is large and only `check` needs it.
  const { readCertificates, validityAt, CertificateReadError } = await import("../pki/inspect.ts");
  const { keyMatchesCertificate } = await import("../pki/key_match.ts");
  /** Parses `file`'s certificates and judges their validity; null when they do not parse. */
  const certificatesOf = async (path: string, file: string, text: string, role: string) => {
    try {
      const certificates = await readCertificates(text);
      for (const [index, certificate] of certificates.entries()) {
        const which = `${file}${
          certificates.length > 1 ? ` (certificate ${index + 1}, ${certificate.subject})` : ""
        }`;
        const verdict = validityAt(certificate);
        const renew = `renew it (\`tls-tunnel cert\` makes a new set) and update ${role}`;
        if (verdict.state === "expired") {
          findings.issues.push({
            path,
            message: `${which} expired on ${certificate.notAfter.toISOString()}`,
            hint: renew,
          });
        } else if (verdict.state === "not-yet-valid") {
          findings.issues.push({
            path,
            message: `${which} is not valid before ${certificate.notBefore.toISOString()}`,
            hint: "check this machine's clock, or issue a certificate valid from now",
          });
        } else if (verdict.state === "expiring") {
          findings.warnings.push({
            path,
            message:
              `${which} expires in ${verdict.daysLeft} day(s), on ${certificate.notAfter.toISOString()}`,
            hint: renew,
          });
        }
      }
      return certificates;
    } catch (error) {
      if (!(error instanceof CertificateReadError)) throw error;
      findings.issues.push({
        path,
        message: `${file} ${error.message}`,
        hint: "use a PEM certificate file, e.g. from `tls-tunnel cert`",
      });
      return null;
    }
  };

  if (parsed.kind === "client") {
    findings.issues.push(...await geoipFindings(parsed.config));
    const file = parsed.config.caCertPath;
    if (file === undefined) return findings;
    const text = await readNamedFile("client.ca_cert_path", file, findings.issues);
    if (text !== null) {
      await certificatesOf("client.ca_cert_path", file, text, "ca_cert_path on every client");
    }
    return findings;
  }
  const { certPath, keyPath } = parsed.config;
  if (certPath === undefined || keyPath === undefined) return findings;
  const certText = await readNamedFile("server.cert_path", certPath, findings.issues);
  const keyText = await readNamedFile("server.key_path", keyPath, findings.issues);
  const certificates = certText === null
    ? null
    : await certificatesOf("server.cert_path", certPath, certText, "cert_path and key_path");
  if (keyText === null) return findings;
  if (!/-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----/.test(keyText)) {
    findings.issues.push({
      path: "server.key_path",
      message: `${keyPath} holds no PEM private key (-----BEGIN PRIVATE KEY-----)`,
      hint: "point key_path at the key of cert_path's certificate, e.g. key.pem from `tls-tunnel cert`",
    });
    return findings;
  }
  if (certificates === null || certText === null) return findings;
  const match = await keyMatchesCertificate(certText, keyText);
  if (match.match === false) {
    findings.issues.push({
      path: "server.key_path",
      message: `${keyPath} does not belong to the certificate in ${certPath}: ${match.reason}`,
      hint: "use the key file written together with that certificate",
    });
  } else if (match.match === "unknown") {
    findings.warnings.push({
      path: "server.key_path",
      message: `could not tell whether ${keyPath} belongs to ${certPath}: ${match.reason}`,
      hint: "the server's first handshake will tell",
    });
  }
  return findings;
}

/** A note for `transport = "quic"` and one per udp proxy: both sides need Deno's `--unstable-net` for them. */
function unstableNetNotes(parsed: ParsedConfig): ConfigIssue[] {
  const quic: ConfigIssue[] = [];
  const quicPath = parsed.kind === "server"
    ? (parsed.config.listeners.some((listener) => listener.transport === "quic") ? "server.transport" : null)
    : (parsed.config.servers.some((server) => server.transport === "quic") ? "client.transport" : null);
  if (quicPath !== null) {
    quic.push({
      path: quicPath,
      message:
        'transport = "quic" (experimental, UDP): the client and the server need Deno\'s --unstable-net',
      hint:
        "start both with 'deno run --unstable-net …' (or 'deno task client:unstable' / 'server:unstable')",
    });
  }
  if (parsed.kind !== "client") return quic;
  return [
    ...quic,
    ...parsed.config.proxies.flatMap((proxy, index) =>
      proxy.proxyType === "udp"
        ? [{
          path: `proxies[${index}].proxy_type`,
          message:
            `proxy "${proxy.name}" is a udp proxy: the client and the server need Deno's --unstable-net`,
          hint:
            "start both with 'deno run --unstable-net …' (or 'deno task client:unstable' / 'server:unstable')",
        }]
        : []
    ),
  ];
}

/**
 * Validates the config at `configPath` and prints the result.
 *
 * @returns 0 when valid, 1 when invalid or unreadable.
 */
export async function checkCommand(
  options: CheckOptions,
  io: CommandOutput = processOutput,
): Promise<number> {
  const file = options.configPath;
  const logFormat = options.logFormat ?? activeLogFormat();
  let report: CheckReport;
  try {
    const parsed = await loadConfig(file);
    const { issues: fileIssues, warnings } = await inspectFiles(parsed);
    report = {
      valid: fileIssues.length === 0,
      kind: parsed.kind,
      file,
      issues: fileIssues,
      warnings,
      notes: [...parsed.notes, ...unstableNetNotes(parsed)],
      summary: fileIssues.length === 0
        ? (parsed.kind === "server" ? serverSummary(parsed.config) : clientSummary(parsed.config))
        : [],
    };
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    report = {
      valid: false,
      kind: error instanceof InvalidConfigError ? error.kind ?? null : null,
      file,
      issues: error.issues,
      warnings: [],
      notes: [],
      summary: [],
    };
  }

  if (options.format === "json") {
    // Under --log-format json every line is a JSON document: the report then takes one line.
    io.out(logFormat === "json" ? JSON.stringify(report) : JSON.stringify(report, null, 2));
  } else if (logFormat === "json") {
    // One record: the report's fields as its properties, the verdict as its message.
    const { valid, kind, issues, warnings } = report;
    const count = issues.length === 1 ? "1 problem" : `${issues.length} problems`;
    const message = valid
      ? `${file}: valid ${kind} config`
      : `${file}: invalid${kind !== null ? ` ${kind}` : ""} config (${count})`;
    const record = formatOutputRecord({
      level: !valid ? "error" : warnings.length > 0 ? "warning" : "info",
      text: message,
      properties: { ...report },
    });
    if (valid) io.out(record);
    else io.err(record);
  } else if (report.valid) {
    io.out(`${file}: valid ${report.kind} config`);
    for (const line of report.summary) io.out(`  ${line}`);
    for (const note of report.notes) io.out(`note: ${formatIssue(note)}`);
    for (const warning of report.warnings) io.err(`warning: ${formatIssue(warning)}`);
  } else {
    const count = report.issues.length === 1 ? "1 problem" : `${report.issues.length} problems`;
    io.err(`${file}: invalid${report.kind !== null ? ` ${report.kind}` : ""} config (${count}):`);
    for (const issue of report.issues) io.err(`  ${formatIssue(issue)}`);
    for (const warning of report.warnings) io.err(`warning: ${formatIssue(warning)}`);
    for (const note of report.notes) io.err(`note: ${formatIssue(note)}`);
  }
  return report.valid ? 0 : 1;
}

/** A `bandwidth_limit` in bytes per second as people read it (`10 MiB/s`). */
function formatRate(bytesPerSecond: number): string {
  const units: Array<[string, number]> = [["GiB/s", 1024 ** 3], ["MiB/s", 1024 ** 2], ["KiB/s", 1024]];
  for (const [unit, size] of units) {
    if (bytesPerSecond >= size) return `${Number((bytesPerSecond / size).toFixed(2))} ${unit}`;
  }
  return `${bytesPerSecond} B/s`;
}

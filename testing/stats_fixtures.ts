/**
 * Snapshots for the stats tests (a server with two clients, a client waiting to reconnect) and a strict
 * parser of the Prometheus text format.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Histogram } from "../lib/stats/histogram.ts";
import type { ClientRoleSnapshot, ProxySnapshot, ServerSnapshot } from "../lib/stats/snapshot.ts";

/** A proxy snapshot with the given fields changed. */
export function proxySnapshot(fields: Partial<ProxySnapshot> & { name: string }): ProxySnapshot {
  return {
    publish_addr: "0.0.0.0",
    publish_port: 8080,
    local_addr: "127.0.0.1",
    local_port: 3000,
    status: "healthy",
    last_error: null,
    active_connections: 0,
    total_connections: 0,
    failed_connections: 0,
    bind_retries: 0,
    bytes_in: 0,
    bytes_out: 0,
    ...fields,
  };
}

/** A server with clients `office` (two proxies) and `lab` (one proxy that failed to bind). */
export function serverSnapshot(): ServerSnapshot {
  const latency = new Histogram([0.001, 0.01, 0.1]);
  for (const secs of [0.0005, 0.002, 0.003, 0.05, 0.2]) latency.observe(secs);
  return {
    role: "server",
    version: "0.1.0",
    started_at_ms: 1_700_000_000_000,
    listen_addr: "0.0.0.0:8443",
    clients: [
      {
        name: "office",
        client_id: "office-host-1",
        session_id: "s1",
        remote_addr: "10.0.0.7:51234",
        connected_since_ms: 1_700_000_100_000,
        rtt_ms: 1.5,
        streams: 3,
        proxies: [
          proxySnapshot({
            name: "web",
            active_connections: 2,
            total_connections: 10,
            failed_connections: 1,
            bytes_in: 4096,
            bytes_out: 1_048_576,
          }),
          proxySnapshot({ name: "ssh", publish_port: 2222, local_port: 22, total_connections: 1 }),
        ],
      },
      {
        name: 'lab "east"\\x',
        client_id: "lab\nid",
        session_id: "s2",
        remote_addr: "10.0.0.9:40000",
        connected_since_ms: 1_700_000_200_000,
        rtt_ms: null,
        streams: 1,
        proxies: [
          proxySnapshot({
            name: "db",
            publish_port: 0,
            local_port: 5432,
            status: "bind_failed",
            last_error: "Port 5432 on 0.0.0.0 is already in use by another process",
          }),
        ],
      },
    ],
    sessions_total: 5,
    auth_failures_total: 2,
    pending_connections: 1,
    connections_refused: { pending_limit: 0, pending_per_ip_limit: 4 },
    stream_open_latency: latency.snapshot(),
    recent_events: [
      {
        time_ms: 1_700_000_200_000,
        level: "info",
        code: "CLIENT_CONNECTED",
        message: "Client lab connected",
      },
    ],
  };
}

/** A client waiting 3 s before its next attempt, at `nowMs`. */
export function clientSnapshot(nowMs = 1_700_000_300_000): ClientRoleSnapshot {
  return {
    role: "client",
    version: "0.1.0",
    started_at_ms: 1_700_000_000_000,
    server_addr: "tunnel.example.com:8443",
    state: "waiting",
    next_attempt_at_ms: nowMs + 3000,
    sessions_total: 3,
    rtt_ms: null,
    proxies: [
      proxySnapshot({ name: "web", status: "pending", total_connections: 7, bytes_in: 100, bytes_out: 200 }),
      proxySnapshot({
        name: "api",
        publish_port: 9000,
        status: "unhealthy",
        last_error: "local service down",
      }),
    ],
    recent_events: [],
  };
}

/** One parsed sample line. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** A parsed exposition: samples in order, and each family's TYPE and HELP. */
export interface Exposition {
  samples: Sample[];
  types: Map<string, string>;
  helps: Map<string, string>;
}

const SAMPLE_LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$/s;

function parseLabels(text: string): Record<string, string> {
  const labels: Record<string, string> = {};
  let i = 1; // after "{"
  while (i < text.length - 1) {
    const eq = text.indexOf("=", i);
    const name = text.slice(i, eq);
    assert.match(name, /^[a-zA-Z_][a-zA-Z0-9_]*$/, `label name in ${text}`);
    assert.equal(text[eq + 1], '"', `label value must be quoted in ${text}`);
    let value = "";
    let j = eq + 2;
    for (; j < text.length && text[j] !== '"'; j++) {
      if (text[j] === "\\") {
        const next = text[++j];
        assert.ok(next === "\\" || next === '"' || next === "n", `bad escape \\${next} in ${text}`);
        value += next === "n" ? "\n" : next;
      } else {
        value += text[j];
      }
    }
    labels[name] = value;
    i = j + 1;
    if (text[i] === ",") i++;
  }
  return labels;
}

/** Parses the text format strictly enough to catch malformed output; throws on any bad line. */
export function parseExposition(text: string): Exposition {
  assert.ok(text.endsWith("\n"), "the exposition ends with a line feed");
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  const helps = new Map<string, string>();
  for (const line of text.slice(0, -1).split("\n")) {
    if (line.startsWith("# HELP ")) {
      const [, name, help] = line.match(/^# HELP (\S+) (.*)$/) ?? [];
      assert.ok(name && help !== undefined, `HELP line: ${line}`);
      assert.ok(!helps.has(name), `HELP for ${name} appears once`);
      helps.set(name, help);
      continue;
    }
    if (line.startsWith("# TYPE ")) {
      const [, name, type] = line.match(/^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$/) ?? [];
      assert.ok(name && type, `TYPE line: ${line}`);
      assert.ok(!types.has(name), `TYPE for ${name} appears once`);
      types.set(name, type);
      continue;
    }
    const match = line.match(SAMPLE_LINE);
    assert.ok(match, `sample line: ${JSON.stringify(line)}`);
    const [, name = "", labelText, valueText = ""] = match;
    const value = valueText === "+Inf" ? Infinity : valueText === "-Inf" ? -Infinity : Number(valueText);
    assert.ok(valueText === "NaN" || !Number.isNaN(value), `numeric value in ${line}`);
    samples.push({ name, labels: labelText ? parseLabels(labelText) : {}, value });
  }
  return { samples, types, helps };
}

/**
 * The Kubernetes manifests under deploy/kubernetes/ (not applied to a cluster here): every file parses as
 * YAML, the objects fit together (Services select the pods, mounts name existing volumes, secrets exist),
 * and the TOML configs inside the ConfigMaps load with the real config loader, the client's servers
 * matching the servers' tunnel Services and its proxies the published Service's ports.
 */

import assert from "node:assert/strict";
import { parseAllDocuments } from "yaml";
import { parseConfigText } from "../lib/config/load.ts";
import type { ClientConfig, ServerConfig } from "../lib/config/types.ts";

const DIR = new URL("../deploy/kubernetes/", import.meta.url);

type Doc = Record<string, unknown>;

function field(value: unknown, ...path: string[]): unknown {
  let current = value;
  for (const key of path) {
    if (typeof current !== "object" || current === null) return undefined;
    current = (current as Record<string, unknown>)[key];
  }
  return current;
}

function list(value: unknown): Doc[] {
  return Array.isArray(value) ? value as Doc[] : [];
}

async function manifests(): Promise<Doc[]> {
  const docs: Doc[] = [];
  for await (const entry of Deno.readDir(DIR)) {
    if (!entry.name.endsWith(".yaml")) continue;
    for (const document of parseAllDocuments(await Deno.readTextFile(new URL(entry.name, DIR)))) {
      assert.deepEqual(document.errors, [], `${entry.name} does not parse`);
      const value: unknown = document.toJS();
      assert.ok(
        typeof value === "object" && value !== null,
        `${entry.name}: a document that is not an object`,
      );
      assert.equal(typeof field(value, "apiVersion"), "string", `${entry.name}: no apiVersion`);
      assert.equal(field(value, "metadata", "namespace") ?? "tls-tunnel", "tls-tunnel");
      docs.push(value as Doc);
    }
  }
  return docs;
}

function find(docs: Doc[], kind: string, name: string): Doc {
  const doc = docs.find((d) => d.kind === kind && field(d, "metadata", "name") === name);
  assert.ok(doc, `no ${kind} ${name}`);
  return doc;
}

function selects(service: Doc, pod: Doc): boolean {
  const selector = field(service, "spec", "selector") as Record<string, string>;
  const labels = field(pod, "spec", "template", "metadata", "labels") as Record<string, string>;
  return Object.entries(selector).every(([key, value]) => labels[key] === value);
}

Deno.test("the Kubernetes manifests parse and fit together: two servers with their own tunnel Service, one published Service, one client", async () => {
  const docs = await manifests();
  const deployments = docs.filter((d) => d.kind === "Deployment");
  assert.deepEqual(deployments.map((d) => field(d, "metadata", "name")).sort(), [
    "tls-tunnel-a",
    "tls-tunnel-b",
    "tls-tunnel-client",
  ]);
  for (const deployment of deployments) {
    assert.equal(field(deployment, "spec", "replicas"), 1, "one pod per server, one client (one client_id)");
    const pod = field(deployment, "spec", "template", "spec");
    const volumes = new Set(list(field(pod, "volumes")).map((v) => v.name));
    for (const container of list(field(pod, "containers"))) {
      for (const mount of list(container.volumeMounts)) assert.ok(volumes.has(mount.name), `${mount.name}`);
      for (const env of list(container.env)) {
        const secret = field(env, "valueFrom", "secretKeyRef", "name");
        if (typeof secret === "string") find(docs, "Secret", secret);
      }
    }
    for (const volume of list(field(pod, "volumes"))) {
      const secret = field(volume, "secret", "secretName");
      if (typeof secret === "string") find(docs, "Secret", secret);
      const configMap = field(volume, "configMap", "name");
      if (typeof configMap === "string") find(docs, "ConfigMap", configMap);
    }
  }
  for (const name of ["a", "b"]) {
    const service = find(docs, "Service", `tls-tunnel-${name}`);
    assert.equal(field(service, "spec", "type"), "LoadBalancer");
    assert.equal(field(service, "spec", "publishNotReadyAddresses"), true);
    assert.deepEqual(
      deployments.filter((d) => selects(service, d)).map((d) => field(d, "metadata", "name")),
      [
        `tls-tunnel-${name}`,
      ],
    );
  }
  const published = find(docs, "Service", "tls-tunnel-published");
  assert.equal(field(published, "spec", "type"), "LoadBalancer");
  assert.deepEqual(
    deployments.filter((d) => selects(published, d)).map((d) => field(d, "metadata", "name")).sort(),
    ["tls-tunnel-a", "tls-tunnel-b"],
  );

  const env = { TLS_TUNNEL_AUTH_KEY: "a-key-of-at-least-16-characters" };
  const serverToml = field(find(docs, "ConfigMap", "tls-tunnel-server"), "data", "server.toml");
  const server = parseConfigText(String(serverToml), { env }).config as ServerConfig;
  assert.equal(server.bindPort, 8443);
  const clientToml = field(find(docs, "ConfigMap", "tls-tunnel-client"), "data", "client.toml");
  const loaded = parseConfigText(String(clientToml), { env });
  assert.equal(loaded.kind, "client");
  const client = loaded.config as ClientConfig;
  assert.equal(client.servers.length, 2);
  assert.ok(client.servers.every((s) => s.serverPort === server.bindPort));
  // Every published port is a port of the published Service, a container port of the servers, and allowed.
  const servicePorts = list(field(published, "spec", "ports")).map((port) => port.port);
  for (const proxy of client.proxies) {
    assert.ok(
      servicePorts.includes(proxy.publishPort),
      `port ${proxy.publishPort} not in the published Service`,
    );
    assert.equal(proxy.publishAddr, undefined, "no publish_addr: each server's default_publish_addr");
    assert.ok(server.allowPorts.some((r) => r.start <= proxy.publishPort && proxy.publishPort <= r.end));
  }
  // The servers are ready only with the proxy published: the readiness probe checks the published port.
  for (const name of ["a", "b"]) {
    const container = list(
      field(find(docs, "Deployment", `tls-tunnel-${name}`), "spec", "template", "spec", "containers"),
    )[0];
    const probePort = field(container, "readinessProbe", "tcpSocket", "port");
    const port = list(field(container, "ports")).find((p) => p.name === probePort);
    assert.ok(servicePorts.includes(Number(port?.containerPort)));
  }
});

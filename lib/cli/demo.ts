/**
 * The `demo` command's machinery: a whole tunnel on loopback with nothing to prepare.
 *
 * @module
 */

import { parseConfigText } from "../config/mod.ts";
import type { ClientConfig, ServerConfig } from "../config/types.ts";
import { generateCertificates } from "../pki/cert.ts";
import { TunnelServer } from "../server/server.ts";
import { TunnelClient } from "../client/client.ts";
import { withTimeout } from "../_async.ts";

/** A running demo. */
export interface RunningDemo {
  /** The URL the server publishes. */
  publishedUrl: string;
  /** The local web service behind it. */
  localUrl: string;
  /** What the first fetch through the tunnel returned. */
  firstResponse: { status: number; body: string };
  /** Resolves when the signal aborts. */
  done: Promise<void>;
  /** Stops the client, the server and the web service. */
  stop(): Promise<void>;
}

/** Starts server, web service and client on 127.0.0.1 and fetches once through the tunnel. */
export async function startDemo(options: { signal: AbortSignal }): Promise<RunningDemo> {
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  options.signal.addEventListener("abort", onAbort, { once: true });
  const certificates = await generateCertificates({ commonName: "localhost", altNames: [], validityDays: 1 });
  const authKey = crypto.randomUUID();

  const web = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: stop.signal, onListen: () => {} },
    (request) =>
      new Response(`Hello from the local service behind the tunnel (${new URL(request.url).pathname})\n`),
  );

  const serverConfig = parseConfigText(
    `[server]\nbind_addr = "127.0.0.1"\nbind_port = 0\nauth_key = "${authKey}"\n` +
      `keepalive_interval_secs = 5\nkeepalive_timeout_secs = 15\n`,
    { sourceName: "demo server", env: {} },
  ).config as ServerConfig;
  const server = new TunnelServer({
    config: serverConfig,
    certPem: certificates.serverChainPem,
    keyPem: certificates.serverKeyPem,
    signal: stop.signal,
  });
  const serverAddr = await server.listen();
  const serving = server.serve();

  const clientConfig = parseConfigText(
    `[client]\nserver_addr = "127.0.0.1"\nserver_port = ${serverAddr.port}\nserver_name = "localhost"\n` +
      `auth_key = "${authKey}"\n\n[[proxies]]\nname = "web"\npublish_addr = "127.0.0.1"\npublish_port = 0\n` +
      `local_addr = "127.0.0.1"\nlocal_port = ${web.addr.port}\n`,
    { sourceName: "demo client", env: {} },
  ).config as ClientConfig;
  let onPublished: (port: number) => void = () => {};
  const published = new Promise<number>((resolve) => (onPublished = resolve));
  const client = new TunnelClient({
    config: clientConfig,
    caCertPem: certificates.caCertPem,
    signal: stop.signal,
    onRegistered: (registrations) => {
      const web = registrations.find((registration) => registration.name === "web");
      if (web?.status === "accepted") onPublished(web.publish_port);
    },
  });
  const running = client.run();

  const stopAll = async () => {
    stop.abort();
    options.signal.removeEventListener("abort", onAbort);
    await Promise.allSettled([running, serving, web.finished]);
  };
  try {
    const port = await withTimeout(published, 10_000, "the demo client's registration");
    const publishedUrl = `http://127.0.0.1:${port}/`;
    const response = await fetch(publishedUrl);
    const body = (await response.text()).trim();
    return {
      publishedUrl,
      localUrl: `http://127.0.0.1:${web.addr.port}/`,
      firstResponse: { status: response.status, body },
      done: new Promise((resolve) => {
        if (options.signal.aborted) resolve();
        options.signal.addEventListener("abort", () => resolve(), { once: true });
      }),
      stop: stopAll,
    };
  } catch (error) {
    await stopAll();
    throw error;
  }
}

/**
 * A hand-driven protocol client for the end-to-end tests: TLS + yamux + the JSON-RPC control stream,
 * without the tunnel client's logic, so a test can pipeline requests and misbehave on purpose. Also a
 * TCP relay that can freeze a client's connection (its session then stops answering pings).
 *
 * @module
 */

import { Session } from "../lib/mux/mod.ts";
import { RpcPeer } from "../lib/rpc/mod.ts";
import type { RegisterProxiesResult } from "../lib/rpc/control.ts";
import { writeAll } from "../lib/transport/conn.ts";
import { closeQuietly } from "../lib/transport/pipe.ts";
import { testCertificates } from "./_helpers.ts";
import { AUTH_KEY } from "./_tunnel.ts";

/** A proxy object as `register_proxies` takes it; `name` and `publish_port` are what the tests vary. */
export interface RawProxy {
  name: string;
  publish_port: number;
  publish_addr?: string;
  publish_port_range?: { start: number; end: number };
  fallback_to_system_port?: boolean;
}

/** `bind_retry` of a `register_proxies` request. */
export interface RawBindRetry {
  max_retries?: number;
  initial_delay_secs?: number;
  max_delay_secs?: number;
}

/** A connected (not yet authenticated) raw protocol client. */
export class RawClient {
  private constructor(readonly session: Session, readonly rpc: RpcPeer) {}

  /** Connects over TLS to `port` on localhost (the server's, or a relay's) and opens the control stream. */
  static async dial(port: number): Promise<RawClient> {
    const certs = await testCertificates();
    const conn = await Deno.connectTls({ hostname: "localhost", port, caCerts: [certs.caCertPem] });
    const session = new Session(conn, { role: "client", keepaliveIntervalMs: 0 });
    const control = await session.open();
    return new RawClient(session, new RpcPeer(control));
  }

  /** Authenticates with the shared test key. */
  authenticate(clientId: string): Promise<unknown> {
    return this.rpc.request("authenticate", {
      auth_key: AUTH_KEY,
      protocol_version: 1,
      client_id: clientId,
    }, { timeoutMs: 10_000 });
  }

  /** Sends `register_proxies` at once (callers may pipeline several); resolves with the answer. */
  register(proxies: RawProxy[], bindRetry?: RawBindRetry): Promise<RegisterProxiesResult> {
    return this.rpc.request<RegisterProxiesResult>("register_proxies", {
      proxies: proxies.map((proxy) => ({
        proxy_type: "tcp",
        publish_addr: "127.0.0.1",
        local_addr: "127.0.0.1",
        local_port: 9,
        ...proxy,
      })),
      ...(bindRetry ? { bind_retry: bindRetry } : {}),
    }, { timeoutMs: 20_000 });
  }

  /** Ends the session and waits until it is down. */
  async close(): Promise<void> {
    this.rpc.close();
    await this.session.close();
    await this.session.closed;
    await this.rpc.closed;
  }
}

/**
 * A TCP relay on 127.0.0.1 to `targetPort`. {@linkcode freeze} stops carrying bytes both ways (the
 * connections stay open), so the server sees a peer that is connected but never answers.
 */
export class FreezableRelay {
  readonly #listener: Deno.TcpListener;
  readonly #conns = new Set<Deno.Conn>();
  readonly #tasks = new Set<Promise<void>>();
  #frozen = false;
  #thaw = Promise.withResolvers<void>();
  readonly #accepting: Promise<void>;

  constructor(readonly targetPort: number) {
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#accepting = this.#accept();
  }

  /** The relay's port. */
  get port(): number {
    return this.#listener.addr.port;
  }

  /** Stops carrying bytes in both directions. */
  freeze(): void {
    this.#frozen = true;
  }

  async #accept(): Promise<void> {
    for (;;) {
      let inbound: Deno.TcpConn;
      try {
        inbound = await this.#listener.accept();
      } catch {
        return;
      }
      const outbound = await Deno.connect({ hostname: "127.0.0.1", port: this.targetPort });
      this.#conns.add(inbound);
      this.#conns.add(outbound);
      for (const [from, to] of [[inbound, outbound], [outbound, inbound]] as const) {
        const task = this.#pump(from, to);
        this.#tasks.add(task);
      }
    }
  }

  async #pump(from: Deno.Conn, to: Deno.Conn): Promise<void> {
    const buffer = new Uint8Array(16 * 1024);
    try {
      for (;;) {
        const read = await from.read(buffer);
        if (read === null) break;
        while (this.#frozen) await this.#thaw.promise;
        await writeAll(to, buffer.subarray(0, read));
      }
    } catch {
      // Either side closed: the relay of this pair is over.
    }
    closeQuietly(to);
  }

  /** Closes the relay and every connection through it. */
  async close(): Promise<void> {
    closeQuietly(this.#listener);
    for (const conn of this.#conns) closeQuietly(conn);
    this.#frozen = false;
    this.#thaw.resolve();
    this.#thaw = Promise.withResolvers<void>();
    await this.#accepting;
    await Promise.all(this.#tasks);
  }
}

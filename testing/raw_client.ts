/**
 * A hand-driven protocol client for the end-to-end tests: TLS + yamux + the JSON-RPC control stream,
 * without the tunnel client's logic, so a test can pipeline requests and misbehave on purpose (also
 * from another loopback address, or over a connection of the test's own); the TLS and session dials
 * under it for tests that write raw bytes; an assertion on JSON-RPC error codes. Also a TCP relay that
 * can freeze a client's connection (its session then stops answering pings).
 *
 * @module
 */

import assert from "node:assert/strict";
import { Session, type Stream } from "../lib/mux/mod.ts";
import { RpcError, RpcPeer } from "../lib/rpc/mod.ts";
import type { AuthenticateResult, RegisterProxiesResult } from "../lib/protocol/control.ts";
import { type DuplexConn, writeAll } from "../lib/net/conn.ts";
import { closeQuietly } from "../lib/transport/pipe.ts";
import { testCertificates } from "./helpers.ts";
import { dialTls as dialTlsFrom } from "./fuzz_conn.ts";
import { AUTH_KEY } from "./tunnel.ts";

/** A proxy object as `register_proxies` takes it; `name` and `publish_port` are what the tests vary. */
export interface RawProxy {
  name: string;
  publish_port: number;
  /** Default `"tcp"`. */
  proxy_type?: string;
  publish_addr?: string;
  publish_port_range?: { start: number; end: number };
  fallback_to_system_port?: boolean;
  /** A group shared with other clients' proxies (README "Groups"). */
  group?: string;
  /** The group's key. */
  group_key?: string;
}

/** `bind_retry` of a `register_proxies` request. */
export interface RawBindRetry {
  max_retries?: number;
  initial_delay_secs?: number;
  max_delay_secs?: number;
}

/** How {@linkcode RawClient.dial} connects. */
export interface RawDialOptions {
  /**
   * A 127.0.0.0/8 source address: the connection comes from it (through `node:tls`), so the server sees
   * another client address than 127.0.0.1.
   */
  fromAddress?: string | undefined;
  /** The client id {@linkcode RawClient.authenticate} sends when given none. */
  clientId?: string | undefined;
  /** Timeout of `authenticate`. */
  authenticateTimeoutMs?: number | undefined;
  /** The yamux keepalive interval; 0 (the default) sends no pings. */
  keepaliveIntervalMs?: number | undefined;
}

/** Connects over TLS to `port` on localhost (the server's, or a relay's), trusting the test CA. */
export async function dialTls(port: number): Promise<Deno.TlsConn> {
  const certs = await testCertificates();
  return await Deno.connectTls({ hostname: "localhost", port, caCerts: [certs.caCertPem] });
}

/** A yamux client session over TLS to `port` on localhost, without a control stream yet. */
export async function dialSession(port: number): Promise<Session> {
  return new Session(await dialTls(port), { role: "client", keepaliveIntervalMs: 0 });
}

/**
 * Asserts that `promise` rejects with a JSON-RPC error of `code` and returns that error; fails the test
 * when it resolves or rejects with anything else. `what` names the case in the failure message.
 */
export async function rejectsWithCode(
  promise: Promise<unknown>,
  code: number,
  what?: string,
): Promise<RpcError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof RpcError, `${what ? `${what}: ` : ""}expected RpcError ${code}, got ${error}`);
    assert.equal(error.code, code, what ? `${what}: ${error.message}` : error.message);
    return error;
  }
  throw new assert.AssertionError({
    message: `${what ? `${what}: ` : ""}expected an RpcError ${code}, but the call succeeded`,
  });
}

/** A connected (not yet authenticated) raw protocol client. */
export class RawClient {
  private constructor(
    readonly conn: DuplexConn,
    readonly session: Session,
    readonly control: Stream,
    readonly rpc: RpcPeer,
    readonly options: RawDialOptions,
  ) {}

  /**
   * Connects over TLS to `port` on localhost (the server's, or a relay's) and opens the control stream.
   */
  static async dial(port: number, options: RawDialOptions = {}): Promise<RawClient> {
    let conn: DuplexConn;
    if (options.fromAddress === undefined) {
      conn = await dialTls(port);
    } else {
      const certs = await testCertificates();
      conn = await dialTlsFrom(port, options.fromAddress, certs.caCertPem);
    }
    return await RawClient.over(conn, options);
  }

  /** Runs a client session over `conn` (already connected to the server) and opens the control stream. */
  static async over(conn: DuplexConn, options: RawDialOptions = {}): Promise<RawClient> {
    const session = new Session(conn, {
      role: "client",
      keepaliveIntervalMs: options.keepaliveIntervalMs ?? 0,
    });
    const control = await session.open();
    return new RawClient(conn, session, control, new RpcPeer(control), options);
  }

  /**
   * Sends `authenticate` as `clientId` (the dial option's, else "raw") with `key` (the shared test key
   * unless given); does not wait for earlier calls, so callers may pipeline.
   */
  authenticate(clientId?: string, key: string = AUTH_KEY): Promise<AuthenticateResult> {
    return this.rpc.request<AuthenticateResult>("authenticate", {
      auth_key: key,
      protocol_version: 1,
      client_id: clientId ?? this.options.clientId ?? "raw",
    }, { timeoutMs: this.options.authenticateTimeoutMs ?? 10_000 });
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

/** How {@linkcode RawServer.listen} runs its sessions. */
export interface RawServerOptions {
  /** The yamux keepalive interval; 0 (the default) sends no pings. */
  keepaliveIntervalMs?: number;
  /** How long a ping may go unanswered before the session ends. */
  keepaliveTimeoutMs?: number;
}

/**
 * A hand-driven server (our TLS, yamux and JSON-RPC layers, no server code) on 127.0.0.1 with the test
 * server certificate: for each session a client opens, `serve` gets the control channel's peer and
 * answers as the test likes.
 */
export class RawServer {
  /** Every session accepted so far, in order. */
  readonly sessions: Session[] = [];
  readonly #peers: RpcPeer[] = [];
  readonly #listener: Deno.TlsListener;
  readonly #accepting: Promise<void>;

  private constructor(
    listener: Deno.TlsListener,
    serve: (rpc: RpcPeer, session: Session, count: number) => void | Promise<void>,
    options: RawServerOptions,
  ) {
    this.#listener = listener;
    this.#accepting = (async () => {
      for await (const conn of listener) {
        const session = new Session(conn, { keepaliveIntervalMs: 0, ...options, role: "server" });
        this.sessions.push(session);
        const count = this.sessions.length;
        void session.accept().then((control) => {
          if (!control) return;
          const rpc = new RpcPeer(control);
          this.#peers.push(rpc);
          return serve(rpc, session, count);
        }).catch(() => {});
      }
    })().catch(() => {});
  }

  /**
   * Listens on a free port; `serve` runs on the control channel of each session (`count`: the session's
   * number, from 1).
   */
  static async listen(
    serve: (rpc: RpcPeer, session: Session, count: number) => void | Promise<void>,
    options: RawServerOptions = {},
  ): Promise<RawServer> {
    const certs = await testCertificates();
    const listener = Deno.listenTls({
      hostname: "127.0.0.1",
      port: 0,
      cert: certs.serverChainPem,
      key: certs.serverKeyPem,
    });
    return new RawServer(listener, serve, options);
  }

  /** The port clients dial. */
  get port(): number {
    return this.#listener.addr.port;
  }

  /** Stops listening and ends every session (each wait bounded to 1 s, in case its client went silent). */
  async close(): Promise<void> {
    closeQuietly(this.#listener);
    await this.#accepting;
    for (const rpc of this.#peers) rpc.close();
    for (const session of this.sessions) {
      await settledWithin(session.close().then(() => session.closed), 1000);
    }
    for (const rpc of this.#peers) await settledWithin(rpc.closed, 1000);
  }

  /** {@linkcode close} for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** Waits for `promise` to settle, but at most `ms`. */
async function settledWithin(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    promise.catch(() => {}),
    new Promise<void>((resolve) => (timer = setTimeout(resolve, ms))),
  ]);
  clearTimeout(timer);
}

/**
 * Visits: a client's `[[visitors]]` reaching another client's private proxy through the server (protocol
 * README §5b). A private proxy is registered without a listener, under `(name, publish_port)`; a `visit`
 * stream is checked (on every open: the proxy's `secret_key`, the visitor's `allow_visit`, or by default the
 * same key) and then carried to the owner exactly like an outside connection of the proxy: same stream
 * header, same counters, same reset when the owner's session ends.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { Stream } from "../mux/mod.ts";
import type { VisitRequest } from "../protocol/open_request.ts";
import type { ProxyRegistration } from "../protocol/control.ts";
import { secretsEqual } from "../text.ts";
import type { ClientStreamContext, ClientStreamOutcome, ClientStreamRefusal } from "./client_streams.ts";
import type { ConnectedClient } from "./connected_client.ts";
import type { PublishedProxy } from "./published_proxy.ts";
import type { OutsideConn } from "./proxy_kinds/kind.ts";
import { accepted, closingRejection } from "./registration_answers.ts";

const logger = getLogger(["tls-tunnel", "server", "visit"]);

/**
 * Publishes a claimed private proxy: no listener, only the entry visitors find by `(name, publish_port)`.
 * Called by the registrar instead of binding.
 */
export function registerPrivate(client: ConnectedClient, published: PublishedProxy): ProxyRegistration {
  const proxy = published.spec;
  if (!client.publish(published)) return closingRejection(proxy);
  published.stats.setStatus("healthy");
  logger.info(
    "Proxy {proxy} of {client} is private: visitors reach it as ({proxy}, {port}) → client's {local}",
    {
      proxy: proxy.name,
      client: client.name,
      port: proxy.publish_port,
      local: `${proxy.local_addr}:${proxy.local_port}`,
    },
  );
  const answer = accepted(proxy, proxy.publish_port);
  if (answer.status === "accepted") answer.visibility = "private";
  return answer;
}

/** Whether `proxy` can be visited (`private` or `both`), and is not stopped. */
export function isVisitable(proxy: PublishedProxy): boolean {
  const visibility = proxy.spec.visibility ?? "public";
  return visibility !== "public" && !proxy.stopped;
}

/** What the visit handler needs from the server. */
export interface VisitContext {
  /** The connected clients now. */
  clients(): Iterable<ConnectedClient>;
  /** The visiting client's `allow_visit` (from its `[[server.clients]]` entry, read now), or undefined. */
  allowVisit(client: ConnectedClient): readonly string[] | undefined;
}

/** Why `visitor` may not reach `owner`'s `proxy`, or null when it may. */
function denial(
  context: VisitContext,
  visitor: ConnectedClient,
  owner: ConnectedClient,
  proxy: PublishedProxy,
  request: VisitRequest,
): string | null {
  const secret = proxy.spec.secret_key;
  if (secret !== undefined) {
    // Compared in constant time, and a missing key compares against the real one too (timing says nothing).
    const matches = secretsEqual(request.secret_key ?? "", secret);
    if (!matches || request.secret_key === undefined) {
      return request.secret_key === undefined
        ? `proxy '${proxy.spec.name}' of ${owner.name} needs a secret_key; set secret_key in the [[visitors]] entry`
        : `the secret_key does not match proxy '${proxy.spec.name}' of ${owner.name}`;
    }
  }
  const allowVisit = context.allowVisit(visitor);
  if (allowVisit !== undefined) {
    if (allowVisit.includes("*") || allowVisit.includes(owner.name)) return null;
    return `client ${visitor.name} may visit only ${
      allowVisit.length > 0 ? allowVisit.join(", ") : "no client"
    } (allow_visit of its [[server.clients]] entry), not ${owner.name}`;
  }
  if (visitor.grant.entryName !== owner.grant.entryName) {
    return `client ${visitor.name} and ${owner.name} use different keys; a client may visit only clients ` +
      `with its own key unless the server's [[server.clients]] entry of ${visitor.name} sets allow_visit`;
  }
  return null;
}

/**
 * The `visit` handler: finds the target proxy, checks access, and on success hands back a carry that
 * splices the visitor's stream to a new stream to the owner.
 */
export function visitHandler(context: VisitContext) {
  return (request: VisitRequest, { client: visitor }: ClientStreamContext): Promise<ClientStreamOutcome> => {
    const target = `'${request.name}' (publish_port ${request.publish_port}${
      request.client !== undefined ? `, client ${request.client}` : ""
    })`;
    const matches: Array<{ owner: ConnectedClient; proxy: PublishedProxy }> = [];
    for (const owner of context.clients()) {
      if (owner.closing) continue;
      if (request.client !== undefined && owner.name !== request.client) continue;
      const proxy = owner.proxies.get(request.name);
      if (!proxy || !isVisitable(proxy)) continue;
      if (proxy.spec.publish_port !== request.publish_port && proxy.boundPort !== request.publish_port) {
        continue;
      }
      matches.push({ owner, proxy });
    }
    // The dispatcher logs each refusal (client_streams.ts, at most a burst per window) and counts it.
    const refuse = (code: ClientStreamRefusal["code"], reason: string): Promise<ClientStreamOutcome> =>
      Promise.resolve({ ok: false, code, reason });
    if (matches.length === 0) {
      return refuse("NOT_FOUND", `no connected client has a proxy open to visitors named ${target}`);
    }
    const reasons: string[] = [];
    const allowed = matches.filter(({ owner, proxy }) => {
      const reason = denial(context, visitor, owner, proxy, request);
      if (reason !== null) reasons.push(reason);
      return reason === null;
    });
    const chosen = allowed[0];
    if (chosen === undefined) return refuse("DENIED", reasons[0] ?? "not allowed");
    if (allowed.length > 1) {
      return refuse(
        "NOT_FOUND",
        `several clients have a proxy ${target}: ${
          allowed.map(({ owner }) => owner.name).join(", ")
        }; set client in the [[visitors]] entry`,
      );
    }
    const { owner, proxy } = chosen;
    if (proxy.refuseConnections) {
      return refuse("UNREACHABLE", `the local service of proxy ${target} of ${owner.name} is reported down`);
    }
    logger.debug("Visit of {visitor} to {target} of {owner}", {
      visitor: visitor.name,
      target,
      owner: owner.name,
    });
    return Promise.resolve({
      ok: true,
      carry: (stream: Stream) => proxy.carryVisit(new VisitorConn(stream, visitor.remoteAddr)),
      abandon: () => {},
    });
  };
}

/** `host:port` (IPv6 in brackets) → an address; a bare host gets port 0. */
function parseRemote(text: string): Deno.NetAddr {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  if (!match) return { transport: "tcp", hostname: text, port: 0 };
  return { transport: "tcp", hostname: match[1] ?? match[2] ?? text, port: Number(match[3]) };
}

/**
 * The visitor's stream as an outside connection of the target proxy: its `peer_addr` is the visiting
 * client's tunnel address; it lends its buffered bytes to the copy loop like any yamux stream.
 */
class VisitorConn implements OutsideConn {
  readonly remoteAddr: Deno.NetAddr;
  readonly #stream: Stream;

  constructor(stream: Stream, remote: string) {
    this.#stream = stream;
    this.remoteAddr = parseRemote(remote);
  }

  read(buffer: Uint8Array): Promise<number | null> {
    return this.#stream.read(buffer);
  }
  readLent(maxBytes: number): Promise<Uint8Array | null> {
    return this.#stream.readLent(maxBytes);
  }
  releaseLent(): void {
    this.#stream.releaseLent();
  }
  write(data: Uint8Array): Promise<number> {
    return this.#stream.write(data);
  }
  closeWrite(): Promise<void> {
    return this.#stream.closeWrite();
  }
  close(): void {
    this.#stream.close();
  }
  reset(): void {
    this.#stream.reset();
  }
}

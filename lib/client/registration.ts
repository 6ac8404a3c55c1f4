/**
 * The client's end of the control stream: the registration step (`authenticate`, then
 * `register_proxies`) and what it serves and receives from the server for the rest of the session
 * (`heartbeat`; `push_exception` and `proxy_status`). Everything the server sends is checked against
 * the protocol's schemas (lib/protocol/control.ts) before the client looks at it: an answer in another
 * shape is a {@linkcode MalformedServerAnswerError} naming the field, a notification in another shape is
 * dropped with a log line naming the field; neither crashes the client.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { z } from "zod";
import type { ClientConfig } from "../config/types.ts";
import { RpcError, type RpcPeer } from "../rpc/mod.ts";
import {
  type AuthenticateParams,
  AuthenticateResult,
  ControlErrorCode,
  describeMessageError,
  DuplicateClientData,
  HeartbeatParams,
  Method,
  type ProxyRegistration,
  ProxyStatusParams,
  PushExceptionParams,
  type RegisterProxiesParams,
  RegisterProxiesResult,
} from "../protocol/control.ts";
import { toBindRetryRequest, toProxySpec } from "../protocol/convert.ts";
import { PROTOCOL_VERSION } from "../protocol/version.ts";
import { hex } from "../text.ts";
import { VERSION } from "../version.ts";
import { FatalClientError, MalformedServerAnswerError } from "./errors.ts";

const logger = getLogger(["tls-tunnel", "client"]);

/** How long the client waits for the server to answer a control request. */
const CONTROL_REQUEST_TIMEOUT_MS = 15_000;

/** Derives a client id that stays the same across restarts of the same client on the same host. */
export async function defaultClientId(config: ClientConfig): Promise<string> {
  const host = hostnameOrFallback();
  const basis = [
    host,
    `${config.serverAddr}:${config.serverPort}`,
    // An unset publish_addr counts as the 0.0.0.0 it used to default to, so existing ids stay the same.
    ...config.proxies.map((proxy) => `${proxy.name}:${proxy.publishAddr ?? "0.0.0.0"}:${proxy.publishPort}`),
    // Visitors too, so two visitor-only clients on one host get different ids (none: the id is unchanged).
    ...(config.visitors ?? []).map((visitor) =>
      `visitor:${visitor.name}:${visitor.publishPort}:${visitor.bindAddr}:${visitor.bindPort}`
    ),
    // And forwarders, for the same reason (a forwarder-only client).
    ...(config.forwarders ?? []).map((forwarder) =>
      `forwarder:${forwarder.name}:${forwarder.bindAddr}:${forwarder.bindPort}`
    ),
  ].join("|");
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(basis)));
  // A client_id is a name (1-64 of [A-Za-z0-9._-]); a host name may be longer or spelt otherwise.
  const safeHost = host.replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^[^A-Za-z0-9]+/, "").slice(0, 51) ||
    "client";
  return `${safeHost}-${hex(digest.subarray(0, 6))}`;
}

/** This machine's name, or "client" when `--allow-sys=hostname` was not granted. */
function hostnameOrFallback(): string {
  try {
    return Deno.hostname();
  } catch {
    return "client";
  }
}

/** The server's answer to `what`, checked against `schema`; a {@linkcode MalformedServerAnswerError} otherwise. */
function checkedAnswer<T>(schema: z.ZodType<T>, answer: unknown, what: string, server: string): T {
  const checked = schema.safeParse(answer);
  if (!checked.success) {
    throw new MalformedServerAnswerError(what, describeMessageError(checked.error), server);
  }
  return checked.data;
}

/**
 * Authenticates as `clientId` with `config.authKey`.
 *
 * @param server the server's `host:port`, for messages
 * @throws {FatalClientError} the key is refused, the protocol versions differ, or another running copy
 *   uses `clientId` (retrying cannot help); {@linkcode MalformedServerAnswerError} for an answer in
 *   another shape
 * @throws {RpcError} any other refusal (`TOO_MANY_ATTEMPTS`…), or the session ended: retry later
 */
export async function authenticate(
  rpc: RpcPeer,
  config: ClientConfig,
  clientId: string,
  server: string,
): Promise<AuthenticateResult> {
  const params: AuthenticateParams = {
    auth_key: config.authKey,
    protocol_version: PROTOCOL_VERSION,
    client_id: clientId,
    client_version: VERSION,
  };
  let answer: unknown;
  try {
    answer = await rpc.request<unknown>(Method.authenticate, params, {
      timeoutMs: CONTROL_REQUEST_TIMEOUT_MS,
    });
  } catch (error) {
    throw fatalOrAsIs(error, clientId, server);
  }
  return checkedAnswer(AuthenticateResult, answer, Method.authenticate, server);
}

/** The {@linkcode FatalClientError} an `authenticate` refusal stands for, or `error` when retrying may help. */
function fatalOrAsIs(error: unknown, clientId: string, server: string): unknown {
  if (!(error instanceof RpcError)) return error;
  if (error.code === ControlErrorCode.authFailed || error.code === ControlErrorCode.protocolVersionMismatch) {
    return new FatalClientError(error.message, error.code, { cause: error });
  }
  if (error.code === ControlErrorCode.duplicateClient) {
    // Retrying would only make the two copies take turns; each copy needs its own client_id.
    const data = DuplicateClientData.safeParse(error.data);
    return new FatalClientError(
      `Another copy of this client is already connected to ${server} with client_id "${clientId}"` +
        (data.success ? ` (from ${data.data.other_remote_addr})` : "") +
        `; give each copy its own client_id in [client]`,
      error.code,
      { cause: error },
    );
  }
  return error;
}

/**
 * Registers the configured proxies (and asks for `[client.bind_retry]`); resolves with the server's
 * answer per proxy, in config order.
 *
 * @param server the server's `host:port`, for messages
 * @throws {MalformedServerAnswerError} for an answer in another shape
 * @throws {RpcError} the server refused the call, or the session ended
 */
export async function registerProxies(
  rpc: RpcPeer,
  config: ClientConfig,
  server: string,
): Promise<ProxyRegistration[]> {
  const params: RegisterProxiesParams = {
    proxies: config.proxies.map(toProxySpec),
    ...(config.bindRetry ? { bind_retry: toBindRetryRequest(config.bindRetry) } : {}),
  };
  const answer = await rpc.request<unknown>(Method.registerProxies, params, {
    timeoutMs: CONTROL_REQUEST_TIMEOUT_MS,
  });
  return checkedAnswer(RegisterProxiesResult, answer, Method.registerProxies, server).proxies;
}

/** What the client does with the server's notifications, once they have passed their schemas. */
export interface ServerNotificationHandlers {
  /** Something the user should see (bind retries and failures, a changed port). */
  onPushException(params: PushExceptionParams): void;
  /** A proxy's status changed. */
  onProxyStatus(params: ProxyStatusParams): void;
}

/**
 * Serves the server's `heartbeat` and receives its notifications for one session. A notification in
 * another shape is dropped with a warning that names the field (the first of each method; later ones at
 * debug, so a misbehaving server cannot flood the log).
 */
export function serveServer(rpc: RpcPeer, handlers: ServerNotificationHandlers): void {
  rpc.handle(Method.heartbeat, (raw: unknown): HeartbeatParams => {
    const parsed = HeartbeatParams.safeParse(raw);
    return { time_ms: parsed.success ? parsed.data.time_ms : Date.now() };
  });
  const warned = new Set<string>();
  const receive = <T>(method: string, schema: z.ZodType<T>, handle: (params: T) => void) => {
    rpc.onNotification(method, (raw: unknown) => {
      const parsed = schema.safeParse(raw);
      if (parsed.success) return handle(parsed.data);
      const issue = describeMessageError(parsed.error);
      logger[warned.has(method) ? "debug" : "warn"](
        "Ignoring a {method} notification the server sent in an unexpected shape ({issue})",
        { method, issue },
      );
      warned.add(method);
    });
  };
  receive(Method.pushException, PushExceptionParams, (params) => handlers.onPushException(params));
  receive(Method.proxyStatus, ProxyStatusParams, (params) => handlers.onProxyStatus(params));
}

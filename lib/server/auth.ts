/**
 * Server-side authentication: mapping a key to the client it belongs to (every configured key compared
 * in constant time, see `secretsEqual` in lib/text.ts), and a per-address throttle that charges every
 * attempt before its key is checked.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import type { PortRange, ServerConfig } from "../config/types.ts";
import {
  AuthenticateParams,
  ControlErrorCode,
  describeParamsError,
  type ProtocolVersionMismatchData,
  type TooManyAttemptsData,
} from "../protocol/control.ts";
import { INTERNAL_ERROR, INVALID_PARAMS, RpcError } from "../rpc/messages.ts";
import type { EventLog } from "../stats/event_log.ts";
import { secretsEqual } from "../text.ts";
import { PROTOCOL_VERSION } from "../protocol/version.ts";

const logger = getLogger(["tls-tunnel", "server"]);

/** Failed authentications from one address within a minute before it is refused for that minute. */
const AUTH_FAILURES_PER_MINUTE = 10;

/** Who a key belongs to, and what that client may do. */
export interface ClientGrant {
  /** The `[[server.clients]]` name, or null for the shared `auth_key`. */
  entryName: string | null;
  /** Ports the client may publish. */
  allowPorts: PortRange[];
  /** Proxies the client may register. */
  maxProxies: number;
}

/** Finds the grant for a presented key, checking every configured key so timing reveals nothing. */
export function findGrant(config: ServerConfig, presentedKey: string): ClientGrant | null {
  let grant: ClientGrant | null = null;
  for (const entry of config.clients) {
    if (secretsEqual(presentedKey, entry.authKey)) {
      grant ??= { entryName: entry.name, allowPorts: entry.allowPorts, maxProxies: entry.maxProxies };
    }
  }
  if (config.authKey !== undefined && secretsEqual(presentedKey, config.authKey)) {
    grant ??= { entryName: null, allowPorts: config.allowPorts, maxProxies: config.maxProxiesPerClient };
  }
  return grant;
}

/** Addresses the throttle remembers at most; beyond it, the longest-known idle ones are forgotten. */
const MAX_TRACKED_ADDRESSES = 10_000;

/** Options of {@linkcode FailureThrottle}. */
export interface FailureThrottleOptions {
  /** Failures allowed from one address within `windowMs` before it is blocked. */
  maxFailures: number;
  /** Window over which failures are counted, and how long a block lasts. */
  windowMs: number;
  /** Clock, for tests. */
  now?: () => number;
}

/**
 * One authentication attempt, charged to its address before the key is checked. Settle it exactly once
 * (later calls do nothing).
 */
export interface ChargedAttempt {
  /** The key was refused: the charge stays, as a failure, for the throttle's window. */
  fail(): void;
  /** The key was accepted (or never checked): the charge is given back, so successes never count. */
  refund(): void;
}

/** What the throttle holds for one address. */
interface AddressState {
  /** When recent failures happened (ms), oldest first. */
  failures: number[];
  /** Attempts charged and not yet settled. */
  inFlight: number;
  /** Attempts waiting for one in flight to settle. */
  waiters: Set<() => void>;
}

/**
 * Limits how many keys one remote address may get checked: at most `maxFailures` failures within
 * `windowMs`. Every attempt is charged before its key is checked, so concurrent attempts (many
 * connections at once) cannot get more keys checked than the failures the address has left; an
 * attempt that would exceed them waits until one in flight settles. Successful attempts are refunded,
 * so a client that reconnects often never locks itself out.
 */
export class FailureThrottle {
  /** Addresses with recent failures or attempts in flight. */
  #addresses = new Map<string, AddressState>();
  #now: () => number;

  constructor(readonly options: FailureThrottleOptions) {
    this.#now = options.now ?? Date.now;
  }

  /** Milliseconds until `address` may try again (its failures have used up the window), or 0. */
  retryAfterMs(address: string): number {
    const state = this.#addresses.get(address);
    if (!state) return 0;
    const recent = this.#recentFailures(state);
    if (recent.length < this.options.maxFailures) return 0;
    const oldest = recent[recent.length - this.options.maxFailures] ?? this.#now();
    return Math.max(0, oldest + this.options.windowMs - this.#now());
  }

  /**
   * Charges an attempt from `address` before its key is checked. Resolves to the charge to settle once
   * the key is checked, or to the milliseconds until `address` may try again when its failures are
   * used up. While the attempts in flight could still use them up, waits until one settles.
   *
   * @throws the signal's reason when `signal` aborts while waiting
   */
  async charge(address: string, signal?: AbortSignal): Promise<ChargedAttempt | number> {
    while (true) {
      signal?.throwIfAborted();
      const retryAfterMs = this.retryAfterMs(address);
      if (retryAfterMs > 0) return retryAfterMs;
      const state = this.#stateOf(address);
      if (this.#recentFailures(state).length + state.inFlight < this.options.maxFailures) {
        state.inFlight++;
        return this.#attempt(address, state);
      }
      await this.#nextSettlement(address, state, signal);
    }
  }

  #attempt(address: string, state: AddressState): ChargedAttempt {
    let settled = false;
    const settle = (failed: boolean) => {
      if (settled) return;
      settled = true;
      state.inFlight--;
      if (failed) state.failures.push(this.#now());
      for (const wake of [...state.waiters]) wake();
      this.#forgetIfIdle(address, state);
    };
    return { fail: () => settle(true), refund: () => settle(false) };
  }

  /** Resolves when an attempt of `address` settles; rejects when `signal` aborts first. */
  #nextSettlement(address: string, state: AddressState, signal: AbortSignal | undefined): Promise<void> {
    return new Promise((resolve, reject) => {
      const wake = () => {
        state.waiters.delete(wake);
        signal?.removeEventListener("abort", onAbort);
        resolve();
      };
      const onAbort = () => {
        state.waiters.delete(wake);
        this.#forgetIfIdle(address, state);
        reject(signal?.reason);
      };
      state.waiters.add(wake);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  #stateOf(address: string): AddressState {
    let state = this.#addresses.get(address);
    if (!state) {
      if (this.#addresses.size >= MAX_TRACKED_ADDRESSES) this.#prune();
      state = { failures: [], inFlight: 0, waiters: new Set() };
      this.#addresses.set(address, state);
    }
    return state;
  }

  /** The failures of `state` still inside the window (older ones are dropped). */
  #recentFailures(state: AddressState): number[] {
    const cutoff = this.#now() - this.options.windowMs;
    const firstRecent = state.failures.findIndex((time) => time > cutoff);
    state.failures.splice(0, firstRecent === -1 ? state.failures.length : firstRecent);
    return state.failures;
  }

  #forgetIfIdle(address: string, state: AddressState): void {
    if (state.inFlight > 0 || state.waiters.size > 0 || this.#recentFailures(state).length > 0) return;
    if (this.#addresses.get(address) === state) this.#addresses.delete(address);
  }

  /**
   * Makes room for another address: drops those with nothing to remember, then, if that is not enough,
   * the longest-known ones with nothing in flight (memory stays bounded whatever the number of addresses).
   */
  #prune(): void {
    for (const [address, state] of [...this.#addresses]) this.#forgetIfIdle(address, state);
    for (const [address, state] of this.#addresses) {
      if (this.#addresses.size < MAX_TRACKED_ADDRESSES) break;
      if (state.inFlight === 0 && state.waiters.size === 0) this.#addresses.delete(address);
    }
  }
}

/** Answers an authenticate whose session ended meanwhile (the answer is dropped with the session). */
export function sessionEndedError(): RpcError {
  return new RpcError(INTERNAL_ERROR, "The session ended during authentication");
}

/**
 * Checks `authenticate` requests up to the key: the params, the protocol version, the per-address throttle
 * (charged before the key is checked) and the key itself. Counts what it did for the stats.
 */
export class Authenticator {
  /** Failed authentications (wrong keys) since start. */
  failuresTotal = 0;
  /** auth_keys checked since start (each attempt the throttle let through). */
  keyChecksTotal = 0;
  readonly #throttle = new FailureThrottle({ maxFailures: AUTH_FAILURES_PER_MINUTE, windowMs: 60_000 });

  /**
   * @param config the server's config (its keys); a reload replaces it, and the next attempt checks the new keys
   * @param events where failed attempts are recorded for the dashboard
   */
  constructor(public config: ServerConfig, readonly events: EventLog) {}

  /**
   * Checks one `authenticate` request from `remote` (`remoteHost` is its address, the throttle's key).
   * Resolves with the params and the grant of the key; throws the `RpcError` to answer with otherwise.
   * `ended` aborts a wait for the throttle when the session ends.
   */
  async check(
    raw: unknown,
    remote: string,
    remoteHost: string,
    ended: AbortSignal,
  ): Promise<{ params: AuthenticateParams; grant: ClientGrant }> {
    const parsed = AuthenticateParams.safeParse(raw);
    if (!parsed.success) {
      throw new RpcError(
        INVALID_PARAMS,
        `Invalid authenticate params: ${describeParamsError(parsed.error)}`,
      );
    }
    const params = parsed.data;
    if (params.protocol_version !== PROTOCOL_VERSION) {
      throw new RpcError(
        ControlErrorCode.protocolVersionMismatch,
        `Client speaks protocol ${params.protocol_version} but this server speaks ${PROTOCOL_VERSION}; ` +
          `upgrade the older side`,
        { server_protocol_version: PROTOCOL_VERSION } satisfies ProtocolVersionMismatchData,
      );
    }
    const charge = await this.#throttle.charge(remoteHost, ended).catch(() => {
      throw sessionEndedError();
    });
    if (typeof charge === "number") {
      const retryAfterSecs = Math.ceil(charge / 1000);
      throw new RpcError(
        ControlErrorCode.tooManyAttempts,
        `Too many failed authentications from ${remoteHost}; try again in ${retryAfterSecs} s`,
        { retry_after_secs: retryAfterSecs } satisfies TooManyAttemptsData,
      );
    }
    let grant: ClientGrant | null = null;
    try {
      this.keyChecksTotal++;
      grant = findGrant(this.config, params.auth_key);
    } finally {
      if (grant) charge.refund();
      else charge.fail();
    }
    if (grant) return { params, grant };
    this.failuresTotal++;
    this.events.add({
      level: "warning",
      code: "AUTH_FAILED",
      message: `Client ${remote} (${params.client_id}) presented a wrong auth_key`,
    });
    logger.warn("Client {remote} ({clientId}) presented a wrong auth_key", {
      remote,
      clientId: params.client_id,
    });
    throw new RpcError(
      ControlErrorCode.authFailed,
      "Authentication failed: the auth_key is not accepted by this server; check [client] auth_key",
    );
  }
}

/**
 * The per-proxy answers of `register_proxies`: a rejection with its code and reason (echoing what an
 * invalid proxy asked for only when it is safe to), the answer for a session that is closing, the
 * acceptance of a bound proxy, and the reject code of a bind error.
 *
 * @module
 */

import {
  type ProxyRegistration,
  ProxyRejectCode,
  type ProxyRejectCodeValue,
  type ProxySpec,
} from "../protocol/control.ts";
import type { BindError } from "../net/tcp.ts";
import { escapeForTerminal, NAME_MAX_LENGTH } from "../text.ts";

/** The reject code for a bind that failed with `error`. */
export function bindErrorCode(error: BindError): ProxyRejectCodeValue {
  switch (error.kind) {
    case "address_in_use":
      return ProxyRejectCode.addressInUse;
    case "permission_denied":
      return ProxyRejectCode.permissionDenied;
    case "address_not_available":
      return ProxyRejectCode.addressNotAvailable;
    case "invalid_address":
      return ProxyRejectCode.invalidProxy;
    default:
      return ProxyRejectCode.bindFailed;
  }
}

/** The answer for a proxy whose session ended while it was being registered (no one reads it). */
export function closingRejection(proxy: ProxySpec): ProxyRegistration {
  return rejected(proxy, ProxyRejectCode.bindFailed, "The session is closing");
}

/**
 * The address and port an invalid proxy object asked for, echoed in its rejection when they are of the
 * right type (a string of at most 255 characters, made safe for terminals; a port number), else `""`/`0`.
 */
function askedBinding(candidate: unknown): { publish_addr: string; publish_port: number } {
  const fields = typeof candidate === "object" && candidate !== null
    ? candidate as Record<string, unknown>
    : {};
  const addr = fields.publish_addr;
  const port = fields.publish_port;
  return {
    publish_addr: typeof addr === "string" && addr.length <= 255 ? escapeForTerminal(addr).slice(0, 255) : "",
    publish_port: typeof port === "number" && Number.isInteger(port) && port >= 0 && port <= 65535 ? port : 0,
  };
}

/**
 * The name and binding to echo in the rejection of a proxy object that failed validation: so the client
 * can tell which proxy failed, but never raw (the name may be the problem).
 */
export function invalidProxyEcho(
  candidate: unknown,
): { name: string; publish_addr: string; publish_port: number } {
  const sentName = typeof candidate === "object" && candidate !== null &&
      typeof (candidate as Record<string, unknown>).name === "string"
    ? String((candidate as Record<string, unknown>).name)
    : "?";
  return { name: escapeForTerminal(sentName.slice(0, NAME_MAX_LENGTH)), ...askedBinding(candidate) };
}

/** A rejection of `proxy` with `code` and `reason`. */
export function rejected(
  proxy: { name: string; publish_addr: string; publish_port: number },
  code: ProxyRejectCodeValue,
  reason: string,
): ProxyRegistration {
  return {
    name: proxy.name,
    status: "rejected",
    publish_addr: proxy.publish_addr,
    publish_port: proxy.publish_port,
    code,
    reason,
  };
}

/** The acceptance of `proxy` published on `port`, with the port it asked for when that differs. */
export function accepted(proxy: ProxySpec, port: number): ProxyRegistration {
  const answer: ProxyRegistration = {
    name: proxy.name,
    status: "accepted",
    publish_addr: proxy.publish_addr,
    publish_port: port,
  };
  if (port !== proxy.publish_port) answer.requested_port = proxy.publish_port;
  return answer;
}

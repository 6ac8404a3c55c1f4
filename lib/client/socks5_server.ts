/**
 * The local SOCKS5 proxy of a `proxy_type = "socks5"` forwarder (RFC 1928): the greeting, optional
 * user/password authentication (RFC 1929, compared in constant time), and one CONNECT request to an IPv4
 * address, an IPv6 address or a domain name (`curl --socks5-hostname` sends names, so the destination is
 * resolved where the connection leaves: on the server, or by the client for a direct route). BIND and UDP
 * ASSOCIATE are answered 0x07 (command not supported), an unknown address type 0x08.
 *
 * Every message is read within the forwarder's bounds ({@linkcode MAX_HEAD_BYTES}, one deadline of
 * {@linkcode HEAD_TIMEOUT_MS} for the whole handshake). The success reply is sent by the caller once the
 * destination is reached ({@linkcode socks5Reply}); a failure gets the RFC's reply code for it
 * (`SOCKS_FAILURE_REPLY`: 0x02 not allowed, 0x04 host unreachable, 0x05 refused…).
 *
 * @module
 */

import { type DuplexConn, writeAll } from "../net/conn.ts";
import { isHost } from "../net/address.ts";
import { METHOD_NONE, METHOD_REFUSED, METHOD_USER_PASSWORD, SOCKS_VERSION } from "../net/proxy_handshake.ts";
import { secretsEqual } from "../text.ts";
import {
  type FailureKind,
  type ForwardFailure,
  type HeadReader,
  SOCKS_FAILURE_REPLY,
} from "./forwarder_head.ts";
import type { ProxyCredentials } from "./http_proxy_server.ts";

export { HEAD_TIMEOUT_MS, MAX_HEAD_BYTES } from "./forwarder_head.ts";

/** SOCKS5 CONNECT, the only command served. */
const COMMAND_CONNECT = 0x01;
const ADDRESS_IPV4 = 0x01;
const ADDRESS_DOMAIN = 0x03;
const ADDRESS_IPV6 = 0x04;
/** RFC 1929's sub-negotiation version. */
const USER_PASSWORD_VERSION = 0x01;

/** The destination of a SOCKS5 CONNECT. */
export interface Socks5Request {
  /** IP address (IPv6 without brackets) or host name. */
  host: string;
  /** Port, 1-65535. */
  port: number;
}

/**
 * The handshake was refused: `failure` says why; `answer` is what to send before closing (a method
 * refusal, an authentication failure or a reply with the failure's code), or null when the peer is not
 * speaking SOCKS5 at all.
 */
export class Socks5Refusal extends Error {
  override name = "Socks5Refusal";
  constructor(readonly failure: ForwardFailure, readonly answer: Uint8Array | null) {
    super(failure.reason);
  }
}

/** A SOCKS5 reply with `code` (0 = succeeded) and the bound address 0.0.0.0:0, as most servers send. */
export function socks5Reply(code: number): Uint8Array {
  return new Uint8Array([SOCKS_VERSION, code, 0x00, ADDRESS_IPV4, 0, 0, 0, 0, 0, 0]);
}

/** The reply for a failure (its RFC 1928 code). */
export function socks5FailureReply(failure: ForwardFailure): Uint8Array {
  return socks5Reply(SOCKS_FAILURE_REPLY[failure.kind]);
}

function refused(kind: FailureKind, reason: string, answer: Uint8Array | null): never {
  throw new Socks5Refusal({ kind, reason }, answer);
}

function replyFor(kind: FailureKind): Uint8Array {
  return socks5Reply(SOCKS_FAILURE_REPLY[kind]);
}

/**
 * Reads the greeting, authenticates (with `credentials`), and reads the CONNECT request. Answers the
 * method choice and the authentication itself; the request's reply is the caller's.
 *
 * @throws {Socks5Refusal} with the answer to send before closing
 * @throws {HeadError} when the handshake is too large, too slow, or the connection ended
 */
export async function readSocks5Request(
  reader: HeadReader,
  conn: Pick<DuplexConn, "write">,
  credentials: ProxyCredentials | null,
): Promise<Socks5Request> {
  const [version = 0, methodCount = 0] = await reader.exact(2, "the SOCKS5 greeting");
  if (version !== SOCKS_VERSION) {
    refused("bad_request", `not a SOCKS5 greeting (version byte 0x${version.toString(16)})`, null);
  }
  if (methodCount === 0) {
    refused(
      "bad_request",
      "the SOCKS5 greeting offers no method",
      new Uint8Array([SOCKS_VERSION, METHOD_REFUSED]),
    );
  }
  const methods = await reader.exact(methodCount, "the SOCKS5 greeting");
  const wanted = credentials === null ? METHOD_NONE : METHOD_USER_PASSWORD;
  if (!methods.includes(wanted)) {
    refused(
      "auth_required",
      credentials === null
        ? "the client offers no method this proxy accepts (it needs none)"
        : "this proxy needs a user name and password (method 0x02), which the client did not offer",
      new Uint8Array([SOCKS_VERSION, METHOD_REFUSED]),
    );
  }
  await writeAll(conn, new Uint8Array([SOCKS_VERSION, wanted]));
  if (credentials !== null) await authenticate(reader, conn, credentials);
  const [requestVersion = 0, command = 0, reserved = 0, addressType = 0] = await reader.exact(
    4,
    "the SOCKS5 request",
  );
  if (requestVersion !== SOCKS_VERSION || reserved !== 0) {
    refused("bad_request", "the SOCKS5 request is malformed", replyFor("bad_request"));
  }
  if (command !== COMMAND_CONNECT) {
    refused(
      "unsupported",
      `SOCKS5 command 0x${command.toString(16)} is not supported (only CONNECT)`,
      replyFor("unsupported"),
    );
  }
  let host: string;
  if (addressType === ADDRESS_IPV4) {
    host = [...await reader.exact(4, "the SOCKS5 address")].join(".");
  } else if (addressType === ADDRESS_IPV6) {
    const bytes = await reader.exact(16, "the SOCKS5 address");
    const groups: string[] = [];
    for (let index = 0; index < 16; index += 2) {
      groups.push((((bytes[index] ?? 0) << 8) | (bytes[index + 1] ?? 0)).toString(16));
    }
    host = groups.join(":");
  } else if (addressType === ADDRESS_DOMAIN) {
    const [length = 0] = await reader.exact(1, "the SOCKS5 address");
    const name = String.fromCharCode(...await reader.exact(length, "the SOCKS5 address"));
    if (!isHost(name)) {
      refused("bad_request", "the SOCKS5 domain name is not a valid host name", replyFor("bad_request"));
    }
    host = name;
  } else {
    refused(
      "unsupported",
      `SOCKS5 address type 0x${addressType.toString(16)} is unknown`,
      socks5Reply(0x08),
    );
  }
  const [high = 0, low = 0] = await reader.exact(2, "the SOCKS5 port");
  const port = (high << 8) | low;
  if (port === 0) refused("bad_request", "the SOCKS5 request names port 0", replyFor("bad_request"));
  return { host, port };
}

async function authenticate(
  reader: HeadReader,
  conn: Pick<DuplexConn, "write">,
  credentials: ProxyCredentials,
): Promise<void> {
  const failed = new Uint8Array([USER_PASSWORD_VERSION, 0x01]);
  const [version = 0, userLength = 0] = await reader.exact(2, "the SOCKS5 user name");
  if (version !== USER_PASSWORD_VERSION) {
    refused("bad_request", "the user/password negotiation has a wrong version", failed);
  }
  const user = await reader.exact(userLength, "the SOCKS5 user name");
  const [passwordLength = 0] = await reader.exact(1, "the SOCKS5 password");
  const password = await reader.exact(passwordLength, "the SOCKS5 password");
  const decoder = new TextDecoder();
  // Both compared, always: the time does not tell which one was wrong.
  const userOk = secretsEqual(decoder.decode(user), credentials.username);
  const passwordOk = secretsEqual(decoder.decode(password), credentials.password);
  if (!(userOk && passwordOk)) refused("auth_required", "the user name or password is wrong", failed);
  await writeAll(conn, new Uint8Array([USER_PASSWORD_VERSION, 0x00]));
}

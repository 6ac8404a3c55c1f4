/**
 * The client's `-R` flag, in `ssh -R` syntax: which server port to publish and which local service it
 * reaches. The parsed forwards become `[[proxies]]` entries (see {@linkcode forwardsToProxies}).
 *
 * Accepted forms (IPv6 addresses in brackets):
 *
 * - `PORT:LOCALPORT` → publish PORT on every address, forward to 127.0.0.1:LOCALPORT
 * - `PORT:LOCALHOST:LOCALPORT` → as `ssh -R`
 * - `ADDR:PORT:LOCALHOST:LOCALPORT` → publish on ADDR only (an IP address, `localhost`, or `*` for all)
 *
 * PORT 0 lets the server choose the port (printed once the proxy is up).
 *
 * @module
 */

import { isHost, isIpAddress } from "../net/address.ts";

/** One parsed `-R` value. */
export interface RemoteForward {
  /** Address the server publishes on; absent → the config default (every address). */
  publishAddr?: string;
  /** Port the server publishes on; 0 = the server chooses. */
  publishPort: number;
  /** Host (name or IP, without brackets) of the local service the client connects to. */
  localAddr: string;
  /** Port of the local service (1-65535). */
  localPort: number;
}

/** The forms `-R` accepts, for error messages and `--help`. */
export const REMOTE_FORWARD_FORMS =
  "PORT:LOCALPORT, PORT:LOCALHOST:LOCALPORT or ADDR:PORT:LOCALHOST:LOCALPORT " +
  "(e.g. -R 8080:3000, -R 8080:localhost:3000, -R 127.0.0.1:8080:[::1]:3000; PORT 0 lets the server choose)";

/** Longest `-R` value looked at: longer text is refused before any parsing. */
export const MAX_REMOTE_FORWARD_LENGTH = 600;

/** A `-R` value that cannot be parsed; the message quotes it and lists the accepted forms. */
export class RemoteForwardError extends Error {
  /** The value as given (shown escaped in the message). */
  readonly value: string;

  /**
   * @param value the bad `-R` value.
   * @param problem what is wrong with it.
   */
  constructor(value: string, problem: string) {
    super(
      `-R ${JSON.stringify(value.slice(0, 100))}${value.length > 100 ? "…" : ""}: ${problem}; ` +
        `write ${REMOTE_FORWARD_FORMS}`,
    );
    this.name = "RemoteForwardError";
    this.value = value;
  }
}

/**
 * Splits on the colons that are not inside brackets; a bracketed part comes back without its brackets
 * and flagged, so `[::1]` can be told from a bare `::1`.
 */
function splitParts(value: string): { text: string; bracketed: boolean }[] | string {
  const parts: { text: string; bracketed: boolean }[] = [];
  let index = 0;
  while (true) {
    if (value[index] === "[") {
      const close = value.indexOf("]", index);
      if (close < 0) return "a '[' has no matching ']'";
      const next = value[close + 1];
      if (next !== undefined && next !== ":") return "a ']' must be followed by ':' or end the value";
      parts.push({ text: value.slice(index + 1, close), bracketed: true });
      if (next === undefined) return parts;
      index = close + 2;
      continue;
    }
    const colon = value.indexOf(":", index);
    const text = value.slice(index, colon < 0 ? undefined : colon);
    if (text.includes("[") || text.includes("]")) return "brackets must enclose a whole address";
    parts.push({ text, bracketed: false });
    if (colon < 0) return parts;
    index = colon + 1;
  }
}

function parsePort(text: string, what: string, allowZero: boolean): number | string {
  if (!/^[0-9]{1,5}$/.test(text)) return `${what} ${JSON.stringify(text)} is not a port number`;
  const port = Number(text);
  if (port > 65535 || (!allowZero && port === 0)) {
    return `${what} ${port} is not a port from ${allowZero ? 0 : 1} to 65535`;
  }
  return port;
}

/**
 * Parses one `-R` value.
 *
 * ```ts
 * import { parseRemoteForward } from "./remote_forward.ts";
 *
 * const forward = parseRemoteForward("8080:localhost:3000");
 * console.log(forward.publishPort, forward.localAddr, forward.localPort); // 8080 localhost 3000
 * ```
 *
 * @throws {RemoteForwardError} for anything but the accepted forms, with the value and the forms.
 */
export function parseRemoteForward(value: string): RemoteForward {
  if (value.length > MAX_REMOTE_FORWARD_LENGTH) {
    throw new RemoteForwardError(
      value,
      `is ${value.length} characters long (at most ${MAX_REMOTE_FORWARD_LENGTH})`,
    );
  }
  // Printable ASCII only: no spaces, control characters or look-alike digits and colons.
  if (!/^[\x21-\x7e]+$/.test(value)) {
    throw new RemoteForwardError(
      value,
      value === "" ? "is empty" : "contains a space, control or non-ASCII character",
    );
  }
  const parts = splitParts(value);
  if (typeof parts === "string") throw new RemoteForwardError(value, parts);
  if (parts.length < 2 || parts.length > 4) {
    const unbracketedIpv6 = parts.length > 4 && parts.some((part) => !part.bracketed && part.text === "");
    throw new RemoteForwardError(
      value,
      unbracketedIpv6 || parts.length > 4
        ? `has ${parts.length} colon-separated parts (2 to 4); an IPv6 address needs brackets, as in [::1]`
        : "has no ':' between the published port and the local port",
    );
  }
  const local = parts.length === 2 ? null : parts[parts.length - 2];
  const publishAddrPart = parts.length === 4 ? parts[0] : null;
  const publishPortPart = parts[parts.length === 4 ? 1 : 0];
  const localPortPart = parts[parts.length - 1];
  if (publishPortPart === undefined || localPortPart === undefined) {
    throw new RemoteForwardError(value, "is missing a port");
  }
  for (const part of [publishPortPart, localPortPart]) {
    if (part.bracketed) {
      throw new RemoteForwardError(value, `[${part.text}] is in brackets where a port belongs`);
    }
  }
  const publishPort = parsePort(publishPortPart.text, "the published port", true);
  if (typeof publishPort === "string") throw new RemoteForwardError(value, publishPort);
  const localPort = parsePort(localPortPart.text, "the local port", false);
  if (typeof localPort === "string") throw new RemoteForwardError(value, localPort);

  let localAddr = "127.0.0.1";
  if (local) {
    if (local.text === "") throw new RemoteForwardError(value, "the local host is empty");
    if (local.bracketed ? !isIpAddress(local.text) || !local.text.includes(":") : !isHost(local.text)) {
      throw new RemoteForwardError(
        value,
        local.bracketed
          ? `[${local.text}] is not an IPv6 address`
          : `the local host ${JSON.stringify(local.text)} is not an IP address or host name`,
      );
    }
    localAddr = local.text;
  }

  const forward: RemoteForward = { publishPort, localAddr, localPort };
  if (publishAddrPart) {
    const text = publishAddrPart.text;
    if (!publishAddrPart.bracketed && (text === "*" || text === "")) {
      forward.publishAddr = "0.0.0.0";
    } else if (!publishAddrPart.bracketed && text.toLowerCase() === "localhost") {
      forward.publishAddr = "127.0.0.1";
    } else if (publishAddrPart.bracketed ? text.includes(":") && isIpAddress(text) : isIpAddress(text)) {
      forward.publishAddr = text;
    } else {
      throw new RemoteForwardError(
        value,
        `the published address ${JSON.stringify(text)} is not an IP address, localhost or * ` +
          "(the server binds it, and never looks a name up)",
      );
    }
  }
  return forward;
}

/** A `[[proxies]]` entry in TOML spelling, as the config loader validates it. */
export interface ForwardProxyEntry {
  /** Unique proxy name derived from the ports. */
  name: string;
  /** Absent → the config default. */
  publish_addr?: string;
  /** Port the server publishes on. */
  publish_port: number;
  /** Local service host. */
  local_addr: string;
  /** Local service port. */
  local_port: number;
}

/**
 * Turns parsed forwards into `[[proxies]]` entries named `tcp-PORT-LOCALPORT` (`any` for port 0), with a
 * suffix when a name is already among `takenNames` or an earlier forward.
 */
export function forwardsToProxies(
  forwards: readonly RemoteForward[],
  takenNames: Iterable<string> = [],
): ForwardProxyEntry[] {
  const taken = new Set(takenNames);
  return forwards.map((forward) => {
    const base = `tcp-${forward.publishPort === 0 ? "any" : forward.publishPort}-${forward.localPort}`;
    let name = base;
    for (let n = 2; taken.has(name); n++) name = `${base}-${n}`;
    taken.add(name);
    return {
      name,
      ...(forward.publishAddr !== undefined ? { publish_addr: forward.publishAddr } : {}),
      publish_port: forward.publishPort,
      local_addr: forward.localAddr,
      local_port: forward.localPort,
    };
  });
}

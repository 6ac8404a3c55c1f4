/**
 * The checks a proxy of `register_proxies` passes before it is bound: against the client's grant (name,
 * count, allowed ports), the server's own ports, the client's other proxies and other live clients'
 * bindings; and, for each candidate port, whether it can be tried without stepping on anyone.
 *
 * @module
 */

import { formatPortRanges, portInRanges } from "../config/mod.ts";
import { addressesOverlap, formatHostPort } from "../net/address.ts";
import {
  type ProxyRegistration,
  ProxyRejectCode,
  type ProxyRejectCodeValue,
  type ProxySpec,
} from "../protocol/control.ts";
import type { ConnectedClient } from "./connected_client.ts";
import type { PublishedProxy } from "./published_proxy.ts";
import { closingRejection, rejected } from "./registration_answers.ts";

/** Two bindings collide when their ports match and their addresses overlap (a wildcard overlaps all). */
export function bindingsOverlap(addrA: string, portA: number, addrB: string, portB: number): boolean {
  return portA === portB && portA !== 0 && addressesOverlap(addrA, addrB);
}

/** The kind of socket a proxy binds: a `udp` proxy's port and a TCP one of the same number never collide. */
export type PortSocket = "tcp" | "udp";

/** The kind of socket `spec` binds. */
export function socketOf(spec: Pick<ProxySpec, "proxy_type">): PortSocket {
  return spec.proxy_type === "udp" ? "udp" : "tcp";
}

/** What the checks need from the server. */
export interface RegistrationCheckContext {
  /** Why `addr:port` (of that socket kind, TCP by default) is the server's own (tunnel or stats) port, or null. */
  reservedPortReason(addr: string, port: number, socket?: PortSocket): string | null;
  /**
   * The name of another live client publishing an overlapping binding, or null. With `verify`, a
   * holder is pinged first and disconnected (freeing the port) when it does not answer. Only bindings of
   * the same socket kind (TCP by default) count.
   */
  contestedHolder(
    client: ConnectedClient,
    addr: string,
    port: number,
    verify: boolean,
    socket?: PortSocket,
  ): Promise<string | null>;
}

/** The checks of one server's registrations. */
export class RegistrationChecks {
  constructor(readonly context: RegistrationCheckContext) {}

  /**
   * Checks a proxy against everything but other clients and the bind itself; returns the rejection, or
   * null if it may go on. Synchronous, so the name can be claimed before anything else runs.
   */
  check(client: ConnectedClient, proxy: ProxySpec): ProxyRegistration | null {
    const { grant } = client;
    if (client.closing) return closingRejection(proxy);
    if (client.hasName(proxy.name)) {
      return rejected(
        proxy,
        ProxyRejectCode.duplicateName,
        `Another proxy of this client is named '${proxy.name}'`,
      );
    }
    if (client.proxyCount >= grant.maxProxies) {
      return rejected(
        proxy,
        ProxyRejectCode.tooManyProxies,
        `This client may publish at most ${grant.maxProxies} proxies; remove some or raise max_proxies`,
      );
    }
    // A private proxy is not bound: its publish_port only names it for visitors (README.md §5b).
    if (proxy.visibility === "private") return null;
    const range = proxy.publish_port_range;
    if (range && range.start > range.end) {
      return rejected(
        proxy,
        ProxyRejectCode.invalidProxy,
        `publish_port_range ${range.start}-${range.end} is reversed`,
      );
    }
    if (proxy.publish_port !== 0 && !portInRanges(proxy.publish_port, grant.allowPorts) && !range) {
      return rejected(
        proxy,
        ProxyRejectCode.portNotAllowed,
        `Port ${proxy.publish_port} is outside the ports this client may publish (${
          formatPortRanges(grant.allowPorts)
        }); pick a publish_port in them`,
      );
    }
    if (range && !portInRanges(range.start, grant.allowPorts) && !portInRanges(range.end, grant.allowPorts)) {
      return rejected(
        proxy,
        ProxyRejectCode.portNotAllowed,
        `publish_port_range ${range.start}-${range.end} is outside the ports this client may publish (${
          formatPortRanges(grant.allowPorts)
        })`,
      );
    }
    if (proxy.publish_port !== 0 && !range) {
      const reserved = this.context.reservedPortReason(
        proxy.publish_addr,
        proxy.publish_port,
        socketOf(proxy),
      );
      if (reserved) return rejected(proxy, ProxyRejectCode.reservedPort, reserved);
      for (const other of client.ownProxies()) {
        if (
          socketOf(other.spec) === socketOf(proxy) &&
          bindingsOverlap(other.spec.publish_addr, other.port, proxy.publish_addr, proxy.publish_port)
        ) {
          return rejected(
            proxy,
            ProxyRejectCode.duplicateBinding,
            `Proxy '${other.spec.name}' of this client already publishes ` +
              formatHostPort(proxy.publish_addr, proxy.publish_port),
          );
        }
      }
    }
    return null;
  }

  /**
   * For a single explicit port: the rejection when another live client publishes it (a holder that
   * does not answer a liveness ping is disconnected instead), else null.
   */
  async checkOtherClients(client: ConnectedClient, proxy: ProxySpec): Promise<ProxyRegistration | null> {
    if (proxy.publish_port === 0 || proxy.publish_port_range) return null;
    const holder = await this.context.contestedHolder(
      client,
      proxy.publish_addr,
      proxy.publish_port,
      true,
      socketOf(proxy),
    );
    if (!holder) return null;
    return rejected(
      proxy,
      ProxyRejectCode.portOwnedByOtherClient,
      `Port ${proxy.publish_port} on ${proxy.publish_addr} is published by client '${holder}', which is ` +
        `connected and answering; pick another publish_port or stop that client`,
    );
  }

  /** Why `port` cannot be tried for this proxy without stepping on someone, or null when it can. */
  async unusable(
    client: ConnectedClient,
    self: PublishedProxy,
    port: number,
  ): Promise<{ code: ProxyRejectCodeValue; reason: string } | null> {
    if (port === 0) return null;
    const proxy = self.spec;
    if (!portInRanges(port, client.grant.allowPorts)) {
      return {
        code: ProxyRejectCode.portNotAllowed,
        reason: `Port ${port} is outside the ports this client may publish (${
          formatPortRanges(client.grant.allowPorts)
        })`,
      };
    }
    const reserved = this.context.reservedPortReason(proxy.publish_addr, port, socketOf(proxy));
    if (reserved) return { code: ProxyRejectCode.reservedPort, reason: reserved };
    for (const other of client.ownProxies()) {
      if (
        other !== self && socketOf(other.spec) === socketOf(proxy) &&
        bindingsOverlap(other.spec.publish_addr, other.port, proxy.publish_addr, port)
      ) {
        return {
          code: ProxyRejectCode.duplicateBinding,
          reason: `Proxy '${other.spec.name}' of this client already publishes ` +
            formatHostPort(proxy.publish_addr, port),
        };
      }
    }
    const holder = await this.context.contestedHolder(
      client,
      proxy.publish_addr,
      port,
      false,
      socketOf(proxy),
    );
    if (holder === null) return null;
    return {
      code: ProxyRejectCode.portOwnedByOtherClient,
      reason:
        `Port ${port} on ${proxy.publish_addr} is published by client '${holder}'; pick another publish_port`,
    };
  }
}

/**
 * tls-tunnel's configuration: TOML files (keys compatible with the Rust tls-tunnel) loaded into the
 * validated objects the server and client roles use, with every problem reported at once.
 *
 * ```ts
 * import { loadServerConfig } from "./mod.ts";
 *
 * const config = await loadServerConfig("server.toml");
 * console.log(`${config.bindAddr}:${config.bindPort}`);
 * ```
 *
 * @module
 */

export type * from "./types.ts";
export { ConfigError, type ConfigIssue, formatIssue } from "./errors.ts";
export { applyEnvOverrides, ENV_OVERRIDES, type EnvOverride, type EnvSource, processEnv } from "./env.ts";
export {
  type ConfigKind,
  type ConfigSource,
  InvalidConfigError,
  loadClientConfig,
  loadConfig,
  type LoadOptions,
  loadServerConfig,
  parseConfigText,
  type ParsedConfig,
  wrongKindError,
} from "./load.ts";
export {
  formatPortRanges,
  parsePortRange,
  parsePortRanges,
  portInRanges,
  type PortRangeProblem,
} from "./port_range.ts";
export { DEFAULTS } from "./defaults.ts";
export { type CamelCase, camelCase, type CamelKeys, camelKeys } from "./_camel.ts";
export { type KeepaliveSecs, type SessionKeepalive, sessionKeepalive } from "./keepalive.ts";
export { MIN_SECRET_LENGTH, normalizeSha256Fingerprint, parseHostPort } from "./_fields.ts";
export { LB_POLICIES, NOTIFY_EVENT_CODES } from "./schema.ts";
export {
  addressesOverlap,
  isHost,
  isHostname,
  isIpAddress,
  isIpv4,
  isIpv6,
  isLoopback,
  isWildcard,
} from "../net/address.ts";

/**
 * What the client knows about itself and its proxies, shared by the session loop, the stream carrier
 * and the stats snapshot.
 *
 * @module
 */

import type { ProxyConfig } from "../config/types.ts";
import type { ProxyRegistration } from "../protocol/control.ts";
import type { ProxyStats } from "../stats/proxy_stats.ts";

/** Where the client is in its life cycle, for stats and logs. */
export type ClientState = "connecting" | "connected" | "waiting" | "stopped";

/** A proxy as the client sees it: its config, what the server said, and live counters. */
export interface ClientProxyState {
  /** The configured proxy. */
  config: ProxyConfig;
  /** The server's answer to the last registration, if any. */
  registration: ProxyRegistration | null;
  /** Live counters. */
  stats: ProxyStats;
}

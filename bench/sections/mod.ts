/**
 * The bench sections, in the order they run. A new section (tunnel, ssh, ...) is a module exporting a
 * {@linkcode BenchSection}, added to this list.
 *
 * @module
 */

import type { BenchSection } from "../_harness.ts";
import { muxSection } from "./mux.ts";
import { TUNNEL_SECTIONS } from "./tunnel.ts";
import { tunnelMemoryEchoSection } from "./tunnel_memory_echo.ts";
import { failoverSection } from "./failover.ts";
import { reloadSection } from "./reload.ts";
import { udpSection } from "./udp.ts";
import { vhostSection } from "./vhost.ts";

/** Every section `bench/main.ts` knows, selectable with `--only NAME`. */
export const SECTIONS: readonly BenchSection[] = [
  muxSection,
  ...TUNNEL_SECTIONS,
  tunnelMemoryEchoSection,
  failoverSection,
  reloadSection,
  udpSection,
  vhostSection,
];

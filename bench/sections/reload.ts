/**
 * `reload`: how long a client's config reload takes (issue 17). One real server and one client process
 * (`deno run main.ts`) run for the whole section; each run rewrites the client's config so that one proxy
 * is replaced by another on a new port (an untouched proxy stays), sends the client SIGHUP, and measures
 *
 * - signal → the new port serving: an echo through it comes back (polled every 2 ms);
 * - signal → the removed port free: it can be bound on the server's host (polled every 2 ms).
 *
 * The file watch sees the same write and reloads again 300 ms later (a no-op): each run waits it out.
 *
 * @module
 */

import type { BenchContext, BenchSection } from "../_harness.ts";
import { canBind, type CliProcess, echoes, freePort, waitFor } from "../../testing/helpers.ts";
import { ProcessTunnel, proxyUp } from "../../testing/process_tunnel.ts";

const POLL_MS = 2;
/** The file watch's debounce and its no-op reload, waited out after each run. */
const SETTLE_MS = 600;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A server and a client whose "moving" proxy changes name and port at every run. */
class ReloadRig {
  #generation = 0;
  #movingPort = freePort();
  readonly #keepPort = freePort();
  #client: CliProcess | null = null;

  private constructor(readonly tunnel: ProcessTunnel) {}

  static async start(): Promise<ReloadRig> {
    const rig = new ReloadRig(await ProcessTunnel.create());
    try {
      await rig.tunnel.server();
      rig.#client = rig.tunnel.client(await rig.#write());
      await rig.#client.waitForLine(proxyUp("moving0"));
      return rig;
    } catch (error) {
      await rig.stop();
      throw error;
    }
  }

  #write(): Promise<string> {
    return this.tunnel.clientConfig("client", [
      { name: "keep", publishPort: this.#keepPort },
      { name: `moving${this.#generation}`, publishPort: this.#movingPort },
    ]);
  }

  /** One reload: the moving proxy to a new name and port; the two figures in ms. */
  async once(signal: AbortSignal): Promise<{ servingMs: number; freeMs: number }> {
    const removedPort = this.#movingPort;
    this.#generation++;
    this.#movingPort = freePort();
    const addedPort = this.#movingPort;
    await this.#write();
    const startedMs = performance.now();
    this.#client?.kill("SIGHUP");
    let servingMs = Number.NaN;
    let freeMs = Number.NaN;
    await Promise.all([
      waitFor(
        async () => {
          signal.throwIfAborted();
          if (!await echoes(addedPort, "x")) return false;
          servingMs = performance.now() - startedMs;
          return true;
        },
        10_000,
        "the added proxy to serve",
        POLL_MS,
      ),
      waitFor(
        () => {
          signal.throwIfAborted();
          if (!canBind(removedPort)) return false;
          freeMs = performance.now() - startedMs;
          return true;
        },
        10_000,
        "the removed proxy's port to be free",
        POLL_MS,
      ),
    ]);
    await sleep(SETTLE_MS);
    return { servingMs, freeMs };
  }

  async stop(): Promise<void> {
    await this.tunnel[Symbol.asyncDispose]();
  }
}

/** The reload section. */
export const reloadSection: BenchSection = {
  name: "reload",
  description:
    "client config reload by SIGHUP: signal → the added proxy's port serving; → the removed one's port free",
  runs: (context: BenchContext) => (context.quick ? 3 : 10),
  warmupRounds: () => 1,
  budgetMs: (context: BenchContext) => (context.quick ? 30_000 : 90_000),
  runTimeoutMs: () => 20_000,
  async setup() {
    const rig = await ReloadRig.start();
    return {
      cases: [{
        name: "SIGHUP → new port serving",
        metric: "signal → echo through the added proxy",
        unit: "ms",
        also: [{
          name: "SIGHUP → removed port free",
          key: "freeMs",
          metric: "signal → the removed proxy's port bindable",
          unit: "ms",
        }],
        params: { poll_ms: POLL_MS, proxies_untouched: 1 },
        run: async (signal: AbortSignal) => {
          const { servingMs, freeMs } = await rig.once(signal);
          return { value: servingMs, also: { freeMs } };
        },
      }],
      teardown: () => rig.stop(),
    };
  },
};

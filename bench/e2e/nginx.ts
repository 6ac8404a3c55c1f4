/**
 * nginx in front of a `behind_proxy = true` wss server, for the bench's "wss via nginx" path: nginx
 * terminates TLS with the bench's certificate (`makeWorkdir`'s, as `tls-tunnel cert` writes them) on a
 * free loopback port and proxies the WebSocket upgrade to the server in plain text, as README's nginx
 * location does. The process and its configuration are `testing/nginx.ts`'s (shared with
 * `tests/nginx_wss_test.ts`), without the `proxy_bind` that test needs to tell addresses apart.
 * Registered with `track`, so it is stopped with every other child; only it is killed, by its PID.
 *
 * @module
 */

import { installedNginx, NGINX_PATHS, NginxProcess, webSocketProxyServer } from "../../testing/nginx.ts";
import { type ChildHandle, track } from "./processes.ts";

/** The nginx binary, or why there is none. */
export function findNginx(): { path: string } | { missing: string } {
  const path = installedNginx();
  if (path !== undefined) return { path };
  return { missing: `nginx is not installed (looked for ${NGINX_PATHS.join(", ")}; apt-get install nginx)` };
}

/** A running nginx (master and one worker) in front of one upstream port. */
export class NginxChild implements ChildHandle {
  readonly #nginx: NginxProcess;

  private constructor(nginx: NginxProcess) {
    this.#nginx = nginx;
  }

  /** The loopback port nginx terminates TLS on. */
  get port(): number {
    return this.#nginx.port;
  }

  /** The master's process id (the worker is its child: count it with descendants). */
  get pid(): number {
    return this.#nginx.pid;
  }

  /**
   * Starts nginx on `port` (a free one by default) with TLS from `certPath`/`keyPath`, proxying the
   * WebSocket upgrade on `path` to 127.0.0.1:`upstreamPort`; resolves once it listens.
   */
  static async start(
    binary: string,
    options: { upstreamPort: number; certPath: string; keyPath: string; path?: string; port?: number },
  ): Promise<NginxChild> {
    const nginx = track(
      new NginxChild(
        await NginxProcess.spawn(binary, {
          tempPrefix: "tls-tunnel-bench-nginx-",
          workerConnections: 4096,
          ...(options.port === undefined ? {} : { port: options.port }),
          server: (site) => webSocketProxyServer(site, options),
        }),
      ),
    );
    try {
      await nginx.#nginx.listening();
    } catch (error) {
      await nginx.stop();
      throw error;
    }
    return nginx;
  }

  /** SIGTERM (nginx's fast shutdown), SIGKILL after 5 s; removes its folder. */
  stop(): Promise<void> {
    return this.#nginx.stop();
  }

  killNow(): void {
    this.#nginx.killNow();
  }
}

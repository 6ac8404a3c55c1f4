/**
 * nginx in front of a `behind_proxy = true` wss server, for the bench's "wss via nginx" path: nginx
 * terminates TLS with the bench's certificate (`makeWorkdir`'s, as `tls-tunnel cert` writes them) on a
 * free loopback port and proxies the WebSocket upgrade to the server in plain text, as README's nginx
 * location does. Same configuration as `tests/nginx_wss_test.ts` (its own prefix folder, `daemon off`,
 * one worker), without the `proxy_bind` that test needs to tell addresses apart. Registered with
 * `track`, so it is stopped with every other child; only it is killed, by its PID.
 *
 * @module
 */

import { canBind, freePort } from "../../testing/helpers.ts";
import { type ChildHandle, track } from "./processes.ts";

/** Where Debian installs nginx. */
const NGINX_PATHS = ["/usr/sbin/nginx", "/usr/bin/nginx"];

/** The nginx binary, or why there is none. */
export function findNginx(): { path: string } | { missing: string } {
  for (const path of NGINX_PATHS) {
    try {
      if (Deno.statSync(path).isFile) return { path };
    } catch {
      // Not there.
    }
  }
  return { missing: `nginx is not installed (looked for ${NGINX_PATHS.join(", ")}; apt-get install nginx)` };
}

/** A running nginx (master and one worker) in front of one upstream port. */
export class NginxChild implements ChildHandle {
  readonly #child: Deno.ChildProcess;
  readonly #dir: string;

  private constructor(
    /** The loopback port nginx terminates TLS on. */
    readonly port: number,
    child: Deno.ChildProcess,
    dir: string,
  ) {
    this.#child = child;
    this.#dir = dir;
  }

  /** The master's process id (the worker is its child: count it with descendants). */
  get pid(): number {
    return this.#child.pid;
  }

  /**
   * Starts nginx on `port` (a free one by default) with TLS from `certPath`/`keyPath`, proxying the
   * WebSocket upgrade on `path` to 127.0.0.1:`upstreamPort`; resolves once it listens.
   */
  static async start(
    binary: string,
    options: { upstreamPort: number; certPath: string; keyPath: string; path?: string; port?: number },
  ): Promise<NginxChild> {
    const dir = await Deno.makeTempDir({ prefix: "tls-tunnel-bench-nginx-" });
    const port = options.port ?? freePort();
    const temp = (name: string) => `${name} ${dir}/${name.replace("_temp_path", "")};`;
    await Deno.writeTextFile(
      `${dir}/nginx.conf`,
      `daemon off;
master_process on;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  ${temp("client_body_temp_path")}
  ${temp("proxy_temp_path")}
  ${temp("fastcgi_temp_path")}
  ${temp("uwsgi_temp_path")}
  ${temp("scgi_temp_path")}
  server {
    listen 127.0.0.1:${port} ssl;
    server_name localhost;
    ssl_certificate ${options.certPath};
    ssl_certificate_key ${options.keyPath};
    location ${options.path ?? "/tunnel"} {
      proxy_pass http://127.0.0.1:${options.upstreamPort};
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_read_timeout 3600s;
      proxy_send_timeout 3600s;
      proxy_buffering off;
    }
  }
}
`,
    );
    const child = new Deno.Command(binary, {
      args: ["-p", dir, "-c", `${dir}/nginx.conf`, "-e", `${dir}/error.log`],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const nginx = track(new NginxChild(port, child, dir));
    const deadline = Date.now() + 10_000;
    while (canBind(port)) {
      if (Date.now() > deadline) {
        const log = await Deno.readTextFile(`${dir}/error.log`).catch(() => "");
        await nginx.stop();
        throw new Error(`nginx did not listen on 127.0.0.1:${port} within 10 s: ${log.trim().slice(-500)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return nginx;
  }

  /** SIGTERM (nginx's fast shutdown), SIGKILL after 5 s; removes its folder. */
  async stop(): Promise<void> {
    try {
      this.#child.kill("SIGTERM");
    } catch {
      // Already gone.
    }
    const timer = setTimeout(() => this.killNow(), 5_000);
    try {
      await this.#child.status;
    } finally {
      clearTimeout(timer);
    }
    await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }

  killNow(): void {
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
  }
}

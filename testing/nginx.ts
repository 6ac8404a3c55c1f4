/**
 * Debian's nginx as a child process for tests and the bench: on a free loopback port, from a config in its
 * own folder (`-p` prefix, `daemon off`, one worker, its pid file, error log and temp folders there), so
 * it never touches the system's nginx. Only this process is killed, by its PID. The caller writes the
 * `server { … }` block (and the logging, `access_log off;` by default).
 *
 * @module
 */

import { canBind, freePort } from "./helpers.ts";

/** Where Debian installs nginx. */
export const NGINX_PATHS: readonly string[] = ["/usr/sbin/nginx", "/usr/bin/nginx"];

/** The nginx binary, or undefined when nginx is not installed. */
export function installedNginx(): string | undefined {
  return NGINX_PATHS.find((path) => {
    try {
      return Deno.statSync(path).isFile;
    } catch {
      return false;
    }
  });
}

/** Where nginx runs: its folder (config, logs, temp files) and its loopback port. */
export interface NginxSite {
  /** nginx's prefix folder. */
  readonly dir: string;
  /** The port the `server` block listens on (127.0.0.1). */
  readonly port: number;
}

/** How to run nginx. */
export interface NginxOptions {
  /** `events { worker_connections … }`. */
  workerConnections: number;
  /** The `server { … }` block inside `http`. */
  server: (site: NginxSite) => string;
  /** The `http` block's logging directives; `access_log off;` by default. */
  logging?: (site: NginxSite) => string;
  /** The port (a free one by default). */
  port?: number;
  /** A folder to run in (made if missing, kept on stop); by default a temporary one, removed on stop. */
  dir?: string;
  /** The temporary folder's name prefix (when `dir` is not given). */
  tempPrefix?: string;
}

/** What `webSocketProxyServer` proxies to. */
export interface WebSocketProxyOptions {
  /** The `behind_proxy = true` server's plain-text port on 127.0.0.1. */
  upstreamPort: number;
  /** TLS certificate (PEM) nginx terminates with. */
  certPath: string;
  /** Its private key (PEM). */
  keyPath: string;
  /** The location proxied (`/tunnel` by default). */
  path?: string;
  /** `proxy_bind`: the address nginx reaches the server from (the kernel's choice by default). */
  bindAddress?: string;
}

/**
 * A `server` block terminating TLS on the site's port and proxying the WebSocket upgrade on `path` to the
 * upstream in plain text, as README's nginx location does.
 */
export function webSocketProxyServer(site: NginxSite, options: WebSocketProxyOptions): string {
  const bind = options.bindAddress === undefined ? "" : `\n      proxy_bind ${options.bindAddress};`;
  return `server {
    listen 127.0.0.1:${site.port} ssl;
    server_name localhost;
    ssl_certificate ${options.certPath};
    ssl_certificate_key ${options.keyPath};
    location ${options.path ?? "/tunnel"} {
      proxy_pass http://127.0.0.1:${options.upstreamPort};${bind}
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_read_timeout 3600s;
      proxy_send_timeout 3600s;
      proxy_buffering off;
    }
  }`;
}

/** A running nginx (master and one worker); stop it with `stop()` or `await using`. */
export class NginxProcess implements AsyncDisposable {
  readonly #child: Deno.ChildProcess;
  readonly #removeDir: boolean;

  private constructor(
    /** The loopback port nginx listens on. */
    readonly port: number,
    /** nginx's prefix folder (its config, logs and temp files). */
    readonly dir: string,
    child: Deno.ChildProcess,
    removeDir: boolean,
  ) {
    this.#child = child;
    this.#removeDir = removeDir;
  }

  /** The master's process id (the worker is its child). */
  get pid(): number {
    return this.#child.pid;
  }

  /** Writes the config and spawns nginx without waiting for it to listen (see `listening`). */
  static async spawn(binary: string, options: NginxOptions): Promise<NginxProcess> {
    const dir = options.dir ?? await Deno.makeTempDir({ prefix: options.tempPrefix ?? "tls-tunnel-nginx-" });
    if (options.dir !== undefined) await Deno.mkdir(dir, { recursive: true });
    const site: NginxSite = { dir, port: options.port ?? freePort() };
    const temp = (name: string) => `${name} ${dir}/${name.replace("_temp_path", "")};`;
    await Deno.writeTextFile(
      `${dir}/nginx.conf`,
      `daemon off;
master_process on;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections ${options.workerConnections}; }
http {
  ${options.logging?.(site) ?? "access_log off;"}
  ${temp("client_body_temp_path")}
  ${temp("proxy_temp_path")}
  ${temp("fastcgi_temp_path")}
  ${temp("uwsgi_temp_path")}
  ${temp("scgi_temp_path")}
  ${options.server(site)}
}
`,
    );
    const child = new Deno.Command(binary, {
      args: ["-p", dir, "-c", `${dir}/nginx.conf`, "-e", `${dir}/error.log`],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    return new NginxProcess(site.port, dir, child, options.dir === undefined);
  }

  /** Spawns nginx and resolves once it listens; stops it and throws when it does not within 10 s. */
  static async start(binary: string, options: NginxOptions): Promise<NginxProcess> {
    const nginx = await NginxProcess.spawn(binary, options);
    try {
      await nginx.listening();
    } catch (error) {
      await nginx.stop();
      throw error;
    }
    return nginx;
  }

  /** Resolves once nginx listens on its port; throws (with its error log's tail) after `timeoutMs`. */
  async listening(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (canBind(this.port)) {
      if (Date.now() > deadline) {
        const log = await Deno.readTextFile(`${this.dir}/error.log`).catch(() => "");
        throw new Error(
          `nginx did not listen on 127.0.0.1:${this.port} within ${timeoutMs} ms: ${log.trim().slice(-500)}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /** SIGTERM (nginx's fast shutdown), SIGKILL after 5 s; removes its temporary folder. */
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
    if (this.#removeDir) await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }

  /** Sends SIGKILL at once. */
  killNow(): void {
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
  }

  /** Same as `stop()`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}

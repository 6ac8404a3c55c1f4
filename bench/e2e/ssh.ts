/**
 * OpenSSH as the bench's reference tunnel: our own `sshd` on a loopback port (throw-away host and user
 * keys, its own config, nothing of the system's) and `ssh -R` clients publishing a local port, with the
 * default cipher or a chosen one, either as `ssh -N -R` (no session: how a tunnel is usually run) or as
 * `ssh -tt -R … sleep …` (a session with a terminal: OpenSSH's interactive mode, which turns Nagle's
 * algorithm off on its sockets, so small writes are not held back).
 *
 * @module
 */

import { freePort } from "../../testing/helpers.ts";
import { type ChildHandle, runCommand, stopChild, track } from "./processes.ts";

/** How to get OpenSSH when it is missing (printed by the sections). */
export const SSH_INSTALL_HINT =
  "install OpenSSH to compare with ssh -R: apt-get install -y openssh-server openssh-client " +
  "(Debian/Ubuntu), dnf install openssh-server openssh-clients (Fedora), brew install openssh (macOS)";

/** Where the OpenSSH programs are, or why they cannot be used. */
export type SshAvailability =
  | { available: true; sshd: string; ssh: string; sshKeygen: string }
  | { available: false; reason: string };

async function which(program: string, candidates: string[]): Promise<string | null> {
  for (const path of candidates) {
    try {
      const info = await Deno.stat(path);
      if (info.isFile) return path;
    } catch {
      // Not there; try the next.
    }
  }
  try {
    const found = (await runCommand("sh", ["-c", `command -v ${program}`])).trim();
    return found === "" ? null : found;
  } catch {
    return null;
  }
}

/** Finds sshd, ssh and ssh-keygen. */
export async function findSsh(): Promise<SshAvailability> {
  const [sshd, ssh, sshKeygen] = await Promise.all([
    which("sshd", ["/usr/sbin/sshd", "/usr/local/sbin/sshd", "/opt/homebrew/sbin/sshd"]),
    which("ssh", ["/usr/bin/ssh", "/usr/local/bin/ssh"]),
    which("ssh-keygen", ["/usr/bin/ssh-keygen", "/usr/local/bin/ssh-keygen"]),
  ]);
  const missing = [[sshd, "sshd"], [ssh, "ssh"], [sshKeygen, "ssh-keygen"]]
    .filter(([path]) => path === null)
    .map(([, name]) => name);
  if (sshd === null || ssh === null || sshKeygen === null) {
    return { available: false, reason: `${missing.join(", ")} not found; ${SSH_INSTALL_HINT}` };
  }
  return { available: true, sshd, ssh, sshKeygen };
}

/** A cipher to run `ssh -R` with; null is OpenSSH's default (chacha20-poly1305 in OpenSSH 9). */
export type SshCipher = string | null;

/** Our own sshd on 127.0.0.1, with throw-away keys in a temp folder. */
export class SshServer implements ChildHandle {
  private constructor(
    readonly tools: Extract<SshAvailability, { available: true }>,
    readonly dir: string,
    readonly port: number,
    readonly child: Deno.ChildProcess,
    readonly output: { text: string },
  ) {}

  get pid(): number {
    return this.child.pid;
  }

  /** Path of the user key `ssh` logs in with. */
  get userKeyPath(): string {
    return `${this.dir}/user_key`;
  }

  /** Creates keys and config, starts `sshd -D -e -f CONFIG` and waits until it accepts connections. */
  static async start(tools: Extract<SshAvailability, { available: true }>): Promise<SshServer> {
    const dir = await Deno.makeTempDir({ prefix: "tls-tunnel-bench-sshd-" });
    try {
      await runCommand(tools.sshKeygen, ["-q", "-t", "ed25519", "-N", "", "-f", `${dir}/host_key`]);
      await runCommand(tools.sshKeygen, ["-q", "-t", "ed25519", "-N", "", "-f", `${dir}/user_key`]);
      await Deno.copyFile(`${dir}/user_key.pub`, `${dir}/authorized_keys`);
      await ensurePrivsepDirectory();
      const port = freePort();
      const config = [
        `Port ${port}`,
        "ListenAddress 127.0.0.1",
        `HostKey ${dir}/host_key`,
        `PidFile ${dir}/sshd.pid`,
        `AuthorizedKeysFile ${dir}/authorized_keys`,
        "UsePAM no",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes",
        "PermitRootLogin yes",
        "AllowTcpForwarding yes",
        "GatewayPorts no",
        "StrictModes no",
        "X11Forwarding no",
        "PrintMotd no",
        "UseDNS no",
        "LogLevel ERROR",
        // The bench opens a few ssh sessions at once; keep sshd from dropping them as a flood.
        "MaxStartups 50:30:100",
        "",
      ].join("\n");
      await Deno.writeTextFile(`${dir}/sshd_config`, config);
      const { child, output } = spawnCollectingStderr(tools.sshd, ["-D", "-e", "-f", `${dir}/sshd_config`]);
      const server = track(new SshServer(tools, dir, port, child, output));
      try {
        await waitUntil(
          async () => {
            if (await exited(child)) throw new Error(`sshd exited at start: ${output.text.trim()}`);
            return await canConnect(port);
          },
          10_000,
          `sshd to listen on 127.0.0.1:${port}`,
        );
      } catch (error) {
        await stopChild(server);
        throw error;
      }
      return server;
    } catch (error) {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      throw error;
    }
  }

  async stop(): Promise<void> {
    await stopProcess(this.child);
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }

  killNow(): void {
    killQuietly(this.child, "SIGKILL");
  }
}

/**
 * `ssh -N -R 127.0.0.1:PUBLISH:127.0.0.1:LOCAL` against our sshd, or with `tty`
 * `ssh -tt -R … root@127.0.0.1 sleep 2147483647`: a remote command on a terminal sshd allocates, which
 * makes both ends run in interactive mode (TCP_NODELAY). `-tt` forces the terminal although the bench's
 * stdin is none; the remote `sleep` never reads it, so the session lasts until the bench stops ssh.
 */
export class SshForward implements ChildHandle {
  private constructor(
    readonly child: Deno.ChildProcess,
    readonly publishPort: number,
    readonly cipher: SshCipher,
    readonly tty: boolean,
    readonly output: { text: string },
  ) {}

  get pid(): number {
    return this.child.pid;
  }

  /**
   * Starts the forward and resolves once `ready(publishPort)` says traffic passes (the bench checks with
   * an echo through the published port).
   */
  static async start(
    server: SshServer,
    options: { localPort: number; cipher: SshCipher; publishPort?: number; tty?: boolean },
    ready: (publishPort: number) => Promise<boolean>,
  ): Promise<SshForward> {
    const publishPort = options.publishPort ?? freePort();
    const tty = options.tty === true;
    const args = [
      tty ? "-tt" : "-N",
      "-R",
      `127.0.0.1:${publishPort}:127.0.0.1:${options.localPort}`,
      "-p",
      String(server.port),
      "-i",
      server.userKeyPath,
      "-F",
      "/dev/null",
      "-o",
      "StrictHostKeyChecking=no",
      "-o",
      "UserKnownHostsFile=/dev/null",
      "-o",
      "ExitOnForwardFailure=yes",
      "-o",
      "BatchMode=yes",
      "-o",
      "LogLevel=ERROR",
      ...(options.cipher === null ? [] : ["-c", options.cipher]),
      "root@127.0.0.1",
      ...(tty ? ["sleep", "2147483647"] : []),
    ];
    const { child, output } = spawnCollectingStderr(server.tools.ssh, args);
    const forward = track(new SshForward(child, publishPort, options.cipher, tty, output));
    try {
      await waitUntil(
        async () => {
          if (await exited(child)) {
            throw new Error(`ssh ${tty ? "-tt" : "-N"} -R exited: ${output.text.trim()}`);
          }
          return await ready(publishPort);
        },
        15_000,
        `ssh -R to publish 127.0.0.1:${publishPort}`,
      );
    } catch (error) {
      await stopChild(forward);
      throw error;
    }
    return forward;
  }

  async stop(): Promise<void> {
    await stopProcess(this.child);
  }

  killNow(): void {
    killQuietly(this.child, "SIGKILL");
  }
}

/** Makes sure sshd's privilege separation directory exists (systemd creates it for the system's sshd). */
async function ensurePrivsepDirectory(): Promise<void> {
  const path = "/run/sshd";
  try {
    await Deno.stat(path);
    return;
  } catch {
    // Missing: create it as the system's service would.
  }
  try {
    await Deno.mkdir(path, { mode: 0o755 });
  } catch (error) {
    throw new Error(
      `sshd needs its privilege separation directory ${path}, which is missing and could not be created ` +
        `(${error instanceof Error ? error.message : String(error)}); run: sudo mkdir -p ${path}`,
    );
  }
}

function collectText(stream: ReadableStream<Uint8Array>, into: { text: string }): void {
  (async () => {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      if (into.text.length < 16_384) into.text += chunk;
    }
  })().catch(() => {});
}

/** Starts `command` with no stdin or stdout, collecting its stderr text (for error messages). */
function spawnCollectingStderr(
  command: string,
  args: string[],
): { child: Deno.ChildProcess; output: { text: string } } {
  const child = new Deno.Command(command, { args, stdin: "null", stdout: "null", stderr: "piped" }).spawn();
  const output = { text: "" };
  collectText(child.stderr, output);
  return { child, output };
}

async function exited(child: Deno.ChildProcess): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const result = await Promise.race([
    child.status.then(() => true),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), 0))),
  ]);
  clearTimeout(timer);
  return result;
}

async function canConnect(port: number): Promise<boolean> {
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

/** Polls `check` every 20 ms until it returns true; rejects after `timeoutMs` or when `check` throws. */
export async function waitUntil(
  check: () => Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function killQuietly(child: Deno.ChildProcess, signal: Deno.Signal): void {
  try {
    child.kill(signal);
  } catch {
    // Already exited.
  }
}

async function stopProcess(child: Deno.ChildProcess): Promise<void> {
  killQuietly(child, "SIGTERM");
  let timer: ReturnType<typeof setTimeout> | undefined;
  const stopped = await Promise.race([
    child.status.then(() => true),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), 3_000))),
  ]);
  clearTimeout(timer);
  if (!stopped) {
    killQuietly(child, "SIGKILL");
    await child.status;
  }
}

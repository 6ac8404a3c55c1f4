/**
 * Test helpers for driving `go/yamux_peer.go` (hashicorp's Go yamux) as a child process: building it
 * offline, spawning it, reading its JSON-lines stdout and stopping it cleanly.
 *
 * @module
 */

/** Where Debian's golang-github-hashicorp-yamux-dev puts its sources (a GOPATH). */
export const DEBIAN_GOPATH = "/usr/share/gocode";

const INSTALL_HINT = "install the Debian packages golang-go and golang-github-hashicorp-yamux-dev " +
  "(`sudo apt-get install golang-go golang-github-hashicorp-yamux-dev`; CI installs both); the interop tests need hashicorp's Go yamux as the independent peer";

/** The Go toolchain or the yamux sources are missing, so the interop peer cannot be built. */
export class GoPeerUnavailableError extends Error {
  override name = "GoPeerUnavailableError";
}

/** A built peer binary in its own temporary directory. */
export interface GoPeerBuild {
  /** Path of the executable. */
  binary: string;
  /** Removes the temporary directory (binary and Go build cache). */
  remove(): Promise<void>;
}

/**
 * Builds `go/yamux_peer.go` into a fresh temporary directory, offline (GOPATH mode, Debian's sources).
 *
 * @throws {GoPeerUnavailableError} when `go` or the yamux sources are missing; the message says what to install
 */
export async function buildGoPeer(): Promise<GoPeerBuild> {
  try {
    await Deno.stat(`${DEBIAN_GOPATH}/src/github.com/hashicorp/yamux/session.go`);
  } catch {
    throw new GoPeerUnavailableError(
      `hashicorp's Go yamux sources are not at ${DEBIAN_GOPATH}/src/github.com/hashicorp/yamux; ${INSTALL_HINT}`,
    );
  }
  const directory = await Deno.makeTempDir({ prefix: "tls-tunnel-yamux-interop-" });
  const remove = () => Deno.remove(directory, { recursive: true }).catch(() => {});
  try {
    const binary = `${directory}/yamux_peer`;
    const source = new URL("./go/yamux_peer.go", import.meta.url).pathname;
    let output: Deno.CommandOutput;
    try {
      output = await new Deno.Command("go", {
        args: ["build", "-o", binary, source],
        env: {
          GO111MODULE: "off",
          GOPATH: DEBIAN_GOPATH,
          GOCACHE: `${directory}/gocache`,
          GOFLAGS: "",
          CGO_ENABLED: "0",
        },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) {
        throw new GoPeerUnavailableError(`the Go toolchain (\`go\`) is not on PATH; ${INSTALL_HINT}`);
      }
      throw error;
    }
    if (!output.success) {
      const stderr = new TextDecoder().decode(output.stderr);
      throw new Error(`go build of ${source} failed with exit code ${output.code}:\n${stderr}`);
    }
    return { binary, remove };
  } catch (error) {
    await remove();
    throw error;
  }
}

/** One JSON object printed by the peer. */
export type PeerEvent = Record<string, unknown> & { event?: unknown };

/** A running `yamux_peer` child with its stdout parsed into events. */
export class GoPeer {
  readonly #child: Deno.ChildProcess;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  /** Events printed and not yet taken. */
  readonly #events: PeerEvent[] = [];
  /** Resolves the pending `nextEvent` when a line arrives or stdout ends. */
  #wake: (() => void) | null = null;
  #stdoutEnded = false;
  readonly #stdoutDone: Promise<void>;
  readonly #stderrText: Promise<string>;
  #stopped: Promise<Deno.CommandStatus> | null = null;

  /** Spawns `binary` with `args`; stdin, stdout and stderr are piped. */
  constructor(binary: string, args: readonly string[]) {
    this.#child = new Deno.Command(binary, {
      args: [...args],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#stdin = this.#child.stdin.getWriter();
    this.#stderrText = new Response(this.#child.stderr).text();
    this.#stdoutDone = this.#readStdout();
  }

  async #readStdout(): Promise<void> {
    let pending = "";
    try {
      for await (const text of this.#child.stdout.pipeThrough(new TextDecoderStream())) {
        pending += text;
        let newline = pending.indexOf("\n");
        while (newline >= 0) {
          const line = pending.slice(0, newline).trim();
          pending = pending.slice(newline + 1);
          if (line !== "") this.#events.push(parseEvent(line));
          newline = pending.indexOf("\n");
        }
        this.#wake?.();
      }
    } finally {
      this.#stdoutEnded = true;
      this.#wake?.();
    }
  }

  /** Waits for the next event printed by the peer. */
  async nextEvent(timeoutMs = 10_000): Promise<PeerEvent> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      const event = this.#events.shift();
      if (event !== undefined) return event;
      if (this.#stdoutEnded) {
        throw new Error(
          `yamux_peer ended its output without the expected event; stderr:\n${await this.stderr()}`,
        );
      }
      const remainingMs = deadline - Date.now();
      if (remainingMs <= 0) throw new Error(`yamux_peer printed nothing within ${timeoutMs} ms`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        timer = setTimeout(resolve, remainingMs);
      });
      clearTimeout(timer);
      this.#wake = null;
    }
  }

  /** Waits for the next event and checks it is `name` without an `error` field. */
  async expectEvent(name: string, timeoutMs = 10_000): Promise<PeerEvent> {
    const event = await this.nextEvent(timeoutMs);
    if (event.event !== name || event.error !== undefined) {
      throw new Error(
        `yamux_peer printed ${JSON.stringify(event)}; expected a "${name}" event without error`,
      );
    }
    return event;
  }

  /** Sends one command line to the peer's stdin (server mode). */
  async command(line: string): Promise<void> {
    await this.#stdin.write(new TextEncoder().encode(`${line}\n`));
  }

  /** Everything the peer wrote to stderr (available once it has exited). */
  stderr(): Promise<string> {
    return this.#stderrText;
  }

  /**
   * Ends the peer: closes its stdin (server mode exits on that), waits up to `graceMs`, then kills it.
   * Always awaits the process and its pipes, so no resource outlives the test.
   */
  stop(graceMs = 3_000): Promise<Deno.CommandStatus> {
    this.#stopped ??= (async () => {
      await this.#stdin.close().catch(() => {});
      let timer: ReturnType<typeof setTimeout> | undefined;
      const exited = await Promise.race([
        this.#child.status.then(() => true),
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), graceMs))),
      ]);
      clearTimeout(timer);
      if (!exited) {
        try {
          this.#child.kill("SIGKILL");
        } catch {
          // It exited between the check and the kill.
        }
      }
      const status = await this.#child.status;
      await this.#stdoutDone.catch(() => {});
      await this.#stderrText.catch(() => "");
      return status;
    })();
    return this.#stopped;
  }
}

function parseEvent(line: string): PeerEvent {
  try {
    const value: unknown = JSON.parse(line);
    if (typeof value === "object" && value !== null && !Array.isArray(value)) return value as PeerEvent;
  } catch {
    // Reported below as a non-JSON line.
  }
  return { event: "unparsed", line };
}

/**
 * Watches a config file for changes (`Deno.watchFs`), debounced: a burst of events (an editor writing a
 * temporary file and renaming it over the original, or a `cp` in several writes) calls back once, after
 * things have been quiet for `debounceMs`. The folder is watched, not the file, so a file replaced by a
 * rename (a new inode) is still seen. Nothing here reads the file: the callback does, asynchronously.
 *
 * @module
 */

/** Default quiet time before a change is reported. */
export const CONFIG_WATCH_DEBOUNCE_MS = 300;

/** Options of {@linkcode watchConfigFile}. */
export interface WatchConfigOptions {
  /** Stops watching. */
  signal: AbortSignal;
  /** Quiet time after the last event before `onChange` is called (default 300 ms). */
  debounceMs?: number;
}

/** The folder and file name of `path` (`"client.toml"` → `"."` and `"client.toml"`). */
export function splitPath(path: string): { dir: string; name: string } {
  const trimmed = path.replace(/[/\\]+$/, "");
  const cut = Math.max(trimmed.lastIndexOf("/"), trimmed.lastIndexOf("\\"));
  if (cut < 0) return { dir: ".", name: trimmed };
  return { dir: cut === 0 ? trimmed.slice(0, 1) : trimmed.slice(0, cut), name: trimmed.slice(cut + 1) };
}

/**
 * Calls `onChange` (debounced) whenever the file at `path` is created, written, renamed over or removed,
 * until `options.signal` aborts. Resolves once watching has stopped.
 *
 * @throws the error of `Deno.watchFs` when the folder cannot be watched (missing, no permission)
 */
export async function watchConfigFile(
  path: string,
  onChange: () => void,
  options: WatchConfigOptions,
): Promise<void> {
  const { dir, name } = splitPath(path);
  const debounceMs = options.debounceMs ?? CONFIG_WATCH_DEBOUNCE_MS;
  const watcher = Deno.watchFs(dir, { recursive: false });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const stop = () => {
    clearTimeout(timer);
    try {
      watcher.close();
    } catch {
      // Already closed.
    }
  };
  if (options.signal.aborted) stop();
  options.signal.addEventListener("abort", stop, { once: true });
  try {
    for await (const event of watcher) {
      if (event.kind === "access" || event.kind === "other") continue;
      if (!event.paths.some((changed) => splitPath(changed).name === name)) continue;
      clearTimeout(timer);
      timer = setTimeout(() => {
        timer = undefined;
        if (!options.signal.aborted) onChange();
      }, debounceMs);
    }
  } finally {
    options.signal.removeEventListener("abort", stop);
    clearTimeout(timer);
  }
}

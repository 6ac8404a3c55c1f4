/**
 * How stats read to people: bytes, byte rates, durations, round-trip times and clock times. One set of
 * formatters for both views of the stats endpoint, `tls-tunnel top` (lib/cli/top.ts) and the browser
 * dashboard (lib/stats/dashboard/app.ts, which the dashboard bundle inlines), so the two show the same
 * figures the same way.
 *
 * Pure functions of their arguments (the clock formatter reads the local time zone): no Deno API, so
 * they run in the browser unchanged.
 *
 * @example
 * ```ts
 * import { formatBytes, formatDuration, formatRate } from "./format.ts";
 *
 * formatBytes(1536); // "1.50 KiB"
 * formatRate(2 * 1024 * 1024); // "2.00 MiB/s"
 * formatDuration(3_723_000); // "1h02m"
 * formatDuration(3_723_000, "spaced"); // "1h 02m"
 * ```
 *
 * @module
 */

const BYTE_UNITS = ["KiB", "MiB", "GiB", "TiB"] as const;

/** `1536` → `1.50 KiB`: three significant digits from KiB up, whole bytes below. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${Math.round(bytes)} B`;
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < BYTE_UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 2 : value < 100 ? 1 : 0)} ${BYTE_UNITS[unit]}`;
}

/** Bytes per second for people; `null` (no rate known yet) is shown as a dash, under ½ B/s as `0 B/s`. */
export function formatRate(bytesPerSec: number | null): string {
  if (bytesPerSec === null) return "–";
  return bytesPerSec < 0.5 ? "0 B/s" : `${formatBytes(bytesPerSec)}/s`;
}

/**
 * How {@linkcode formatDuration} writes its two units: `compact` (`top`'s narrow columns: `1d02h`,
 * `1h02m`, `1m05s`) or `spaced` (the dashboard's prose: `1d 2h`, `1h 02m`, `1m 05s`).
 */
export type DurationStyle = "compact" | "spaced";

/** `3723000` → `1h02m`: the two largest units of a non-negative duration, rounded down to seconds. */
export function formatDuration(ms: number, style: DurationStyle = "compact"): string {
  const secs = Math.max(0, Math.floor(ms / 1000));
  const days = Math.floor(secs / 86400);
  const hours = Math.floor((secs % 86400) / 3600);
  const minutes = Math.floor((secs % 3600) / 60);
  const gap = style === "spaced" ? " " : "";
  if (days > 0) return `${days}d${gap}${style === "spaced" ? hours : twoDigits(hours)}h`;
  if (hours > 0) return `${hours}h${gap}${twoDigits(minutes)}m`;
  if (minutes > 0) return `${minutes}m${gap}${twoDigits(secs % 60)}s`;
  return `${secs}s`;
}

/** A round-trip time: two decimals under 10 ms, whole milliseconds above; a dash when none was measured. */
export function formatRtt(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return "–";
  return ms < 10 ? `${ms.toFixed(2)} ms` : `${Math.round(ms)} ms`;
}

/** The local wall-clock time of `ms` (ms since epoch) as `HH:MM:SS`. */
export function formatClock(ms: number): string {
  const date = new Date(ms);
  return [date.getHours(), date.getMinutes(), date.getSeconds()].map(twoDigits).join(":");
}

/** A proxy or connection status for people: `bind_failed` → `bind failed`; the others as they are. */
export function statusLabel(status: string): string {
  return status === "bind_failed" ? "bind failed" : status;
}

function twoDigits(value: number): string {
  return String(value).padStart(2, "0");
}

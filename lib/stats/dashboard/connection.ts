/// <reference lib="dom" />
/**
 * How the dashboard gets its snapshots: a first `GET /api/stats`, then the `/api/events` stream,
 * falling back to polling `/api/stats` when the stream cannot be opened; when both fail, the stopped
 * notice. Browser TypeScript, bundled with app.ts.
 *
 * @module
 */

import type { ServedStats } from "../snapshot.ts";
import { setLive } from "./dom.ts";
import { render, showStopped } from "./render.ts";

/** Polls in a row that got no snapshot (slows the polling down). */
let failures = 0;

/** One `GET /api/stats`: the snapshot, or null when the endpoint does not answer with one. */
async function fetchStats(): Promise<ServedStats | null> {
  try {
    const response = await fetch("/api/stats", { credentials: "same-origin", cache: "no-store" });
    if (response.status === 401) {
      location.reload();
      return null;
    }
    if (!response.ok) return null;
    return await response.json() as ServedStats;
  } catch {
    return null;
  }
}

/** Polls `/api/stats` every 2 s (3 s while it fails). */
async function poll(): Promise<void> {
  const snap = await fetchStats();
  if (snap) {
    failures = 0;
    setLive("polling", "polling");
    render(snap, "api");
  } else {
    failures++;
    showStopped(true);
  }
  setTimeout(poll, failures ? 3000 : 2000);
}

/** Follows `/api/events`; falls back to polling when it cannot be opened. */
function openStream(): void {
  if (typeof EventSource === "undefined") {
    void poll();
    return;
  }
  let opened = false;
  const stream = new EventSource("/api/events");
  stream.addEventListener("snapshot", (message) => {
    opened = true;
    setLive("live", "live");
    try {
      render(JSON.parse(message.data) as ServedStats, "events");
    } catch (error) {
      console.error(error);
    }
  });
  stream.onerror = () => {
    if (!opened) {
      stream.close();
      void poll();
      return;
    }
    // The stream ended: ask /api/stats whether the endpoint is still there (a proxy cut the stream) or
    // gone (the process stopped). EventSource keeps retrying on its own either way.
    setLive("connecting", "reconnecting…");
    void fetchStats().then((snap) => {
      if (snap) render(snap, "api");
      else showStopped(true);
    });
    if (stream.readyState === EventSource.CLOSED) setTimeout(openStream, 3000);
  };
}

/** The first paint from `/api/stats`, then the live stream. */
export async function start(): Promise<void> {
  const snap = await fetchStats();
  if (snap) render(snap, "api");
  else showStopped(true);
  openStream();
}

/**
 * Drives the dashboard in headless Chromium for `observability_test.ts`, as a separate process:
 * playwright-core probes paths (`/proc/sys/fs/binfmt_misc/…`) that Deno only lets a program with
 * `--allow-all` read, and the test runner has narrower permissions, so the test runs this script with
 * `deno run -A` and talks to it in lines:
 *
 * - this script prints `{"step":"connected"}` once the page shows the client and its healthy proxy,
 *   then waits for the line `traffic-sent` on stdin;
 * - prints `{"step":"traffic-shown"}` once the page shows that traffic (and saves `dashboard.png`), then
 *   waits for `client-killed`;
 * - prints `{"step":"disconnected"}` once the page marks the client disconnected without a reload
 *   (and saves `dashboard-disconnected.png`), then waits for `server-stopped`;
 * - prints `{"step":"done","errors":[…]}` once the page says the server stopped (and saves
 *   `dashboard-stopped.png`), and exits 0.
 *
 * Along the way it checks that the first paint came from `/api/stats` (before the event stream), that
 * the configured client `offlineClient` is listed as offline, and that the proxy's last-hour sparkline
 * counts the traffic.
 *
 * Any failure prints `{"error":"…"}` and exits 1.
 *
 * Usage: `deno run -A testing/dashboard_browser.ts '{"url":…,"token":…,"client":…,"publishPort":…,
 * "chromium":…,"artifacts":…,"transferredText":"2.00 MiB","transferredBytes":…,"offlineClient":…}'`
 */

import { chromium } from "playwright-core";

interface DriverOptions {
  url: string;
  token: string;
  client: string;
  publishPort: number;
  chromium: string;
  artifacts: string;
  transferredText: string;
  /** Bytes sent each way, which the proxy's sparkline must count (both ways together). */
  transferredBytes: number;
  /** A `[[server.clients]]` name that never connects. */
  offlineClient: string;
}

const options = JSON.parse(Deno.args[0] ?? "{}") as DriverOptions;
const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream()).getReader();
let pending = "";

function say(message: Record<string, unknown>): void {
  Deno.stdout.writeSync(new TextEncoder().encode(JSON.stringify(message) + "\n"));
}

async function expectLine(wanted: string): Promise<void> {
  while (true) {
    const newline = pending.indexOf("\n");
    if (newline >= 0) {
      const line = pending.slice(0, newline).trim();
      pending = pending.slice(newline + 1);
      if (line === wanted) return;
      throw new Error(`expected '${wanted}' from the test, got '${line}'`);
    }
    const { value, done } = await lines.read();
    if (done) throw new Error(`stdin ended while waiting for '${wanted}'`);
    pending += value;
  }
}

/** Polls `check` until it is true; throws with `what` after `timeoutMs`. */
async function until(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const profile = await Deno.makeTempDir({ prefix: "tls-tunnel-chromium-" });
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: options.chromium,
  headless: true,
  viewport: { width: 1280, height: 800 },
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
let exitCode = 0;
try {
  const pageErrors: string[] = [];
  const page = await browser.newPage();
  page.on("pageerror", (error) => pageErrors.push(error.message));
  page.on("console", (message) => {
    if (message.type() === "error") pageErrors.push(message.text());
  });
  page.setDefaultTimeout(10_000);

  // The token-protected dashboard: the login form first, as a person sees it.
  await page.goto(options.url);
  await page.fill('input[name="token"]', options.token);
  await page.click('button[type="submit"]');
  const client = page.locator(`[data-client="${options.client}"]`);
  await page.locator(`[data-client="${options.client}"][data-state="connected"]`).waitFor();
  await page.locator('#live[data-state="live"]').waitFor();
  const row = client.locator('[data-proxy="web"]');
  await page.locator(`[data-client="${options.client}"] [data-proxy="web"][data-status="healthy"]`).waitFor();
  const rowText = await row.innerText();
  if (!new RegExp(`127\\.0\\.0\\.1:${options.publishPort}\\s*→\\s*127\\.0\\.0\\.1:\\d+`).test(rowText)) {
    throw new Error(`the proxy row does not show publish → local target: ${rowText}`);
  }
  const clientText = await client.innerText();
  if (!/from\s+127\.0\.0\.1:\d+/.test(clientText)) throw new Error(`no remote address: ${clientText}`);
  const firstPaint = await page.locator("body").getAttribute("data-first-paint");
  if (firstPaint !== "api") throw new Error(`the first paint came from '${firstPaint}', not /api/stats`);
  const offline = page.locator(`[data-client="${options.offlineClient}"][data-state="offline"]`);
  await offline.waitFor();
  const offlineText = await offline.innerText();
  if (!/offline/.test(offlineText) || !/not seen since the server started/.test(offlineText)) {
    throw new Error(`the offline client's card says: ${offlineText}`);
  }
  await page.evaluate(() => Object.assign(globalThis, { loadedOnce: true }));
  say({ step: "connected" });

  // Traffic shows up without a reload: the connection count, bytes both ways and a throughput.
  await expectLine("traffic-sent");
  await until(
    async () => {
      const cells = await row.locator("td").allInnerTexts();
      return cells[4] === "1" && cells[6] === options.transferredText && cells[7] === options.transferredText;
    },
    10_000,
    `the proxy row to show 1 connection and ${options.transferredText} each way`,
  );
  await until(
    async () => /[1-9][0-9.]* (KiB|MiB)\/s/.test(await page.locator("#cards").innerText()),
    10_000,
    "a throughput figure",
  );
  const spark = row.locator("svg.proxy-spark");
  await until(
    async () => Number(await spark.getAttribute("data-total-bytes")) >= 2 * options.transferredBytes,
    10_000,
    "the proxy's last-hour sparkline to count the traffic",
  );
  if ((await spark.locator("polyline").count()) !== 1) throw new Error("the sparkline draws no line");
  const events = await page.locator("#events").innerText();
  if (!events.includes("CLIENT_CONNECTED")) throw new Error(`no CLIENT_CONNECTED event: ${events}`);
  await page.screenshot({ path: `${options.artifacts}/dashboard.png`, fullPage: true });
  say({ step: "traffic-shown" });

  // The client is SIGKILLed: the page marks it disconnected by itself.
  await expectLine("client-killed");
  await page.locator(`[data-client="${options.client}"][data-state="disconnected"]`).waitFor({
    timeout: 5000,
  });
  const status = await client.locator('[data-proxy="web"]').getAttribute("data-status");
  if (status !== "closed") throw new Error(`the dead client's proxy shows '${status}', not closed`);
  const goneText = await client.innerText();
  if (!/disconnected at/.test(goneText)) throw new Error(`no disconnection time: ${goneText}`);
  await until(
    async () => (await page.locator("#events").innerText()).includes("CLIENT_DISCONNECTED"),
    5000,
    "a CLIENT_DISCONNECTED event",
  );
  if (!(await page.evaluate(() => "loadedOnce" in globalThis))) throw new Error("the page was reloaded");
  await page.screenshot({ path: `${options.artifacts}/dashboard-disconnected.png`, fullPage: true });
  say({ step: "disconnected" });

  // The server stops: the page says so instead of showing frozen numbers as live.
  await expectLine("server-stopped");
  await page.locator("#stopped").waitFor({ state: "visible", timeout: 10_000 });
  const notice = await page.locator("#stopped").innerText();
  if (!/The server has stopped/.test(notice)) throw new Error(`the stopped notice says: ${notice}`);
  await page.locator('#live[data-state="stopped"]').waitFor({ timeout: 5000 });
  await page.screenshot({ path: `${options.artifacts}/dashboard-stopped.png`, fullPage: true });
  // Fetches that fail while the server is down are expected; only script errors count.
  const scriptErrors = pageErrors.filter((error) =>
    !/Failed to load resource|ERR_CONNECTION_REFUSED/.test(error)
  );
  say({ step: "done", errors: scriptErrors });
} catch (error) {
  say({ error: error instanceof Error ? error.message : String(error) });
  exitCode = 1;
} finally {
  await browser.close();
  await Deno.remove(profile, { recursive: true });
}
Deno.exit(exitCode);

/**
 * Checks the server dashboard's "Virtual hosts" and "Tunnel listeners" cards in headless Chromium, for
 * `tests/dashboard_ports_test.ts`. Run as a separate process with `deno run -A` for the reason given in
 * `dashboard_browser.ts` (playwright-core needs more than the test runner's permissions).
 *
 * It opens the dashboard (no token), waits until the vhost card lists the route `host` → `client /
 * proxy` with a `200: 1` request, the row of hosts without a route with its `503: 1`, the head's 503 count, and the
 * listeners card lists `listeners` rows (each `transport address`), saves `dashboard-ports.png`, then
 * prints `{"ok":true,"vhost":…,"listeners":…,"errors":[…]}` (the cards' texts and script errors) and
 * exits 0. Any failure prints `{"error":"…"}` and exits 1.
 *
 * Usage: `deno run -A testing/dashboard_ports_browser.ts '{"url":…,"chromium":…,"artifacts":…,
 * "host":…,"client":…,"proxy":…,"listeners":["tls 127.0.0.1:1234",…]}'`
 *
 * @module
 */

import { chromium } from "playwright-core";

interface PortsOptions {
  url: string;
  chromium: string;
  artifacts: string;
  host: string;
  client: string;
  proxy: string;
  listeners: string[];
}

const options = JSON.parse(Deno.args[0] ?? "{}") as PortsOptions;

function say(message: Record<string, unknown>): void {
  Deno.stdout.writeSync(new TextEncoder().encode(JSON.stringify(message) + "\n"));
}

const profile = await Deno.makeTempDir({ prefix: "tls-tunnel-chromium-" });
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: options.chromium,
  headless: true,
  viewport: { width: 1280, height: 900 },
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
});
let exitCode = 0;
try {
  const pageErrors: string[] = [];
  const page = await browser.newPage();
  page.on("pageerror", (error) => pageErrors.push(error.message));
  page.on("console", (message) => {
    if (message.type() === "error") pageErrors.push(message.text());
  });
  page.setDefaultTimeout(15_000);
  await page.goto(options.url);

  const route = page.locator(`[data-vhost] [data-route="http ${options.host}"]`);
  await route.waitFor();
  const routeCells = await route.locator("td").allInnerTexts();
  if (routeCells[2] !== `${options.client} / ${options.proxy}`) {
    throw new Error(`the route row does not name client / proxy: ${JSON.stringify(routeCells)}`);
  }
  if (!/\b200: 1\b/.test(routeCells[3] ?? "")) {
    throw new Error(`the route row does not count the 200: ${JSON.stringify(routeCells)}`);
  }
  // Requests for hosts without a route are counted under "" (no host names kept for them).
  const unrouted = page.locator(`[data-vhost] [data-route="http "][data-unrouted]`);
  await unrouted.waitFor();
  const unroutedText = await unrouted.innerText();
  if (!/503: 1/.test(unroutedText) || !/without a route/.test(unroutedText)) {
    throw new Error(`the unrouted host's row says: ${unroutedText}`);
  }
  const vhostText = await page.locator("[data-vhost]").innerText();
  if (!/503 no tunnel\s+1/.test(vhostText) || !/routes\s+1/.test(vhostText)) {
    throw new Error(`the vhost card's head lacks the routes or the 503 count: ${vhostText}`);
  }

  const rows = page.locator("[data-listeners] [data-listener]");
  await rows.first().waitFor();
  const seen = await rows.evaluateAll((els) => els.map((el) => el.getAttribute("data-listener")));
  if (JSON.stringify(seen) !== JSON.stringify(options.listeners)) {
    throw new Error(`listener rows ${JSON.stringify(seen)}, expected ${JSON.stringify(options.listeners)}`);
  }
  const listenersText = await page.locator("[data-listeners]").innerText();
  await page.screenshot({ path: `${options.artifacts}/dashboard-ports.png`, fullPage: true });
  say({ ok: true, vhost: vhostText, listeners: listenersText, errors: pageErrors });
} catch (error) {
  say({ error: error instanceof Error ? error.message : String(error) });
  exitCode = 1;
} finally {
  await browser.close();
  await Deno.remove(profile, { recursive: true });
}
Deno.exit(exitCode);

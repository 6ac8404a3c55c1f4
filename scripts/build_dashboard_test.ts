import assert from "node:assert/strict";
import { ASSETS_MODULE, bundleDashboardScript, renderAssetsModule } from "./build_dashboard.ts";

Deno.test("the committed dashboard assets module is what lib/stats/dashboard/ builds to now", async () => {
  // Re-runs the generator in memory: an edit to the HTML, CSS, icon, app.ts or the formatters it
  // imports, without `deno task build:dashboard`, fails here instead of shipping the old dashboard.
  const generated = await renderAssetsModule();
  const committed = await Deno.readTextFile(ASSETS_MODULE);
  assert.ok(
    committed === generated,
    "lib/stats/_dashboard_assets.ts is stale: run `deno task build:dashboard` and commit the result",
  );
});

Deno.test("the dashboard bundle is one browser script: no imports left, nothing Deno-specific", async () => {
  const script = await bundleDashboardScript();
  assert.match(script, /^\(\(\) => \{/);
  assert.doesNotMatch(script, /^\s*import\s/m);
  assert.doesNotMatch(script, /\bDeno\./);
  // The shared formatters are inlined, not fetched.
  assert.match(script, /function formatBytes\(/);
});

import assert from "node:assert/strict";
import { DASHBOARD_JS, loginPage } from "./dashboard.ts";

Deno.test("the dashboard inserts every string as text: no HTML is ever built from data", () => {
  // Names, errors and events come from peers; as text nodes they cannot become markup or script.
  for (
    const sink of ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"]
  ) {
    assert.ok(!DASHBOARD_JS.includes(sink), `the dashboard script uses ${sink}`);
  }
  assert.match(DASHBOARD_JS, /else if \(key === "text"\) el\.textContent = value;/);
  assert.match(DASHBOARD_JS, /document\.createTextNode\(c\)/);
});

Deno.test("the login page escapes the error it shows", () => {
  const page = loginPage(`<img src=x onerror="alert(1)">`);
  assert.ok(!page.includes("<img src=x"), page);
  assert.match(page, /&#60;img src=x onerror=&#34;alert\(1\)&#34;&#62;/);
});

import assert from "node:assert/strict";
import { closestMatch, levenshtein } from "./_levenshtein.ts";

Deno.test("levenshtein counts insertions, deletions and substitutions", () => {
  assert.equal(levenshtein("", ""), 0);
  assert.equal(levenshtein("abc", ""), 3);
  assert.equal(levenshtein("kitten", "sitting"), 3);
  assert.equal(levenshtein("publsh_port", "publish_port"), 1);
});

Deno.test("a misspelt key suggests the closest known key, a foreign word suggests nothing", () => {
  const keys = ["name", "proxy_type", "publish_addr", "publish_port", "publish_port_range", "local_port"];
  assert.equal(closestMatch("publsh_port", keys), "publish_port");
  assert.equal(closestMatch("Local_Port", keys), "local_port");
  assert.equal(closestMatch("type", keys), "proxy_type");
  assert.equal(closestMatch("encryption", keys), undefined);
  assert.equal(closestMatch("x", []), undefined);
});

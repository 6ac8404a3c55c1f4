import assert from "node:assert/strict";
import { splitPath, watchConfigFile } from "./watch.ts";

Deno.test("splitPath separates the folder from the file name", () => {
  assert.deepEqual(splitPath("client.toml"), { dir: ".", name: "client.toml" });
  assert.deepEqual(splitPath("./conf/client.toml"), { dir: "./conf", name: "client.toml" });
  assert.deepEqual(splitPath("/client.toml"), { dir: "/", name: "client.toml" });
});

Deno.test("watchConfigFile reports a burst of writes and a rename over the file once, and not other files", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tls-tunnel-watch-" });
  const path = `${dir}/client.toml`;
  await Deno.writeTextFile(path, "a");
  const stop = new AbortController();
  let changes = 0;
  const watching = watchConfigFile(path, () => changes++, { signal: stop.signal, debounceMs: 150 });
  try {
    await new Promise((resolve) => setTimeout(resolve, 100));
    await Deno.writeTextFile(`${dir}/other.toml`, "x");
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(changes, 0, "another file's change is not reported");
    for (let index = 0; index < 5; index++) await Deno.writeTextFile(path, `b${index}`);
    await new Promise((resolve) => setTimeout(resolve, 400));
    assert.equal(changes, 1, "a burst of writes is one change");
    // An editor's save: a temporary file renamed over the config.
    await Deno.writeTextFile(`${dir}/.client.toml.tmp`, "c");
    await Deno.rename(`${dir}/.client.toml.tmp`, path);
    await new Promise((resolve) => setTimeout(resolve, 400));
    assert.equal(changes, 2, "a rename over the file is a change");
  } finally {
    stop.abort();
    await watching;
    await Deno.remove(dir, { recursive: true });
  }
});

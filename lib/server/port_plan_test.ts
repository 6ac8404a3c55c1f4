import assert from "node:assert/strict";
import { candidatePorts, MAX_RANGE_CANDIDATES, preferredPort, StickyPorts } from "./port_plan.ts";

Deno.test("an explicit port is the only candidate", () => {
  assert.deepEqual(candidatePorts({ publishPort: 8080, fallbackToSystemPort: false }), [8080]);
});

Deno.test("port 0 lets the system pick, after the remembered port", () => {
  assert.deepEqual(candidatePorts({ publishPort: 0, fallbackToSystemPort: false }), [0]);
  assert.deepEqual(candidatePorts({ publishPort: 0, fallbackToSystemPort: false, stickyPort: 41000 }), [
    41000,
    0,
  ]);
});

Deno.test("a range is searched after the preferred port, with the system as fallback", () => {
  assert.deepEqual(
    candidatePorts({ publishPort: 20002, range: { start: 20000, end: 20003 }, fallbackToSystemPort: true }),
    [20002, 20000, 20001, 20003, 0],
  );
  assert.deepEqual(
    candidatePorts({ publishPort: 0, range: { start: 20000, end: 20001 }, fallbackToSystemPort: false }),
    [20000, 20001],
  );
});

Deno.test("a remembered port comes first when it is within the range", () => {
  assert.deepEqual(
    candidatePorts({
      publishPort: 0,
      range: { start: 20000, end: 20002 },
      fallbackToSystemPort: false,
      stickyPort: 20002,
    }),
    [20002, 20000, 20001],
  );
  assert.deepEqual(
    candidatePorts({
      publishPort: 0,
      range: { start: 20000, end: 20001 },
      fallbackToSystemPort: false,
      stickyPort: 9999,
    }),
    [20000, 20001],
  );
});

Deno.test("a remembered port never overrides a different explicit port", () => {
  assert.deepEqual(candidatePorts({ publishPort: 8080, fallbackToSystemPort: false, stickyPort: 41000 }), [
    8080,
  ]);
  assert.equal(preferredPort({ publishPort: 8080, fallbackToSystemPort: false, stickyPort: 41000 }), 8080);
  assert.equal(preferredPort({ publishPort: 0, fallbackToSystemPort: false }), null);
});

Deno.test("sticky ports are kept while connected and for the TTL after", () => {
  let now = 1000;
  const sticky = new StickyPorts(500, () => now);
  sticky.remember("c1", "web", 41000);
  now += 10_000;
  assert.equal(sticky.lookup("c1", "web"), 41000, "no expiry while connected");
  sticky.release("c1", ["web"]);
  now += 499;
  assert.equal(sticky.lookup("c1", "web"), 41000);
  now += 1;
  assert.equal(sticky.lookup("c1", "web"), undefined);
  assert.equal(sticky.lookup("c2", "web"), undefined);
});

Deno.test("port 0 under allow_ports is followed by the allowed ports, in order and bounded", () => {
  assert.deepEqual(
    candidatePorts({
      publishPort: 0,
      fallbackToSystemPort: false,
      allowPorts: [{ start: 20000, end: 20002 }, { start: 8080, end: 8080 }],
    }),
    [0, 20000, 20001, 20002, 8080],
  );
  const wide = candidatePorts({
    publishPort: 0,
    fallbackToSystemPort: false,
    allowPorts: [{ start: 1, end: 65535 }],
  });
  assert.equal(wide.length, 1 + MAX_RANGE_CANDIDATES);
  assert.deepEqual(
    candidatePorts({
      publishPort: 8080,
      fallbackToSystemPort: false,
      allowPorts: [{ start: 1, end: 65535 }],
    }),
    [8080],
    "an explicit port without fallback never wanders to other allowed ports",
  );
});

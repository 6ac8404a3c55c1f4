import assert from "node:assert/strict";
import fc from "fast-check";
import { formatPortRanges, parsePortRange, parsePortRanges, portInRanges } from "./port_range.ts";
import type { PortRange } from "./types.ts";

Deno.test("port lists parse into ranges, single ports becoming one-port ranges", () => {
  assert.deepEqual(parsePortRanges("20000-20100, 8080 ,9000-9000"), [
    { start: 20000, end: 20100 },
    { start: 8080, end: 8080 },
    { start: 9000, end: 9000 },
  ]);
});

Deno.test("malformed port lists are refused with a hint", () => {
  for (
    const [text, message] of [
      ["", /empty/],
      ["100-", /"" is not a port number/],
      ["1-2-3", /is not a port or a range/],
      ["0-10", /port 0 is out of range/],
      ["65536", /port 65536 is out of range/],
      ["200-100", /range 200-100 starts after it ends/],
      ["80,,90", /is not a port or a range/],
      ["8o", /"8o" is not a port number/],
    ] as const
  ) {
    const result = parsePortRanges(text);
    assert.ok(!Array.isArray(result), `${text} was accepted`);
    assert.match(result.message, message);
    assert.notEqual(result.hint, "");
  }
  const reversed = parsePortRange("30000-20000");
  assert.ok(!("start" in reversed));
  assert.match(reversed.hint, /"20000-30000"/);
});

Deno.test("formatting and parsing port ranges round-trip", () => {
  const range = fc.tuple(fc.integer({ min: 1, max: 65535 }), fc.integer({ min: 1, max: 65535 }))
    .map(([a, b]): PortRange => ({ start: Math.min(a, b), end: Math.max(a, b) }));
  fc.assert(fc.property(fc.array(range, { minLength: 1, maxLength: 8 }), (ranges) => {
    assert.deepEqual(parsePortRanges(formatPortRanges(ranges)), ranges);
  }));
});

Deno.test("portInRanges finds ports at range edges and not outside", () => {
  const ranges = [{ start: 10, end: 20 }, { start: 30, end: 30 }];
  assert.deepEqual([9, 10, 20, 21, 30, 31].map((p) => portInRanges(p, ranges)), [
    false,
    true,
    true,
    false,
    true,
    false,
  ]);
});

import assert from "node:assert/strict";
import fc from "fast-check";
import {
  APPLICATION_ERROR_MAX,
  APPLICATION_ERROR_MIN,
  INTERNAL_ERROR,
  INVALID_PARAMS,
  INVALID_REQUEST,
  isApplicationErrorCode,
  isReservedErrorCode,
  makeErrorResponse,
  makeNotification,
  makeRequest,
  makeSuccessResponse,
  METHOD_NOT_FOUND,
  PARSE_ERROR,
  parseMessage,
  RpcError,
  SERVER_OVERLOADED,
} from "./messages.ts";

Deno.test("standard error codes have the values of the JSON-RPC 2.0 specification", () => {
  assert.deepEqual(
    [PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, INTERNAL_ERROR],
    [-32700, -32600, -32601, -32602, -32603],
  );
  for (const code of [PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, INTERNAL_ERROR]) {
    assert.ok(isReservedErrorCode(code));
    assert.ok(!isApplicationErrorCode(code));
  }
});

Deno.test("application error codes form their own range, apart from the RPC layer's codes", () => {
  assert.ok(APPLICATION_ERROR_MIN < APPLICATION_ERROR_MAX);
  assert.ok(isApplicationErrorCode(APPLICATION_ERROR_MIN));
  assert.ok(isApplicationErrorCode(APPLICATION_ERROR_MAX));
  assert.ok(isApplicationErrorCode(-32001));
  assert.ok(!isApplicationErrorCode(SERVER_OVERLOADED));
  assert.ok(!isApplicationErrorCode(APPLICATION_ERROR_MIN - 1));
  assert.ok(!isApplicationErrorCode(-32001.5));
});

Deno.test("parseMessage classifies requests, notifications and both kinds of response", () => {
  assert.deepEqual(parseMessage({ jsonrpc: "2.0", id: 1, method: "add", params: [1, 2] }), {
    kind: "request",
    message: { jsonrpc: "2.0", id: 1, method: "add", params: [1, 2] },
  });
  assert.deepEqual(parseMessage({ jsonrpc: "2.0", id: "a", method: "m" }), {
    kind: "request",
    message: { jsonrpc: "2.0", id: "a", method: "m" },
  });
  assert.deepEqual(parseMessage({ jsonrpc: "2.0", method: "tick", params: { n: 1 } }), {
    kind: "notification",
    message: { jsonrpc: "2.0", method: "tick", params: { n: 1 } },
  });
  assert.deepEqual(parseMessage({ jsonrpc: "2.0", id: 7, result: null }), {
    kind: "success",
    message: { jsonrpc: "2.0", id: 7, result: null },
  });
  assert.deepEqual(
    parseMessage({ jsonrpc: "2.0", id: null, error: { code: -32700, message: "Parse error" } }),
    {
      kind: "error",
      message: { jsonrpc: "2.0", id: null, error: { code: -32700, message: "Parse error" } },
    },
  );
  assert.deepEqual(parseMessage({ jsonrpc: "2.0", id: 3, error: { code: 5, message: "m", data: [1] } }), {
    kind: "error",
    message: { jsonrpc: "2.0", id: 3, error: { code: 5, message: "m", data: [1] } },
  });
});

Deno.test("parseMessage says why a value is invalid and keeps its id when the id is usable", () => {
  const cases: [unknown, string | number | null, RegExp][] = [
    [[{ jsonrpc: "2.0", method: "m" }], null, /batches are not supported/],
    ["text", null, /expected a JSON object, got a string/],
    [null, null, /got null/],
    [{ id: 4, method: "m" }, 4, /"jsonrpc" must be the string "2.0"/],
    [{ jsonrpc: "1.0", id: 4, method: "m" }, 4, /"jsonrpc"/],
    [{ jsonrpc: "2.0", id: 4, method: 12 }, 4, /"method" must be a string/],
    [{ jsonrpc: "2.0", id: 4, method: "m", params: 3 }, 4, /"params" must be an object or an array/],
    [{ jsonrpc: "2.0", id: 4, method: "m", params: null }, 4, /"params"/],
    [{ jsonrpc: "2.0", id: { x: 1 }, method: "m" }, null, /"id" must be a string, a number or null/],
    [{ jsonrpc: "2.0", id: null, method: "m" }, null, /"id" of a request/],
    [{ jsonrpc: "2.0", id: 4, result: 1, error: { code: 1, message: "" } }, 4, /not both/],
    [{ jsonrpc: "2.0", result: 1 }, null, /"method" \(call\) or "id" \(response\)/],
    [{ jsonrpc: "2.0", id: null, result: 1 }, null, /must not be null/],
    [{ jsonrpc: "2.0", id: 4, error: { code: 1.5, message: "x" } }, 4, /integer "code"/],
    [{ jsonrpc: "2.0", id: 4, error: "bad" }, 4, /"error" must be an object/],
    [{ jsonrpc: "2.0", id: 4 }, 4, /"result" or "error"/],
  ];
  for (const [value, id, reason] of cases) {
    const parsed = parseMessage(value);
    assert.equal(parsed.kind, "invalid", JSON.stringify(value));
    if (parsed.kind !== "invalid") continue;
    assert.equal(parsed.id, id, JSON.stringify(value));
    assert.match(parsed.reason, reason);
  }
});

Deno.test("parseMessage never throws, whatever the value", () => {
  fc.assert(
    fc.property(fc.oneof(fc.anything(), fc.jsonValue()), (value) => {
      const parsed = parseMessage(value);
      assert.ok(["request", "notification", "success", "error", "invalid"].includes(parsed.kind));
    }),
    { numRuns: 2000 },
  );
});

Deno.test("messages built by the make helpers parse back to themselves", () => {
  const id = fc.oneof(fc.integer(), fc.string());
  const params = fc.option(fc.oneof(fc.array(fc.jsonValue()), fc.dictionary(fc.string(), fc.jsonValue())), {
    nil: undefined,
  });
  fc.assert(
    fc.property(id, fc.string(), params, fc.jsonValue(), (id, method, params, result) => {
      const roundTrip = (value: unknown) => parseMessage(JSON.parse(JSON.stringify(value)));
      const request = makeRequest(id, method, params);
      assert.deepEqual(roundTrip(request), { kind: "request", message: JSON.parse(JSON.stringify(request)) });
      const notification = makeNotification(method, params);
      assert.equal(roundTrip(notification).kind, "notification");
      assert.equal(roundTrip(makeSuccessResponse(id, result)).kind, "success");
      assert.equal(roundTrip(makeErrorResponse(id, { code: 1, message: method })).kind, "error");
    }),
    { numRuns: 300 },
  );
});

Deno.test("makeSuccessResponse sends an undefined result as null, because the member is mandatory", () => {
  assert.deepEqual(makeSuccessResponse(1, undefined), { jsonrpc: "2.0", id: 1, result: null });
  assert.ok(!("params" in makeRequest(1, "m")));
  assert.ok(!("params" in makeNotification("m")));
});

Deno.test("RpcError carries code, message and data to and from an error object", () => {
  const error = new RpcError(-32001, "auth failed", { retry: false });
  assert.ok(error instanceof Error);
  assert.equal(error.name, "RpcError");
  assert.deepEqual(error.toErrorObject(), { code: -32001, message: "auth failed", data: { retry: false } });
  assert.deepEqual(new RpcError(5, "no data").toErrorObject(), { code: 5, message: "no data" });
  const back = RpcError.fromErrorObject({ code: 7, message: "m", data: [1] });
  assert.equal(back.code, 7);
  assert.equal(back.message, "m");
  assert.deepEqual(back.data, [1]);
  assert.throws(() => new RpcError(1.5, "x"), RangeError);
});

/**
 * JSON-RPC 2.0 message shapes, the standard error codes and pure validation of decoded JSON values.
 * Nothing here touches a connection: {@linkcode parseMessage} classifies one decoded frame and the
 * `make*` helpers build the objects that `framing.ts` encodes.
 *
 * tls-tunnel does not use JSON-RPC batches: an array on the wire is answered with one
 * {@linkcode INVALID_REQUEST} error response whose id is `null` (see lib/protocol/README.md).
 *
 * @module
 */

/**
 * The error codes JSON-RPC 2.0 defines, plus the RPC layer's own overload code: every use of one goes
 * through this object (or the named constant derived from it below). tls-tunnel's application codes are
 * `ControlErrorCode` in lib/protocol/control.ts.
 */
export const JsonRpcErrorCode = {
  /** Invalid JSON was received (the frame was not UTF-8 JSON). */
  parseError: -32700,
  /** The JSON value is not a valid request object. */
  invalidRequest: -32600,
  /** The method does not exist or has no handler on this peer. */
  methodNotFound: -32601,
  /** The method exists but its params are invalid. */
  invalidParams: -32602,
  /** The handler failed in a way the caller cannot fix. */
  internalError: -32603,
  /** The peer already runs its maximum of concurrent request handlers; retry later. */
  serverOverloaded: -32000,
} as const;

/** Invalid JSON was received (the frame was not UTF-8 JSON). */
export const PARSE_ERROR = JsonRpcErrorCode.parseError;
/** The JSON value is not a valid request object. */
export const INVALID_REQUEST = JsonRpcErrorCode.invalidRequest;
/** The method does not exist or has no handler on this peer. */
export const METHOD_NOT_FOUND = JsonRpcErrorCode.methodNotFound;
/** The method exists but its params are invalid. */
export const INVALID_PARAMS = JsonRpcErrorCode.invalidParams;
/** The handler failed in a way the caller cannot fix. */
export const INTERNAL_ERROR = JsonRpcErrorCode.internalError;

/** Lowest code of the JSON-RPC "implementation-defined server error" range. */
export const SERVER_ERROR_MIN = -32099;
/** Highest code of the JSON-RPC "implementation-defined server error" range. */
export const SERVER_ERROR_MAX = -32000;
/** The peer already runs its maximum of concurrent request handlers; retry later. */
export const SERVER_OVERLOADED = JsonRpcErrorCode.serverOverloaded;

/**
 * Lowest code of tls-tunnel's application errors (authentication failed, ...; see lib/protocol/control.ts).
 * They live in the server-error range, above the RPC layer's own {@linkcode SERVER_OVERLOADED}.
 */
export const APPLICATION_ERROR_MIN = -32099;
/** Highest code of tls-tunnel's application errors. */
export const APPLICATION_ERROR_MAX = -32001;

/** Lowest code the JSON-RPC 2.0 specification reserves for itself. */
const RESERVED_ERROR_MIN = -32768;
/** Highest code the JSON-RPC 2.0 specification reserves for itself. */
const RESERVED_ERROR_MAX = -32000;

/** Whether `code` lies in tls-tunnel's application error range. */
export function isApplicationErrorCode(code: number): boolean {
  return Number.isInteger(code) && code >= APPLICATION_ERROR_MIN && code <= APPLICATION_ERROR_MAX;
}

/** Whether `code` lies in the range the JSON-RPC 2.0 specification reserves (-32768 to -32000). */
export function isReservedErrorCode(code: number): boolean {
  return Number.isInteger(code) && code >= RESERVED_ERROR_MIN && code <= RESERVED_ERROR_MAX;
}

/** A request id. tls-tunnel sends integers; strings are accepted from other implementations. */
export type JsonRpcId = string | number;

/** Request or notification parameters: by-name (object) or by-position (array). */
export type JsonRpcParams = Record<string, unknown> | unknown[];

/** A call that expects a response. */
export interface JsonRpcRequest {
  /** Always `"2.0"`. */
  jsonrpc: "2.0";
  /** Correlates the response with this request. */
  id: JsonRpcId;
  /** Name of the method to invoke. */
  method: string;
  /** Arguments; omitted when the method takes none. */
  params?: JsonRpcParams;
}

/** A call that expects no response. */
export interface JsonRpcNotification {
  /** Always `"2.0"`. */
  jsonrpc: "2.0";
  /** Name of the notification. */
  method: string;
  /** Arguments; omitted when the notification has none. */
  params?: JsonRpcParams;
}

/** The error member of an error response. */
export interface JsonRpcErrorObject {
  /** Integer error code (see the constants of this module). */
  code: number;
  /** One-sentence description, safe to show to the remote user. */
  message: string;
  /** Structured detail, e.g. the invalid params' paths. */
  data?: unknown;
}

/** The answer to a request that succeeded. */
export interface JsonRpcSuccessResponse {
  /** Always `"2.0"`. */
  jsonrpc: "2.0";
  /** The id of the request answered. */
  id: JsonRpcId;
  /** The handler's return value (`null` when it returned nothing). */
  result: unknown;
}

/** The answer to a request that failed, or to a message that could not be read (`id` null). */
export interface JsonRpcErrorResponse {
  /** Always `"2.0"`. */
  jsonrpc: "2.0";
  /** The id of the request answered, or `null` when it could not be determined. */
  id: JsonRpcId | null;
  /** What went wrong. */
  error: JsonRpcErrorObject;
}

/** Any single JSON-RPC 2.0 message. */
export type JsonRpcMessage =
  | JsonRpcRequest
  | JsonRpcNotification
  | JsonRpcSuccessResponse
  | JsonRpcErrorResponse;

/** The classification of one decoded JSON value by {@linkcode parseMessage}. */
export type ParsedMessage =
  | { kind: "request"; message: JsonRpcRequest }
  | { kind: "notification"; message: JsonRpcNotification }
  | { kind: "success"; message: JsonRpcSuccessResponse }
  | { kind: "error"; message: JsonRpcErrorResponse }
  | {
    kind: "invalid";
    /** The id to answer with: the value's id when it was a valid id, else `null`. */
    id: JsonRpcId | null;
    /** Why the value is not a JSON-RPC 2.0 message, for the -32600 response. */
    reason: string;
  };

/**
 * An error with a JSON-RPC code: thrown by handlers to answer with that error, and the rejection of
 * {@linkcode RpcPeer.request} when the remote answered with an error response.
 */
export class RpcError extends Error {
  override name = "RpcError";
  /** Integer JSON-RPC error code. */
  readonly code: number;
  /** Structured detail sent as the error's `data` member (omitted when `undefined`). */
  readonly data: unknown;

  /**
   * @param code integer error code (see the constants of this module)
   * @param message one sentence, safe to show to the remote side
   * @param data optional structured detail; must be JSON-serializable
   */
  constructor(code: number, message: string, data?: unknown, options?: ErrorOptions) {
    super(message, options);
    if (!Number.isInteger(code)) {
      throw new RangeError(`JSON-RPC error codes are integers, got ${code}; use an integer code`);
    }
    this.code = code;
    this.data = data;
  }

  /** The error member of an error response carrying this error. */
  toErrorObject(): JsonRpcErrorObject {
    return this.data === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, data: this.data };
  }

  /** Rebuilds the error received in an error response. */
  static fromErrorObject(error: JsonRpcErrorObject): RpcError {
    return new RpcError(error.code, error.message, error.data);
  }
}

/** Builds a request message; `params` is omitted when `undefined`. */
export function makeRequest(id: JsonRpcId, method: string, params?: JsonRpcParams): JsonRpcRequest {
  return params === undefined ? { jsonrpc: "2.0", id, method } : { jsonrpc: "2.0", id, method, params };
}

/** Builds a notification message; `params` is omitted when `undefined`. */
export function makeNotification(method: string, params?: JsonRpcParams): JsonRpcNotification {
  return params === undefined ? { jsonrpc: "2.0", method } : { jsonrpc: "2.0", method, params };
}

/** Builds a success response; an `undefined` result is sent as `null` (the member is mandatory). */
export function makeSuccessResponse(id: JsonRpcId, result: unknown): JsonRpcSuccessResponse {
  return { jsonrpc: "2.0", id, result: result === undefined ? null : result };
}

/** Builds an error response. */
export function makeErrorResponse(id: JsonRpcId | null, error: JsonRpcErrorObject): JsonRpcErrorResponse {
  return { jsonrpc: "2.0", id, error };
}

/** Whether `value` is a plain JSON object (not an array, not null). */
export function isJsonObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Whether `value` may be used as a request id (string, or a finite number). */
export function isJsonRpcId(value: unknown): value is JsonRpcId {
  return typeof value === "string" || (typeof value === "number" && Number.isFinite(value));
}

/** Whether `value` may be used as params (object or array). */
export function isJsonRpcParams(value: unknown): value is JsonRpcParams {
  return typeof value === "object" && value !== null;
}

/** Whether `value` is a well-formed error member. */
export function isJsonRpcErrorObject(value: unknown): value is JsonRpcErrorObject {
  return isJsonObject(value) && typeof value.code === "number" && Number.isInteger(value.code) &&
    typeof value.message === "string";
}

/**
 * Classifies one decoded JSON value as a request, notification, success or error response, or says
 * why it is none of them. Pure: never throws, whatever the value.
 */
export function parseMessage(value: unknown): ParsedMessage {
  if (Array.isArray(value)) {
    return {
      kind: "invalid",
      id: null,
      reason: "JSON-RPC batches are not supported; send one message per frame",
    };
  }
  if (!isJsonObject(value)) {
    return { kind: "invalid", id: null, reason: `expected a JSON object, got ${describeJsonType(value)}` };
  }
  const hasId = Object.hasOwn(value, "id");
  const id = hasId && isJsonRpcId(value.id) ? value.id : null;
  if (value.jsonrpc !== "2.0") {
    return { kind: "invalid", id, reason: `member "jsonrpc" must be the string "2.0"` };
  }
  if (hasId && value.id !== null && !isJsonRpcId(value.id)) {
    return { kind: "invalid", id: null, reason: `member "id" must be a string, a number or null` };
  }

  if (Object.hasOwn(value, "method")) {
    if (typeof value.method !== "string") {
      return { kind: "invalid", id, reason: `member "method" must be a string` };
    }
    if (Object.hasOwn(value, "params") && !isJsonRpcParams(value.params)) {
      return { kind: "invalid", id, reason: `member "params" must be an object or an array when present` };
    }
    const params = value.params as JsonRpcParams | undefined;
    if (!hasId) return { kind: "notification", message: makeNotification(value.method, params) };
    if (id === null) {
      return { kind: "invalid", id: null, reason: `member "id" of a request must be a string or a number` };
    }
    return { kind: "request", message: makeRequest(id, value.method, params) };
  }

  const hasResult = Object.hasOwn(value, "result");
  const hasError = Object.hasOwn(value, "error");
  if (hasResult && hasError) {
    return { kind: "invalid", id, reason: `a response has "result" or "error", not both` };
  }
  if (!hasId) {
    return { kind: "invalid", id: null, reason: `a message needs "method" (call) or "id" (response)` };
  }
  if (hasResult) {
    if (id === null) {
      return { kind: "invalid", id: null, reason: `member "id" of a success response must not be null` };
    }
    return { kind: "success", message: { jsonrpc: "2.0", id, result: value.result } };
  }
  if (hasError) {
    if (!isJsonRpcErrorObject(value.error)) {
      return {
        kind: "invalid",
        id,
        reason: `member "error" must be an object with an integer "code" and a string "message"`,
      };
    }
    const error: JsonRpcErrorObject = Object.hasOwn(value.error, "data")
      ? { code: value.error.code, message: value.error.message, data: value.error.data }
      : { code: value.error.code, message: value.error.message };
    return { kind: "error", message: makeErrorResponse(id, error) };
  }
  return { kind: "invalid", id, reason: `a message needs "method" (call), "result" or "error" (response)` };
}

/** Names the JSON type of `value` for error messages. */
function describeJsonType(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return `a ${typeof value}`;
}

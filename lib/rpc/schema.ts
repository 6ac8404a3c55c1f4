/**
 * Validation of params and results for `RpcPeer`: the small schema interface a zod schema
 * satisfies, and the conversion of its issues into a bounded -32602 error with `data.issues`.
 *
 * @module
 */

import { INVALID_PARAMS, RpcError } from "./messages.ts";

/** One problem reported by a schema, as found in zod's `error.issues`. */
export interface RpcSchemaIssue {
  /** Where in the value (keys and indexes from the root). */
  path: (string | number)[];
  /** What is wrong there. */
  message: string;
  /** Machine-readable kind of problem, when the schema library gives one. */
  code?: string;
}

/**
 * A validator for params or results. A zod schema (`z.object({...})`) satisfies it; so does anything
 * with a compatible `safeParse`.
 */
export interface RpcSchema<T> {
  /** Validates `value`, returning the parsed data or the issues. */
  safeParse(value: unknown):
    | { success: true; data: T }
    | {
      success: false;
      error: { issues: readonly { path: readonly PropertyKey[]; message: string; code?: string }[] };
    };
}

/** Issues sent in the `data` of a -32602 response, at most. */
const MAX_REPORTED_ISSUES = 20;

/** Returns the params to hand to a handler, or throws -32602 when they do not match `schema`. */
export function validateParams(
  schema: RpcSchema<unknown> | undefined,
  params: unknown,
  method: string,
): unknown {
  if (schema === undefined) return params;
  const parsed = schema.safeParse(params);
  if (parsed.success) return parsed.data;
  // Bounded: a huge invalid array could otherwise yield an error response larger than any frame.
  const issues = toIssues(parsed.error.issues.slice(0, MAX_REPORTED_ISSUES));
  const more = parsed.error.issues.length - issues.length;
  const summary = formatIssues(issues.slice(0, 3)) + (issues.length > 3 || more > 0 ? "; …" : "");
  throw new RpcError(INVALID_PARAMS, `Invalid params for '${method}': ${summary}`, { issues });
}

/** Copies schema issues into plain JSON (symbols in paths become strings). */
export function toIssues(
  issues: readonly { path: readonly PropertyKey[]; message: string; code?: string }[],
): RpcSchemaIssue[] {
  return issues.map((issue) => {
    const path = issue.path.map((key) => (typeof key === "number" ? key : String(key)));
    return issue.code === undefined
      ? { path, message: issue.message }
      : { path, message: issue.message, code: issue.code };
  });
}

/** `a.b[0]: message; c: message` for error messages. */
export function formatIssues(issues: RpcSchemaIssue[]): string {
  return issues
    .map((issue) => {
      const where = issue.path.reduce<string>(
        (text, key) => (typeof key === "number" ? `${text}[${key}]` : text === "" ? key : `${text}.${key}`),
        "",
      );
      return `${where === "" ? "(params)" : where}: ${issue.message}`;
    })
    .join("; ");
}

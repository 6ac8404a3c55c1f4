/**
 * The one mapping from the TOML spelling (snake_case, compatible with the Rust tls-tunnel) to the
 * camelCase the roles use, at the type level and at run time, so a key added to a schema reaches the
 * roles' objects with no further edit.
 *
 * @module
 */

/** `keepalive_interval_secs` → `keepaliveIntervalSecs`. */
export type CamelCase<S extends string> = S extends `${infer Head}_${infer Tail}`
  ? `${Head}${Capitalize<CamelCase<Tail>>}`
  : S;

/**
 * `T` with its keys in camelCase. Optional keys stay optional (the mapping keeps modifiers) but lose
 * `| undefined`: the project builds with `exactOptionalPropertyTypes`, and {@link camelKeys} leaves an
 * absent key absent, never `undefined`.
 */
export type CamelKeys<T> = {
  [K in keyof T as K extends string ? CamelCase<K> : never]: Exclude<T[K], undefined>;
};

/** `keepalive_interval_secs` → `keepaliveIntervalSecs`, the run-time twin of {@link CamelCase}. */
export function camelCase<S extends string>(key: S): CamelCase<S> {
  return key.replace(/_([a-z0-9])/g, (_, letter: string) => letter.toUpperCase()) as CamelCase<S>;
}

/**
 * A table with its keys in camelCase, leaving out the keys named in `omit` (keys accepted only for
 * compatibility) and keys whose value is undefined. One level deep: nested tables are mapped by their
 * own schema.
 */
export function camelKeys<T extends Record<string, unknown>, O extends keyof T & string = never>(
  table: T,
  ...omit: O[]
): CamelKeys<Omit<T, O>> {
  const camel: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(table)) {
    if (value !== undefined && !(omit as string[]).includes(key)) camel[camelCase(key)] = value;
  }
  return camel as CamelKeys<Omit<T, O>>;
}

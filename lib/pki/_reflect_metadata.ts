/**
 * The part of the `reflect-metadata` API that tsyringe (a dependency of `@peculiar/x509` v2) checks for at
 * import time and uses for its dependency injection: `Reflect.defineMetadata`, `getMetadata` and
 * `getOwnMetadata`. Import this module before `@peculiar/x509`; it does nothing when a full polyfill is
 * already installed.
 *
 * Why not the `reflect-metadata` package: these three functions are all that is used, and one fewer
 * dependency to fetch.
 *
 * @module
 */

type MetadataMap = Map<unknown, unknown>;

/** Metadata per target object, then per property key (`undefined` for the object itself). */
const store = new WeakMap<object, Map<PropertyKey | undefined, MetadataMap>>();

function ownMap(target: object, property: PropertyKey | undefined, create: boolean): MetadataMap | undefined {
  let byProperty = store.get(target);
  if (byProperty === undefined) {
    if (!create) return undefined;
    byProperty = new Map();
    store.set(target, byProperty);
  }
  let metadata = byProperty.get(property);
  if (metadata === undefined && create) {
    metadata = new Map();
    byProperty.set(property, metadata);
  }
  return metadata;
}

const reflect = Reflect as unknown as Record<string, unknown>;
if (typeof reflect.getMetadata !== "function") {
  reflect.defineMetadata = (key: unknown, value: unknown, target: object, property?: PropertyKey): void => {
    ownMap(target, property, true)?.set(key, value);
  };
  reflect.getOwnMetadata = (key: unknown, target: object, property?: PropertyKey): unknown =>
    ownMap(target, property, false)?.get(key);
  reflect.getMetadata = (key: unknown, target: object, property?: PropertyKey): unknown => {
    for (let current: object | null = target; current !== null; current = Object.getPrototypeOf(current)) {
      const metadata = ownMap(current, property, false);
      if (metadata?.has(key)) return metadata.get(key);
    }
    return undefined;
  };
}

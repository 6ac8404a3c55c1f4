/**
 * Named plug-ins: a {@linkcode Registry} maps a name from the config or the wire (a transport such as
 * `"tls"`, a proxy kind such as `"tcp"`) to its implementation, and an unknown name fails with a typed
 * error that lists the names known. The transport registry and each role's proxy-kind registry are one
 * each; this file imports nothing, so every folder may use it.
 *
 * @example A registry of greetings
 * ```ts
 * import { Registry, UnknownNameError } from "./registry.ts";
 *
 * const greetings = new Registry<string>("greeting");
 * greetings.register("en", "hello");
 * greetings.get("en"); // "hello"
 * try {
 *   greetings.get("fr");
 * } catch (error) {
 *   if (error instanceof UnknownNameError) console.log(error.known); // ["en"]
 * }
 * ```
 *
 * @module
 */

/** Longest part of an unknown name echoed in the error message (the name may come from a peer). */
const ECHOED_NAME_MAX_CHARS = 64;

/** A name that no plug-in is registered under; the message names the known ones. */
export class UnknownNameError extends Error {
  override name = "UnknownNameError";
  constructor(
    /** What the registry holds, singular ("transport", "proxy kind"). */
    readonly what: string,
    /** The name asked for. */
    readonly requested: string,
    /** The names registered when it was asked for. */
    readonly known: readonly string[],
  ) {
    const shown = JSON.stringify(requested.slice(0, ECHOED_NAME_MAX_CHARS));
    super(
      `Unknown ${what} ${shown}: the ${what}s known are ${
        known.length > 0 ? known.map((name) => JSON.stringify(name)).join(", ") : "(none)"
      }; use one of them`,
    );
  }
}

/** A name registered twice: a programming error, reported at start-up rather than silently replaced. */
export class DuplicateNameError extends Error {
  override name = "DuplicateNameError";
}

/** The constructor of the error a registry throws for an unknown name. */
export type UnknownNameErrorClass = new (requested: string, known: readonly string[]) => UnknownNameError;

/** Plug-ins of one sort by name, in registration order. */
export class Registry<T> {
  readonly #entries = new Map<string, T>();

  constructor(
    /** What the registry holds, singular, for messages ("transport"). */
    readonly what: string,
    /** Thrown for an unknown name; by default an {@linkcode UnknownNameError}. */
    readonly unknownError: UnknownNameErrorClass = class extends UnknownNameError {
      constructor(requested: string, known: readonly string[]) {
        super(what, requested, known);
      }
    },
  ) {}

  /**
   * Adds `value` under `name`; returns a function that removes it again (for tests that register a
   * plug-in of their own).
   *
   * @throws {DuplicateNameError} when `name` is taken
   */
  register(name: string, value: T): () => void {
    if (this.#entries.has(name)) {
      throw new DuplicateNameError(`A ${this.what} named ${JSON.stringify(name)} is already registered`);
    }
    this.#entries.set(name, value);
    return () => {
      if (this.#entries.get(name) === value) this.#entries.delete(name);
    };
  }

  /**
   * The plug-in registered under `name`.
   *
   * @throws {UnknownNameError} (of the registry's class) when none is
   */
  get(name: string): T {
    const value = this.#entries.get(name);
    if (value === undefined) throw new this.unknownError(name, this.names());
    return value;
  }

  /** Whether a plug-in is registered under `name`. */
  has(name: string): boolean {
    return this.#entries.has(name);
  }

  /** The registered names, in registration order. */
  names(): string[] {
    return [...this.#entries.keys()];
  }
}

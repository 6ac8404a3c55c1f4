/**
 * Transport: the byte-stream contract, TLS listeners and dialers, and the copy loop between two
 * connections.
 *
 * @module
 */

export * from "./conn.ts";
export * from "./memory_pair.ts";

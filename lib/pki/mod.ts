/**
 * Certificates: generating a CA and a server certificate (`tls-tunnel cert`, the demo, generated server
 * state), the SHA-256 fingerprints that pin them, reading certificate files as `check` judges them
 * (`inspect.ts`) and whether a key belongs to a certificate (`key_match.ts`). Touches no sockets.
 *
 * @module
 */

export * from "./cert.ts";
export * from "./fingerprint.ts";
export * from "./inspect.ts";
export * from "./key_match.ts";

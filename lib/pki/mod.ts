/**
 * Certificates: generating a CA and a server certificate (`tls-tunnel cert`, the demo, generated server
 * state) and the SHA-256 fingerprints that pin them. Touches no sockets.
 *
 * @module
 */

export * from "./cert.ts";
export * from "./fingerprint.ts";

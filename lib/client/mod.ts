/**
 * The client role: dials the server, registers its proxies, and connects every carried stream to a local
 * service (load balancing, health checks, reconnect with backoff). Imports nothing from `server/`.
 *
 * @module
 */

export * from "./client.ts";

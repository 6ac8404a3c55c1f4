/**
 * The tunnel protocol spoken over one yamux session: the control messages both ways, their error codes,
 * the stream header that opens every carried connection, and the orderly departure (GoAway with a grace
 * period). The specification is `README.md` beside this file. Touches no sockets.
 *
 * @module
 */

export * from "./control.ts";
export * from "./stream_header.ts";
export * from "./leaving.ts";
export * from "./version.ts";
export * from "./proxy_status.ts";
export * from "./convert.ts";

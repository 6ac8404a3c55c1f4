/**
 * The tunnel protocol spoken over one yamux session: the control messages both ways, their error codes,
 * the stream header that opens every carried connection, and the orderly departure (GoAway with a grace
 * period). The specification is `README.md` beside this file. Touches no sockets.
 *
 * | file               | what                                                                         |
 * | ------------------ | ---------------------------------------------------------------------------- |
 * | `control.ts`       | methods, error codes and their data, every message both ways as a zod schema |
 * | `fields.ts`        | the kinds of field those are built from: bounds and character sets           |
 * | `proxy_status.ts`  | `PROXY_STATUSES`, the one list of a proxy's statuses                         |
 * | `convert.ts`       | config shapes ↔ wire shapes (`toProxySpec`, bind retry)                      |
 * | `stream_header.ts` | the header at the start of every data stream                                 |
 * | `open_request.ts`  | the open request/reply of streams the client opens (visitors, forwarders)    |
 * | `version.ts`       | `PROTOCOL_VERSION`                                                           |
 * | `leaving.ts`       | a client's orderly departure (GoAway, grace period)                          |
 *
 * @module
 */

export * from "./control.ts";
export * from "./stream_header.ts";
export * from "./open_request.ts";
export * from "./leaving.ts";
export * from "./version.ts";
export * from "./proxy_status.ts";
export * from "./convert.ts";

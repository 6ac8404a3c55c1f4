/**
 * JSON-RPC 2.0 over the control stream: length-prefixed JSON frames (`framing.ts`), message shapes
 * and error codes (`messages.ts`) and a symmetric peer that calls and serves over any
 * {@linkcode DuplexConn} (`peer.ts`). Touches no sockets.
 *
 * ```ts
 * import { memoryPair } from "../net/memory_pair.ts";
 * import { RpcPeer } from "./mod.ts";
 *
 * const [a, b] = memoryPair();
 * const server = new RpcPeer(a);
 * server.handle("add", (params) => (params as number[]).reduce((x, y) => x + y, 0));
 * const client = new RpcPeer(b);
 * console.log(await client.request<number>("add", [1, 2])); // 3
 * client.close();
 * await Promise.all([client.closed, server.closed]);
 * ```
 *
 * @module
 */

export * from "./framing.ts";
export * from "./messages.ts";
export * from "./peer.ts";

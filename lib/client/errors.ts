/**
 * The client's fatal errors: what ends `TunnelClient.run()` instead of a reconnect. The CLI prints the
 * message and exits 1.
 *
 * @module
 */

/**
 * The server refused this client for a reason retrying cannot fix (wrong key, protocol mismatch, another
 * running copy with the same client_id).
 */
export class FatalClientError extends Error {
  override name = "FatalClientError";
  constructor(message: string, readonly code: number, options?: ErrorOptions) {
    super(message, options);
  }
}

/**
 * The server answered in a shape this client does not know: not a tls-tunnel server, or one speaking
 * another version of the protocol. Fatal: retrying the same server cannot help.
 */
export class MalformedServerAnswerError extends FatalClientError {
  override name = "MalformedServerAnswerError";
  /**
   * @param what the request answered (`authenticate`, `register_proxies`)
   * @param issue the field at fault and what is wrong with it (`client_id: missing`)
   * @param server the server's `host:port`
   */
  constructor(readonly what: string, readonly issue: string, server: string) {
    super(
      `The server at ${server} answered ${what} in an unexpected shape (${issue}); ` +
        `check that server_addr/server_port name a tls-tunnel server of a compatible version`,
      0,
    );
  }
}

/** tls-tunnel's version, reported by `version`, in `authenticate` and in stats. */
export const VERSION = "0.1.0";

/** Version of the control protocol spoken on the control stream (see lib/protocol/README.md). */
export const PROTOCOL_VERSION = 1;

/** tls-tunnel's version, reported by `version`, in `authenticate` and in stats. */
export const VERSION = "0.1.0";

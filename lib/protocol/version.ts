/**
 * The version of the tunnel protocol, sent in `authenticate` and checked by the server (see README.md
 * beside this file, §4.1). Separate from the software's `VERSION`: a release that changes no message keeps
 * it.
 *
 * @module
 */

/** Version of the control protocol spoken on the control stream (README.md §4.1). */
export const PROTOCOL_VERSION = 1;

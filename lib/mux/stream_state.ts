/**
 * A stream's place in yamux's FIN exchange, and its one transition table.
 *
 * The spec's states, and where they went:
 * - init: none; a stream exists only once its SYN is queued (we open) or received (the peer opens).
 * - SYN sent / SYN received / established: all `Open`. The stream behaves the same in each; waiting
 *   for the ACK is the session's bookkeeping (it bounds unacknowledged opens), not the stream's.
 * - local close / remote close / closed: `LocalClose` / `RemoteClose` / `Closed`.
 * - reset: not a state here. A reset (or the session's end) stops the stream in whatever state it is,
 *   and that state still decides answers afterwards (after a session end a read returns end of stream
 *   if the peer's FIN had come, `closeWrite()` resolves if ours was queued), so `Stream` records the
 *   end beside the state.
 *
 * @module
 */

/** Where a stream is in the FIN exchange. */
export const StreamState = {
  /** Both directions open (SYN sent or received; ACKed or not). */
  Open: 0,
  /** Our FIN is queued: we send no more, the peer may. */
  LocalClose: 1,
  /** The peer's FIN arrived: it sends no more, we may. */
  RemoteClose: 2,
  /** FIN both ways: the stream is finished. */
  Closed: 3,
} as const;

/** One of {@linkcode StreamState}'s values. */
export type StreamStateValue = typeof StreamState[keyof typeof StreamState];

/** Which side's FIN: ours (`local`) or the peer's (`remote`). */
export type FinSide = "local" | "remote";

/** The state after a FIN from `side`, by current state; null where that side's FIN came already. */
const AFTER_FIN: Readonly<
  Record<FinSide, readonly [StreamStateValue | null, ...(StreamStateValue | null)[]]>
> = {
  //       Open                     LocalClose           RemoteClose          Closed
  local: [StreamState.LocalClose, null, StreamState.Closed, null],
  remote: [StreamState.RemoteClose, StreamState.Closed, null, null],
};

/** The state after a FIN from `side` in `state`, or null when that side has sent FIN already. */
export function afterFin(state: StreamStateValue, side: FinSide): StreamStateValue | null {
  return AFTER_FIN[side][state] ?? null;
}

/** True once our FIN is queued. */
export function localFinished(state: StreamStateValue): boolean {
  return state === StreamState.LocalClose || state === StreamState.Closed;
}

/** True once the peer's FIN arrived. */
export function remoteFinished(state: StreamStateValue): boolean {
  return state === StreamState.RemoteClose || state === StreamState.Closed;
}

// How often the page polls its queue ticket (GET /v1/queue/{ticket}): the further back the
// fan, the slower, because waiting fans' polls are the largest load of an onsale
// (docs/capacity.md §1). docs/web-page.md states the same rule; change both together.

export const QUEUE_POLL = Object.freeze({
  nearPositions: 10_000, // the last this many places before the gate poll often
  nearMs: 5_000,
  farMs: 30_000, // beyond them, and in the lobby before its draw (position unknown)
  minMs: 1_000, // never sooner, even when the ETA is closer
});

/** Milliseconds until the next poll of a waiting ticket's status (`{position, eta_s}`). */
export function queuePollMs(status) {
  const { position, eta_s: eta } = status;
  const far = position === null || position === undefined || position > QUEUE_POLL.nearPositions;
  const every = far ? QUEUE_POLL.farMs : QUEUE_POLL.nearMs;
  // Near the front, look again around the ETA rather than a whole interval later.
  const due = eta === null || eta === undefined ? every : Math.min(every, eta * 1000);
  return Math.max(QUEUE_POLL.minMs, Math.round(due));
}

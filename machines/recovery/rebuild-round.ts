/**
 * Rounds of the RAM directory rebuild (SPEC.md M14; docs/recovery.md). A
 * round is numbered by its coordinator and carries the coordinator's id, so
 * two coordinators' rounds never tie: rounds are totally ordered, by number
 * first, then by id. A participant follows the highest round it has seen,
 * and every reply names its round, so a late or repeated one never counts
 * for another.
 */
import { compareIds } from '../membership/identity.js';

export type RebuildRound = { n: number; by: string };

/** Negative, zero or positive as `a` is lower than, the same as or higher than `b`. */
export function compareRounds(a: RebuildRound, b: RebuildRound): number {
  if (a.n !== b.n) return a.n < b.n ? -1 : 1;
  return compareIds(a.by, b.by);
}

export function sameRound(a: RebuildRound | null, b: RebuildRound | null): boolean {
  return a !== null && b !== null && compareRounds(a, b) === 0;
}

/** `a` is higher than `b`; everything is higher than no round at all. */
export function isHigherRound(a: RebuildRound, b: RebuildRound | null): boolean {
  return b === null || compareRounds(a, b) > 0;
}

/** M14: the anchors negotiate the rebuild, and the lowest id wins. */
export function coordinatorFor(liveAnchors: readonly string[]): string | undefined {
  let best: string | undefined;
  for (const id of liveAnchors) if (best === undefined || compareIds(id, best) < 0) best = id;
  return best;
}

/** `a/3`: how logs and scenarios write a round. */
export function roundLabel(round: RebuildRound): string {
  return `${round.by}/${round.n}`;
}

/**
 * What a heartbeat monitor announces (M4): the failed set in its pulses, and
 * its horizon, the domain around it that set covers (nodes outside it are
 * unknown, not alive). A monitor is the authority on its own subtree; what
 * it knows of the rest comes from above: from itself, when it is the
 * next level's monitor too, or from the upper monitor it follows while it
 * hears that monitor (the silence rule, heartbeat-member.ts). Without either
 * it knows only its subtree, and says so with its own level as horizon.
 */
import type { NodeDbSnapshot } from '../../bus/messages/index.js';
import { hearsMonitor } from './heartbeat-member.js';
import type { Level, MonitorLevel } from './heartbeat-stack.js';
import { mergeFailed, subtreeFailed } from './heartbeat-view.js';

export interface Announcement {
  /** Short ids failed, as far as the horizon reaches. */
  failed: number[];
  /** The level whose domain (around this node) `failed` covers. */
  horizon: number;
}

/** What the monitor level `l` announces: its own subtree's failures, plus what it knows from above. */
export function announce(db: NodeDbSnapshot, levels: readonly Level[], l: MonitorLevel): Announcement {
  const above = levels[l.level + 1];
  let fromAbove: readonly number[] = [];
  let horizon = l.level;
  if (above?.role === 'monitor') ({ failed: fromAbove, horizon } = announce(db, levels, above));
  else if (above && hearsMonitor(above.actor.getSnapshot())) {
    fromAbove = above.failed;
    horizon = Math.max(l.level, above.horizon);
  }
  return { failed: mergeFailed(ownSubtreeFailed(db, levels, l), fromAbove, l.level, l.domain), horizon };
}

/**
 * The failures under the monitor level `l` (heartbeat-view.ts): from its
 * bitmap, and above level 0 from its slots' reports, where its own slot is
 * the group it transmits for, known first hand from the level below.
 */
export function ownSubtreeFailed(db: NodeDbSnapshot, levels: readonly Level[], l: MonitorLevel): number[] {
  const { alive } = l.actor.getSnapshot().context;
  const below = levels[l.level - 1];
  const reports = below?.role === 'monitor' ? new Map(l.reports).set(l.slot, ownSubtreeFailed(db, levels, below)) : l.reports;
  return subtreeFailed(db, l.level, l.domain, alive, reports);
}

/** What this node, as its group's transmitter, reports up at `level` (>= 1): the failures under the level it monitors below. */
export function reportUp(db: NodeDbSnapshot, levels: readonly Level[], level: number): number[] {
  const below = levels[level - 1];
  return below?.role === 'monitor' ? ownSubtreeFailed(db, levels, below) : [];
}

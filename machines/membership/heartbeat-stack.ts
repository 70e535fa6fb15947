/**
 * A node's heartbeat stack (M4): one level for each domain it takes part in.
 * Level 0 is its group; a node that is monitor of its level-L domain is that
 * domain's transmitter, so a member of level L+1 too, up to the top domain.
 * So every level above 0 stands on a monitor level, and only the last level
 * can be a member. The heartbeat actor keeps the stack and runs each level's
 * machine; the pure reads over it (heartbeat-announce.ts, -redirect.ts,
 * -relay.ts) decide what the protocol says with it.
 */
import type { Actor } from 'xstate';
import type { heartbeatMember } from './heartbeat-member.js';
import type { heartbeatMonitor } from './heartbeat-monitor.js';

export type MemberActor = Actor<typeof heartbeatMember>;
export type MonitorActor = Actor<typeof heartbeatMonitor>;

interface LevelPlace {
  level: number;
  /** This node's level-`level` domain, and its (or its group's) slot there. */
  domain: number;
  slot: number;
  /** The monitors above this level, nearest first: a member's, as its monitor
   * last said; a monitor keeps those it heard as a member. */
  uppers: string[];
}

export interface MemberLevel extends LevelPlace {
  role: 'member';
  actor: MemberActor;
  /** The failed set our monitor announced (for level >= 1, news for the level below). */
  failed: number[];
  /** Level >= 1: the transmitters our monitor hears. */
  peers: string[];
  /** How far our monitor's failed set reaches. */
  horizon: number;
}

export interface MonitorLevel extends LevelPlace {
  role: 'monitor';
  actor: MonitorActor;
  /** Level >= 1: the latest failed-set report of each slot's transmitter. */
  reports: Map<number, number[]>;
}

export type Level = MemberLevel | MonitorLevel;

/** Who monitors `level` as this node knows it: itself, or the monitor its member follows. */
export function monitorAt(levels: readonly Level[], level: number, self: string): string | undefined {
  const l = levels[level];
  if (!l) return undefined;
  return l.role === 'monitor' ? self : l.actor.getSnapshot().context.monitor?.id;
}

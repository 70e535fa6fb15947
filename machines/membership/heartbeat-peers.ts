/**
 * Whom a node's heartbeat talks to at each level (M3, M4). At level 0, the
 * group's nodes, as the node database places them. Above, the slots are
 * level-(L-1) groups and their members are whichever transmitters those
 * groups send, which no node knows for the whole cluster; so they are
 * learned: each slot's natural transmitter (heartbeat-view.ts), the
 * transmitters a monitor says it hears, and the monitors above, which every
 * monitor pulse names so that a newly promoted transmitter knows where to
 * report.
 */
import type { NodeDbSnapshot } from '../../bus/messages/index.js';
import type { SlotMember } from './heartbeat-monitor.js';
import { monitorAt, type Level, type MemberLevel } from './heartbeat-stack.js';
import { naturalTransmitters, nodesUnder } from './heartbeat-view.js';
import { domainAt, slotAt, type Candidate } from './identity.js';
import { findNode } from './node-db.js';

/** Monitors above its level that a monitor pulse names (the schema's bound on `uppers`). */
export const UPPERS_MAX = 4;

/** The level-0 domain's slots: the node database's members of the group. */
export function groupMembers(db: NodeDbSnapshot, domain: number): SlotMember[] {
  return nodesUnder(db, 0, domain).map((n) => ({ slot: slotAt(n.shortId, 0), id: n.id }));
}

/** The monitors of the levels above `level`, nearest first: ours, then those our top member was told of. */
export function uppersOf(levels: readonly Level[], level: number, self: string): string[] {
  const out: string[] = [];
  for (let i = level + 1; i < levels.length; i++) {
    const m = monitorAt(levels, i, self);
    if (m) out.push(m);
  }
  if (levels.length > level + 1) {
    const last = levels[levels.length - 1];
    if (last.role === 'member') out.push(...last.uppers);
  }
  return out.slice(0, UPPERS_MAX);
}

/** The monitor a new member at the next level up starts by following: the nearest upper monitor it heard of. */
export function upperHint(db: NodeDbSnapshot, uppers: readonly string[]): Candidate | undefined {
  const id = uppers[0];
  return id ? { id, anchor: findNode(db, id)?.anchor ?? false } : undefined;
}

/**
 * A new upper monitor's slots: each slot's natural transmitter, overridden
 * by the transmitters the previous monitor heard (all but the one it
 * replaces), as the node database places them.
 */
export function upperMembers(db: NodeDbSnapshot, was: MemberLevel, replaced: string | undefined, preference: readonly string[]): SlotMember[] {
  const bySlot = new Map<number, string>();
  for (const m of naturalTransmitters(db, was.level, was.domain, preference)) bySlot.set(m.slot, m.id);
  for (const id of was.peers) {
    const n = findNode(db, id);
    if (n && id !== replaced && domainAt(n.shortId, was.level) === was.domain) bySlot.set(slotAt(n.shortId, was.level), id);
  }
  return [...bySlot].map(([slot, id]) => ({ slot, id }));
}

/**
 * Who a member's claim goes to: the group's nodes at level 0; above, every
 * slot's natural transmitter, the transmitters our monitor named, and the
 * monitor we were told of as a member below.
 */
export function claimPeers(db: NodeDbSnapshot, levels: readonly Level[], l: MemberLevel, self: string, preference: readonly string[]): string[] {
  if (l.level === 0) return groupMembers(db, l.domain).map((m) => m.id).filter((id) => id !== self);
  const below = levels[l.level - 1];
  const known = new Set([
    ...naturalTransmitters(db, l.level, l.domain, preference).map((m) => m.id),
    ...l.peers,
    ...(below?.uppers.slice(0, 1) ?? []),
  ]);
  known.delete(self);
  return [...known];
}

/**
 * Redirects (M4). A level-L pulse or claim can reach a node that is no longer
 * in level L: the sender last heard it as its group's transmitter, and the
 * group has a new one since. The node answers with `hb.redirect`, naming its
 * own monitor one level down, who is that transmitter or knows it; so stale
 * upper monitors and members find the live ones without any node knowing the
 * whole cluster. The one redirected acts by its role: a monitor takes the
 * named node as that slot's transmitter (heartbeat-monitor.ts, TRANSMITTER),
 * a member that does not hear its monitor claims from it (heartbeat-member.ts,
 * REDIRECT).
 */
import type { Body, NodeDbSnapshot } from '../../bus/messages/index.js';
import type { Level } from './heartbeat-stack.js';
import { domainAt, slotAt } from './identity.js';
import { findNode } from './node-db.js';

/**
 * The answer to a level-`at.level` pulse or claim from `to` that found no
 * level of ours for its domain: only for our own domain at that level, from
 * a node that is a member one level down (so not the transmitter), naming
 * the monitor it follows there, if that is not the sender itself.
 */
export function redirectFor(
  levels: readonly Level[],
  selfShortId: number,
  to: string,
  at: { level: number; domain: number },
): Body<'hb.redirect'> | undefined {
  const { level, domain } = at;
  if (level === 0 || domainAt(selfShortId, level) !== domain) return undefined;
  const below = levels[level - 1];
  if (below?.role !== 'member') return undefined;
  const monitor = below.actor.getSnapshot().context.monitor?.id;
  return monitor && monitor !== to ? { level, domain, monitor } : undefined;
}

/**
 * The level of ours a redirect is about, and the slot its named node holds
 * there; none unless we are in that domain and the node database, not the
 * sender's word, places the named node in it too.
 */
export function redirectedLevel(db: NodeDbSnapshot, levels: readonly Level[], b: Body<'hb.redirect'>): { level: Level; slot: number } | undefined {
  const l = levels[b.level];
  const named = findNode(db, b.monitor);
  if (!l || l.domain !== b.domain || !named || domainAt(named.shortId, b.level) !== b.domain) return undefined;
  return { level: l, slot: slotAt(named.shortId, b.level) };
}

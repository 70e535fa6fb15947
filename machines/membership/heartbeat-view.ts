/**
 * Who is failed, as the hierarchical heartbeat sees it (M4). Each monitor is
 * the authority on its own subtree: a level-0 monitor on its group (from its
 * bitmap), a level-L monitor on its domain (the reports of its live slots'
 * transmitters, and every node under a slot that has gone silent). What a
 * monitor hears from above is trusted only for nodes outside its subtree, so
 * a node that comes back is counted alive by its own monitor at once, without
 * waiting for the news to travel up and down again. Failed sets are short ids.
 */
import type { NodeDbSnapshot, NodeEntry } from '../../bus/messages/index.js';
import { domainAt, MEMBERS_PER_GROUP_MAX, rankCompare } from './identity.js';

const byGroupCache = new WeakMap<NodeDbSnapshot, Map<number, NodeEntry[]>>();

/** The database's nodes by group, computed once per snapshot. */
export function nodesByGroup(db: NodeDbSnapshot): Map<number, NodeEntry[]> {
  let index = byGroupCache.get(db);
  if (!index) {
    index = new Map();
    for (const n of db.nodes) {
      const g = index.get(n.group);
      if (g) g.push(n);
      else index.set(n.group, [n]);
    }
    for (const list of index.values()) list.sort((a, b) => a.shortId - b.shortId);
    byGroupCache.set(db, index);
  }
  return index;
}

/** Every node whose short id falls in the level-L domain `domain`. */
export function nodesUnder(db: NodeDbSnapshot, level: number, domain: number): NodeEntry[] {
  const groups = nodesByGroup(db);
  if (level === 0) return groups.get(domain) ?? [];
  const span = MEMBERS_PER_GROUP_MAX ** level;
  const out: NodeEntry[] = [];
  for (let g = domain * span; g < (domain + 1) * span; g++) {
    const list = groups.get(g);
    if (list) out.push(...list);
  }
  return out;
}

export function inSubtree(shortId: number, level: number, domain: number): boolean {
  return domainAt(shortId, level) === domain;
}

/**
 * Failed short ids under a monitor's domain. At level 0, the nodes whose slot
 * is not alive. At level L >= 1, for each slot (a level-(L-1) domain): if it
 * is alive, what its transmitter reported; if not, every node beneath it.
 */
export function subtreeFailed(
  db: NodeDbSnapshot,
  level: number,
  domain: number,
  alive: readonly boolean[],
  reports: ReadonlyMap<number, readonly number[]>,
): number[] {
  const out: number[] = [];
  if (level === 0) {
    for (const n of nodesUnder(db, 0, domain)) if (!alive[n.shortId % MEMBERS_PER_GROUP_MAX]) out.push(n.shortId);
    return out;
  }
  for (let slot = 0; slot < MEMBERS_PER_GROUP_MAX; slot++) {
    const child = domain * MEMBERS_PER_GROUP_MAX + slot;
    if (alive[slot]) out.push(...(reports.get(slot) ?? []));
    else for (const n of nodesUnder(db, level - 1, child)) out.push(n.shortId);
  }
  return out;
}

/** The cluster-wide failed set a level-L monitor announces: its own subtree, plus news from above about the rest. */
export function mergeFailed(own: readonly number[], fromAbove: readonly number[], level: number, domain: number): number[] {
  const out = new Set(own);
  for (const s of fromAbove) if (!inSubtree(s, level, domain)) out.add(s);
  return [...out].sort((a, b) => a - b);
}

const naturalCache = new WeakMap<NodeDbSnapshot, Map<string, { slot: number; id: string }[]>>();

/**
 * The node each slot of a level-L domain (L >= 1) would send as transmitter
 * if all its nodes were up: the best-ranked node beneath the slot. Claims and
 * first pulses at upper levels go to these, so a new transmitter and a new
 * upper monitor find each other without any node knowing the whole cluster.
 */
export function naturalTransmitters(
  db: NodeDbSnapshot,
  level: number,
  domain: number,
  preference: readonly string[],
): { slot: number; id: string }[] {
  let cache = naturalCache.get(db);
  if (!cache) naturalCache.set(db, (cache = new Map()));
  const key = `${level}:${domain}:${preference.join(',')}`;
  const hit = cache.get(key);
  if (hit) return hit;
  const out: { slot: number; id: string }[] = [];
  for (let slot = 0; slot < MEMBERS_PER_GROUP_MAX; slot++) {
    let best: NodeEntry | undefined;
    for (const n of nodesUnder(db, level - 1, domain * MEMBERS_PER_GROUP_MAX + slot)) {
      if (!best || rankCompare(n, best, preference) < 0) best = n;
    }
    if (best) out.push({ slot, id: best.id });
  }
  cache.set(key, out);
  return out;
}

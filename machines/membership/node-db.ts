/**
 * The node database as data (SPEC.md M2): pure functions over a versioned
 * snapshot. Safety claim: every snapshot these functions return has unique
 * permanent ids, unique short ids, each short id inside its node's group
 * (M1), at most 64 nodes per group, and a version one above the snapshot it
 * was derived from; a change that would break any of this is refused with a
 * typed error, never thrown, because changes arrive from the network.
 * Nodes are kept sorted by permanent id so equal databases are equal
 * byte for byte.
 */
import type { Identity, NdbOp, NodeDbSnapshot, NodeEntry } from '../../bus/messages/index.js';
import { MEMBERS_PER_GROUP_MAX, compareIds, groupOf, shortIdOf } from './identity.js';

/** The most nodes a snapshot may hold: `limits.listItemsMax` of bus/envelope.ts, which a machine may not import. */
export const NODES_MAX = 16_384;

export type NdbErrorCode = 'E_EXISTS' | 'E_UNKNOWN_NODE' | 'E_SHORT_ID_TAKEN' | 'E_BAD_SHORT_ID' | 'E_GROUP_FULL' | 'E_DB_FULL';

export interface NdbError {
  ok: false;
  code: NdbErrorCode;
  reason: string;
}

export type NdbResult<T> = ({ ok: true } & T) | NdbError;

const fail = (code: NdbErrorCode, reason: string): NdbError => ({ ok: false, code, reason });

export function emptyDb(): NodeDbSnapshot {
  return { version: 0, nodes: [] };
}

const byIdCache = new WeakMap<NodeDbSnapshot, Map<string, NodeEntry>>();

/** Looked up on every pulse, so indexed once per snapshot (snapshots are never mutated). */
export function findNode(db: NodeDbSnapshot, id: string): NodeEntry | undefined {
  let index = byIdCache.get(db);
  if (!index) {
    index = new Map(db.nodes.map((n) => [n.id, n]));
    byIdCache.set(db, index);
  }
  return index.get(id);
}

interface Summary {
  anchors: NodeEntry[];
  totalVotes: number;
  maxGroup: number;
}

const summaryCache = new WeakMap<NodeDbSnapshot, Summary>();

/** Asked at every pulse by every node, so computed once per snapshot, not once per call. */
function summary(db: NodeDbSnapshot): Summary {
  let s = summaryCache.get(db);
  if (!s) {
    const anchors = db.nodes.filter((n) => n.anchor);
    s = {
      anchors,
      totalVotes: anchors.reduce((sum, n) => sum + n.votes, 0),
      maxGroup: db.nodes.reduce((max, n) => Math.max(max, n.group), 0),
    };
    summaryCache.set(db, s);
  }
  return s;
}

export function anchorsOf(db: NodeDbSnapshot): readonly NodeEntry[] {
  return summary(db).anchors;
}

/** All configured votes (M5): only anchors vote. */
export function totalVotes(db: NodeDbSnapshot): number {
  return summary(db).totalVotes;
}

/** The highest group number in use; 0 for an empty database. */
export function maxGroup(db: NodeDbSnapshot): number {
  return summary(db).maxGroup;
}

/** The lowest free short id of `group` (M1: 64 slots a group). */
export function nextShortId(db: NodeDbSnapshot, group: number): NdbResult<{ shortId: number }> {
  const taken = new Set(db.nodes.filter((n) => n.group === group).map((n) => n.shortId));
  for (let slot = 0; slot < MEMBERS_PER_GROUP_MAX; slot++) {
    const shortId = shortIdOf(group, slot);
    if (!taken.has(shortId)) return { ok: true, shortId };
  }
  return fail('E_GROUP_FULL', `group ${group} already has ${MEMBERS_PER_GROUP_MAX} members`);
}

const byId = (a: NodeEntry, b: NodeEntry): number => compareIds(a.id, b.id);

const entryOf = (n: NodeEntry): NodeEntry => ({
  id: n.id,
  shortId: n.shortId,
  endpoint: n.endpoint,
  anchor: n.anchor,
  votes: n.votes,
  group: n.group,
  ...(n.pid !== undefined ? { pid: n.pid } : {}),
});

/**
 * Version 1 of a new cluster's database: exactly the configured anchors, the
 * same whatever order they are listed in, so every anchor started from the
 * same configuration builds the same database. Throws on a configuration no
 * database can hold (duplicate ids, a non-anchor, a full group).
 */
export function genesis(anchors: readonly Identity[]): NodeDbSnapshot {
  const sorted = [...anchors].sort((a, b) => compareIds(a.id, b.id));
  let db: NodeDbSnapshot = emptyDb();
  for (const a of sorted) {
    if (!a.anchor) throw new RangeError(`genesis: ${a.id} is not an anchor`);
    if (findNode(db, a.id)) throw new RangeError(`genesis: ${a.id} is listed twice`);
    const slot = nextShortId(db, a.group);
    if (!slot.ok) throw new RangeError(`genesis: ${slot.reason}`);
    db = { version: 0, nodes: [...db.nodes, entryOf({ ...a, shortId: slot.shortId })] };
  }
  return { version: 1, nodes: db.nodes };
}

/** Why `node` cannot sit in `others` (the database without it), if it cannot. */
function placementError(others: readonly NodeEntry[], node: NodeEntry): NdbError | undefined {
  if (groupOf(node.shortId) !== node.group) {
    return fail('E_BAD_SHORT_ID', `short id ${node.shortId} of ${node.id} is not in its group ${node.group}`);
  }
  const holder = others.find((n) => n.shortId === node.shortId);
  if (holder) return fail('E_SHORT_ID_TAKEN', `short id ${node.shortId} is held by ${holder.id}`);
  return undefined;
}

/** One add, change or delete (M2), giving the next version, or why it does not apply. */
export function applyChange(db: NodeDbSnapshot, change: NdbOp): NdbResult<{ db: NodeDbSnapshot }> {
  const version = db.version + 1;
  switch (change.op) {
    case 'add': {
      if (findNode(db, change.node.id)) return fail('E_EXISTS', `node ${change.node.id} is already in the database`);
      if (db.nodes.length >= NODES_MAX) return fail('E_DB_FULL', `the database holds ${NODES_MAX} nodes`);
      const err = placementError(db.nodes, change.node);
      if (err) return err;
      return { ok: true, db: { version, nodes: [...db.nodes, entryOf(change.node)].sort(byId) } };
    }
    case 'change': {
      if (!findNode(db, change.node.id)) return fail('E_UNKNOWN_NODE', `node ${change.node.id} is not in the database`);
      const others = db.nodes.filter((n) => n.id !== change.node.id);
      const err = placementError(others, change.node);
      if (err) return err;
      return { ok: true, db: { version, nodes: [...others, entryOf(change.node)].sort(byId) } };
    }
    case 'delete': {
      if (!findNode(db, change.id)) return fail('E_UNKNOWN_NODE', `node ${change.id} is not in the database`);
      return { ok: true, db: { version, nodes: db.nodes.filter((n) => n.id !== change.id) } };
    }
  }
}

const entryKey = (n: NodeEntry): string =>
  JSON.stringify([n.id, n.shortId, n.endpoint, n.anchor, n.votes, n.group, n.pid ?? null]);

/** Same version and same nodes, in any order: two anchors committed the same database. */
export function sameContents(a: NodeDbSnapshot, b: NodeDbSnapshot): boolean {
  if (a.version !== b.version || a.nodes.length !== b.nodes.length) return false;
  const keys = new Set(a.nodes.map(entryKey));
  return b.nodes.every((n) => keys.has(entryKey(n))) && keys.size === b.nodes.length;
}

/** Whether two changes do the same thing (they may have crossed the wire, so compare fields, not objects). */
export function sameChange(a: NdbOp, b: NdbOp): boolean {
  if (a.op === 'delete' || b.op === 'delete') return a.op === 'delete' && b.op === 'delete' && a.id === b.id;
  return a.op === b.op && entryKey(a.node) === entryKey(b.node);
}

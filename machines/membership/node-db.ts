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
import type { ArenaEntry, Identity, MemberKey, NdbOp, NodeDbSnapshot, NodeEntry } from '../../bus/messages/index.js';
import { MEMBERS_PER_GROUP_MAX, compareIds, groupOf, shortIdOf } from './identity.js';

/** The most nodes a snapshot may hold: `limits.listItemsMax` of bus/envelope.ts, which a machine may not import. */
export const NODES_MAX = 16_384;

export type NdbErrorCode =
  | 'E_EXISTS'
  | 'E_UNKNOWN_NODE'
  | 'E_SHORT_ID_TAKEN'
  | 'E_BAD_SHORT_ID'
  | 'E_GROUP_FULL'
  | 'E_DB_FULL'
  | 'E_UNKNOWN_ARENA'
  | 'E_STALE_GEN'
  | 'E_BAD_REPLICAS'
  | 'E_KEY_TAKEN';

/** Most directory replicas an arena names (the wire's bound). */
export const ARENA_REPLICAS_MAX = 16;

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
  ...(n.epoch !== undefined ? { epoch: n.epoch } : {}),
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
  return withArenas({ version: 1, nodes: db.nodes }, systemArena(db.nodes), 1);
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

/** One add, change, delete, arena hand-over (M2, M8) or member key, giving the next version, or why it does not apply. */
export function applyChange(db: NodeDbSnapshot, change: NdbOp): NdbResult<{ db: NodeDbSnapshot }> {
  const version = db.version + 1;
  switch (change.op) {
    case 'add': {
      if (findNode(db, change.node.id)) return fail('E_EXISTS', `node ${change.node.id} is already in the database`);
      if (db.nodes.length >= NODES_MAX) return fail('E_DB_FULL', `the database holds ${NODES_MAX} nodes`);
      const err = placementError(db.nodes, change.node);
      if (err) return err;
      return { ok: true, db: servedArenaFor({ ...withDerivedArenas(db), version, nodes: [...db.nodes, entryOf(change.node)].sort(byId) }, change.node.id) };
    }
    case 'change': {
      if (!findNode(db, change.node.id)) return fail('E_UNKNOWN_NODE', `node ${change.node.id} is not in the database`);
      const others = db.nodes.filter((n) => n.id !== change.node.id);
      const err = placementError(others, change.node);
      if (err) return err;
      return { ok: true, db: servedArenaFor({ ...withDerivedArenas(db), version, nodes: [...others, entryOf(change.node)].sort(byId) }, change.node.id) };
    }
    case 'delete': {
      if (!findNode(db, change.id)) return fail('E_UNKNOWN_NODE', `node ${change.id} is not in the database`);
      // Its arenas stay: their pages live on, and the PAN hands them to live nodes (docs/recovery.md).
      return { ok: true, db: { ...withDerivedArenas(db), version, nodes: db.nodes.filter((n) => n.id !== change.id) } };
    }
    case 'arena':
      return handOver(db, change);
    case 'arena_replicas':
      return nameReplicas(db, change);
    case 'arena_new': {
      if (!findNode(db, change.member)) return fail('E_UNKNOWN_NODE', `node ${change.member} is not in the database`);
      const derived = withDerivedArenas(db);
      if ((derived.arenas ?? []).some((a) => a.home === change.member && a.arena !== 0)) return fail('E_EXISTS', `node ${change.member} serves an arena already`);
      return { ok: true, db: servedArenaFor({ ...derived, version }, change.member) };
    }
    case 'key':
      return setKey(db, change);
  }
}

// ---- Member keys (docs/security.md): who the cluster lets in ----

const NO_KEYS: readonly MemberKey[] = Object.freeze([]);

/** The member keys of a snapshot, sorted by endpoint: the same array for the same snapshot (callers index it once). */
export function keysOf(db: NodeDbSnapshot): readonly MemberKey[] {
  return db.keys ?? NO_KEYS;
}

/** The key the database gives `endpoint`, if any. */
export function keyAt(db: NodeDbSnapshot, endpoint: string): string | undefined {
  return keysOf(db).find((k) => k.endpoint === endpoint)?.key;
}

/** A key set for an endpoint (a rotation if it had one), or taken away; a key stays at one endpoint. */
function setKey(db: NodeDbSnapshot, change: Extract<NdbOp, { op: 'key' }>): NdbResult<{ db: NodeDbSnapshot }> {
  const keys = keysOf(db);
  const others = keys.filter((k) => k.endpoint !== change.endpoint);
  if (change.key === null) {
    if (others.length === keys.length) return fail('E_UNKNOWN_NODE', `the node database gives ${change.endpoint} no key`);
  } else {
    const holder = others.find((k) => k.key === change.key);
    if (holder) return fail('E_KEY_TAKEN', `that key is already the key of ${holder.endpoint}: each node has a pair of its own`);
    if (keys.length >= NODES_MAX && others.length === keys.length) return fail('E_DB_FULL', `the database holds ${NODES_MAX} keys`);
  }
  const next = change.key === null ? others : [...others, { endpoint: change.endpoint, key: change.key }].sort((a, b) => (a.endpoint < b.endpoint ? -1 : a.endpoint > b.endpoint ? 1 : 0));
  const { keys: _old, ...rest } = withDerivedArenas(db);
  return { ok: true, db: next.length > 0 ? { ...rest, version: db.version + 1, keys: next } : { ...rest, version: db.version + 1 } };
}

/** Live nodes of the database that serve no arena but the system's: each wants a new one to reserve in (`arena_new`). */
export function nodesWithoutArena(db: NodeDbSnapshot, alive: readonly string[]): string[] {
  const arenas = arenasOf(db);
  return db.nodes.map((n) => n.id).filter((id) => alive.includes(id) && !arenas.some((a) => a.home === id && a.arena !== 0));
}

// ---- Arenas (M8, M16): the top of the disk directory ----

/** Arena 0 is the system's (the super-root): at first the anchor with the lowest short id. */
function systemArena(nodes: readonly NodeEntry[]): ArenaEntry[] {
  const first = [...nodes].filter((n) => n.anchor).sort((a, b) => a.shortId - b.shortId)[0];
  return first ? [{ arena: 0, home: first.id, gen: 1, madeFor: first.id }] : [];
}

function withArenas(db: NodeDbSnapshot, arenas: readonly ArenaEntry[], nextArena: number): NodeDbSnapshot {
  let next = nextArena;
  const out = [...arenas];
  for (const n of [...db.nodes].sort(byId)) {
    if (!out.some((a) => a.home === n.id && a.arena !== 0)) out.push({ arena: next++, home: n.id, gen: 1, madeFor: n.id });
  }
  return { ...db, arenas: out.sort((a, b) => a.arena - b.arena), nextArena: next };
}

/**
 * The arenas of a snapshot. One written before arenas moved has none
 * recorded: then arena 0 is at the lowest-short-id anchor and each node's
 * arena is its short id + 1, as the engine placed them then.
 */
export function arenasOf(db: NodeDbSnapshot): readonly ArenaEntry[] {
  return withDerivedArenas(db).arenas ?? [];
}

function withDerivedArenas(db: NodeDbSnapshot): NodeDbSnapshot {
  if (db.arenas !== undefined) return db;
  const arenas = [...systemArena(db.nodes), ...db.nodes.map((n) => ({ arena: n.shortId + 1, home: n.id, gen: 1, madeFor: n.id }))];
  return { ...db, arenas: arenas.sort((a, b) => a.arena - b.arena), nextArena: arenas.reduce((m, a) => Math.max(m, a.arena + 1), 1) };
}

/** The database with an arena for `id` to serve, if it serves none (a new node, or one whose arenas moved while it was away). */
function servedArenaFor(db: NodeDbSnapshot, id: string): NodeDbSnapshot {
  const derived = withDerivedArenas(db);
  const arenas = derived.arenas ?? [];
  if (arenas.some((a) => a.home === id && a.arena !== 0)) return derived;
  const next = derived.nextArena ?? 1;
  return { ...derived, arenas: [...arenas, { arena: next, home: id, gen: 1, madeFor: id }], nextArena: next + 1 };
}

/** `arena` handed to `home`: one generation up, to a node of the database. */
function handOver(db: NodeDbSnapshot, change: Extract<NdbOp, { op: 'arena' }>): NdbResult<{ db: NodeDbSnapshot }> {
  const derived = withDerivedArenas(db);
  const arenas = derived.arenas ?? [];
  const entry = arenas.find((a) => a.arena === change.arena);
  if (!entry) return fail('E_UNKNOWN_ARENA', `arena ${change.arena} is not in the database`);
  if (!findNode(db, change.home)) return fail('E_UNKNOWN_NODE', `node ${change.home} is not in the database`);
  if (change.gen !== entry.gen + 1) return fail('E_STALE_GEN', `arena ${change.arena} is at generation ${entry.gen}; a hand-over takes it to ${entry.gen + 1}, not ${change.gen}`);
  // The new home was a replica (failover picks one); it leaves the list. The old home does not join it.
  const replicas = (entry.replicas ?? []).filter((r) => r !== change.home);
  const moved = arenas.map((a) => (a.arena === change.arena ? withReplicas({ ...a, home: change.home, gen: change.gen }, replicas) : a));
  return { ok: true, db: { ...derived, version: db.version + 1, arenas: moved } };
}

/**
 * `arena`'s directory replicas, as its home at generation `gen` names them:
 * distinct nodes of the database, never the home. A home of an older
 * generation is refused: it no longer speaks for the arena.
 */
function nameReplicas(db: NodeDbSnapshot, change: Extract<NdbOp, { op: 'arena_replicas' }>): NdbResult<{ db: NodeDbSnapshot }> {
  const derived = withDerivedArenas(db);
  const arenas = derived.arenas ?? [];
  const entry = arenas.find((a) => a.arena === change.arena);
  if (!entry) return fail('E_UNKNOWN_ARENA', `arena ${change.arena} is not in the database`);
  if (change.gen !== entry.gen) return fail('E_STALE_GEN', `arena ${change.arena} is at generation ${entry.gen}, not ${change.gen}: its home changed`);
  const distinct = new Set(change.replicas);
  if (distinct.size !== change.replicas.length || distinct.size > ARENA_REPLICAS_MAX) return fail('E_BAD_REPLICAS', `arena ${change.arena}'s replicas must be at most ${ARENA_REPLICAS_MAX} distinct nodes`);
  if (distinct.has(entry.home)) return fail('E_BAD_REPLICAS', `arena ${change.arena}'s home ${entry.home} is not its own replica`);
  const unknown = change.replicas.find((r) => !findNode(db, r));
  if (unknown !== undefined) return fail('E_UNKNOWN_NODE', `node ${unknown} is not in the database`);
  const named = arenas.map((a) => (a.arena === change.arena ? withReplicas(a, change.replicas) : a));
  return { ok: true, db: { ...derived, version: db.version + 1, arenas: named } };
}

/** The entry with `replicas` set, sorted, or without the field when there are none (equal tables stay equal). */
function withReplicas(entry: ArenaEntry, replicas: readonly string[]): ArenaEntry {
  const { replicas: _old, ...rest } = entry;
  return replicas.length > 0 ? { ...rest, replicas: [...replicas].sort() } : rest;
}

/** The nodes holding complete copies of `arena`'s directory besides its home. */
export function replicasOf(db: NodeDbSnapshot, arena: number): readonly string[] {
  return arenaEntryOf(db, arena)?.replicas ?? [];
}

/** The arena entry of `arena`, if it is in the database. */
export function arenaEntryOf(db: NodeDbSnapshot, arena: number): ArenaEntry | undefined {
  let index = arenaCache.get(db);
  if (!index) {
    index = new Map(arenasOf(db).map((a) => [a.arena, a]));
    arenaCache.set(db, index);
  }
  return index.get(arena);
}

const arenaCache = new WeakMap<NodeDbSnapshot, Map<number, ArenaEntry>>();

/** The arenas `id` is responsible for, lowest first. */
export function arenasServedBy(db: NodeDbSnapshot, id: string): ArenaEntry[] {
  return arenasOf(db).filter((a) => a.home === id);
}

/** Where `id` reserves: the arena made for it while it serves it, else the lowest other it serves; none for arena 0 alone. */
export function reservingArena(db: NodeDbSnapshot, id: string): ArenaEntry | undefined {
  const served = arenasServedBy(db, id).filter((a) => a.arena !== 0);
  return served.find((a) => a.madeFor === id) ?? served[0];
}

const entryKey = (n: NodeEntry): string =>
  JSON.stringify([n.id, n.shortId, n.endpoint, n.anchor, n.votes, n.group, n.pid ?? null, n.epoch ?? null]);

const arenaKey = (a: ArenaEntry): string => JSON.stringify([a.arena, a.home, a.gen, a.madeFor, a.replicas ?? []]);

const keysKey = (db: NodeDbSnapshot): string => JSON.stringify(keysOf(db).map((k) => [k.endpoint, k.key]).sort());

/** Same version, same nodes, same arenas and same keys, in any order: two anchors committed the same database. */
export function sameContents(a: NodeDbSnapshot, b: NodeDbSnapshot): boolean {
  if (a.version !== b.version || a.nodes.length !== b.nodes.length) return false;
  if (keysKey(a) !== keysKey(b)) return false;
  const keys = new Set(a.nodes.map(entryKey));
  if (!(b.nodes.every((n) => keys.has(entryKey(n))) && keys.size === b.nodes.length)) return false;
  const arenasA = arenasOf(a).map(arenaKey).sort();
  const arenasB = arenasOf(b).map(arenaKey).sort();
  return arenasA.length === arenasB.length && arenasA.every((k, i) => k === arenasB[i]);
}

/** Whether two changes do the same thing (they may have crossed the wire, so compare fields, not objects). */
export function sameChange(a: NdbOp, b: NdbOp): boolean {
  switch (a.op) {
    case 'delete':
      return b.op === 'delete' && a.id === b.id;
    case 'arena':
      return b.op === 'arena' && a.arena === b.arena && a.home === b.home && a.gen === b.gen;
    case 'arena_replicas':
      return b.op === 'arena_replicas' && a.arena === b.arena && a.gen === b.gen && a.replicas.join() === b.replicas.join();
    case 'arena_new':
      return b.op === 'arena_new' && a.member === b.member;
    case 'key':
      return b.op === 'key' && a.endpoint === b.endpoint && a.key === b.key;
    default:
      return (b.op === 'add' || b.op === 'change') && a.op === b.op && entryKey(a.node) === entryKey(b.node);
  }
}

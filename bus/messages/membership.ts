/**
 * Membership's message bodies: `hb.` heartbeat (M3, M4), `ndb.` node
 * database (M2), `pan.` primary anchor election (M16), and the records they
 * carry (node entries, snapshots, quorum state, ballots).
 */
import { z } from 'zod';
import { limits } from '../envelope.js';
import { count, endpoint, id, list, shortId } from './schema.js';

/** One node of the node database (M2). */
export const nodeEntry = z.object({
  id,
  shortId,
  endpoint,
  anchor: z.boolean(),
  votes: z.number().int().nonnegative().max(1000),
  group: z.number().int().nonnegative().max(2 ** 24),
  /** The process of the node's current incarnation, for operators (`status`). */
  pid: count.optional(),
  /** The node's incarnation (M1: bumped at every start). A new one means the old one failed: its RAM is gone. */
  epoch: count.optional(),
});
export type NodeEntry = z.infer<typeof nodeEntry>;

/** A node as it introduces itself, before it has a short id. */
export const identity = nodeEntry.omit({ shortId: true });
export type Identity = z.infer<typeof identity>;

/**
 * One arena of the address space and the node responsible for it (M8, M16):
 * the top of the disk directory, kept in the node database so it changes
 * only by a quorum-committed update and every node has a copy.
 */
export const arenaEntry = z.object({
  /** The high 64 bits of the arena's addresses; handed out once, never reused. */
  arena: count,
  /** The node responsible for the arena now: its pages' home. */
  home: id,
  /** Raised by every change of `home`, so a message from an older home is recognised (fencing). */
  gen: count,
  /** The node the arena was made for (it reserves there while it is the home). */
  madeFor: id,
  /**
   * Nodes that hold a complete copy of the arena's directory pages besides
   * the home (M8, M15): every acknowledged directory change is on each of
   * them, so any one of them can take the arena over. Absent: none.
   */
  replicas: list(id).max(16).optional(),
});
export type ArenaEntry = z.infer<typeof arenaEntry>;

/** A CURVE public key as ZeroMQ writes it: 40 characters of the Z85 alphabet (bus/transport/curve.ts checks it in full). */
export const publicKey = z.string().regex(/^[0-9a-zA-Z.\-:+=^!/*?&<>()[\]{}@%$#]{40}$/, 'a CURVE public key: 40 Z85 characters');

/**
 * A member key (SPEC M2, docs/security.md): the node at `endpoint` holds the
 * key's secret. Kept in the node database so every node lets it in and dials
 * it with that key, and a change needs a quorum-committed update; a node's
 * config `peers` may name keys too (they are let in besides these).
 */
export const memberKey = z.object({ endpoint, key: publicKey });
export type MemberKey = z.infer<typeof memberKey>;

export const nodeDbSnapshot = z.object({
  version: count,
  nodes: list(nodeEntry),
  /** Sorted by arena. Absent in snapshots written before arenas moved (derived then, node-db.ts `arenasOf`). */
  arenas: list(arenaEntry).optional(),
  /** The next arena number to hand out. */
  nextArena: count.optional(),
  /** Member keys, sorted by endpoint, one per endpoint and each key at one endpoint. Absent: none (snapshots from before, or keys from configs only). */
  keys: list(memberKey).optional(),
});
export type NodeDbSnapshot = z.infer<typeof nodeDbSnapshot>;

export const panClaim = z.object({ id, term: count });

/** A node's state (M6) that is not normal, as pulses carry it. */
const nodeStateName = z.enum(['notified', 'quiescent', 'rebuilding']);

/** Quorum state with what is left of its lifetime, so relays never extend it (M5). */
const quorumState = z.object({ has: z.boolean(), ttlMs: count.max(24 * 3600 * 1000) });
export type QuorumState = z.infer<typeof quorumState>;
export type PanRef = z.infer<typeof panClaim>;

export const ndbOp = z.discriminatedUnion('op', [
  z.object({ op: z.literal('add'), node: nodeEntry }),
  z.object({ op: z.literal('change'), node: nodeEntry }),
  z.object({ op: z.literal('delete'), id }),
  /** Hands `arena` to `home` at generation `gen` (one above the current). */
  z.object({ op: z.literal('arena'), arena: count, home: id, gen: count }),
  /** Names the nodes holding complete copies of `arena`'s directory, asked for by its home at generation `gen`. */
  z.object({ op: z.literal('arena_replicas'), arena: count, gen: count, replicas: list(id).max(16) }),
  /** Gives `member`, which serves no arena (its own was handed over while it was counted out, and it lives on), a new one to reserve in. */
  z.object({ op: z.literal('arena_new'), member: id }),
  /** Lets the node at `endpoint` in with `key` (replacing the key it had: a rotation), or with null takes its key away (a revocation). */
  z.object({ op: z.literal('key'), endpoint, key: publicKey.nullable() }),
]);
export type NdbOp = z.infer<typeof ndbOp>;

/** A node-database update attempt's rank: higher rounds win; `by` (node id and
 * epoch) makes every coordinator's ballots distinct, even across restarts. */
export const ballot = z.object({ round: count, by: z.string().min(1).max(limits.idCharsMax + 16) });
export type Ballot = z.infer<typeof ballot>;

export const membershipBodies = {
  // Heartbeat (M3, M4). `level` 0 is a group of nodes; level L+1 is a group of
  // level-L groups, whose members are those groups' transmitters.
  'hb.member_pulse': z.object({
    level: z.number().int().min(0).max(4),
    domain: count,
    /** The sender's slot in the domain's bitmap (so a trace reads without the node database). */
    slot: z.number().int().min(0).max(63),
    dbVersion: count,
    /** Quorum as an anchor computed it (M5): this member, or one below it in the hierarchy. */
    quorum: quorumState.optional(),
    pan: panClaim.optional(),
    /** Level 0: the newest rebuild round (M14) the sender finished; absent for none. */
    rr: count.optional(),
    /** Level 0: the sender's state (M6) when it is not normal. */
    ns: nodeStateName.optional(),
    /** Level >= 1: short ids failed inside the transmitter's own subtree. */
    failed: list(shortId).optional(),
  }),
  'hb.monitor_pulse': z.object({
    level: z.number().int().min(0).max(4),
    domain: count,
    dbVersion: count,
    /** Bit i set: slot i of the domain is alive. */
    bitmap: z.custom<Uint8Array>((b) => b instanceof Uint8Array, 'bitmap must be bytes').refine((b) => b.byteLength === 8, 'bitmap is 8 bytes'),
    /** Short ids known failed anywhere in the cluster, as this monitor knows it. */
    failed: list(shortId),
    /** How far that knowledge reaches: the monitor's level-`horizon` domain. Nodes
     * outside it are unknown, not alive (an upper level not yet formed or silent). */
    horizon: z.number().int().min(0).max(4),
    quorum: quorumState.optional(),
    pan: panClaim.optional(),
    /** Level 0: the newest rebuild round (M14) the sender finished; absent for none. */
    rr: count.optional(),
    /** Level 0: the members (by slot) whose state (M6) is not normal, as their pulses said, the monitor's own too. */
    states: z.array(z.object({ slot: z.number().int().min(0).max(63), ns: nodeStateName })).max(64).optional(),
    /** Monitors of the levels above this one, nearest first, so a member
     * promoted to monitor knows where to transmit its group's report. */
    uppers: list(id).max(4).optional(),
    /** Level >= 1: the transmitters this monitor hears, so a member can claim
     * the role among them when the monitor falls silent. */
    members: list(id).max(64).optional(),
  }),
  'hb.claim': z.object({ level: z.number().int().min(0).max(4), domain: count }),
  /** Answer to a level-L pulse or claim sent to a node that is not in level L:
   * "my group's transmitter is `monitor`", so stale upper monitors find the live ones. */
  'hb.redirect': z.object({ level: z.number().int().min(1).max(4), domain: count, monitor: id }),

  // Node database (M2).
  'ndb.hello': z.object({ identity, dbVersion: count }),
  'ndb.welcome': z.object({ identity, dbVersion: count, db: nodeDbSnapshot.optional() }),
  'ndb.join': z.object({ identity }),
  'ndb.joined': z.object({ db: nodeDbSnapshot }),
  // One update per version, ordered by ballots (single-decree Paxos): a
  // coordinator first gathers promises, re-proposes any change a majority
  // may already have accepted, then asks anchors to accept, then commits.
  'ndb.prepare': z.object({ version: count, ballot }),
  'ndb.promise': z.object({
    version: count,
    ballot,
    ok: z.boolean(),
    /** The answering anchor's committed version. */
    have: count,
    /** On refusal: the ballot this anchor has promised. */
    promised: ballot.optional(),
    /** A change this anchor accepted for `version` under an earlier ballot. */
    accepted: z.object({ ballot, change: ndbOp }).optional(),
    reason: z.string().max(200).optional(),
  }),
  'ndb.accept': z.object({ version: count, ballot, change: ndbOp }),
  'ndb.accepted': z.object({
    version: count,
    ballot,
    ok: z.boolean(),
    have: count,
    promised: ballot.optional(),
    reason: z.string().max(200).optional(),
  }),
  /** The change chosen for `version`: every anchor applies it on top of version - 1. */
  'ndb.commit': z.object({ version: count, change: ndbOp }),
  /**
   * From a node to itself (Transport.loop): run this update from here. The
   * memory engine asks for node-database updates this way (the PAN naming
   * an arena's directory replicas, M16), so the request is an input a trace
   * records and a replay feeds, though the engine's own traffic is not.
   */
  'ndb.propose': z.object({ change: ndbOp, ticket: count }),
  'ndb.fetch': z.object({}),
  'ndb.snapshot': z.object({ db: nodeDbSnapshot }),

  // Primary anchor node election (M16).
  'pan.claim': z.object({ term: count }),
  'pan.vote': z.object({ term: count, granted: z.boolean() }),
  'pan.elected': z.object({ term: count }),
} as const;

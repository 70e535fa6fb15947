/**
 * The node-database element's rules of turn (SPEC.md M2), as pure functions:
 * whether a node's entry is current, which anchor a joining node asks next,
 * what an anchor changes for a node that asked to join, what it does with an
 * update once its coordinator has concluded (finish it, try again at once,
 * or back off and retry), how long it backs off, and whom it asks for a
 * newer version. The actor (actors/membership/node-db.ts) holds the queue
 * and the callers' promises; these decide. Randomness comes in as an
 * argument (the node's seeded or crypto source), so a simulated run stays a
 * pure function of its seed.
 *
 * Claim: an update is tried at most ATTEMPTS_MAX times, and only outcomes
 * that another try can change (a higher ballot, a version decided
 * elsewhere, lost messages) are retried; anchors that collide back off for
 * a random one to three periods, so the ballots of their next tries rarely
 * meet again (arbitration itself is by ballot, node-db-coordinator.ts).
 */
import type { Random } from '../../bus/clock.js';
import type { Identity, NdbOp, NodeDbSnapshot, NodeEntry } from '../../bus/messages/index.js';
import type { NdbUpdateErrorCode, NdbUpdateOutput } from './node-db-coordinator.js';
import { findNode, nextShortId } from './node-db.js';

/** Updates waiting for their turn on this coordinator. */
export const QUEUE_MAX = 256;
/** Tries of one update before it is given up (busy or lagging subordinates, lost messages). */
export const ATTEMPTS_MAX = 12;
/** Outcomes that pass: a higher ballot, a version decided elsewhere, lost messages. */
export const RETRIED: readonly NdbUpdateErrorCode[] = ['E_BUSY', 'E_STALE', 'E_TIMEOUT'];

/** What an update is for: a node that asked to join (its entry is computed when its turn comes) or an explicit change. */
export type Intent = { join: Identity } | { change: NdbOp };

/** Whether the database's entry for a node says what the node says of itself (a restart brings a new pid). */
export function entryIsCurrent(have: NodeEntry | undefined, who: Identity): boolean {
  return (
    have !== undefined &&
    have.endpoint === who.endpoint &&
    have.anchor === who.anchor &&
    have.votes === who.votes &&
    have.group === who.group &&
    have.pid === who.pid &&
    have.epoch === who.epoch
  );
}

/**
 * The anchor a joining node asks on its `turn`-th try: each in turn, so one
 * that is down or partitioned away costs a period, not the join. Undefined
 * when the database names no anchor but the node itself.
 */
export function joinTarget(anchors: readonly NodeEntry[], turn: number): NodeEntry | undefined {
  return anchors[turn % Math.max(1, anchors.length)];
}

/**
 * What an update at the head of the queue should change in `db` now, or its
 * result when there is nothing to change. A join keeps the node's short id
 * when its group is unchanged, so pages homed by that id stay where they are.
 */
export function changeFor(db: NodeDbSnapshot, intent: Intent): NdbOp | NdbUpdateOutput {
  if ('change' in intent) return intent.change;
  const who = intent.join;
  const have = findNode(db, who.id);
  if (have && entryIsCurrent(have, who)) return { ok: true, version: db.version, change: { op: 'change', node: have }, own: true };
  if (have && have.group === who.group) return { op: 'change', node: { ...who, shortId: have.shortId } };
  const slot = nextShortId(have ? { ...db, nodes: db.nodes.filter((n) => n.id !== who.id) } : db, who.group);
  if (!slot.ok) return { ok: false, code: slot.code, reason: slot.reason };
  return have ? { op: 'change', node: { ...who, shortId: slot.shortId } } : { op: 'add', node: { ...who, shortId: slot.shortId } };
}

export type RetriedCode = Extract<NdbUpdateOutput, { ok: false }>['code'];

/** What becomes of an update whose coordinator has concluded. */
export type Conclusion =
  | { then: 'finish' }
  /** Another anchor's change took the version: ours waits for the next one, at once. */
  | { then: 'again'; code: 'E_BUSY' }
  /** Retry after a random pause; learn the ballot round that outbid us, fetch the version decided elsewhere. */
  | { then: 'backoff'; code: RetriedCode; round?: number; fetch: boolean };

export function conclusionOf(out: NdbUpdateOutput): Conclusion {
  if (out.ok && !out.own) return { then: 'again', code: 'E_BUSY' };
  if (out.ok || !RETRIED.includes(out.code)) return { then: 'finish' };
  return { then: 'backoff', code: out.code, round: out.round, fetch: out.code === 'E_STALE' };
}

/** The pause before a retry, in periods, from a draw in [0, 1): one to three periods. */
export function backoffPeriods(draw: number): number {
  return 1 + draw * 2;
}

/** The next try of an update that has had `attempts` (before this one), or its final result once they run out. */
export function nextTry(
  attempts: number,
  code: RetriedCode,
  now: number,
  pauseMs: number,
): { attempts: number } & ({ notBefore: number } | { out: NdbUpdateOutput }) {
  const tried = attempts + 1;
  if (tried >= ATTEMPTS_MAX) return { attempts: tried, out: { ok: false, code, reason: `gave up after ${tried} tries (${code})` } };
  return { attempts: tried, notBefore: now + pauseMs };
}

/** A fetch at most once a period: a burst of pulses naming a newer version asks once. */
export function fetchIsDue(now: number, lastFetchAt: number, periodMs: number): boolean {
  return now - lastFetchAt >= periodMs;
}

/**
 * Whom to ask for a newer version: the node that named it when that is an
 * anchor (`from`), else the first anchor the heartbeat counts alive, else
 * one at random (one draw, made only then). `anchors` leaves this node out.
 */
export function fetchTarget(
  from: string | undefined,
  anchors: readonly NodeEntry[],
  alive: ReadonlySet<string>,
  random: Pick<Random, 'int'>,
): string | undefined {
  return from ?? (anchors.find((a) => alive.has(a.id)) ?? anchors[random.int(anchors.length)])?.id;
}

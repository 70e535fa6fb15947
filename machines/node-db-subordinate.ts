/**
 * The node-database lock every anchor holds (SPEC.md M2): the subordinate
 * half of an update, and the anchor's own lock when it coordinates one.
 * Safety claim: an anchor holds at most one lock at a time, locks only for
 * version `db.version + 1` with a change that applies to its `db`, and
 * changes its `db` only by committing the change it holds locked for the
 * lock holder, or by adopting a whole snapshot of a higher version.
 * Together with the coordinator's majority rule this gives "no two anchors
 * commit different contents under one version", PROVIDED a lock outlives
 * its coordinator's decision: the actor must set `lockTimeoutMs` above the
 * coordinator's `timeoutMs` plus the longest message delay. The lock times
 * out only so that a coordinator's crash cannot block updates for ever
 * (the patent's subordinates simply refuse a second update meanwhile).
 *
 * Emits `send` (`ndb.prepared`), `{ type: 'begin', ok, reason? }` answering
 * BEGIN_LOCAL, `{ type: 'committed', db }` and `{ type: 'adopted', db }` (the
 * actor persists `db` on either), and `{ type: 'released', version, why }`
 * when a lock ends without a commit.
 */
import { assign, emit, enqueueActions, setup, type SnapshotFrom } from 'xstate';
import type { NdbOp, NodeDbSnapshot } from '../bus/messages.js';
import { applyChange } from './node-db.js';
import { sendTo, type SendOut } from './outbox.js';

export const machineName = 'node-db-subordinate';

export interface NdbLock {
  /** The anchor coordinating the update; `self` for a BEGIN_LOCAL lock. */
  coordinator: string;
  version: number;
  change: NdbOp;
}

export interface NdbSubordinateContext {
  self: string;
  /** The committed database, as persisted. */
  db: NodeDbSnapshot;
  lock: NdbLock | undefined;
  lockTimeoutMs: number;
}

export interface NdbSubordinateInput {
  self: string;
  /** The database as loaded from disk (or `genesis`). */
  db: NodeDbSnapshot;
  lockTimeoutMs: number;
}

export type NdbSubordinateEvent =
  | { type: 'PREPARE'; from: string; version: number; change: NdbOp }
  | { type: 'COMMIT'; from: string; version: number }
  | { type: 'ABORT'; from: string; version: number }
  | { type: 'BEGIN_LOCAL'; version: number; change: NdbOp }
  | { type: 'END_LOCAL'; commit: boolean }
  | { type: 'ADOPT'; db: NodeDbSnapshot };

export type NdbSubordinateEmitted =
  | SendOut
  | { type: 'begin'; ok: boolean; reason?: string }
  | { type: 'committed'; db: NodeDbSnapshot }
  | { type: 'adopted'; db: NodeDbSnapshot }
  | { type: 'released'; version: number; why: 'abort' | 'timeout' };

/** `ndb.prepared` reasons are free text; these two are the ones a coordinator acts on. */
export const REASON_BUSY = 'busy';
export const REASON_STALE = 'stale';
const reasonCharsMax = 200;

/** Why this anchor cannot lock for `version`/`change` now, or undefined when it can. */
export function refusal(context: NdbSubordinateContext, version: number, change: NdbOp): string | undefined {
  if (context.lock) return REASON_BUSY;
  if (version !== context.db.version + 1) return REASON_STALE;
  const applied = applyChange(context.db, change);
  return applied.ok ? undefined : `${applied.code}: ${applied.reason}`.slice(0, reasonCharsMax);
}

const sameOp = (a: NdbOp, b: NdbOp): boolean => JSON.stringify(a) === JSON.stringify(b);

/** Whether the lock held is exactly the one this PREPARE asks for. */
function holdsPrepared(context: NdbSubordinateContext, event: NdbSubordinateEvent & { type: 'PREPARE' }): boolean {
  const held = context.lock;
  return (
    held !== undefined &&
    held.coordinator === event.from &&
    held.version === event.version &&
    sameOp(held.change, event.change)
  );
}

type Ctx = { context: NdbSubordinateContext; event: NdbSubordinateEvent };

function lockRequest({ context, event }: Ctx): NdbLock | undefined {
  if (event.type === 'PREPARE') return { coordinator: event.from, version: event.version, change: event.change };
  if (event.type === 'BEGIN_LOCAL') return { coordinator: context.self, version: event.version, change: event.change };
  return undefined;
}

export const ndbSubordinateMachine = setup({
  types: {
    context: {} as NdbSubordinateContext,
    input: {} as NdbSubordinateInput,
    events: {} as NdbSubordinateEvent,
    emitted: {} as NdbSubordinateEmitted,
  },
  actions: {
    lock: assign({ lock: (a) => lockRequest(a) }),
    unlock: assign({ lock: undefined }),
    answerPrepare: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'PREPARE') return;
      // A retransmitted PREPARE of the update we hold is answered again, not called busy.
      const reason = holdsPrepared(context, event) ? undefined : refusal(context, event.version, event.change);
      enqueue.emit(
        sendTo(event.from, 'ndb.prepared', {
          version: event.version,
          ok: reason === undefined,
          have: context.db.version,
          ...(reason === undefined ? {} : { reason }),
        }),
      );
    }),
    answerBegin: emit(({ context, event }) => {
      const reason = event.type === 'BEGIN_LOCAL' ? refusal(context, event.version, event.change) : REASON_BUSY;
      return reason === undefined
        ? { type: 'begin' as const, ok: true }
        : { type: 'begin' as const, ok: false, reason };
    }),
    commitHeld: enqueueActions(({ context, enqueue }) => {
      if (!context.lock) return;
      // Checked when locked, and `db` cannot change while locked.
      const applied = applyChange(context.db, context.lock.change);
      if (!applied.ok) return;
      enqueue.assign({ db: applied.db });
      enqueue.emit({ type: 'committed', db: applied.db });
    }),
    announceAbort: emit(({ context }) => ({ type: 'released' as const, version: context.lock?.version ?? 0, why: 'abort' as const })),
    announceTimeout: emit(({ context }) => ({ type: 'released' as const, version: context.lock?.version ?? 0, why: 'timeout' as const })),
    adopt: enqueueActions(({ event, enqueue }) => {
      if (event.type !== 'ADOPT') return;
      enqueue.assign({ db: event.db });
      enqueue.emit({ type: 'adopted', db: event.db });
    }),
  },
  guards: {
    mayLock: (a) => {
      const req = lockRequest(a);
      return req !== undefined && refusal(a.context, req.version, req.change) === undefined;
    },
    isFromHolder: ({ context, event }) =>
      (event.type === 'COMMIT' || event.type === 'ABORT') &&
      context.lock !== undefined &&
      context.lock.coordinator === event.from &&
      context.lock.version === event.version,
    holdsLocalToCommit: ({ context, event }) =>
      event.type === 'END_LOCAL' && event.commit && context.lock?.coordinator === context.self,
    holdsLocalToRelease: ({ context, event }) =>
      event.type === 'END_LOCAL' && !event.commit && context.lock?.coordinator === context.self,
    isNewerDb: ({ context, event }) => event.type === 'ADOPT' && event.db.version > context.db.version,
  },
  delays: {
    lockTimeout: ({ context }) => context.lockTimeoutMs,
  },
}).createMachine({
  id: machineName,
  context: ({ input }) => ({ self: input.self, db: input.db, lock: undefined, lockTimeoutMs: input.lockTimeoutMs }),
  initial: 'idle',
  states: {
    idle: {
      on: {
        PREPARE: [{ guard: 'mayLock', target: 'locked', actions: ['lock', 'answerPrepare'] }, { actions: 'answerPrepare' }],
        BEGIN_LOCAL: [{ guard: 'mayLock', target: 'locked', actions: ['answerBegin', 'lock'] }, { actions: 'answerBegin' }],
        ADOPT: { guard: 'isNewerDb', actions: 'adopt' },
        // COMMIT, ABORT, END_LOCAL without a lock: late or repeated, nothing to do.
      },
    },
    locked: {
      // The coordinator may have died; see the timing proviso above.
      after: { lockTimeout: { target: 'idle', actions: ['announceTimeout', 'unlock'] } },
      on: {
        PREPARE: { actions: 'answerPrepare' },
        BEGIN_LOCAL: { actions: 'answerBegin' },
        COMMIT: { guard: 'isFromHolder', target: 'idle', actions: ['commitHeld', 'unlock'] },
        ABORT: { guard: 'isFromHolder', target: 'idle', actions: ['announceAbort', 'unlock'] },
        END_LOCAL: [
          { guard: 'holdsLocalToCommit', target: 'idle', actions: ['commitHeld', 'unlock'] },
          { guard: 'holdsLocalToRelease', target: 'idle', actions: ['announceAbort', 'unlock'] },
        ],
        // ADOPT is not taken while locked: the update in flight was checked
        // against the current `db`; the actor offers the snapshot again later.
      },
    },
  },
});

export type NdbSubordinateSnapshot = SnapshotFrom<typeof ndbSubordinateMachine>;

/** The committed database, for the actor to serve `ndb.fetch` and fill pulses' `dbVersion`. */
export function committedDb(snapshot: NdbSubordinateSnapshot): NodeDbSnapshot {
  return snapshot.context.db;
}

/** The update this anchor holds locked, if any. */
export function heldLock(snapshot: NdbSubordinateSnapshot): NdbLock | undefined {
  return snapshot.context.lock;
}

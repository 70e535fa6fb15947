/**
 * Node database, subordinate anchor (SPEC.md M2).
 *
 * Safety claim: two anchors never commit different contents under one
 * version. Each version is decided once, by ballots (single-decree Paxos): a
 * subordinate promises a ballot only if it is higher than every ballot it
 * has promised for that version, accepts a change only under a ballot it has
 * not promised away, and reports what it accepted, so a later coordinator
 * re-proposes any change a majority may have accepted. Promises and accepts
 * are persisted before they are answered (the `persist` output), so a
 * restarted anchor keeps its word. A commit applies the chosen change on top
 * of the previous version; a subordinate further behind fetches a snapshot.
 *
 * Only one update is decided at a time: promises and accepts are for the next
 * version only, and a coordinator outbid by a higher ballot backs off.
 *
 * Emits: `send` (`ndb.promise`, `ndb.accepted` answers), `persist` (the
 * promise and accept to store before anything is sent), `committed {db}`,
 * `adopted {db}`, `behind {version}` (a commit or prepare from a version this
 * anchor does not have yet: fetch a snapshot).
 */
import { assertEvent, enqueueActions, setup, type SnapshotFrom } from 'xstate';
import type { Ballot, NdbOp, NodeDbSnapshot } from '../../bus/messages/index.js';
import { applyChange } from './node-db.js';
import { sendTo, type SendOut } from '../outbox.js';

export const machineName = 'node-db-subordinate';

/** What a subordinate has promised and accepted for the version after its own. */
export interface AcceptorState {
  /** The version these belong to: always db.version + 1 while set. */
  version: number;
  promised?: Ballot;
  accepted?: { ballot: Ballot; change: NdbOp };
}

export interface NdbSubordinateContext {
  self: string;
  /** The committed database, as persisted. */
  db: NodeDbSnapshot;
  acceptor: AcceptorState;
}

export interface NdbSubordinateInput {
  self: string;
  db: NodeDbSnapshot;
  /** Restored from the store after a restart, if it is for db.version + 1. */
  acceptor?: AcceptorState;
}

export type NdbSubordinateEvent =
  | { type: 'PREPARE'; from: string; version: number; ballot: Ballot }
  | { type: 'ACCEPT'; from: string; version: number; ballot: Ballot; change: NdbOp }
  | { type: 'COMMIT'; version: number; change: NdbOp }
  | { type: 'ADOPT'; db: NodeDbSnapshot };

export type NdbSubordinateEmitted =
  | SendOut
  | { type: 'persist'; acceptor: AcceptorState }
  | { type: 'committed'; db: NodeDbSnapshot }
  | { type: 'adopted'; db: NodeDbSnapshot }
  | { type: 'behind'; version: number };

/** Ballot order: round first, then the coordinator's id and epoch. */
export function compareBallots(a: Ballot, b: Ballot): number {
  if (a.round !== b.round) return a.round < b.round ? -1 : 1;
  return a.by < b.by ? -1 : a.by > b.by ? 1 : 0;
}

const fresh = (db: NodeDbSnapshot): AcceptorState => ({ version: db.version + 1 });

type Ctx = { context: NdbSubordinateContext; event: NdbSubordinateEvent };

/** Why this subordinate will not promise or accept, or undefined when it will. */
function refusal({ context, event }: Ctx): string | undefined {
  if (event.type !== 'PREPARE' && event.type !== 'ACCEPT') return 'not a request';
  if (event.version <= context.db.version) return 'stale';
  if (event.version > context.db.version + 1) return 'behind';
  const promised = context.acceptor.promised;
  if (promised && compareBallots(event.ballot, promised) < 0) return 'outbid';
  if (event.type === 'ACCEPT') {
    const applied = applyChange(context.db, event.change);
    if (!applied.ok) return `${applied.code}: ${applied.reason}`.slice(0, 200);
  }
  return undefined;
}

const refusals = [
  { guard: 'isAhead', actions: ['refuse', 'askForSnapshot'] },
  { actions: 'refuse' },
] as const;

export const ndbSubordinateMachine = setup({
  types: {
    context: {} as NdbSubordinateContext,
    input: {} as NdbSubordinateInput,
    events: {} as NdbSubordinateEvent,
    emitted: {} as NdbSubordinateEmitted,
  },
  guards: {
    grants: (a) => refusal(a) === undefined,
    hasAccepted: ({ context }) => context.acceptor.accepted !== undefined,
    hasPromised: ({ context }) => context.acceptor.promised !== undefined,
    /** A commit of the next version whose change applies (a chosen change always does). */
    isNext: ({ context, event }) =>
      event.type === 'COMMIT' && event.version === context.db.version + 1 && applyChange(context.db, event.change).ok,
    isAhead: ({ context, event }) =>
      (event.type === 'COMMIT' || event.type === 'PREPARE' || event.type === 'ACCEPT') && event.version > context.db.version + 1,
    isNewerDb: ({ context, event }) => event.type === 'ADOPT' && event.db.version > context.db.version,
  },
  actions: {
    promise: enqueueActions(({ context, event: e, enqueue }) => {
      assertEvent(e, 'PREPARE');
      const acceptor: AcceptorState = { ...context.acceptor, promised: e.ballot };
      enqueue.assign({ acceptor });
      enqueue.emit({ type: 'persist', acceptor });
      enqueue.emit(
        sendTo(e.from, 'ndb.promise', {
          version: e.version,
          ballot: e.ballot,
          ok: true,
          have: context.db.version,
          ...(acceptor.accepted ? { accepted: acceptor.accepted } : {}),
        }),
      );
    }),
    accept: enqueueActions(({ context, event: e, enqueue }) => {
      assertEvent(e, 'ACCEPT');
      const acceptor: AcceptorState = { version: e.version, promised: e.ballot, accepted: { ballot: e.ballot, change: e.change } };
      enqueue.assign({ acceptor });
      enqueue.emit({ type: 'persist', acceptor });
      enqueue.emit(sendTo(e.from, 'ndb.accepted', { version: e.version, ballot: e.ballot, ok: true, have: context.db.version }));
    }),
    refuse: enqueueActions((a) => {
      const { context, event, enqueue } = a;
      if (event.type !== 'PREPARE' && event.type !== 'ACCEPT') return;
      const body = {
        version: event.version,
        ballot: event.ballot,
        ok: false,
        have: context.db.version,
        reason: refusal(a),
        ...(context.acceptor.promised ? { promised: context.acceptor.promised } : {}),
      };
      enqueue.emit(event.type === 'PREPARE' ? sendTo(event.from, 'ndb.promise', body) : sendTo(event.from, 'ndb.accepted', body));
    }),
    apply: enqueueActions(({ context, event: e, enqueue }) => {
      assertEvent(e, 'COMMIT');
      const applied = applyChange(context.db, e.change);
      if (!applied.ok) return; // ruled out by isNext
      const acceptor = fresh(applied.db);
      enqueue.assign({ db: applied.db, acceptor });
      enqueue.emit({ type: 'committed', db: applied.db });
      enqueue.emit({ type: 'persist', acceptor });
    }),
    adopt: enqueueActions(({ event, enqueue }) => {
      assertEvent(event, 'ADOPT');
      const { db } = event;
      const acceptor = fresh(db);
      enqueue.assign({ db, acceptor });
      enqueue.emit({ type: 'adopted', db });
      enqueue.emit({ type: 'persist', acceptor });
    }),
    askForSnapshot: enqueueActions(({ event, enqueue }) => {
      if ('version' in event) enqueue.emit({ type: 'behind', version: event.version });
    }),
  },
}).createMachine({
  id: machineName,
  context: ({ input }) => ({
    self: input.self,
    db: input.db,
    acceptor: input.acceptor && input.acceptor.version === input.db.version + 1 ? input.acceptor : fresh(input.db),
  }),
  initial: 'restoring',
  on: {
    ACCEPT: [
      { guard: 'grants', target: '.accepted', actions: 'accept' },
      { guard: 'isAhead', actions: ['refuse', 'askForSnapshot'] },
      { actions: 'refuse' },
    ],
    COMMIT: [{ guard: 'isNext', target: '.open', actions: 'apply' }, { guard: 'isAhead', actions: 'askForSnapshot' }],
    ADOPT: { guard: 'isNewerDb', target: '.open', actions: 'adopt' },
  },
  states: {
    /** Back from the store: resume where the last promise or accept left off. */
    restoring: {
      always: [
        { guard: 'hasAccepted', target: 'accepted' },
        { guard: 'hasPromised', target: 'promised' },
        { target: 'open' },
      ],
    },
    /** Nothing promised for the next version yet. */
    open: {
      on: { PREPARE: [{ guard: 'grants', target: 'promised', actions: 'promise' }, ...refusals] },
    },
    /** A ballot promised: lower ballots are refused. */
    promised: {
      on: { PREPARE: [{ guard: 'grants', actions: 'promise' }, ...refusals] },
    },
    /** A change accepted: every later promise reports it, so it is not lost. */
    accepted: {
      on: { PREPARE: [{ guard: 'grants', actions: 'promise' }, ...refusals] },
    },
  },
});

export type NdbSubordinateSnapshot = SnapshotFrom<typeof ndbSubordinateMachine>;

/** The committed database, for the actor to serve `ndb.fetch` and fill pulses' `dbVersion`. */
export function committedDb(snapshot: NdbSubordinateSnapshot): NodeDbSnapshot {
  return snapshot.context.db;
}


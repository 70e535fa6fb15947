/**
 * Node database, coordinator anchor (SPEC.md M2): one update, one version.
 *
 * Safety claim: the change committed for a version is the only one any
 * coordinator can commit for it. The coordinator's first act is to check
 * quorum (none, or no anchor list, ends the update at once). The new version
 * is fixed before it starts: the coordinator's current + 1. It then runs two
 * rounds with every anchor as subordinate, ordered by its ballot:
 *  - prepare: anchors promise to ignore lower ballots and report any change
 *    they accepted for this version; with promises from anchors holding more
 *    than half the votes, the coordinator proposes the change accepted under
 *    the highest ballot, or, when none was, its own;
 *  - accept: with accepts from more than half the votes, the change is chosen,
 *    and `ndb.commit` tells every anchor to apply it.
 * A coordinator that finds another's change re-proposes it (and reports
 * `own: false`, so its own waits for the next version); one outbid by a
 * higher ballot, or finding the version already taken, fails so the actor
 * can back off or catch up. Arbitration between anchors that would
 * coordinate at once is by ballot: the highest wins, the others retry.
 */
import { assertEvent, assign, enqueueActions, setup, type SnapshotFrom } from 'xstate';
import { present } from '../../bus/assert.js';
import type { Ballot, NdbOp } from '../../bus/messages/index.js';
import { sameChange, type NdbErrorCode } from './node-db.js';
import { compareBallots } from './node-db-subordinate.js';
import { sendTo, type SendOut } from '../outbox.js';
import { hasMajority } from './quorum.js';

export const machineName = 'node-db-coordinator';

export type NdbUpdateErrorCode =
  | 'E_NO_QUORUM'
  | 'E_NOT_ANCHOR'
  /** A higher ballot is deciding this version: back off and retry. */
  | 'E_BUSY'
  /** The version is already decided elsewhere: fetch a snapshot, then retry. */
  | 'E_STALE'
  | 'E_TIMEOUT'
  /** The change does not apply to the current database. */
  | 'E_REJECTED'
  | NdbErrorCode;

export type NdbUpdateOutput =
  | { ok: true; version: number; change: NdbOp; own: boolean }
  | { ok: false; code: NdbUpdateErrorCode; have?: number; round?: number; reason: string };

export interface NdbCoordinatorInput {
  self: string;
  /** The version this update decides: the coordinator's current + 1. */
  version: number;
  ballot: Ballot;
  change: NdbOp;
  /** Every anchor in the node database, self included. */
  anchors: string[];
  /** Configured votes per anchor (M5). */
  votes: Record<string, number>;
  totalVotes: number;
  quorate: boolean;
  timeoutMs: number;
}

export interface NdbCoordinatorContext extends NdbCoordinatorInput {
  promised: string[];
  /** The change accepted under the highest ballot among the promises. */
  found?: { ballot: Ballot; change: NdbOp };
  /** The change proposed in the accept round. */
  proposal?: NdbOp;
  accepted: string[];
  result?: NdbUpdateOutput;
}

type Answer = {
  from: string;
  version: number;
  ballot: Ballot;
  ok: boolean;
  have: number;
  promised?: Ballot;
  reason?: string;
};

export type NdbCoordinatorEvent =
  | ({ type: 'PROMISE'; accepted?: { ballot: Ballot; change: NdbOp } } & Answer)
  | ({ type: 'ACCEPTED' } & Answer);

export type NdbCoordinatorEmitted = SendOut | { type: 'commit'; version: number; change: NdbOp };

const weight = (c: NdbCoordinatorContext, ids: readonly string[]): number => ids.reduce((s, id) => s + (c.votes[id] ?? 0), 0);

const isOurs = (c: NdbCoordinatorContext, e: NdbCoordinatorEvent): boolean =>
  e.version === c.version && compareBallots(e.ballot, c.ballot) === 0 && c.anchors.includes(e.from);

/** What a refusal means for this update. */
export function refusalOutcome(c: NdbCoordinatorContext, e: NdbCoordinatorEvent): NdbUpdateOutput {
  if (e.have >= c.version) return { ok: false, code: 'E_STALE', have: e.have, reason: `${e.from} has version ${e.have} already` };
  if (e.reason === 'outbid') {
    return { ok: false, code: 'E_BUSY', round: e.promised?.round, reason: `${e.from} promised a higher ballot for version ${c.version}` };
  }
  if (e.reason === 'behind') return { ok: false, code: 'E_STALE', have: e.have, reason: `${e.from} is behind at version ${e.have}` };
  const code = /^(E_[A-Z_]+):/.exec(e.reason ?? '')?.[1] as NdbErrorCode | undefined;
  return { ok: false, code: code ?? 'E_REJECTED', have: e.have, reason: e.reason ?? 'refused' };
}

/** A refusal that ends the attempt: a higher ballot, a newer version, or a change that cannot apply.
 * 'behind' refusals come from laggards that the others can outvote. */
const isFatal = (c: NdbCoordinatorContext, e: NdbCoordinatorEvent): boolean => !e.ok && (e.reason !== 'behind' || e.have >= c.version);

export const ndbCoordinatorMachine = setup({
  types: {
    context: {} as NdbCoordinatorContext,
    input: {} as NdbCoordinatorInput,
    events: {} as NdbCoordinatorEvent,
    emitted: {} as NdbCoordinatorEmitted,
    output: {} as NdbUpdateOutput,
  },
  actions: {
    failNoQuorum: assign({ result: { ok: false, code: 'E_NO_QUORUM', reason: 'this node has no quorum' } }),
    failNotAnchor: assign({
      result: ({ context }) => ({
        ok: false as const,
        code: 'E_NOT_ANCHOR' as const,
        reason: context.anchors.length === 0 ? 'the anchor list is empty' : `${context.self} is not an anchor`,
      }),
    }),
    failTimeout: assign({
      result: ({ context }) => ({
        ok: false as const,
        code: 'E_TIMEOUT' as const,
        reason: `anchors holding a majority of the votes did not answer in time (version ${context.version})`,
      }),
    }),
    failRefused: assign({ result: ({ context, event }) => refusalOutcome(context, event) }),
    notePromise: assign(({ context, event }) => {
      assertEvent(event, 'PROMISE');
      const { accepted, from } = event;
      const found = accepted && (!context.found || compareBallots(accepted.ballot, context.found.ballot) > 0) ? accepted : context.found;
      return { promised: context.promised.includes(from) ? context.promised : [...context.promised, from], found };
    }),
    noteAccept: assign({
      accepted: ({ context, event }) => (context.accepted.includes(event.from) ? context.accepted : [...context.accepted, event.from]),
    }),
    sendPrepares: enqueueActions(({ context, enqueue }) => {
      for (const id of context.anchors) enqueue.emit(sendTo(id, 'ndb.prepare', { version: context.version, ballot: context.ballot }));
    }),
    /** Proposes the change a majority may already hold, else our own. */
    sendAccepts: enqueueActions(({ context, enqueue }) => {
      const proposal = context.found?.change ?? context.change;
      enqueue.assign({ proposal });
      for (const id of context.promised) {
        enqueue.emit(sendTo(id, 'ndb.accept', { version: context.version, ballot: context.ballot, change: proposal }));
      }
    }),
    commit: enqueueActions(({ context, enqueue }) => {
      const change = present(context.proposal, 'the accept round proposed a change before a majority accepted it');
      for (const id of context.anchors) enqueue.emit(sendTo(id, 'ndb.commit', { version: context.version, change }));
      enqueue.emit({ type: 'commit', version: context.version, change });
      const own = sameChange(change, context.change);
      enqueue.assign({ result: { ok: true, version: context.version, change, own } });
    }),
  },
  guards: {
    lacksQuorum: ({ context }) => !context.quorate,
    isNotAnAnchor: ({ context }) => !context.anchors.includes(context.self),
    isGrant: ({ context, event }) => isOurs(context, event) && event.ok,
    isFatalRefusal: ({ context, event }) => isOurs(context, event) && isFatal(context, event),
    promisedByMajority: ({ context }) => hasMajority(weight(context, context.promised), context.totalVotes),
    acceptedByMajority: ({ context }) => hasMajority(weight(context, context.accepted), context.totalVotes),
  },
  delays: {
    roundTimeout: ({ context }) => context.timeoutMs,
  },
}).createMachine({
  id: machineName,
  context: ({ input }) => ({ ...input, promised: [], accepted: [] }),
  initial: 'checking',
  states: {
    checking: {
      always: [
        { guard: 'lacksQuorum', target: 'failed', actions: 'failNoQuorum' },
        { guard: 'isNotAnAnchor', target: 'failed', actions: 'failNotAnchor' },
        { target: 'preparing' },
      ],
    },
    preparing: {
      entry: 'sendPrepares',
      always: { guard: 'promisedByMajority', target: 'accepting' },
      after: { roundTimeout: { target: 'failed', actions: 'failTimeout' } },
      on: {
        PROMISE: [
          { guard: 'isGrant', actions: 'notePromise' },
          { guard: 'isFatalRefusal', target: 'failed', actions: 'failRefused' },
        ],
      },
    },
    accepting: {
      entry: 'sendAccepts',
      always: { guard: 'acceptedByMajority', target: 'committed' },
      after: { roundTimeout: { target: 'failed', actions: 'failTimeout' } },
      on: {
        ACCEPTED: [
          { guard: 'isGrant', actions: 'noteAccept' },
          { guard: 'isFatalRefusal', target: 'failed', actions: 'failRefused' },
        ],
      },
    },
    committed: { type: 'final', entry: 'commit' },
    failed: { type: 'final' },
  },
  output: ({ context }) => context.result ?? { ok: false, code: 'E_REJECTED', reason: 'the update ended without a result' },
});

export type NdbCoordinatorSnapshot = SnapshotFrom<typeof ndbCoordinatorMachine>;


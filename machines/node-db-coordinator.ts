/**
 * One node-database update, run by the anchor that coordinates it (SPEC.md
 * M2), with every other anchor of the quorum set as subordinate. Safety
 * claim: the coordinator commits only when every subordinate locked the
 * same version and change for it and the locked anchors, itself included,
 * hold MORE than half of all configured votes. Two coordinators of one
 * version would each need such a majority, and majorities share an anchor,
 * which locks for one of them only; so at most one of them commits.
 *
 * The version is fixed by the caller before it starts (current + 1). The
 * first act is the quorum check; then the anchor list: the coordinator must
 * be in it (the patent's "empty list" error, for which we also count a
 * coordinator that is not an anchor). The actor locks its own subordinate
 * (BEGIN_LOCAL) before starting this machine and ends that lock
 * (END_LOCAL) on the `commit` or `abort` this machine emits.
 *
 * Emits `send` (`ndb.prepare`, `ndb.commit`, `ndb.abort`),
 * `{ type: 'commit', version, change }` and `{ type: 'abort', version, code }`;
 * ends in final state `committed` or `failed` with an `NdbUpdateOutput`.
 */
import { assign, emit, enqueueActions, setup, type SnapshotFrom } from 'xstate';
import type { NdbOp } from '../bus/messages.js';
import type { NdbErrorCode } from './node-db.js';
import { REASON_BUSY, REASON_STALE } from './node-db-subordinate.js';
import { sendTo, type SendOut } from './outbox.js';
import { hasMajority } from './quorum.js';

export const machineName = 'node-db-coordinator';

export type NdbUpdateErrorCode =
  | 'E_NO_QUORUM'
  | 'E_NOT_ANCHOR'
  /** Another update holds a lock: retry later. */
  | 'E_BUSY'
  /** A subordinate has this version already: fetch its snapshot, then retry. */
  | 'E_STALE'
  /** A subordinate is more than one version behind: it must fetch first. */
  | 'E_LAGGING'
  | 'E_TIMEOUT'
  /** The change does not apply (refused for a reason with no code of ours). */
  | 'E_REJECTED'
  | NdbErrorCode;

export type NdbUpdateOutput =
  | { ok: true; version: number; change: NdbOp }
  | { ok: false; code: NdbUpdateErrorCode; have?: number; reason: string };

export interface NdbCoordinatorInput {
  self: string;
  /** The version this update will create: the coordinator's current + 1. */
  version: number;
  change: NdbOp;
  /** The anchors of the quorum set, self included when self is an anchor. */
  anchors: string[];
  /** Configured votes per anchor (M5). */
  votes: Record<string, number>;
  totalVotes: number;
  quorate: boolean;
  timeoutMs: number;
}

export interface NdbCoordinatorContext extends NdbCoordinatorInput {
  /** Subordinates that locked for us. */
  acked: string[];
  /** Subordinates that refused: they hold no lock of ours. */
  refused: string[];
  result: NdbUpdateOutput | undefined;
}

export type NdbCoordinatorEvent = {
  type: 'PREPARED';
  from: string;
  version: number;
  ok: boolean;
  have: number;
  reason?: string;
};

export type NdbCoordinatorEmitted =
  | SendOut
  | { type: 'commit'; version: number; change: NdbOp }
  | { type: 'abort'; version: number; code: NdbUpdateErrorCode };

const subordinatesOf = (c: NdbCoordinatorContext): string[] => c.anchors.filter((id) => id !== c.self);

const ackedVotes = (c: NdbCoordinatorContext): number =>
  [c.self, ...c.acked].reduce((sum, id) => sum + (c.votes[id] ?? 0), 0);

const allAcked = (c: NdbCoordinatorContext): boolean => subordinatesOf(c).every((id) => c.acked.includes(id));

/** What a refusal means for this update. */
export function refusalOutcome(version: number, have: number, reason: string | undefined): NdbUpdateOutput {
  const text = reason ?? 'refused';
  if (have >= version) return { ok: false, code: 'E_STALE', have, reason: `a subordinate has version ${have} already` };
  if (text === REASON_BUSY) return { ok: false, code: 'E_BUSY', have, reason: 'another node database update is running' };
  if (text === REASON_STALE) return { ok: false, code: 'E_LAGGING', have, reason: `a subordinate is at version ${have}` };
  const code = /^(E_[A-Z_]+):/.exec(text)?.[1] as NdbErrorCode | undefined;
  return { ok: false, code: code ?? 'E_REJECTED', have, reason: text };
}

const isOurs = (c: NdbCoordinatorContext, e: NdbCoordinatorEvent): boolean =>
  e.version === c.version && subordinatesOf(c).includes(e.from) && !c.acked.includes(e.from) && !c.refused.includes(e.from);

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
        reason:
          context.anchors.length === 0 ? 'the anchor list is empty' : `${context.self} is not an anchor of the quorum set`,
      }),
    }),
    failSplitVotes: assign({
      result: { ok: false, code: 'E_NO_QUORUM', reason: 'the anchors that locked hold no majority of the votes' },
    }),
    failTimeout: assign({
      result: { ok: false, code: 'E_TIMEOUT', reason: 'not every subordinate answered in time' },
    }),
    failRefused: assign({
      refused: ({ context, event }) => [...context.refused, event.from],
      result: ({ context, event }) => refusalOutcome(context.version, event.have, event.reason),
    }),
    countAck: assign({ acked: ({ context, event }) => [...context.acked, event.from] }),
    succeed: assign({ result: ({ context }) => ({ ok: true as const, version: context.version, change: context.change }) }),
    sendPrepares: enqueueActions(({ context, enqueue }) => {
      for (const id of subordinatesOf(context)) {
        enqueue.emit(sendTo(id, 'ndb.prepare', { version: context.version, change: context.change }));
      }
    }),
    sendCommits: enqueueActions(({ context, enqueue }) => {
      for (const id of subordinatesOf(context)) enqueue.emit(sendTo(id, 'ndb.commit', { version: context.version }));
    }),
    /** Every subordinate but those that refused: an ok may still be in flight. */
    sendAborts: enqueueActions(({ context, enqueue }) => {
      for (const id of subordinatesOf(context)) {
        if (!context.refused.includes(id)) enqueue.emit(sendTo(id, 'ndb.abort', { version: context.version }));
      }
    }),
    announceCommit: emit(({ context }) => ({ type: 'commit' as const, version: context.version, change: context.change })),
    announceAbort: emit(({ context }) => ({
      type: 'abort' as const,
      version: context.version,
      code: context.result && !context.result.ok ? context.result.code : ('E_REJECTED' as const),
    })),
  },
  guards: {
    lacksQuorum: ({ context }) => !context.quorate,
    isNotAnAnchor: ({ context }) => !context.anchors.includes(context.self),
    isAck: ({ context, event }) => isOurs(context, event) && event.ok,
    isRefusal: ({ context, event }) => isOurs(context, event) && !event.ok,
    allLockedWithMajority: ({ context }) => allAcked(context) && hasMajority(ackedVotes(context), context.totalVotes),
    allLockedWithoutMajority: ({ context }) => allAcked(context) && !hasMajority(ackedVotes(context), context.totalVotes),
  },
  delays: {
    updateTimeout: ({ context }) => context.timeoutMs,
  },
}).createMachine({
  id: machineName,
  context: ({ input }) => ({ ...input, acked: [], refused: [], result: undefined }),
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
      always: [
        { guard: 'allLockedWithMajority', target: 'committed', actions: 'succeed' },
        { guard: 'allLockedWithoutMajority', target: 'failed', actions: ['failSplitVotes', 'sendAborts'] },
      ],
      after: { updateTimeout: { target: 'failed', actions: ['failTimeout', 'sendAborts'] } },
      on: {
        PREPARED: [
          { guard: 'isAck', actions: 'countAck' },
          { guard: 'isRefusal', target: 'failed', actions: ['failRefused', 'sendAborts'] },
        ],
      },
    },
    committed: { type: 'final', entry: ['sendCommits', 'announceCommit'] },
    failed: { type: 'final', entry: 'announceAbort' },
  },
  output: ({ context }) =>
    context.result ?? { ok: false, code: 'E_REJECTED', reason: 'the update ended without a result' },
});

export type NdbCoordinatorSnapshot = SnapshotFrom<typeof ndbCoordinatorMachine>;

/**
 * The RAM directory rebuild, coordinator side (SPEC.md M14; docs/recovery.md
 * "The RAM directory rebuild"). It runs on every anchor and stays idle
 * unless this anchor coordinates: the actor starts a round (`START`) when
 * this anchor is the lowest-id live anchor (`coordinatorFor`) and a failure,
 * a restarted node or another node's request calls for a rebuild.
 *
 * Safety claims, checked on every generated path of the model spec:
 * - repopulating starts only once every participant of the round replied
 *   *quiesced* for that round, so no node registers a page while another
 *   may still change it or still holds a RAM directory of before;
 * - *resume operations* goes out only once every participant replied
 *   *repopulation complete* for that round, so no node serves from a
 *   directory that is still being rebuilt;
 * - replies of another round (late, repeated, or another coordinator's) and
 *   replies from nodes that are not participants never count.
 *
 * A round is `{n, by: self}` (rebuild-round.ts), `n` the next number above
 * the highest round this anchor knows of, its own or another's
 * (`HIGHER_ROUND`), among the numbers of its rank (`nextRoundNumber`), so a
 * participant that follows the highest round it has seen always follows
 * the newest. The phases: quiescing (a *quiesce for recovery* to every
 * participant that has not replied, again every `retryMs`), repopulating
 * (*start repopulating*, likewise), resuming (*resume operations* until each
 * acknowledges), then idle with the round remembered.
 *
 * A `START` that changes nothing while the round is resuming is owed: it
 * may carry news a participant heard after it resumed, so one more round
 * starts as soon as this one is done.
 *
 * Restarts (M14: a node failing during the rebuild restarts it) begin a
 * new round, one higher, from quiescing: a participant counted failed
 * (`PARTICIPANT_FAILED`: without it), a new `START` (its participants; its
 * `reset` joined to the running round's, as no round finished since; or a
 * newer node database, whose arena table the copies must follow), or a
 * phase that did not finish within `phaseTimeoutMs` (the same participants:
 * a reply lost often enough, or a participant that cannot answer and is not
 * counted failed yet). A higher round heard of (`HIGHER_ROUND`) makes this
 * anchor yield; losing quorum (`QUORUM_LOST`) aborts: no rebuild without it.
 *
 * `states` says what the coordinator knows of each participant of the
 * round, in node-state's words: `notified` (asked to quiesce, no reply
 * yet), `quiescent` (replied quiesced), `rebuilding` (replied repopulation
 * complete; it waits for resume), `normal` (acknowledged resume).
 *
 * Emits `quiesce {to, round, participants, reset, dbVersion}` (`reset`: the
 * node is new since the last finished round, restarted or back after being
 * counted failed, and must drop every copy it holds; `dbVersion`: the
 * arena table the round rules by), `repopulate {to, round}`,
 * `resume {to, round}`, and `phase {round, phase, waiting}` on every change
 * of phase (`waiting`: the participants the phase was or is waiting for).
 */
import { and, assertEvent, assign, enqueueActions, setup, type SnapshotFrom } from 'xstate';
import { assert, present } from '../../bus/assert.js';
import { NODES_MAX } from '../membership/node-db.js';
import type { NodeStateName } from './node-state.js';
import { isHigherRound, sameRound, type RebuildRound } from './rebuild-round.js';

export const machineName = 'rebuild-coordinator';

/** A round's participants: live nodes, so at most the node database's limit. */
export const REBUILD_PARTICIPANTS_MAX = NODES_MAX;

export type RebuildPhase = 'quiescing' | 'repopulating' | 'resuming';
export type RebuildPhaseReport = RebuildPhase | 'done' | 'restarted' | 'aborted' | 'yielded';

export interface RebuildCoordinatorInput {
  self: string;
  retryMs: number;
  phaseTimeoutMs: number;
  /**
   * Round numbers this coordinator may use are those equal to `rank` modulo
   * `ranks` (the actor passes its short id and the short-id space), so two
   * coordinators never number a round alike and a round's number alone
   * names it (the engine stamps it on coherence messages). Defaults: 0 of 1.
   */
  rank?: number;
  ranks?: number;
}

export interface RebuildCoordinatorContext extends RebuildCoordinatorInput {
  /** This anchor's round: the one running, else the last one. */
  round: RebuildRound | null;
  /** The highest round known, this anchor's own or another's: the next is one above. */
  highest: RebuildRound | null;
  /** The phase running; null while idle. */
  phase: RebuildPhase | null;
  /** The round's participants, sorted; this anchor among them. */
  participants: string[];
  /** Participants that must drop every copy they hold. */
  reset: string[];
  /**
   * The node database version the round rules by: every participant's arena
   * table is at least this new before it registers a copy with a home.
   */
  dbVersion: number;
  /**
   * A start asked for while the round was resuming: news some participants
   * heard after they resumed, which this round cannot cover. The next round
   * starts with it as soon as this one is done.
   */
  owed: { participants: string[]; reset: string[]; dbVersion?: number } | null;
  /** Each participant's state as the replies show it. */
  states: Record<string, NodeStateName>;
}

export type RebuildCoordinatorEvent =
  /**
   * `rank`: this coordinator's rank now (its short id may have been unknown
   * when it started). `dbVersion`: its node database's version (an arena
   * handed on since the running round began restarts it).
   */
  | { type: 'START'; participants: string[]; reset: string[]; rank?: number; dbVersion?: number }
  /** `dbVersion`: the participant's node database; the round rules by the newest. */
  | { type: 'QUIESCED'; from: string; round: RebuildRound; dbVersion?: number }
  | { type: 'REPOPULATED'; from: string; round: RebuildRound }
  | { type: 'RESUMED'; from: string; round: RebuildRound }
  | { type: 'PARTICIPANT_FAILED'; id: string }
  | { type: 'HIGHER_ROUND'; round: RebuildRound }
  | { type: 'QUORUM_LOST' };

export type RebuildCoordinatorEmitted =
  | { type: 'quiesce'; to: string; round: RebuildRound; participants: string[]; reset: boolean; dbVersion: number }
  | { type: 'repopulate'; to: string; round: RebuildRound; dbVersion: number }
  | { type: 'resume'; to: string; round: RebuildRound }
  | { type: 'phase'; round: RebuildRound; phase: RebuildPhaseReport; waiting: string[] };

type Ctx = RebuildCoordinatorContext;

/** In each phase, the state a participant is in until it replies, and the state its reply shows. */
const AWAITED: Record<RebuildPhase, NodeStateName> = { quiescing: 'notified', repopulating: 'quiescent', resuming: 'rebuilding' };
const REPLIED: Record<RebuildPhase, NodeStateName> = { quiescing: 'quiescent', repopulating: 'rebuilding', resuming: 'normal' };

/** The participants the phase still waits for. */
export function waitingIn(context: Ctx, phase: RebuildPhase | null): string[] {
  if (phase === null) return [];
  return context.participants.filter((p) => context.states[p] === AWAITED[phase]);
}

const currentRound = (context: Ctx): RebuildRound => present(context.round, 'a running phase has a round');

/** The lowest number above `highest` that is `rank` modulo `ranks`: this coordinator's next round. */
export function nextRoundNumber(highest: number, rank: number, ranks: number): number {
  assert(Number.isInteger(ranks) && ranks >= 1 && rank >= 0 && rank < ranks, 'a rank lies in [0, ranks)');
  const above = highest + 1;
  return above + ((((rank - above) % ranks) + ranks) % ranks);
}

/** A new round, above every round known, over these participants. */
function newRound(context: Ctx, participants: readonly string[], reset: readonly string[], dbVersion = context.dbVersion): Partial<Ctx> {
  const sorted = [...new Set(participants)].sort();
  assert(sorted.includes(context.self), 'the coordinator takes part in its own round');
  assert(sorted.length <= REBUILD_PARTICIPANTS_MAX, `a round has at most ${REBUILD_PARTICIPANTS_MAX} participants`);
  const round = { n: nextRoundNumber(context.highest?.n ?? 0, context.rank ?? 0, context.ranks ?? 1), by: context.self };
  return {
    round,
    highest: round,
    participants: sorted,
    reset: sorted.filter((p) => reset.includes(p)),
    dbVersion: Math.max(dbVersion, context.dbVersion),
    owed: null,
    states: Object.fromEntries(sorted.map((p) => [p, 'notified' as const])),
  };
}

/** A reply for this round, from a participant the phase waits for. */
function isAwaited(context: Ctx, event: RebuildCoordinatorEvent, type: 'QUIESCED' | 'REPOPULATED' | 'RESUMED', phase: RebuildPhase): boolean {
  if (event.type !== type) return false;
  return sameRound(event.round, context.round) && context.participants.includes(event.from) && context.states[event.from] === AWAITED[phase];
}

const allReplied = (context: Ctx, phase: RebuildPhase): boolean => context.participants.every((p) => context.states[p] === REPLIED[phase]);

export const rebuildCoordinatorMachine = setup({
  types: {
    context: {} as RebuildCoordinatorContext,
    input: {} as RebuildCoordinatorInput,
    events: {} as RebuildCoordinatorEvent,
    emitted: {} as RebuildCoordinatorEmitted,
  },
  delays: {
    retry: ({ context }) => context.retryMs,
    phaseTimeout: ({ context }) => context.phaseTimeoutMs,
  },
  guards: {
    isAwaitedQuiesced: ({ context, event }) => isAwaited(context, event, 'QUIESCED', 'quiescing'),
    isAwaitedRepopulated: ({ context, event }) => isAwaited(context, event, 'REPOPULATED', 'repopulating'),
    isAwaitedResumed: ({ context, event }) => isAwaited(context, event, 'RESUMED', 'resuming'),
    allQuiescent: ({ context }) => allReplied(context, 'quiescing'),
    allRepopulated: ({ context }) => allReplied(context, 'repopulating'),
    allResumed: ({ context }) => allReplied(context, 'resuming'),
    owesRound: ({ context }) => context.owed !== null,
    /** Only another node: the coordinator counted failed by its own actor is no news it can act on. */
    isOtherParticipant: ({ context, event }) =>
      event.type === 'PARTICIPANT_FAILED' && event.id !== context.self && context.participants.includes(event.id),
    outranksRound: ({ context, event }) => event.type === 'HIGHER_ROUND' && isHigherRound(event.round, context.round),
    /** A start that asks for what the running round does already (its participants, resets and arena table) changes nothing. */
    changesRound: ({ context, event }) => {
      assertEvent(event, 'START');
      const same = new Set(event.participants);
      const sameParticipants = same.size === context.participants.length && context.participants.every((p) => same.has(p));
      return !sameParticipants || event.reset.some((r) => !context.reset.includes(r)) || (event.dbVersion ?? 0) > context.dbVersion;
    },
  },
  actions: {
    startRound: assign(({ context, event }) => {
      assertEvent(event, 'START');
      const rank = event.rank ?? context.rank;
      return { rank, ...newRound({ ...context, rank }, event.participants, event.reset, event.dbVersion) };
    }),
    /** No round finished since the running one began, so its resets still stand. */
    restartWith: assign(({ context, event }) => {
      assertEvent(event, 'START');
      const rank = event.rank ?? context.rank;
      return { rank, ...newRound({ ...context, rank }, event.participants, [...context.reset, ...event.reset], event.dbVersion) };
    }),
    restartWithout: assign(({ context, event }) => {
      assertEvent(event, 'PARTICIPANT_FAILED');
      return newRound(context, context.participants.filter((p) => p !== event.id), context.reset);
    }),
    restartSame: assign(({ context }) => newRound(context, context.participants, context.reset)),
    owe: assign(({ event }) => {
      assertEvent(event, 'START');
      return { owed: { participants: event.participants, reset: event.reset, dbVersion: event.dbVersion } };
    }),
    startOwed: assign(({ context }) => {
      const owed = present(context.owed, 'a round is owed');
      return newRound(context, owed.participants, owed.reset, owed.dbVersion);
    }),
    noteHigher: assign(({ context, event }) => {
      assertEvent(event, 'HIGHER_ROUND');
      return isHigherRound(event.round, context.highest) ? { highest: event.round } : {};
    }),
    markReplied: assign(({ context, event }, params: { phase: RebuildPhase }) => {
      assertEvent(event, ['QUIESCED', 'REPOPULATED', 'RESUMED']);
      const dbVersion = event.type === 'QUIESCED' ? Math.max(context.dbVersion, event.dbVersion ?? 0) : context.dbVersion;
      return { states: { ...context.states, [event.from]: REPLIED[params.phase] }, dbVersion };
    }),
    enterPhase: enqueueActions(({ context, enqueue }, params: { phase: RebuildPhase }) => {
      enqueue.assign({ phase: params.phase });
      enqueue.emit({ type: 'phase', round: currentRound(context), phase: params.phase, waiting: waitingIn(context, params.phase) });
    }),
    /** Ends the running phase: `waiting` names whom it was still waiting for. */
    endPhase: enqueueActions(({ context, enqueue }, params: { report: 'done' | 'restarted' | 'aborted' | 'yielded' }) => {
      enqueue.emit({ type: 'phase', round: currentRound(context), phase: params.report, waiting: waitingIn(context, context.phase) });
      enqueue.assign({ phase: null });
    }),
    sendQuiesces: enqueueActions(({ context, enqueue }) => {
      const round = currentRound(context);
      for (const to of waitingIn(context, 'quiescing')) {
        enqueue.emit({ type: 'quiesce', to, round, participants: context.participants, reset: context.reset.includes(to), dbVersion: context.dbVersion });
      }
    }),
    sendRepopulates: enqueueActions(({ context, enqueue }) => {
      const round = currentRound(context);
      for (const to of waitingIn(context, 'repopulating')) enqueue.emit({ type: 'repopulate', to, round, dbVersion: context.dbVersion });
    }),
    sendResumes: enqueueActions(({ context, enqueue }) => {
      const round = currentRound(context);
      for (const to of waitingIn(context, 'resuming')) enqueue.emit({ type: 'resume', to, round });
    }),
  },
}).createMachine({
  id: machineName,
  context: ({ input }) => ({ ...input, round: null, highest: null, phase: null, participants: [], reset: [], dbVersion: 0, owed: null, states: {} }),
  initial: 'idle',
  states: {
    idle: {
      on: {
        START: { target: 'running', actions: 'startRound' },
        HIGHER_ROUND: { actions: 'noteHigher' },
      },
    },
    running: {
      initial: 'quiescing',
      on: {
        START: { guard: 'changesRound', target: 'running', reenter: true, actions: [{ type: 'endPhase', params: { report: 'restarted' } }, 'restartWith'] },
        PARTICIPANT_FAILED: {
          guard: 'isOtherParticipant',
          target: 'running',
          reenter: true,
          actions: [{ type: 'endPhase', params: { report: 'restarted' } }, 'restartWithout'],
        },
        HIGHER_ROUND: { guard: 'outranksRound', target: 'idle', actions: [{ type: 'endPhase', params: { report: 'yielded' } }, 'noteHigher'] },
        QUORUM_LOST: { target: 'idle', actions: { type: 'endPhase', params: { report: 'aborted' } } },
      },
      states: {
        quiescing: {
          entry: { type: 'enterPhase', params: { phase: 'quiescing' } },
          always: { guard: 'allQuiescent', target: 'repopulating' },
          after: {
            phaseTimeout: { target: '#rebuild-coordinator.running', reenter: true, actions: [{ type: 'endPhase', params: { report: 'restarted' } }, 'restartSame'] },
          },
          on: { QUIESCED: { guard: 'isAwaitedQuiesced', actions: { type: 'markReplied', params: { phase: 'quiescing' } } } },
          // The retry timer lives in a child, so a retry leaves the phase's timeout running.
          initial: 'sending',
          states: { sending: { entry: 'sendQuiesces', after: { retry: { target: 'sending', reenter: true } } } },
        },
        repopulating: {
          entry: { type: 'enterPhase', params: { phase: 'repopulating' } },
          always: { guard: 'allRepopulated', target: 'resuming' },
          after: {
            phaseTimeout: { target: '#rebuild-coordinator.running', reenter: true, actions: [{ type: 'endPhase', params: { report: 'restarted' } }, 'restartSame'] },
          },
          on: { REPOPULATED: { guard: 'isAwaitedRepopulated', actions: { type: 'markReplied', params: { phase: 'repopulating' } } } },
          initial: 'sending',
          states: { sending: { entry: 'sendRepopulates', after: { retry: { target: 'sending', reenter: true } } } },
        },
        resuming: {
          entry: { type: 'enterPhase', params: { phase: 'resuming' } },
          always: [
            {
              guard: and(['allResumed', 'owesRound']),
              target: '#rebuild-coordinator.running',
              reenter: true,
              actions: [{ type: 'endPhase', params: { report: 'done' } }, 'startOwed'],
            },
            { guard: 'allResumed', target: '#rebuild-coordinator.idle', actions: { type: 'endPhase', params: { report: 'done' } } },
          ],
          after: {
            phaseTimeout: { target: '#rebuild-coordinator.running', reenter: true, actions: [{ type: 'endPhase', params: { report: 'restarted' } }, 'restartSame'] },
          },
          on: {
            RESUMED: { guard: 'isAwaitedResumed', actions: { type: 'markReplied', params: { phase: 'resuming' } } },
            START: [
              {
                guard: 'changesRound',
                target: '#rebuild-coordinator.running',
                reenter: true,
                actions: [{ type: 'endPhase', params: { report: 'restarted' } }, 'restartWith'],
              },
              // Nothing new to this round, but heard after some participants resumed: one more round, once this one is done.
              { actions: 'owe' },
            ],
          },
          initial: 'sending',
          states: { sending: { entry: 'sendResumes', after: { retry: { target: 'sending', reenter: true } } } },
        },
      },
    },
  },
});

export type RebuildCoordinatorSnapshot = SnapshotFrom<typeof rebuildCoordinatorMachine>;

/** For status: the phase, the round and whom the phase waits for. */
export function coordinatorStatus(snapshot: RebuildCoordinatorSnapshot): {
  phase: RebuildPhase | 'idle';
  round: RebuildRound | null;
  waiting: string[];
  states: Record<string, NodeStateName>;
} {
  const c = snapshot.context;
  return { phase: c.phase ?? 'idle', round: c.round, waiting: waitingIn(c, c.phase), states: c.states };
}

/**
 * The RAM directory rebuild, participant side (SPEC.md M14, M6;
 * docs/recovery.md "The RAM directory rebuild"). It runs on every node,
 * anchors included, and drives the node's state (node-state.ts) through
 * normal -> notified -> quiescent -> rebuilding -> normal at the word of the
 * round's coordinator (rebuild-coordinator.ts).
 *
 * Safety claims, checked on every generated path of the model spec:
 * - the node follows the highest round it has accepted and no other: a
 *   message of a lower round, or of a round its sender does not coordinate,
 *   changes nothing and is not answered;
 * - it replies *quiesced* only once the engine reported its in-flight work
 *   finished or failed and its RAM directory dropped (`DRAINED`, every
 *   copy too when the round said `reset`), for every drain asked;
 * - it starts repopulating only when quiescent, for the accepted round, and
 *   replies *repopulation complete* only once the engine finished
 *   registering its copies for that round (`REPOPULATE_DONE`);
 * - it resumes only after it replied repopulation complete, on the accepted
 *   round's *resume operations*;
 * - its state follows node-state's rules exactly: it emits the node-state
 *   event of every change (`node_state {event}`), and nothing else, so
 *   node-state fed those events is always in the state this machine is in.
 *
 * The node-state events leave as emitted `node_state {event}` for the actor
 * to forward to its node-state actor (this machine invokes no child), so
 * both stay pure and the actor's node-state keeps its own watchers.
 *
 * Two regions. `node` is the node's state, with the rebuild's steps inside:
 * notified.awaiting (a failure noticed, no round yet) and notified.draining
 * (a round accepted, the engine draining); quiescent.ready and
 * quiescent.redraining (a later round asked for a reset this node had not
 * done: dropping every copy, still quiescent); rebuilding.repopulating and
 * rebuilding.repopulated. `coordinator` watches the coordinator: quiet while
 * normal; asking (`ask {failed}` at once and every `coordinatorSilenceMs`)
 * from a failure noticed until a quiesce arrives, or when the round's
 * coordinator has been silent for `coordinatorSilenceMs`; listening while a
 * round runs and its coordinator is heard. The actor sends an ask to the
 * coordinator it believes in, and one naming that coordinator failed to
 * another anchor.
 *
 * A coordinator sends nothing to a participant that has replied until its
 * phase ends, which takes at most its `phaseTimeoutMs` (then it moves on or
 * restarts), so `coordinatorSilenceMs` must exceed the coordinators'
 * `phaseTimeoutMs` plus a message's delay, or a slow phase reads as a dead
 * coordinator.
 *
 * Lost replies are not retried from here: the coordinator repeats its
 * message to whoever has not replied, and a repeat of the accepted round is
 * answered again (a quiesce once quiescent, a repopulate once repopulated, a
 * resume once normal).
 *
 * Emits `reply {to, kind, round}`, `drain {reset}` (every `drain` is
 * answered by one `DRAINED`), `repopulate {round}` (answered by
 * `REPOPULATE_DONE {round}`), `resume {round}`, `ask {failed}` and
 * `node_state {event}`.
 */
import { and, assertEvent, assign, emit, enqueueActions, or, setup, stateIn, type SnapshotFrom } from 'xstate';
import { present } from '../../bus/assert.js';
import { NODES_MAX } from '../membership/node-db.js';
import type { NodeStateEvent, NodeStateName } from './node-state.js';
import { isHigherRound, sameRound, type RebuildRound } from './rebuild-round.js';

export const machineName = 'rebuild-participant';

/** The failed nodes an ask names: node ids, so at most the node database's limit. */
export const ASK_FAILED_MAX = NODES_MAX;

export interface RebuildParticipantInput {
  self: string;
  coordinatorSilenceMs: number;
}

export interface RebuildParticipantContext extends RebuildParticipantInput {
  /** The highest round accepted; its `by` is the coordinator this node follows. */
  accepted: RebuildRound | null;
  /** Drains asked of the engine and not yet answered, and whether one of them drops every copy. */
  drain: { pending: number; reset: boolean };
  /** What the next ask names. */
  failed: string[];
}

export type ReplyKind = 'quiesced' | 'repopulated' | 'resumed';

export type RebuildParticipantEvent =
  | { type: 'FAILURE_NOTICED'; failed: string[] }
  | { type: 'QUIESCE'; from: string; round: RebuildRound; reset: boolean }
  | { type: 'DRAINED' }
  | { type: 'REPOPULATE'; from: string; round: RebuildRound }
  | { type: 'REPOPULATE_DONE'; round: RebuildRound }
  | { type: 'RESUME'; from: string; round: RebuildRound };

export type RebuildParticipantEmitted =
  | { type: 'reply'; to: string; kind: ReplyKind; round: RebuildRound }
  | { type: 'drain'; reset: boolean }
  | { type: 'repopulate'; round: RebuildRound }
  | { type: 'resume'; round: RebuildRound }
  | { type: 'ask'; failed: string[] }
  | { type: 'node_state'; event: NodeStateEvent };

type Ctx = RebuildParticipantContext;
type Ev = RebuildParticipantEvent;

const acceptedOf = (context: Ctx): RebuildRound => present(context.accepted, 'a reply answers the accepted round');

/** A coordinator's message: it speaks for its own round only. */
const fromCoordinator = (event: Ev): event is Extract<Ev, { from: string }> => 'from' in event && event.from === event.round.by;

const merged = (a: readonly string[], b: readonly string[]): string[] => [...new Set([...a, ...b])].slice(0, ASK_FAILED_MAX);

const tell = (type: NodeStateEvent['type']) => ({ type: 'tell', params: { event: type } }) as const;
const reply = (kind: ReplyKind) => ({ type: 'reply', params: { kind } }) as const;

export const rebuildParticipantMachine = setup({
  types: {
    context: {} as RebuildParticipantContext,
    input: {} as RebuildParticipantInput,
    events: {} as RebuildParticipantEvent,
    emitted: {} as RebuildParticipantEmitted,
  },
  delays: {
    coordinatorSilence: ({ context }) => context.coordinatorSilenceMs,
  },
  guards: {
    isHigherRound: ({ context, event }) => event.type === 'QUIESCE' && fromCoordinator(event) && isHigherRound(event.round, context.accepted),
    isAcceptedRound: ({ context, event }) => fromCoordinator(event) && sameRound(event.round, context.accepted),
    isAcceptedDone: ({ context, event }) => event.type === 'REPOPULATE_DONE' && sameRound(event.round, context.accepted),
    /** The round asks for a reset the drains so far did not do. */
    escalatesReset: ({ context, event }) => event.type === 'QUIESCE' && event.reset && !context.drain.reset,
    drainsLeft: ({ context }) => context.drain.pending > 1,
    isDraining: ({ context }) => context.drain.pending > 0,
    /** A round is accepted and not over: the coordinator is expected to be heard. */
    inRound: or([stateIn({ node: { notified: 'draining' } }), stateIn({ node: 'quiescent' }), stateIn({ node: 'rebuilding' })]),
    waitsForResume: stateIn({ node: { rebuilding: 'repopulated' } }),
  },
  actions: {
    accept: assign(({ event }) => {
      assertEvent(event, 'QUIESCE');
      return { accepted: event.round };
    }),
    tell: emit((_, params: { event: NodeStateEvent['type'] }) => ({ type: 'node_state' as const, event: { type: params.event } })),
    reply: emit(({ context }, params: { kind: ReplyKind }) => {
      const round = acceptedOf(context);
      return { type: 'reply' as const, to: round.by, kind: params.kind, round };
    }),
    startDrain: enqueueActions(({ event, enqueue }) => {
      assertEvent(event, 'QUIESCE');
      enqueue.assign({ drain: { pending: 1, reset: event.reset } });
      enqueue.emit({ type: 'drain', reset: event.reset });
    }),
    /** A drain under way serves a later round too, unless that round also asks for a reset. */
    drainMoreIfReset: enqueueActions(({ context, event, enqueue }) => {
      assertEvent(event, 'QUIESCE');
      if (!event.reset || context.drain.reset) return;
      enqueue.assign({ drain: { pending: context.drain.pending + 1, reset: true } });
      enqueue.emit({ type: 'drain', reset: true });
    }),
    countDrained: assign(({ context }) => ({ drain: { ...context.drain, pending: context.drain.pending - 1 } })),
    startRepopulate: emit(({ context }) => ({ type: 'repopulate' as const, round: acceptedOf(context) })),
    startResume: emit(({ context }) => ({ type: 'resume' as const, round: acceptedOf(context) })),
    noteFailed: assign(({ context, event }) => {
      assertEvent(event, 'FAILURE_NOTICED');
      return { failed: merged(context.failed, event.failed) };
    }),
    clearFailed: assign({ failed: [] }),
    suspectCoordinator: assign(({ context }) => ({ failed: [acceptedOf(context).by] })),
    ask: emit(({ context }) => ({ type: 'ask' as const, failed: context.failed })),
    /** In a round that is heard: the news goes out once, and the coordinator may restart the round. */
    askNow: emit(({ event }) => {
      assertEvent(event, 'FAILURE_NOTICED');
      return { type: 'ask' as const, failed: event.failed.slice(0, ASK_FAILED_MAX) };
    }),
  },
}).createMachine({
  id: machineName,
  context: ({ input }) => ({ ...input, accepted: null, drain: { pending: 0, reset: false }, failed: [] }),
  type: 'parallel',
  states: {
    node: {
      initial: 'normal',
      states: {
        normal: {
          on: {
            FAILURE_NOTICED: { target: 'notified', actions: tell('FAILURE_NOTICED') },
            QUIESCE: { guard: 'isHigherRound', target: 'notified.draining', actions: ['accept', tell('QUIESCE'), 'startDrain'] },
            // The coordinator did not hear this node's acknowledgement.
            RESUME: { guard: 'isAcceptedRound', actions: reply('resumed') },
          },
        },
        notified: {
          initial: 'awaiting',
          states: {
            awaiting: {
              on: { QUIESCE: { guard: 'isHigherRound', target: 'draining', actions: ['accept', 'startDrain'] } },
            },
            draining: {
              on: {
                QUIESCE: { guard: 'isHigherRound', actions: ['accept', 'drainMoreIfReset'] },
                DRAINED: [
                  { guard: 'drainsLeft', actions: 'countDrained' },
                  { guard: 'isDraining', target: '#rebuild-participant.node.quiescent', actions: ['countDrained', tell('QUIESCED'), reply('quiesced')] },
                ],
              },
            },
          },
        },
        quiescent: {
          initial: 'ready',
          states: {
            ready: {
              on: {
                QUIESCE: [
                  { guard: 'isAcceptedRound', actions: reply('quiesced') },
                  { guard: and(['isHigherRound', 'escalatesReset']), target: 'redraining', actions: ['accept', 'startDrain'] },
                  // Nothing has run since this node drained: it is quiescent for the later round too.
                  { guard: 'isHigherRound', actions: ['accept', reply('quiesced')] },
                ],
                REPOPULATE: {
                  guard: 'isAcceptedRound',
                  target: '#rebuild-participant.node.rebuilding',
                  actions: [tell('START_REPOPULATING'), 'startRepopulate'],
                },
              },
            },
            redraining: {
              on: {
                QUIESCE: { guard: 'isHigherRound', actions: ['accept', 'drainMoreIfReset'] },
                DRAINED: [
                  { guard: 'drainsLeft', actions: 'countDrained' },
                  { guard: 'isDraining', target: 'ready', actions: ['countDrained', reply('quiesced')] },
                ],
              },
            },
          },
        },
        rebuilding: {
          initial: 'repopulating',
          // M14: a node failing during the rebuild restarts it, in a higher round.
          on: { QUIESCE: { guard: 'isHigherRound', target: 'notified.draining', actions: ['accept', tell('QUIESCE'), 'startDrain'] } },
          states: {
            repopulating: {
              on: { REPOPULATE_DONE: { guard: 'isAcceptedDone', target: 'repopulated', actions: [tell('REPOPULATED'), reply('repopulated')] } },
            },
            repopulated: {
              on: {
                REPOPULATE: { guard: 'isAcceptedRound', actions: reply('repopulated') },
                RESUME: {
                  guard: 'isAcceptedRound',
                  target: '#rebuild-participant.node.normal',
                  actions: ['startResume', tell('RESUME'), reply('resumed')],
                },
              },
            },
          },
        },
      },
    },
    coordinator: {
      initial: 'quiet',
      states: {
        quiet: {
          on: {
            FAILURE_NOTICED: { target: 'asking', actions: 'noteFailed' },
            QUIESCE: { guard: 'isHigherRound', target: 'listening', actions: 'clearFailed' },
          },
        },
        asking: {
          entry: 'ask',
          after: { coordinatorSilence: { target: 'asking', reenter: true } },
          on: {
            FAILURE_NOTICED: { target: 'asking', reenter: true, actions: 'noteFailed' },
            QUIESCE: [
              { guard: 'isHigherRound', target: 'listening', actions: 'clearFailed' },
              { guard: and(['isAcceptedRound', 'inRound']), target: 'listening', actions: 'clearFailed' },
            ],
            REPOPULATE: { guard: and(['isAcceptedRound', 'inRound']), target: 'listening', actions: 'clearFailed' },
            RESUME: [
              { guard: and(['isAcceptedRound', 'waitsForResume']), target: 'quiet', actions: 'clearFailed' },
              { guard: and(['isAcceptedRound', 'inRound']), target: 'listening', actions: 'clearFailed' },
            ],
          },
        },
        listening: {
          after: { coordinatorSilence: { target: 'asking', actions: 'suspectCoordinator' } },
          on: {
            FAILURE_NOTICED: { actions: 'askNow' },
            QUIESCE: [
              { guard: 'isHigherRound', target: 'listening', reenter: true },
              { guard: 'isAcceptedRound', target: 'listening', reenter: true },
            ],
            REPOPULATE: { guard: 'isAcceptedRound', target: 'listening', reenter: true },
            RESUME: [
              { guard: and(['isAcceptedRound', 'waitsForResume']), target: 'quiet' },
              { guard: 'isAcceptedRound', target: 'listening', reenter: true },
            ],
          },
        },
      },
    },
  },
});

export type RebuildParticipantSnapshot = SnapshotFrom<typeof rebuildParticipantMachine>;

/** The node's state (M6), as node-state fed this machine's `node_state` events has it. */
export function participantNodeState(snapshot: RebuildParticipantSnapshot): NodeStateName {
  const node = (snapshot.value as { node: NodeStateName | Partial<Record<NodeStateName, string>> }).node;
  return (typeof node === 'string' ? node : Object.keys(node)[0]) as NodeStateName;
}

/** M6: while notified, remote requests get E_RECOVERING. */
export function isServing(snapshot: RebuildParticipantSnapshot): boolean {
  return participantNodeState(snapshot) !== 'notified';
}

/**
 * Node and network state (SPEC.md M6; the recovery that drives it is M14).
 * Safety claim: a node leaves `normal` as soon as it learns of a failure or
 * is told to quiesce, and while `notified` it refuses remote requests, so no
 * page changes under a RAM directory that is about to be rebuilt; it reaches
 * `rebuilding` only through `quiescent` (every GRD page and all copyset
 * information dropped) and returns to `normal` only on *resume operations*.
 *
 * normal --FAILURE_NOTICED | QUIESCE--> notified --QUIESCED--> quiescent
 *   --START_REPOPULATING--> rebuilding --RESUME--> normal
 * REPOPULATED (the node told the coordinator it is done) keeps `rebuilding`
 * and sets `repopulated`. A QUIESCE while rebuilding means the coordinator
 * restarted the rebuild (a node failed during it, M14), so the node goes
 * back to `notified`; a QUIESCE while `notified` or `quiescent` is a repeat
 * and changes nothing (the actor answers it again once quiescent).
 *
 * Emits `{ type: 'node_state', state }` on every change of state.
 */
import { assign, emit, setup, type SnapshotFrom } from 'xstate';

export const machineName = 'node-state';

export type NodeStateName = 'normal' | 'notified' | 'quiescent' | 'rebuilding';

export interface NodeStateContext {
  /** In `rebuilding`: this node has reported repopulation complete. */
  repopulated: boolean;
}

/** The machine needs no configuration. */
export type NodeStateInput = Record<string, never>;

export type NodeStateEvent =
  | { type: 'FAILURE_NOTICED' }
  | { type: 'QUIESCE' }
  | { type: 'QUIESCED' }
  | { type: 'START_REPOPULATING' }
  | { type: 'REPOPULATED' }
  | { type: 'RESUME' };

export type NodeStateEmitted = { type: 'node_state'; state: NodeStateName };

export const nodeStateMachine = setup({
  types: {
    context: {} as NodeStateContext,
    input: {} as NodeStateInput,
    events: {} as NodeStateEvent,
    emitted: {} as NodeStateEmitted,
  },
  actions: {
    announce: emit((_, params: { state: NodeStateName }) => ({ type: 'node_state' as const, state: params.state })),
    markRepopulated: assign({ repopulated: true }),
    clearRepopulated: assign({ repopulated: false }),
  },
}).createMachine({
  id: machineName,
  context: { repopulated: false },
  initial: 'normal',
  states: {
    normal: {
      on: {
        FAILURE_NOTICED: { target: 'notified', actions: { type: 'announce', params: { state: 'notified' } } },
        QUIESCE: { target: 'notified', actions: { type: 'announce', params: { state: 'notified' } } },
      },
    },
    notified: {
      on: {
        QUIESCED: { target: 'quiescent', actions: { type: 'announce', params: { state: 'quiescent' } } },
      },
    },
    quiescent: {
      on: {
        START_REPOPULATING: {
          target: 'rebuilding',
          actions: { type: 'announce', params: { state: 'rebuilding' } },
        },
      },
    },
    rebuilding: {
      // The report belongs to this round of rebuilding only.
      exit: 'clearRepopulated',
      on: {
        REPOPULATED: { actions: 'markRepopulated' },
        RESUME: { target: 'normal', actions: { type: 'announce', params: { state: 'normal' } } },
        QUIESCE: { target: 'notified', actions: { type: 'announce', params: { state: 'notified' } } },
      },
    },
  },
});

export type NodeStateSnapshot = SnapshotFrom<typeof nodeStateMachine>;

export function nodeStateOf(snapshot: NodeStateSnapshot): NodeStateName {
  return snapshot.value as NodeStateName;
}

/** M6: while notified, remote requests get an error saying recovery is in progress. */
export function refusesRemoteRequests(state: NodeStateName): boolean {
  return state === 'notified';
}

/**
 * The network's state from its nodes' states (M6), given the network state
 * before this change. The patent's four rules overlap (one node rebuilding
 * while another is already normal again), so they are applied in this order:
 * 1. any node notified                              -> notified
 * 2. every node quiescent                           -> quiescent
 * 3. every node normal                              -> normal
 * 4. some node normal, and the network was rebuilding
 *    or already normal again (the first node back to
 *    normal ends the recovery for the network)       -> normal
 * 5. some node rebuilding                           -> rebuilding
 * 6. otherwise (normal nodes the quiesce has not reached yet beside
 *    quiescent ones)                                 -> unchanged
 * `previous` is what tells rule 4's normal nodes (back from rebuilding)
 * from rule 6's (not yet notified). An empty list leaves the state unchanged.
 */
export function networkState(previous: NodeStateName, states: readonly NodeStateName[]): NodeStateName {
  if (states.length === 0) return previous;
  if (states.includes('notified')) return 'notified';
  if (states.every((s) => s === 'quiescent')) return 'quiescent';
  if (states.every((s) => s === 'normal')) return 'normal';
  if (states.includes('normal') && (previous === 'rebuilding' || previous === 'normal')) return 'normal';
  if (states.includes('rebuilding')) return 'rebuilding';
  return previous;
}

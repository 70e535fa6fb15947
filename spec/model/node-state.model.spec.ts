/**
 * Generated paths through the node-state machine: every state is reached,
 * every path's state is where M6's transition table leads, and each change
 * (and nothing else) is emitted.
 */
import { expect } from 'chai';
import { getShortestPaths } from 'xstate/graph';
import { nodeStateMachine, type NodeStateEvent, type NodeStateName } from '../../machines/recovery/node-state.js';
import { leafStates, pathEvents, replay } from '../helpers/machine-harness.js';

const events: NodeStateEvent[] = (
  ['FAILURE_NOTICED', 'QUIESCE', 'QUIESCED', 'START_REPOPULATING', 'REPOPULATED', 'RESUME'] as const
).map((type) => ({ type }));

/** M6 and M14 as a table, independent of the machine's code. */
const table: Record<NodeStateName, Partial<Record<NodeStateEvent['type'], NodeStateName>>> = {
  normal: { FAILURE_NOTICED: 'notified', QUIESCE: 'notified' },
  notified: { QUIESCED: 'quiescent' },
  quiescent: { START_REPOPULATING: 'rebuilding' },
  rebuilding: { RESUME: 'normal', QUIESCE: 'notified' },
};

describe('node state (M6), generated paths', () => {
  const paths = getShortestPaths(nodeStateMachine, {
    input: {},
    events,
    serializeState: (s, e) => JSON.stringify([s.value, s.context, e?.type]),
  });

  it('reaches every state', () => {
    const reached = new Set(paths.map((p) => String(p.state.value)));
    expect([...reached].sort()).to.deep.equal(leafStates(nodeStateMachine).sort());
  });

  it('ends every path where the transition table leads', () => {
    for (const p of paths) {
      let at: NodeStateName = 'normal';
      for (const e of pathEvents(p.steps)) at = table[at][e.type] ?? at;
      expect(p.state.value, JSON.stringify(pathEvents(p.steps))).to.equal(at);
    }
  });

  it('emits each change of state once and nothing else', () => {
    for (const p of paths) {
      const { snapshots, emitted } = replay(nodeStateMachine, {}, pathEvents(p.steps));
      const changes = snapshots
        .slice(1)
        .flatMap((s, i) => (s.value !== snapshots[i].value ? [{ type: 'node_state', state: s.value }] : []));
      expect(emitted.flat()).to.deep.equal(changes);
    }
  });

  it('marks repopulation complete only while rebuilding', () => {
    for (const p of paths) {
      if (p.state.context.repopulated) expect(p.state.value).to.equal('rebuilding');
    }
    expect(paths.some((p) => p.state.context.repopulated)).to.equal(true);
  });
});

import { expect } from 'chai';
import { initialTransition, transition } from 'xstate';
import {
  networkState,
  nodeStateMachine,
  nodeStateOf,
  refusesRemoteRequests,
  type NodeStateEvent,
  type NodeStateName,
} from '../../../../machines/recovery/node-state.js';
import { Running, emittedBy } from '../../../helpers/machine-harness.js';

const run = () => new Running(nodeStateMachine, {});
/** Sends the events of these types, in order. */
const steps = (n: Running<typeof nodeStateMachine>, ...types: NodeStateEvent['type'][]) => {
  for (const type of types) n.send({ type } as NodeStateEvent);
};

describe('node state (M6)', () => {
  it('starts normal', () => {
    expect(nodeStateOf(run().snapshot)).to.equal('normal');
  });

  for (const trigger of ['FAILURE_NOTICED', 'QUIESCE'] as const) {
    it(`goes normal -> notified on ${trigger}`, () => {
      const n = run();
      steps(n, trigger);
      expect(n.value).to.equal('notified');
      expect(n.of('node_state')).to.deep.equal([{ type: 'node_state', state: 'notified' }]);
    });
  }

  it('walks a whole recovery and emits each change once', () => {
    const n = run();
    steps(n, 'QUIESCE', 'QUIESCED', 'START_REPOPULATING', 'REPOPULATED', 'RESUME');
    expect(n.value).to.equal('normal');
    expect(n.of('node_state').map((e) => e.state)).to.deep.equal(['notified', 'quiescent', 'rebuilding', 'normal']);
  });

  it('stays rebuilding after reporting repopulation complete, until resume operations', () => {
    const n = run();
    steps(n, 'FAILURE_NOTICED', 'QUIESCED', 'START_REPOPULATING');
    expect(n.snapshot.context.repopulated).to.equal(false);
    steps(n, 'REPOPULATED');
    expect(n.value).to.equal('rebuilding');
    expect(n.snapshot.context.repopulated).to.equal(true);
    n.drain();
    steps(n, 'RESUME');
    expect(n.value).to.equal('normal');
    expect(n.drain()).to.deep.equal([{ type: 'node_state', state: 'normal' }]);
  });

  it('does not skip a step: no repopulating before quiescent, no resume before rebuilding', () => {
    const n = run();
    steps(n, 'START_REPOPULATING', 'RESUME', 'QUIESCED');
    expect(n.value).to.equal('normal');
    steps(n, 'QUIESCE', 'START_REPOPULATING', 'RESUME');
    expect(n.value).to.equal('notified');
    steps(n, 'QUIESCED', 'RESUME');
    expect(n.value).to.equal('quiescent');
  });

  it('goes back to notified when the coordinator restarts the rebuild', () => {
    const n = run();
    steps(n, 'QUIESCE', 'QUIESCED', 'START_REPOPULATING', 'REPOPULATED', 'QUIESCE');
    expect(n.value).to.equal('notified');
    steps(n, 'QUIESCED', 'START_REPOPULATING');
    expect(n.snapshot.context.repopulated).to.equal(false);
  });

  it('treats a repeated quiesce while notified or quiescent as no change', () => {
    const n = run();
    steps(n, 'QUIESCE', 'QUIESCE', 'FAILURE_NOTICED');
    expect(n.value).to.equal('notified');
    steps(n, 'QUIESCED', 'QUIESCE');
    expect(n.value).to.equal('quiescent');
    expect(n.of('node_state').map((e) => e.state)).to.deep.equal(['notified', 'quiescent']);
  });

  it('refuses remote requests only while notified', () => {
    const refusing = (['normal', 'notified', 'quiescent', 'rebuilding'] as const).filter(refusesRemoteRequests);
    expect(refusing).to.deep.equal(['notified']);
  });

  it('works through the pure transition() too', () => {
    const [s0] = initialTransition(nodeStateMachine, {});
    const [s1, actions] = transition(nodeStateMachine, s0, { type: 'FAILURE_NOTICED' });
    expect(s1.value).to.equal('notified');
    expect(emittedBy(actions)).to.deep.equal([{ type: 'node_state', state: 'notified' }]);
  });
});

describe('network state (M6)', () => {
  /** Folds networkState over a sequence of whole-cluster state lists. */
  const fold = (steps: NodeStateName[][]): NodeStateName[] => {
    let net: NodeStateName = 'normal';
    return steps.map((states) => (net = networkState(net, states)));
  };

  it('follows a whole recovery of three nodes, step by step', () => {
    const steps: NodeStateName[][] = [
      ['normal', 'normal', 'normal'],
      ['notified', 'normal', 'normal'], // the coordinator notices a failure
      ['notified', 'notified', 'normal'],
      ['quiescent', 'notified', 'normal'], // any notified: still notified
      ['quiescent', 'quiescent', 'normal'], // the third has not been told yet
      ['quiescent', 'quiescent', 'notified'],
      ['quiescent', 'quiescent', 'quiescent'], // only now quiescent
      ['rebuilding', 'quiescent', 'quiescent'],
      ['rebuilding', 'rebuilding', 'rebuilding'],
      ['normal', 'rebuilding', 'rebuilding'], // the first back to normal
      ['normal', 'normal', 'rebuilding'],
      ['normal', 'normal', 'normal'],
    ];
    expect(fold(steps)).to.deep.equal([
      'normal',
      'notified',
      'notified',
      'notified',
      'notified',
      'notified',
      'quiescent',
      'rebuilding',
      'rebuilding',
      'normal',
      'normal',
      'normal',
    ]);
  });

  it('is notified if any node is, whatever the others', () => {
    for (const prev of ['normal', 'quiescent', 'rebuilding'] as const) {
      expect(networkState(prev, ['rebuilding', 'notified', 'normal'])).to.equal('notified');
    }
  });

  it('is quiescent only when every node is', () => {
    expect(networkState('notified', ['quiescent', 'quiescent', 'rebuilding'])).to.equal('rebuilding');
    expect(networkState('notified', ['quiescent', 'normal'])).to.equal('notified');
    expect(networkState('notified', ['quiescent', 'quiescent'])).to.equal('quiescent');
  });

  it('is rebuilding while nodes rebuild and none is back to normal', () => {
    expect(networkState('quiescent', ['rebuilding', 'quiescent'])).to.equal('rebuilding');
  });

  it('is normal again as soon as the first node returns to normal', () => {
    expect(networkState('rebuilding', ['rebuilding', 'normal', 'rebuilding'])).to.equal('normal');
  });

  it('does not count nodes the quiesce has not reached as returned to normal', () => {
    expect(networkState('quiescent', ['quiescent', 'normal'])).to.equal('quiescent');
  });

  it('keeps its state for an empty cluster', () => {
    expect(networkState('rebuilding', [])).to.equal('rebuilding');
  });
});

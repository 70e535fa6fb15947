import { expect } from 'chai';
import { createActor } from 'xstate';
import { nodeStateMachine, type NodeStateEvent } from '../../../../machines/recovery/node-state.js';
import {
  isServing,
  participantNodeState,
  rebuildParticipantMachine,
  type RebuildParticipantEvent,
} from '../../../../machines/recovery/rebuild-participant.js';
import type { RebuildRound } from '../../../../machines/recovery/rebuild-round.js';
import { Running } from '../../../helpers/machine-harness.js';

const SILENCE_MS = 3000;

/** A participant whose node_state events drive a real node-state actor, as its actor does. */
function run(self = 'b') {
  const p = new Running(rebuildParticipantMachine, { self, coordinatorSilenceMs: SILENCE_MS });
  const node = createActor(nodeStateMachine, { input: {} }).start();
  p.actor.on('node_state', (e) => node.send(e.event as NodeStateEvent));
  return { p, node };
}
type Participant = ReturnType<typeof run>['p'];

const r = (n: number, by = 'a'): RebuildRound => ({ n, by });
const quiesce = (round: RebuildRound, reset = false, from = round.by): RebuildParticipantEvent => ({ type: 'QUIESCE', from, round, reset });
const repopulate = (round: RebuildRound, from = round.by): RebuildParticipantEvent => ({ type: 'REPOPULATE', from, round });
const resume = (round: RebuildRound, from = round.by): RebuildParticipantEvent => ({ type: 'RESUME', from, round });
const done = (round: RebuildRound): RebuildParticipantEvent => ({ type: 'REPOPULATE_DONE', round });
const DRAINED: RebuildParticipantEvent = { type: 'DRAINED' };
const reply = (kind: string, round: RebuildRound) => ({ type: 'reply', to: round.by, kind, round });
const told = (p: Participant) => p.of('node_state').map((e) => (e.event as NodeStateEvent).type);

/** A participant walked into round 1 of a, up to the given step. */
function at(step: 'draining' | 'quiescent' | 'repopulating' | 'repopulated') {
  const t = run();
  t.p.send(quiesce(r(1)));
  if (step !== 'draining') t.p.send(DRAINED);
  if (step === 'repopulating' || step === 'repopulated') t.p.send(repopulate(r(1)));
  if (step === 'repopulated') t.p.send(done(r(1)));
  t.p.drain();
  return t;
}

describe('rebuild participant (M14, M6)', () => {
  it('starts normal and serving, with nothing to say', () => {
    const { p } = run();
    p.send(DRAINED).send(done(r(1))).send(repopulate(r(1))).send(resume(r(1)));
    p.clock.advance(10 * SILENCE_MS);
    expect(p.value).to.deep.equal({ node: 'normal', coordinator: 'quiet' });
    expect(isServing(p.snapshot)).to.equal(true);
    expect(p.emitted).to.deep.equal([]);
  });

  it('on a failure noticed leaves normal, stops serving and asks for a rebuild until a quiesce arrives', () => {
    const { p, node } = run();
    p.send({ type: 'FAILURE_NOTICED', failed: ['x'] });
    expect(p.value).to.deep.equal({ node: { notified: 'awaiting' }, coordinator: 'asking' });
    expect(node.getSnapshot().value).to.equal('notified');
    expect(isServing(p.snapshot)).to.equal(false);
    expect(p.drain()).to.deep.equal([
      { type: 'node_state', event: { type: 'FAILURE_NOTICED' } },
      { type: 'ask', failed: ['x'] },
    ]);
    p.clock.advance(SILENCE_MS - 1);
    expect(p.emitted).to.deep.equal([]);
    p.clock.advance(1);
    expect(p.drain()).to.deep.equal([{ type: 'ask', failed: ['x'] }]);
    // News asks again at once, naming everything noticed.
    p.send({ type: 'FAILURE_NOTICED', failed: ['y', 'x'] });
    expect(p.drain()).to.deep.equal([{ type: 'ask', failed: ['x', 'y'] }]);
    p.send(quiesce(r(1)));
    expect(p.drain()).to.deep.equal([{ type: 'drain', reset: false }]);
    expect(p.value).to.deep.equal({ node: { notified: 'draining' }, coordinator: 'listening' });
  });

  it('accepts a quiesce: drains, and replies quiesced once drained', () => {
    const { p, node } = run();
    p.send(quiesce(r(1), true));
    expect(p.drain()).to.deep.equal([
      { type: 'node_state', event: { type: 'QUIESCE' } },
      { type: 'drain', reset: true },
    ]);
    expect(isServing(p.snapshot)).to.equal(false);
    // A repeat while draining is answered only once quiescent.
    p.send(quiesce(r(1), true));
    expect(p.emitted).to.deep.equal([]);
    p.send(DRAINED);
    expect(p.value).to.deep.equal({ node: { quiescent: 'ready' }, coordinator: 'listening' });
    expect(node.getSnapshot().value).to.equal('quiescent');
    expect(p.drain()).to.deep.equal([{ type: 'node_state', event: { type: 'QUIESCED' } }, reply('quiesced', r(1))]);
    expect(isServing(p.snapshot)).to.equal(true);
    p.send(quiesce(r(1), true));
    expect(p.drain()).to.deep.equal([reply('quiesced', r(1))]);
    p.send(DRAINED);
    expect(p.emitted, 'a stray DRAINED changes nothing').to.deep.equal([]);
  });

  it('ignores a lower round, and a round its sender does not coordinate, in every state', () => {
    for (const step of ['draining', 'quiescent', 'repopulating', 'repopulated'] as const) {
      const { p } = at(step);
      const before = p.snapshot;
      p.send(quiesce(r(0))).send(quiesce(r(1, '0'))).send(quiesce(r(5, 'c'), false, 'a'));
      p.send(repopulate(r(0))).send(repopulate(r(1), 'c')).send(resume(r(0))).send(resume(r(1), 'c'));
      p.send(done(r(0)));
      expect(p.emitted, step).to.deep.equal([]);
      expect(p.value, step).to.deep.equal(before.value);
      expect(p.snapshot.context, step).to.deep.equal(before.context);
    }
  });

  it('repopulates for the accepted round only once quiescent, and reports when the engine is done', () => {
    const d = at('draining');
    d.p.send(repopulate(r(1)));
    expect(d.p.emitted, 'no repopulating before quiescent').to.deep.equal([]);
    const { p, node } = at('quiescent');
    p.send(repopulate(r(1)));
    expect(p.value).to.deep.equal({ node: { rebuilding: 'repopulating' }, coordinator: 'listening' });
    expect(node.getSnapshot().value).to.equal('rebuilding');
    expect(p.drain()).to.deep.equal([
      { type: 'node_state', event: { type: 'START_REPOPULATING' } },
      { type: 'repopulate', round: r(1) },
    ]);
    p.send(repopulate(r(1))).send(resume(r(1))).send(done(r(2)));
    expect(p.emitted, 'repeats and other rounds wait for the engine').to.deep.equal([]);
    p.send(done(r(1)));
    expect(p.drain()).to.deep.equal([{ type: 'node_state', event: { type: 'REPOPULATED' } }, reply('repopulated', r(1))]);
    expect(node.getSnapshot().context.repopulated).to.equal(true);
    p.send(repopulate(r(1)));
    expect(p.drain()).to.deep.equal([reply('repopulated', r(1))]);
  });

  it('resumes on the accepted round, and answers a repeat while normal', () => {
    const { p, node } = at('repopulated');
    p.send(resume(r(1)));
    expect(p.value).to.deep.equal({ node: 'normal', coordinator: 'quiet' });
    expect(node.getSnapshot().value).to.equal('normal');
    expect(p.drain()).to.deep.equal([
      { type: 'resume', round: r(1) },
      { type: 'node_state', event: { type: 'RESUME' } },
      reply('resumed', r(1)),
    ]);
    p.send(resume(r(1)));
    expect(p.drain()).to.deep.equal([reply('resumed', r(1))]);
    p.send(quiesce(r(1))).send(repopulate(r(1)));
    expect(p.emitted, 'the finished round is over').to.deep.equal([]);
    p.clock.advance(10 * SILENCE_MS);
    expect(p.emitted).to.deep.equal([]);
  });

  it('goes back to draining when a higher round arrives while rebuilding (M14 restart)', () => {
    for (const step of ['repopulating', 'repopulated'] as const) {
      const { p, node } = at(step);
      p.send(quiesce(r(2)));
      expect(p.value, step).to.deep.equal({ node: { notified: 'draining' }, coordinator: 'listening' });
      expect(node.getSnapshot().value).to.equal('notified');
      expect(p.drain()).to.deep.equal([
        { type: 'node_state', event: { type: 'QUIESCE' } },
        { type: 'drain', reset: false },
      ]);
      // The engine's late report of the old round's repopulation does not count for the new one.
      p.send(DRAINED).send(repopulate(r(2))).send(done(r(1)));
      expect(p.drain()).to.deep.equal([
        { type: 'node_state', event: { type: 'QUIESCED' } },
        reply('quiesced', r(2)),
        { type: 'node_state', event: { type: 'START_REPOPULATING' } },
        { type: 'repopulate', round: r(2) },
      ]);
    }
  });

  it('lets a drain under way serve a higher round, unless that round asks for a reset', () => {
    const { p } = at('draining');
    p.send(quiesce(r(2)));
    expect(p.emitted).to.deep.equal([]);
    p.send(quiesce(r(3, 'c'), true));
    expect(p.drain()).to.deep.equal([{ type: 'drain', reset: true }]);
    p.send(DRAINED);
    expect(p.emitted, 'the reset drain is not done yet').to.deep.equal([]);
    p.send(DRAINED);
    expect(p.drain()).to.deep.equal([{ type: 'node_state', event: { type: 'QUIESCED' } }, reply('quiesced', r(3, 'c'))]);
  });

  it('answers a higher round at once while quiescent, and drains again first when it asks for a reset', () => {
    const { p, node } = at('quiescent');
    p.send(quiesce(r(2)));
    expect(p.drain()).to.deep.equal([reply('quiesced', r(2))]);
    p.send(quiesce(r(3), true));
    expect(p.value).to.deep.equal({ node: { quiescent: 'redraining' }, coordinator: 'listening' });
    expect(p.drain()).to.deep.equal([{ type: 'drain', reset: true }]);
    p.send(quiesce(r(3), true)).send(repopulate(r(3)));
    expect(p.emitted, 'not quiescent for round 3 until drained').to.deep.equal([]);
    p.send(DRAINED);
    expect(p.drain()).to.deep.equal([reply('quiesced', r(3))]);
    expect(told(p)).to.deep.equal([]);
    expect(node.getSnapshot().value).to.equal('quiescent');
    p.send(quiesce(r(4), true));
    expect(p.drain(), 'the reset is done already').to.deep.equal([reply('quiesced', r(4))]);
  });

  it('asks another anchor when the round\'s coordinator falls silent, until it is heard again', () => {
    const { p } = at('quiescent');
    p.clock.advance(SILENCE_MS - 1);
    p.send(quiesce(r(1)));
    p.drain();
    p.clock.advance(SILENCE_MS - 1);
    expect(p.emitted, 'a message from the coordinator restarts the watch').to.deep.equal([]);
    p.clock.advance(1);
    expect(p.value).to.deep.equal({ node: { quiescent: 'ready' }, coordinator: 'asking' });
    expect(p.drain()).to.deep.equal([{ type: 'ask', failed: ['a'] }]);
    p.clock.advance(SILENCE_MS);
    expect(p.drain()).to.deep.equal([{ type: 'ask', failed: ['a'] }]);
    p.send(repopulate(r(1)));
    expect(p.value).to.deep.equal({ node: { rebuilding: 'repopulating' }, coordinator: 'listening' });
    p.drain();
    p.clock.advance(SILENCE_MS - 1);
    expect(p.emitted).to.deep.equal([]);
  });

  it('watches the coordinator while draining and rebuilding too, and a new coordinator\'s round ends the asking', () => {
    for (const step of ['draining', 'repopulating', 'repopulated'] as const) {
      const { p } = at(step);
      p.clock.advance(SILENCE_MS);
      expect(p.drain(), step).to.deep.equal([{ type: 'ask', failed: ['a'] }]);
      p.send(quiesce(r(2, 'c')));
      expect(p.value, step).to.deep.include({ coordinator: 'listening' });
      expect(p.snapshot.context.accepted).to.deep.equal(r(2, 'c'));
    }
  });

  it('asks once about a failure noticed mid-round, and stays in the round', () => {
    const { p } = at('repopulating');
    p.send({ type: 'FAILURE_NOTICED', failed: ['d'] });
    expect(p.drain()).to.deep.equal([{ type: 'ask', failed: ['d'] }]);
    expect(p.value).to.deep.equal({ node: { rebuilding: 'repopulating' }, coordinator: 'listening' });
    p.clock.advance(SILENCE_MS - 1);
    expect(p.emitted).to.deep.equal([]);
  });

  it('ignores a repopulate or resume while asking outside a round', () => {
    const { p } = at('repopulated');
    p.send(resume(r(1)));
    p.send({ type: 'FAILURE_NOTICED', failed: ['x'] });
    p.drain();
    p.send(repopulate(r(1))).send(resume(r(1))).send(quiesce(r(1)));
    expect(p.emitted, 'the finished round is over, and the coordinator not heard').to.deep.equal([]);
    expect(p.value).to.deep.equal({ node: { notified: 'awaiting' }, coordinator: 'asking' });
  });

  it('keeps node-state in its own state through a whole round with a restart', () => {
    const { p, node } = run();
    const steps: RebuildParticipantEvent[] = [
      { type: 'FAILURE_NOTICED', failed: ['x'] },
      quiesce(r(1)),
      DRAINED,
      repopulate(r(1)),
      quiesce(r(2)),
      DRAINED,
      repopulate(r(2)),
      done(r(2)),
      resume(r(2)),
    ];
    for (const e of steps) {
      p.send(e);
      expect(node.getSnapshot().value, e.type).to.equal(participantNodeState(p.snapshot));
    }
    expect(told(p)).to.deep.equal([
      'FAILURE_NOTICED',
      'QUIESCED',
      'START_REPOPULATING',
      'QUIESCE',
      'QUIESCED',
      'START_REPOPULATING',
      'REPOPULATED',
      'RESUME',
    ]);
  });
});

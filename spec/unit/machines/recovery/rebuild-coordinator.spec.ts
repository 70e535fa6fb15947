import { expect } from 'chai';
import {
  coordinatorStatus,
  rebuildCoordinatorMachine,
  type RebuildCoordinatorEvent,
} from '../../../../machines/recovery/rebuild-coordinator.js';
import { compareRounds, coordinatorFor, roundLabel, type RebuildRound } from '../../../../machines/recovery/rebuild-round.js';
import { Running } from '../../../helpers/machine-harness.js';

const RETRY_MS = 100;
const PHASE_TIMEOUT_MS = 1000;
const run = (self = 'a') => new Running(rebuildCoordinatorMachine, { self, retryMs: RETRY_MS, phaseTimeoutMs: PHASE_TIMEOUT_MS });
type Coordinator = ReturnType<typeof run>;

const r = (n: number, by = 'a'): RebuildRound => ({ n, by });
const start = (participants: string[], reset: string[] = []): RebuildCoordinatorEvent => ({ type: 'START', participants, reset });
const replies = (c: Coordinator, type: 'QUIESCED' | 'REPOPULATED' | 'RESUMED', round: RebuildRound, ...from: string[]) => {
  for (const f of from) c.send({ type, from: f, round });
};
/** Whom each message of a type went to, in order. */
const to = (c: Coordinator, type: 'quiesce' | 'repopulate' | 'resume') => c.of(type).map((e) => e.to);
const phases = (c: Coordinator) => c.of('phase').map((e) => `${e.phase}@${roundLabel(e.round as RebuildRound)}`);

/** A round over a, b, c walked to the start of the given phase. */
function at(phase: 'quiescing' | 'repopulating' | 'resuming'): Coordinator {
  const c = run();
  c.send(start(['c', 'a', 'b']));
  if (phase !== 'quiescing') replies(c, 'QUIESCED', r(1), 'a', 'b', 'c');
  if (phase === 'resuming') replies(c, 'REPOPULATED', r(1), 'a', 'b', 'c');
  c.drain();
  return c;
}

describe('rebuild rounds (M14)', () => {
  it('orders rounds by number, then by coordinator id, so two coordinators never tie', () => {
    expect(compareRounds(r(2, 'z'), r(3, 'a'))).to.be.lessThan(0);
    expect(compareRounds(r(3, 'a'), r(3, 'b'))).to.be.lessThan(0);
    expect(compareRounds(r(3, 'b'), r(3, 'b'))).to.equal(0);
    expect(compareRounds(r(4, 'a'), r(3, 'b'))).to.be.greaterThan(0);
  });

  it('picks the lowest live anchor id to coordinate, none when no anchor is live', () => {
    expect(coordinatorFor(['c', 'a', 'b'])).to.equal('a');
    expect(coordinatorFor([])).to.equal(undefined);
  });
});

describe('rebuild coordinator (M14)', () => {
  it('is idle until this anchor coordinates, and ignores replies meanwhile', () => {
    const c = run();
    replies(c, 'QUIESCED', r(1), 'a');
    c.send({ type: 'PARTICIPANT_FAILED', id: 'b' }).send({ type: 'QUORUM_LOST' });
    c.clock.advance(5 * PHASE_TIMEOUT_MS);
    expect(c.value).to.equal('idle');
    expect(c.emitted).to.deep.equal([]);
    expect(coordinatorStatus(c.snapshot)).to.deep.equal({ phase: 'idle', round: null, waiting: [], states: {} });
  });

  it('quiesces every participant, itself included, and flags the ones to reset', () => {
    const c = run();
    c.send(start(['c', 'a', 'b', 'a'], ['c', 'x']));
    expect(c.value).to.deep.equal({ running: { quiescing: 'sending' } });
    expect(c.drain()).to.deep.equal([
      { type: 'phase', round: r(1), phase: 'quiescing', waiting: ['a', 'b', 'c'] },
      { type: 'quiesce', to: 'a', round: r(1), participants: ['a', 'b', 'c'], reset: false, dbVersion: 0 },
      { type: 'quiesce', to: 'b', round: r(1), participants: ['a', 'b', 'c'], reset: false, dbVersion: 0 },
      { type: 'quiesce', to: 'c', round: r(1), participants: ['a', 'b', 'c'], reset: true, dbVersion: 0 },
    ]);
    expect(c.snapshot.context.reset).to.deep.equal(['c']);
    expect(c.snapshot.context.states).to.deep.equal({ a: 'notified', b: 'notified', c: 'notified' });
  });

  it('asks again every retryMs, only those that have not replied', () => {
    const c = at('quiescing');
    replies(c, 'QUIESCED', r(1), 'b');
    c.clock.advance(RETRY_MS - 1);
    expect(c.emitted).to.deep.equal([]);
    c.clock.advance(1);
    expect(to(c, 'quiesce')).to.deep.equal(['a', 'c']);
    replies(c, 'QUIESCED', r(1), 'a');
    c.clock.advance(RETRY_MS);
    expect(to(c, 'quiesce')).to.deep.equal(['a', 'c', 'c']);
    expect(coordinatorStatus(c.snapshot)).to.deep.include({ phase: 'quiescing', waiting: ['c'] });
  });

  it('starts repopulating only once every participant replied quiesced', () => {
    const c = at('quiescing');
    replies(c, 'QUIESCED', r(1), 'a', 'b');
    expect(c.value).to.deep.equal({ running: { quiescing: 'sending' } });
    expect(c.of('repopulate')).to.deep.equal([]);
    replies(c, 'QUIESCED', r(1), 'c');
    expect(c.value).to.deep.equal({ running: { repopulating: 'sending' } });
    expect(c.drain()).to.deep.equal([
      { type: 'phase', round: r(1), phase: 'repopulating', waiting: ['a', 'b', 'c'] },
      { type: 'repopulate', to: 'a', round: r(1), dbVersion: 0 },
      { type: 'repopulate', to: 'b', round: r(1), dbVersion: 0 },
      { type: 'repopulate', to: 'c', round: r(1), dbVersion: 0 },
    ]);
    expect(c.snapshot.context.states).to.deep.equal({ a: 'quiescent', b: 'quiescent', c: 'quiescent' });
  });

  it('repeats start repopulating to whoever has not reported, and resumes only once all have', () => {
    const c = at('repopulating');
    replies(c, 'REPOPULATED', r(1), 'c', 'a');
    c.clock.advance(RETRY_MS);
    expect(to(c, 'repopulate')).to.deep.equal(['b']);
    expect(c.of('resume')).to.deep.equal([]);
    replies(c, 'REPOPULATED', r(1), 'b');
    expect(c.value).to.deep.equal({ running: { resuming: 'sending' } });
    expect(phases(c)).to.deep.equal(['resuming@a/1']);
    expect(to(c, 'resume')).to.deep.equal(['a', 'b', 'c']);
    expect(c.snapshot.context.states).to.deep.equal({ a: 'rebuilding', b: 'rebuilding', c: 'rebuilding' });
  });

  it('resumes each participant until it acknowledges, then is idle with the round remembered', () => {
    const c = at('resuming');
    replies(c, 'RESUMED', r(1), 'a', 'b');
    c.clock.advance(RETRY_MS);
    expect(to(c, 'resume')).to.deep.equal(['c']);
    replies(c, 'RESUMED', r(1), 'c');
    expect(c.value).to.equal('idle');
    expect(c.of('phase').at(-1)).to.deep.equal({ type: 'phase', round: r(1), phase: 'done', waiting: [] });
    expect(coordinatorStatus(c.snapshot)).to.deep.equal({
      phase: 'idle',
      round: r(1),
      waiting: [],
      states: { a: 'normal', b: 'normal', c: 'normal' },
    });
    c.drain();
    c.clock.advance(5 * PHASE_TIMEOUT_MS);
    expect(c.emitted, 'no timer outlives the round').to.deep.equal([]);
    c.send(start(['a', 'b']));
    expect(c.snapshot.context.round).to.deep.equal(r(2));
  });

  it('runs a round of itself alone', () => {
    const c = run();
    c.send(start(['a']));
    replies(c, 'QUIESCED', r(1), 'a');
    replies(c, 'REPOPULATED', r(1), 'a');
    replies(c, 'RESUMED', r(1), 'a');
    expect(c.value).to.equal('idle');
    expect(phases(c)).to.deep.equal(['quiescing@a/1', 'repopulating@a/1', 'resuming@a/1', 'done@a/1']);
  });

  it('never counts a reply of another round, from a non-participant, of another phase, or twice', () => {
    const c = at('quiescing');
    replies(c, 'QUIESCED', r(0), 'a', 'b', 'c');
    replies(c, 'QUIESCED', r(1, 'b'), 'a', 'b', 'c');
    replies(c, 'QUIESCED', r(2), 'a', 'b', 'c');
    replies(c, 'QUIESCED', r(1), 'x');
    replies(c, 'REPOPULATED', r(1), 'a', 'b', 'c');
    replies(c, 'RESUMED', r(1), 'a', 'b', 'c');
    replies(c, 'QUIESCED', r(1), 'a', 'a', 'b', 'b');
    expect(c.value).to.deep.equal({ running: { quiescing: 'sending' } });
    expect(c.snapshot.context.states).to.deep.equal({ a: 'quiescent', b: 'quiescent', c: 'notified' });
    replies(c, 'QUIESCED', r(1), 'c');
    // Late quiesced replies, and a repopulated one of an old round, in the next phase.
    replies(c, 'QUIESCED', r(1), 'a', 'b', 'c');
    replies(c, 'REPOPULATED', r(0), 'a', 'b', 'c');
    replies(c, 'RESUMED', r(1), 'a', 'b', 'c');
    expect(c.value).to.deep.equal({ running: { repopulating: 'sending' } });
    expect(c.snapshot.context.states).to.deep.equal({ a: 'quiescent', b: 'quiescent', c: 'quiescent' });
  });

  for (const phase of ['quiescing', 'repopulating', 'resuming'] as const) {
    it(`restarts the round, one higher with the same participants, when ${phase} does not finish in time`, () => {
      const c = at(phase);
      const reply = ({ quiescing: 'QUIESCED', repopulating: 'REPOPULATED', resuming: 'RESUMED' } as const)[phase];
      replies(c, reply, r(1), 'a');
      c.clock.advance(PHASE_TIMEOUT_MS - 1);
      expect(c.of('phase')).to.deep.equal([]);
      c.drain();
      c.clock.advance(1);
      expect(c.drain()).to.deep.equal([
        { type: 'phase', round: r(1), phase: 'restarted', waiting: ['b', 'c'] },
        { type: 'phase', round: r(2), phase: 'quiescing', waiting: ['a', 'b', 'c'] },
        { type: 'quiesce', to: 'a', round: r(2), participants: ['a', 'b', 'c'], reset: false, dbVersion: 0 },
        { type: 'quiesce', to: 'b', round: r(2), participants: ['a', 'b', 'c'], reset: false, dbVersion: 0 },
        { type: 'quiesce', to: 'c', round: r(2), participants: ['a', 'b', 'c'], reset: false, dbVersion: 0 },
      ]);
      expect(c.value).to.deep.equal({ running: { quiescing: 'sending' } });
      // The old round's replies no longer count.
      replies(c, 'QUIESCED', r(1), 'a', 'b', 'c');
      expect(c.snapshot.context.states).to.deep.equal({ a: 'notified', b: 'notified', c: 'notified' });
    });
  }

  it('times each phase from its own start: retries and replies do not extend it', () => {
    const c = at('quiescing');
    c.clock.advance(PHASE_TIMEOUT_MS / 2);
    replies(c, 'QUIESCED', r(1), 'a', 'b', 'c');
    c.clock.advance(PHASE_TIMEOUT_MS / 2);
    expect(c.of('phase').map((e) => e.phase), 'the quiescing timer stopped with its phase').to.deep.equal(['repopulating']);
    c.clock.advance(PHASE_TIMEOUT_MS / 2);
    expect(c.of('phase').map((e) => e.phase)).to.deep.equal(['repopulating', 'restarted', 'quiescing']);
  });

  it('restarts without a participant counted failed mid-round, and keeps the resets', () => {
    const c = run();
    c.send(start(['a', 'b', 'c'], ['c']));
    replies(c, 'QUIESCED', r(1), 'a', 'b', 'c');
    replies(c, 'REPOPULATED', r(1), 'a');
    c.drain();
    c.send({ type: 'PARTICIPANT_FAILED', id: 'b' });
    expect(c.drain()).to.deep.equal([
      { type: 'phase', round: r(1), phase: 'restarted', waiting: ['b', 'c'] },
      { type: 'phase', round: r(2), phase: 'quiescing', waiting: ['a', 'c'] },
      { type: 'quiesce', to: 'a', round: r(2), participants: ['a', 'c'], reset: false, dbVersion: 0 },
      { type: 'quiesce', to: 'c', round: r(2), participants: ['a', 'c'], reset: true, dbVersion: 0 },
    ]);
    replies(c, 'QUIESCED', r(2), 'b');
    replies(c, 'QUIESCED', r(2), 'a', 'c');
    expect(c.value).to.deep.equal({ running: { repopulating: 'sending' } });
    expect(to(c, 'repopulate')).to.deep.equal(['a', 'c']);
  });

  it('ignores a failure of a node that is not a participant, or of itself', () => {
    const c = at('repopulating');
    c.send({ type: 'PARTICIPANT_FAILED', id: 'x' }).send({ type: 'PARTICIPANT_FAILED', id: 'a' });
    expect(c.emitted).to.deep.equal([]);
    expect(c.snapshot.context.round).to.deep.equal(r(1));
  });

  it('restarts on a START while a round runs, with the new participants and every reset still owed', () => {
    const c = run();
    c.send(start(['a', 'b'], ['b']));
    replies(c, 'QUIESCED', r(1), 'a');
    c.drain();
    c.send(start(['a', 'b', 'd'], ['d']));
    expect(c.drain()).to.deep.equal([
      { type: 'phase', round: r(1), phase: 'restarted', waiting: ['b'] },
      { type: 'phase', round: r(2), phase: 'quiescing', waiting: ['a', 'b', 'd'] },
      { type: 'quiesce', to: 'a', round: r(2), participants: ['a', 'b', 'd'], reset: false, dbVersion: 0 },
      { type: 'quiesce', to: 'b', round: r(2), participants: ['a', 'b', 'd'], reset: true, dbVersion: 0 },
      { type: 'quiesce', to: 'd', round: r(2), participants: ['a', 'b', 'd'], reset: true, dbVersion: 0 },
    ]);
  });

  it('owes one more round to a START that changes nothing but comes while resuming, and starts it once this round is done', () => {
    const c = at('resuming');
    replies(c, 'RESUMED', r(1), 'a');
    c.send(start(['a', 'b', 'c']));
    expect(c.drain(), 'the resuming round goes on').to.deep.equal([]);
    replies(c, 'RESUMED', r(1), 'b', 'c');
    expect(phases(c)).to.deep.equal(['done@a/1', 'quiescing@a/2']);
    expect(to(c, 'quiesce')).to.deep.equal(['a', 'b', 'c']);
    // That round owes nothing: once done, the coordinator is idle.
    c.drain();
    replies(c, 'QUIESCED', r(2), 'a', 'b', 'c');
    replies(c, 'REPOPULATED', r(2), 'a', 'b', 'c');
    replies(c, 'RESUMED', r(2), 'a', 'b', 'c');
    expect(phases(c)).to.deep.equal(['repopulating@a/2', 'resuming@a/2', 'done@a/2']);
    expect(c.snapshot.value).to.equal('idle');
  });

  it('rules by the newest node database a participant replied quiesced with (a restarted coordinator may be behind)', () => {
    const c = run();
    c.send({ type: 'START', participants: ['a', 'b', 'c'], reset: [], dbVersion: 3 });
    c.send({ type: 'QUIESCED', from: 'a', round: r(1), dbVersion: 3 });
    c.send({ type: 'QUIESCED', from: 'b', round: r(1), dbVersion: 9 });
    c.send({ type: 'QUIESCED', from: 'c', round: r(1), dbVersion: 5 });
    expect(c.of('repopulate').map((e) => [e.to, e.dbVersion])).to.deep.equal([
      ['a', 9],
      ['b', 9],
      ['c', 9],
    ]);
  });

  it('restarts on a START naming a newer node database (an arena handed on mid-round), and its quiesces carry that version', () => {
    const c = run();
    c.send({ type: 'START', participants: ['a', 'b'], reset: [], dbVersion: 7 });
    expect(c.of('quiesce').map((q) => q.dbVersion)).to.deep.equal([7, 7]);
    replies(c, 'QUIESCED', r(1), 'a');
    c.drain();
    c.send({ type: 'START', participants: ['a', 'b'], reset: [], dbVersion: 7 });
    expect(c.drain(), 'the same participants and table change nothing').to.deep.equal([]);
    c.send({ type: 'START', participants: ['a', 'b'], reset: [], dbVersion: 8 });
    expect(phases(c)).to.deep.equal(['restarted@a/1', 'quiescing@a/2']);
    expect(c.of('quiesce').map((q) => [q.to, q.dbVersion])).to.deep.equal([
      ['a', 8],
      ['b', 8],
    ]);
    // A restart that names no version (a phase timed out) keeps the round's.
    c.drain();
    c.send({ type: 'PARTICIPANT_FAILED', id: 'b' });
    expect(c.of('quiesce').map((q) => [q.to, q.dbVersion])).to.deep.equal([['a', 8]]);
  });

  it('takes only the new resets once a round has finished', () => {
    const c = run();
    c.send(start(['a', 'b'], ['b']));
    replies(c, 'QUIESCED', r(1), 'a', 'b');
    replies(c, 'REPOPULATED', r(1), 'a', 'b');
    replies(c, 'RESUMED', r(1), 'a', 'b');
    c.drain();
    c.send(start(['a', 'b']));
    expect(c.of('quiesce').map((q) => q.reset)).to.deep.equal([false, false]);
  });

  it('yields to a higher round, and numbers its next round above it', () => {
    const c = at('repopulating');
    c.send({ type: 'HIGHER_ROUND', round: r(1, '0') });
    c.send({ type: 'HIGHER_ROUND', round: r(1) });
    expect(c.emitted, 'a lower or equal round changes nothing').to.deep.equal([]);
    c.send({ type: 'HIGHER_ROUND', round: r(4, 'b') });
    expect(c.value).to.equal('idle');
    expect(c.drain()).to.deep.equal([{ type: 'phase', round: r(1), phase: 'yielded', waiting: ['a', 'b', 'c'] }]);
    c.clock.advance(5 * PHASE_TIMEOUT_MS);
    expect(c.emitted).to.deep.equal([]);
    c.send({ type: 'HIGHER_ROUND', round: r(6, 'c') });
    c.send({ type: 'HIGHER_ROUND', round: r(5, 'c') });
    c.send(start(['a', 'b']));
    expect(c.snapshot.context.round).to.deep.equal(r(7));
  });

  it('aborts when quorum is lost, and sends nothing more', () => {
    const c = at('quiescing');
    replies(c, 'QUIESCED', r(1), 'b');
    c.send({ type: 'QUORUM_LOST' });
    expect(c.value).to.equal('idle');
    expect(c.drain()).to.deep.equal([{ type: 'phase', round: r(1), phase: 'aborted', waiting: ['a', 'c'] }]);
    c.clock.advance(5 * PHASE_TIMEOUT_MS);
    replies(c, 'QUIESCED', r(1), 'a', 'c');
    expect(c.emitted).to.deep.equal([]);
    c.send(start(['a', 'b', 'c']));
    expect(c.snapshot.context.round).to.deep.equal(r(2));
  });

  it('refuses a round it does not take part in: a bug in its actor', () => {
    const c = run();
    let failed: unknown;
    c.actor.subscribe({ error: (e) => (failed = e) });
    c.send(start(['b', 'c']));
    expect(String(failed)).to.match(/the coordinator takes part in its own round/);
    expect(c.snapshot.status).to.equal('error');
    expect(String(c.snapshot.error)).to.match(/the coordinator takes part in its own round/);
  });
});

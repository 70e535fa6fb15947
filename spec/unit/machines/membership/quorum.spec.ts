import { expect } from 'chai';
import { initialTransition, transition } from 'xstate';
import {
  hasMajority,
  quorumMachine,
  quorumToSend,
  reachableVotes,
  type QuorumEvent,
  type QuorumInput,
} from '../../../../machines/membership/quorum.js';
import { Running, emittedBy } from '../../../helpers/machine-harness.js';

const timeoutMs = 3000;
const input = (anchor: boolean, role: 'monitor' | 'member'): QuorumInput => ({ anchor, role, quorumTimeoutMs: timeoutMs });

const own = (reachable: number, total = 5, at = 0): QuorumEvent => ({
  type: 'CONNECTIVITY',
  reachableVotes: reachable,
  totalVotes: total,
  source: 'own',
  at,
});
const fromMonitorPulse = (reachable: number, total = 5, at = 0): QuorumEvent => ({
  type: 'CONNECTIVITY',
  reachableVotes: reachable,
  totalVotes: total,
  source: 'monitor_pulse',
  at,
});
const heard = (
  has: boolean,
  via: 'member_pulse' | 'monitor_pulse' | 'upper_pulse',
  fromAnchor = true,
  ttlMs = timeoutMs,
  at = 0,
): QuorumEvent => ({
  type: 'QUORUM_HEARD',
  has,
  via,
  fromAnchor,
  ttlMs,
  at,
});

const run = (anchor: boolean, role: 'monitor' | 'member') => new Running(quorumMachine, input(anchor, role));
type Run = ReturnType<typeof run>;

/** `q` follows what it is told: quorate on `on`, without quorum again on `off`. */
function expectFollows(q: Run, on: QuorumEvent, off: QuorumEvent): void {
  q.send(on);
  expect(q.value).to.equal('quorate');
  q.send(off);
  expect(q.value).to.equal('noQuorum');
}

/** The quorum state `q` would put in a pulse it sends now. */
const sent = (q: Run) => quorumToSend(q.snapshot, q.clock.now());

describe('quorum (M5)', () => {
  describe('hasMajority', () => {
    it('needs more than half of the votes: exactly half is not quorum', () => {
      expect(hasMajority(3, 5)).to.equal(true);
      expect(hasMajority(2, 5)).to.equal(false);
      expect(hasMajority(2, 4)).to.equal(false);
      expect(hasMajority(3, 4)).to.equal(true);
      expect(hasMajority(1, 1)).to.equal(true);
    });

    it('never holds with no votes configured', () => {
      expect(hasMajority(0, 0)).to.equal(false);
    });
  });

  describe('reachableVotes', () => {
    const anchors = [
      { id: 'a', votes: 3 },
      { id: 'b', votes: 1 },
      { id: 'c', votes: 1 },
    ];

    it('sums the weighted votes of the reachable anchors only', () => {
      expect(reachableVotes(new Set(['a', 'x']), anchors)).to.equal(3);
      expect(reachableVotes((id) => id !== 'a', anchors)).to.equal(2);
    });

    it('lets one heavy anchor carry quorum alone, but not half', () => {
      expect(hasMajority(reachableVotes(new Set(['a']), anchors), 5)).to.equal(true);
      const halves = [
        { id: 'a', votes: 2 },
        { id: 'b', votes: 1 },
        { id: 'c', votes: 1 },
      ];
      expect(hasMajority(reachableVotes(new Set(['a']), halves), 4)).to.equal(false);
      expect(hasMajority(reachableVotes(new Set(['b', 'c']), halves), 4)).to.equal(false);
    });
  });

  describe('monitor and anchor', () => {
    it('recomputes from its own bitmap at every deadline', () => {
      const q = run(true, 'monitor');
      expectFollows(q, own(3), own(2));
      expect(q.of('quorum').map((e) => e.has)).to.deep.equal([true, false]);
    });

    it('ignores the bitmap of a monitor pulse', () => {
      const q = run(true, 'monitor');
      q.send(fromMonitorPulse(5));
      expect(q.value).to.equal('noQuorum');
    });

    it('ignores quorum state received from other anchors', () => {
      const q = run(true, 'monitor');
      q.send(heard(true, 'member_pulse'));
      expect(q.value).to.equal('noQuorum');
      q.send(own(4)).send(heard(false, 'member_pulse'));
      expect(q.value).to.equal('quorate');
    });
  });

  describe('monitor, not anchor', () => {
    it('adopts at once the state in a member pulse from an anchor', () => {
      expectFollows(run(false, 'monitor'), heard(true, 'member_pulse'), heard(false, 'member_pulse'));
    });

    it('does not compute quorum from any bitmap', () => {
      const q = run(false, 'monitor');
      q.send(own(5)).send(fromMonitorPulse(5));
      expect(q.value).to.equal('noQuorum');
    });

    it('does not take state that no anchor computed, nor a monitor pulse', () => {
      const q = run(false, 'monitor');
      q.send(heard(true, 'member_pulse', false));
      q.send(heard(true, 'monitor_pulse'));
      expect(q.value).to.equal('noQuorum');
    });

    it('with groups, adopts the state in its upper monitor\'s pulses (M4)', () => {
      expectFollows(run(false, 'monitor'), heard(true, 'upper_pulse', false), heard(false, 'upper_pulse', false));
    });

    it('sends the state it adopted in its monitor pulses', () => {
      const q = run(false, 'monitor');
      expect(sent(q)?.has).to.equal(false);
      q.send(heard(true, 'member_pulse'));
      expect(sent(q)?.has).to.equal(true);
    });
  });

  describe('member and anchor', () => {
    it('recomputes from the bitmap of each monitor pulse', () => {
      expectFollows(run(true, 'member'), fromMonitorPulse(3), fromMonitorPulse(1));
    });

    it("ignores the monitor's quorum state and its own-bitmap source", () => {
      const q = run(true, 'member');
      q.send(heard(true, 'monitor_pulse')).send(own(5));
      expect(q.value).to.equal('noQuorum');
      q.send(fromMonitorPulse(3)).send(heard(false, 'monitor_pulse'));
      expect(q.value).to.equal('quorate');
    });

    it('puts what it computed in its member pulses', () => {
      const q = run(true, 'member');
      expect(sent(q)?.has).to.equal(false);
      q.send(fromMonitorPulse(3));
      expect(sent(q)?.has).to.equal(true);
    });
  });

  describe('member, not anchor', () => {
    it('takes quorum state from monitor pulses', () => {
      expectFollows(run(false, 'member'), heard(true, 'monitor_pulse', false), heard(false, 'monitor_pulse', false));
    });

    it('computes nothing and takes nothing from member pulses', () => {
      const q = run(false, 'member');
      q.send(fromMonitorPulse(5)).send(own(5)).send(heard(true, 'member_pulse'));
      expect(q.value).to.equal('noQuorum');
    });

    it('sends no quorum state', () => {
      const q = run(false, 'member');
      q.send(heard(true, 'monitor_pulse'));
      expect(sent(q)).to.equal(undefined);
    });
  });

  describe('role changes', () => {
    it('a member anchor promoted to monitor switches to its own bitmap', () => {
      const q = run(true, 'member');
      q.send(fromMonitorPulse(3));
      q.send({ type: 'ROLE', role: 'monitor' });
      expect(q.value).to.equal('quorate');
      q.send(fromMonitorPulse(1));
      expect(q.value).to.equal('quorate');
      q.send(own(1));
      expect(q.value).to.equal('noQuorum');
    });

    it('a non-anchor monitor stepping down starts sending nothing', () => {
      const q = run(false, 'monitor');
      q.send(heard(true, 'member_pulse'));
      q.send({ type: 'ROLE', role: 'member' });
      expect(sent(q)).to.equal(undefined);
      expect(q.value).to.equal('quorate');
    });
  });

  describe('the quorum-expiry timer', () => {
    it('drops quorum after quorumTimeoutMs without quorum state', () => {
      const q = run(false, 'member');
      q.send(heard(true, 'monitor_pulse'));
      q.clock.advance(timeoutMs - 1);
      expect(q.value).to.equal('quorate');
      q.clock.advance(1);
      expect(q.value).to.equal('noQuorum');
      expect(q.of('quorum').map((e) => e.has)).to.deep.equal([true, false]);
    });

    it('is restarted by every receipt of quorum state', () => {
      const q = run(false, 'member');
      q.send(heard(true, 'monitor_pulse'));
      for (let i = 0; i < 5; i++) {
        q.clock.advance(timeoutMs - 1);
        q.send(heard(true, 'monitor_pulse'));
      }
      expect(q.value).to.equal('quorate');
      q.clock.advance(timeoutMs);
      expect(q.value).to.equal('noQuorum');
    });

    it("an adopted state lives only what its sender had left: relays never extend it", () => {
      const q = run(false, 'member');
      q.send(heard(true, 'monitor_pulse', false, 1000, 0));
      q.clock.advance(400);
      expect(quorumToSend({ ...q.snapshot, context: { ...q.snapshot.context, role: 'monitor' } } as typeof q.snapshot, q.clock.now())).to.deep.equal({ has: true, ttlMs: 600 });
      q.clock.advance(600);
      expect(q.value).to.equal('noQuorum');
    });

    it('never keeps an adopted state longer than its own timeout', () => {
      const q = run(false, 'member');
      q.send(heard(true, 'monitor_pulse', false, timeoutMs * 10));
      q.clock.advance(timeoutMs);
      expect(q.value).to.equal('noQuorum');
    });

    it('ignores a state whose lifetime has run out', () => {
      const q = run(false, 'member');
      q.send(heard(true, 'monitor_pulse', false, 0));
      expect(q.value).to.equal('noQuorum');
    });

    it('an anchor sends its own computation with a full lifetime', () => {
      const q = run(true, 'member');
      q.send(fromMonitorPulse(3));
      expect(sent(q)).to.deep.equal({ has: true, ttlMs: timeoutMs });
    });

    for (const [what, restart] of [
      ['received state the role rule does not adopt', heard(false, 'member_pulse')],
      ["an anchor's recomputation", own(3)],
    ] as const) {
      it(`is restarted by ${what}`, () => {
        const q = run(true, 'monitor');
        q.send(own(3));
        q.clock.advance(timeoutMs - 1);
        q.send(restart);
        q.clock.advance(timeoutMs - 1);
        expect(q.value).to.equal('quorate');
        q.clock.advance(1);
        expect(q.value).to.equal('noQuorum');
      });
    }

    it('is not restarted by a role change', () => {
      const q = run(false, 'member');
      q.send(heard(true, 'monitor_pulse'));
      q.clock.advance(timeoutMs - 1);
      q.send({ type: 'ROLE', role: 'monitor' });
      q.clock.advance(1);
      expect(q.value).to.equal('noQuorum');
    });

    it('tells non-anchors that the last anchor is gone in bounded time', () => {
      const q = run(false, 'monitor');
      q.send(heard(true, 'member_pulse'));
      // The last anchor dies: only non-anchor member pulses, which carry nothing, arrive now.
      q.clock.advance(timeoutMs);
      expect(q.value).to.equal('noQuorum');
      expect(sent(q)?.has).to.equal(false);
    });
  });

  describe('emitted changes', () => {
    it('emits only when the has-flag changes', () => {
      const q = run(true, 'monitor');
      q.send(own(1)).send(own(3)).send(own(4)).send(own(5)).send(own(2)).send(own(0));
      expect(q.of('quorum').map((e) => e.has)).to.deep.equal([true, false]);
    });

    it('works through the pure transition() too', () => {
      const [s0] = initialTransition(quorumMachine, input(true, 'monitor'));
      const [s1, actions] = transition(quorumMachine, s0, own(3));
      expect(s1.value).to.equal('quorate');
      expect(emittedBy(actions)).to.deep.equal([{ type: 'quorum', has: true }]);
    });
  });
});

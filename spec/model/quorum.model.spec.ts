/**
 * Generated paths through the quorum machine, for each anchor flag: every
 * state is reached, and after every (state, event) pair reachable the
 * has-flag is what an independent reading of M5's role rule says.
 */
import { expect } from 'chai';
import { getShortestPaths } from 'xstate/graph';
import { machineName, quorumMachine, type QuorumEvent, type QuorumInput } from '../../machines/membership/quorum.js';
import { afterEvent, leafStates, pathEvents, replay } from '../helpers/machine-harness.js';

const expiry = afterEvent(machineName, 'quorumExpiry', 'quorate');

const events: QuorumEvent[] = [
  { type: 'ROLE', role: 'monitor' },
  { type: 'ROLE', role: 'member' },
  ...(['own', 'monitor_pulse'] as const).flatMap((source) =>
    [2, 3].map((reachableVotes): QuorumEvent => ({ type: 'CONNECTIVITY', reachableVotes, totalVotes: 4, source, at: 0 })),
  ),
  ...(['member_pulse', 'monitor_pulse', 'upper_pulse'] as const).flatMap((via) =>
    [true, false].flatMap((has) =>
      [true, false].map((fromAnchor): QuorumEvent => ({ type: 'QUORUM_HEARD', has, via, fromAnchor, ttlMs: 1000, at: 0 })),
    ),
  ),
  expiry as unknown as QuorumEvent,
];

/** M5's four role cases, read straight from SPEC.md, as a fold over the events. */
function expectedHas(inputAnchor: boolean, inputRole: 'monitor' | 'member', path: QuorumEvent[]): boolean {
  let role = inputRole;
  let has = false;
  for (const e of path) {
    if (e.type === 'ROLE') role = e.role;
    else if (e.type === 'CONNECTIVITY') {
      const mine = role === 'monitor' ? 'own' : 'monitor_pulse';
      if (inputAnchor && e.source === mine) has = e.reachableVotes * 2 > e.totalVotes;
    } else if (e.type === 'QUORUM_HEARD') {
      if (inputAnchor) continue;
      if (role === 'monitor' && ((e.via === 'member_pulse' && e.fromAnchor) || e.via === 'upper_pulse')) has = e.has;
      if (role === 'member' && e.via === 'monitor_pulse') has = e.has;
    } else if ((e as { type: string }).type === expiry.type) has = false;
  }
  return has;
}

describe('quorum (M5), generated paths', () => {
  for (const anchor of [true, false]) {
    for (const role of ['monitor', 'member'] as const) {
      const input: QuorumInput = { anchor, role, quorumTimeoutMs: 1000 };
      // One vertex per (state, context, last event): every reachable pair ends a path.
      const paths = getShortestPaths(quorumMachine, {
        input,
        events,
        serializeState: (s, e) => JSON.stringify([s.value, s.context.role, (e as { type: string } | undefined)?.type === 'xstate.init' ? null : e]),
      });

      it(`${anchor ? 'anchor' : 'non-anchor'} ${role}: reaches every state`, () => {
        const reached = new Set(paths.map((p) => String(p.state.value)));
        expect([...reached].sort()).to.deep.equal(leafStates(quorumMachine).sort());
        expect(paths.length).to.be.greaterThan(events.length);
      });

      it(`${anchor ? 'anchor' : 'non-anchor'} ${role}: the has-flag follows the role rule on every path`, () => {
        for (const p of paths) {
          const evs = pathEvents(p.steps);
          const want = expectedHas(anchor, role, evs);
          expect(p.state.value, JSON.stringify(evs)).to.equal(want ? 'quorate' : 'noQuorum');
        }
      });

      it(`${anchor ? 'anchor' : 'non-anchor'} ${role}: emits exactly the changes of the has-flag`, () => {
        for (const p of paths) {
          const evs = pathEvents(p.steps);
          const { snapshots, emitted } = replay(quorumMachine, input, evs);
          const flags = snapshots.map((s) => s.value === 'quorate');
          const changes = flags.slice(1).flatMap((f, i) => (f !== flags[i] ? [{ type: 'quorum', has: f }] : []));
          expect(emitted.flat(), JSON.stringify(evs)).to.deep.equal(changes);
        }
      });
    }
  }
});

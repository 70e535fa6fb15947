/**
 * Generated paths through one node-db update, for several anchor sets:
 * every resting state is reached, and every path ends consistently: a
 * commit only with every subordinate locked and a majority of the votes,
 * never both commit and abort, never an abort to an anchor that refused,
 * and a final output exactly when the update is over.
 */
import { expect } from 'chai';
import { getShortestPaths } from 'xstate/graph';
import type { NdbOp } from '../../bus/messages.js';
import {
  machineName,
  ndbCoordinatorMachine,
  type NdbCoordinatorEvent,
  type NdbCoordinatorInput,
  type NdbCoordinatorSnapshot,
} from '../../machines/node-db-coordinator.js';
import type { SendOut } from '../../machines/outbox.js';
import { hasMajority } from '../../machines/quorum.js';
import { afterEvent, leafStates, pathEvents, replay } from '../helpers/machine-harness.js';

const change: NdbOp = { op: 'delete', id: 'x' };
const base: NdbCoordinatorInput = {
  self: 'a',
  version: 5,
  change,
  anchors: ['a', 'b', 'c'],
  votes: { a: 1, b: 1, c: 1 },
  totalVotes: 3,
  quorate: true,
  timeoutMs: 100,
};

const inputs: [string, NdbCoordinatorInput][] = [
  ['three anchors', base],
  ['one anchor', { ...base, anchors: ['a'], votes: { a: 1 }, totalVotes: 1 }],
  ['no quorum', { ...base, quorate: false }],
  ['not an anchor', { ...base, anchors: ['b', 'c'] }],
  ['a locked minority', { ...base, anchors: ['a', 'b'], votes: { a: 1, b: 1, c: 1, d: 1 }, totalVotes: 4 }],
];

const prepared = (from: string, ok: boolean, have: number, reason?: string, version = 5): NdbCoordinatorEvent => ({
  type: 'PREPARED',
  from,
  version,
  ok,
  have,
  ...(reason === undefined ? {} : { reason }),
});

const events: NdbCoordinatorEvent[] = [
  prepared('b', true, 4),
  prepared('c', true, 4),
  prepared('b', false, 4, 'busy'),
  prepared('c', false, 5, 'stale'),
  prepared('c', false, 2, 'stale'),
  prepared('b', false, 4, 'E_UNKNOWN_NODE: node x is not in the database'),
  prepared('b', true, 4, undefined, 6),
  prepared('z', true, 4),
  afterEvent(machineName, 'updateTimeout', 'preparing') as unknown as NdbCoordinatorEvent,
];

/** `checking` only decides where to go (eventless): every path passes it, none rests in it. */
const TRANSIENT = ['checking'];

function checkEnd(input: NdbCoordinatorInput, s: NdbCoordinatorSnapshot, sent: SendOut[], emittedTypes: string[]): void {
  const c = s.context;
  const subs = input.anchors.filter((id) => id !== input.self);
  const to = (kind: string) => sent.filter((m) => m.kind === kind).map((m) => m.to);
  expect(c.acked.every((id) => subs.includes(id))).to.equal(true);
  expect(s.status === 'done', 'output exactly when final').to.equal(s.output !== undefined);
  if (s.value === 'committed') {
    expect(s.output).to.deep.equal({ ok: true, version: input.version, change });
    expect([...c.acked].sort()).to.deep.equal([...subs].sort());
    const votes = [input.self, ...c.acked].reduce((n, id) => n + (input.votes[id] ?? 0), 0);
    expect(hasMajority(votes, input.totalVotes)).to.equal(true);
    expect(to('ndb.commit').sort()).to.deep.equal([...subs].sort());
    expect(emittedTypes.filter((t) => t !== 'send')).to.deep.equal(['commit']);
  } else {
    expect(to('ndb.commit')).to.deep.equal([]);
    expect(emittedTypes).to.not.include('commit');
  }
  if (s.value === 'failed') {
    expect(s.output?.ok).to.equal(false);
    expect(emittedTypes.filter((t) => t !== 'send')).to.deep.equal(['abort']);
    for (const id of to('ndb.abort')) expect(c.refused, `abort sent to refuser ${id}`).to.not.include(id);
  }
  if (s.value === 'preparing') expect(to('ndb.abort')).to.deep.equal([]);
}

describe('node-db coordinator (M2), generated paths', () => {
  const reached = new Set<string>();

  for (const [name, input] of inputs) {
    it(`${name}: every path ends consistently`, () => {
      const paths = getShortestPaths(ndbCoordinatorMachine, {
        input,
        events,
        serializeState: (s, e) =>
          JSON.stringify([s.value, [...s.context.acked].sort(), s.context.result?.ok ?? null, (e as { type: string } | undefined)?.type === 'PREPARED' ? e : e?.type]),
      });
      expect(paths.length).to.be.greaterThan(0);
      for (const p of paths) {
        reached.add(String(p.state.value));
        const { snapshots, emitted } = replay(ndbCoordinatorMachine, input, pathEvents(p.steps));
        const all = emitted.flat();
        const last = snapshots[snapshots.length - 1];
        expect(last.value).to.equal(p.state.value);
        checkEnd(input, last, all.filter((e) => e.type === 'send') as unknown as SendOut[], all.map((e) => e.type));
      }
    });
  }

  it('reaches every resting state across the inputs', () => {
    const want = leafStates(ndbCoordinatorMachine).filter((s) => !TRANSIENT.includes(s));
    expect([...reached].sort()).to.deep.equal(want.sort());
  });
});

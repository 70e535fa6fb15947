/**
 * Generated paths through one anchor's PAN election among three anchors:
 * every state is reached, and every path ends in a snapshot that keeps the
 * machine's invariants; replaying the path, terms never go back, a vote is
 * granted at most once per term, and the PAN last emitted is the one known.
 */
import { expect } from 'chai';
import { getShortestPaths } from 'xstate/graph';
import {
  machineName,
  panElectionMachine,
  type PanElectionContext,
  type PanElectionEvent,
  type PanElectionSnapshot,
} from '../../machines/membership/pan-election.js';
import { hasMajority } from '../../machines/membership/quorum.js';
import type { SendOut } from '../../machines/outbox.js';
import { afterEvent, leafStates, pathEvents, replay } from '../helpers/machine-harness.js';

const ALL = ['a', 'b', 'c'];
const votes = { a: 1, b: 1, c: 1 };
const view = (alive: string[]): PanElectionEvent => ({
  type: 'VIEW',
  quorate: 2 * alive.length > ALL.length,
  aliveAnchors: alive,
  votes,
  totalVotes: 3,
});

const timers = [
  afterEvent(machineName, 'electionTimeout', 'candidate'),
  afterEvent(machineName, 'retry', 'follower'),
] as unknown as PanElectionEvent[];

/** Events offered in each state; terms are relative to what the anchor has seen, so paths stay short. */
function eventsFor(s: PanElectionSnapshot): PanElectionEvent[] {
  const t = s.context.term;
  return [
    view(ALL),
    view(['a', 'b']),
    view(['b', 'c']),
    view(['a']),
    { type: 'CLAIM', from: 'b', term: t + 1 },
    { type: 'CLAIM', from: 'c', term: t },
    { type: 'VOTE', from: 'b', term: t, granted: true },
    { type: 'VOTE', from: 'c', term: t, granted: true },
    { type: 'VOTE', from: 'b', term: t + 2, granted: false },
    { type: 'ELECTED', from: 'b', term: t },
    { type: 'ELECTED', from: 'c', term: t + 1 },
    { type: 'HEARD_PAN', id: 'c', term: t + 1 },
    { type: 'HEARD_PAN', id: 'b', term: Math.max(0, t - 1) },
    ...timers,
  ];
}

const weight = (c: PanElectionContext) => c.granted.reduce((s, id) => s + (c.view.votes[id] ?? 0), 0);

function checkInvariants(s: PanElectionSnapshot): void {
  const c = s.context;
  expect(['follower', 'candidate', 'primary']).to.include(s.value);
  expect(c.votedTerm).to.be.at.most(c.term);
  if (s.value === 'primary') {
    expect(c.pan?.id).to.equal(c.self);
    expect(c.view.quorate).to.equal(true);
    expect(c.pan!.term, "a primary's term is its PAN term").to.equal(c.term);
  } else {
    expect(c.pan?.id).to.not.equal(c.self);
  }
  if (s.value === 'candidate') {
    expect(c.votedTerm).to.equal(c.term);
    expect(c.granted).to.include(c.self);
    expect(hasMajority(weight(c), c.view.totalVotes), 'a winning candidate is primary').to.equal(false);
  }
  if (c.pan && s.value !== 'primary') {
    expect(c.view.quorate, 'no PAN without quorum').to.equal(true);
    expect(c.view.aliveAnchors).to.include(c.pan.id);
  }
}

describe('PAN election (M16), generated paths', () => {
  for (const self of ['a', 'b']) {
    const input = { self, preference: [], electionTimeoutMs: 100, retryMs: 50 };
    const paths = getShortestPaths(panElectionMachine, {
      input,
      events: eventsFor,
      // Bounded features only: terms grow without limit.
      serializeState: (s, e) =>
        JSON.stringify([
          s.value,
          s.context.backoff,
          s.context.pan?.id ?? null,
          s.context.view.aliveAnchors,
          [...s.context.granted].sort(),
          s.context.votedTerm === s.context.term,
          (e as { type: string } | undefined)?.type,
        ]),
      limit: 20_000,
    });

    it(`as ${self}: reaches every state`, () => {
      const reached = new Set(paths.map((p) => String(p.state.value)));
      expect([...reached].sort()).to.deep.equal(leafStates(panElectionMachine).sort());
    });

    it(`as ${self}: every path ends in a snapshot that keeps the invariants`, () => {
      for (const p of paths) {
        try {
          checkInvariants(p.state);
        } catch (err) {
          throw new Error(`${(err as Error).message} after ${JSON.stringify(pathEvents(p.steps))}`);
        }
      }
    });

    it(`as ${self}: terms never go back, one grant per term, and the last PAN emitted is the one known`, () => {
      for (const p of paths) {
        const evs = pathEvents(p.steps);
        const { snapshots, emitted } = replay(panElectionMachine, input, evs);
        for (let i = 1; i < snapshots.length; i++) {
          try {
            expect(snapshots[i].context.term).to.be.at.least(snapshots[i - 1].context.term);
            checkInvariants(snapshots[i]);
          } catch (err) {
            throw new Error(`${(err as Error).message} after ${JSON.stringify(evs.slice(0, i))}`);
          }
        }
        const all = emitted.flat();
        const granted = all
          .filter((e): e is SendOut & { type: 'send' } => e.type === 'send' && (e as SendOut).kind === 'pan.vote')
          .map((e) => e.body as { term: number; granted: boolean })
          .filter((b) => b.granted)
          .map((b) => b.term);
        expect(granted, 'granted terms strictly rise').to.deep.equal([...new Set(granted)].sort((x, y) => x - y));
        const panEvents = all.filter((e) => e.type === 'pan');
        const last = snapshots[snapshots.length - 1].context.pan;
        if (panEvents.length > 0) expect(panEvents[panEvents.length - 1].pan).to.deep.equal(last);
        else expect(last).to.equal(undefined);
      }
    });
  }
});
